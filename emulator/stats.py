"""What an emulator process did, for load measurements: traffic and pacing lag.

Pacing lag is how late a paced audio chunk went out compared with its schedule; an
emulator that keeps up has a lag near zero. ``summary()`` is plain JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class EmulatorStats:
    connections: int = 0
    messages_in: int = 0
    messages_out: int = 0
    turns: int = 0
    pacing_lags: list[float] = field(default_factory=list)

    def record_lag(self, seconds: float) -> None:
        self.pacing_lags.append(max(0.0, seconds))

    def summary(self) -> dict[str, Any]:
        lags = np.asarray(self.pacing_lags) * 1000.0
        percentiles = np.percentile(lags, [50, 99, 100]) if lags.size else np.zeros(3)
        return {
            "connections": self.connections,
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "turns": self.turns,
            "paced_chunks": int(lags.size),
            "pacing_lag_ms": {
                "p50": round(float(percentiles[0]), 3),
                "p99": round(float(percentiles[1]), 3),
                "max": round(float(percentiles[2]), 3),
            },
            "chunks_late_over_20ms": int((lags > 20.0).sum()),
        }
