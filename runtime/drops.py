"""Counting what a bound discards, and reporting it aggregated.

A bound that overflows drops one item at a time (an audio chunk, a queued event), often
many per second; one ``Dropped`` event per item would be a flood of its own. A
``DropCounter`` counts them and says when to report: the first drop after a quiet spell at
once, then at most one report per ``interval`` seconds with the count since the last one;
``flush()`` reports the rest at a natural boundary (a turn's end, a reconnect, an exit).
Plain data: it holds no trio primitive, so it may live in state that outlives an actor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from runtime import messages as m


@dataclass
class DropCounter:
    what: str
    interval: float = 1.0
    total: int = 0  # dropped since creation
    unreported: int = 0
    _last_report: float = -math.inf

    def add(self, count: int = 1) -> None:
        self.total += count
        self.unreported += count

    def due(self, now: float) -> m.Dropped | None:
        """The report to send now, if one is due (it is then counted as reported)."""
        if not self.unreported or now - self._last_report < self.interval:
            return None
        self._last_report = now
        return self.flush()

    def flush(self) -> m.Dropped | None:
        """Everything not yet reported, as one report (None when nothing is)."""
        if not self.unreported:
            return None
        report = m.Dropped(what=self.what, count=self.unreported)
        self.unreported = 0
        return report
