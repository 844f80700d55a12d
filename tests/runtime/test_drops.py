"""Drop counting: the first drop reported at once, then at most one report per interval."""

from __future__ import annotations

from runtime import messages as m
from runtime.drops import DropCounter


def test_drops_are_reported_aggregated() -> None:
    counter = DropCounter("audio", interval=1.0)
    assert counter.due(0.0) is None  # nothing dropped
    counter.add()
    assert counter.due(0.0) == m.Dropped(what="audio", count=1)  # the first, at once
    for _ in range(99):
        counter.add()
    assert counter.due(0.5) is None  # within the interval: counted, not reported
    assert counter.due(1.0) == m.Dropped(what="audio", count=99)
    counter.add(3)
    assert counter.flush() == m.Dropped(what="audio", count=3)  # at a boundary, the rest
    assert counter.flush() is None
    assert counter.total == 103
