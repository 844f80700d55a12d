"""Garbage-collector settings for a process holding many sessions: one call, opt-in.

Why: a process with N sessions holds on the order of 1,000 objects the collector tracks per
session (trio tasks, their coroutines, cancel scopes, closures, channel state), all
long-lived. CPython's default thresholds (700, 10, 10) start a young collection every 700
net allocations, and a full one that walks *every* tracked object often enough that, at
100 sessions (~117,000 objects), each pauses the whole trio loop for tens of ms: those
pauses are the p99 of send and receive latency near saturation (README, "Measured
performance").

``tune_gc()`` does two things, each the usual remedy for a long-running server:

- ``gc.freeze()`` after a collection: everything alive now (imports, configuration,
  sessions already started) moves to the permanent generation, which no later collection
  walks. Call it once the process has started what it will hold for long (for a server:
  after start-up, or once the first sessions run). Objects frozen are still freed by
  reference counting; only a *cycle* among them is never collected (``undo()`` unfreezes).
- a larger young-generation threshold (``DEFAULT_THRESHOLDS``): a young collection every
  50,000 allocations instead of 700, so the short-lived garbage of message handling
  (mostly freed by reference counting anyway) is scanned rarely, and full collections
  come ~70x less often.

The library never calls it itself: the collector is the application's process-wide
setting. Memory growth from cyclic garbage waits longer for collection (at most one
threshold's worth of young objects).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

__all__ = ["DEFAULT_THRESHOLDS", "GcTuning", "tune_gc"]

# (generation 0, 1, 2): measured at 100 sessions (issue 7) the full-collection pauses
# went from every few seconds to rare, p99 send latency 89 -> 23 ms, at the same CPU.
DEFAULT_THRESHOLDS: tuple[int, int, int] = (50_000, 50, 100)


@dataclass(frozen=True)
class GcTuning:
    """What ``tune_gc`` changed: the thresholds before, and how many objects it froze."""

    previous_thresholds: tuple[int, int, int]
    frozen: int

    def undo(self) -> None:
        """Restore the previous thresholds and unfreeze what is frozen (also what was
        frozen by anyone else: CPython keeps a single permanent generation)."""
        gc.set_threshold(*self.previous_thresholds)
        gc.unfreeze()


def tune_gc(
    thresholds: tuple[int, int, int] = DEFAULT_THRESHOLDS, *, freeze: bool = True
) -> GcTuning:
    """Set the collector's ``thresholds`` and (``freeze``) collect once, then freeze every
    object alive. Synchronous; the one collection costs a few ms per 10,000 tracked objects,
    once. Call it after start-up (see the module docstring); calling it again freezes what
    was created since. Raises ``ValueError`` for a threshold below 1 in generation 0 or
    negative in the others (a gen-0 threshold of 0 would disable collection altogether:
    ``gc.disable()`` says that more plainly)."""
    first, second, third = thresholds
    if first < 1 or second < 0 or third < 0:
        raise ValueError(f"thresholds must be >= (1, 0, 0), not {thresholds!r}")
    previous = gc.get_threshold()
    gc.set_threshold(first, second, third)
    frozen = 0
    if freeze:
        gc.collect()  # garbage alive now would otherwise be frozen with the rest
        before = gc.get_freeze_count()
        gc.freeze()
        frozen = gc.get_freeze_count() - before
    return GcTuning(previous_thresholds=previous, frozen=frozen)
