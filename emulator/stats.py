"""What an emulator process did, for load measurements: traffic and pacing lag.

Pacing lag is how late a paced audio chunk went out compared with its schedule; an
emulator that keeps up has a lag near zero. Percentiles come from a fair random sample of
at most ``MAX_LAG_SAMPLES`` lags (a long run must not grow the process); the count, the
maximum and the late count are exact. ``summary()`` is plain JSON.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emulator.limits import MAX_LAG_SAMPLES

LATE_S = 0.020  # a chunk this late counts as late


@dataclass
class EmulatorStats:
    connections: int = 0
    messages_in: int = 0
    messages_out: int = 0
    turns: int = 0  # replies to user turns (the script's turns played)
    result_replies: int = 0  # replies about NON_BLOCKING results
    user_turns_merged: int = 0  # turns faster than replies, past MAX_PENDING_USER_TURNS
    paced_chunks: int = 0
    chunks_late: int = 0
    max_lag: float = 0.0
    pacing_lags: list[float] = field(default_factory=list)  # a sample: see the docstring
    max_lag_samples: int = MAX_LAG_SAMPLES
    _random: random.Random = field(default_factory=lambda: random.Random(0), repr=False)

    def record_lag(self, seconds: float) -> None:
        lag = max(0.0, seconds)
        self.paced_chunks += 1
        self.chunks_late += lag > LATE_S
        self.max_lag = max(self.max_lag, lag)
        if len(self.pacing_lags) < self.max_lag_samples:
            self.pacing_lags.append(lag)
            return
        slot = self._random.randrange(self.paced_chunks)  # reservoir sampling
        if slot < self.max_lag_samples:
            self.pacing_lags[slot] = lag

    def summary(self) -> dict[str, Any]:
        lags = np.asarray(self.pacing_lags) * 1000.0
        percentiles = np.percentile(lags, [50, 99]) if lags.size else np.zeros(2)
        return {
            "connections": self.connections,
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "turns": self.turns,
            "result_replies": self.result_replies,
            "user_turns_merged": self.user_turns_merged,
            "paced_chunks": self.paced_chunks,
            "pacing_lag_ms": {
                "p50": round(float(percentiles[0]), 3),
                "p99": round(float(percentiles[1]), 3),
                "max": round(self.max_lag * 1000.0, 3),
            },
            "chunks_late_over_20ms": self.chunks_late,
        }
