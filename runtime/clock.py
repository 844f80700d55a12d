"""Many paced sleeps served by one timer.

``trio.sleep`` is a cancel scope with a deadline: every sleep ends in a cancellation,
which under load (hundreds of sessions, a frame every 20 ms each) costs more than the
work the sleep paces. The pacer keeps one heap of sleepers and one timer task that wakes,
on a grid of ``quantum`` seconds, every sleeper that is due. A sleep may end up to one
quantum late; the load benchmarks measure lateness against exact schedules, so that shows.

The timer can also call a function at a deadline (``call_at``) instead of waking a task:
paced work that cannot block (a frame from memory or a file handed on through inline
hand-offs) then costs no task step at all, and every session due in the same quantum is
served in one step of the timer task.

The emulator runs its own ``Pacer``; capture and playout share one per ``trio.run``
(``shared_pacer()``), whose timer is a system task started on first use.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
from collections.abc import Callable

import trio

_SHARED: trio.lowlevel.RunVar[Pacer] = trio.lowlevel.RunVar("shared_pacer")

# The shared clock's grid: streams paced by the clock (memory and file sources, playout
# into a sink that does not wait) start on it, so with 20 ms frames every session's frames
# fall on one of four ticks every 20 ms, staggered by when they started: the timer wakes at
# most 200 times a second however many sessions there are (at 1 ms apart, up to 1,000),
# and no frame is late for it. The cost: such a stream starts up to 5 ms later.
GRID = 0.005


def on_grid(time: float) -> float:
    """The first point of the shared clock's grid (``GRID``) at or after ``time``."""
    return math.ceil(time / GRID - 1e-9) * GRID


class Timer:
    """A call scheduled by ``Pacer.call_at``; ``cancel()`` it before it runs to drop it."""

    __slots__ = ("callback", "cancelled", "failed")

    def __init__(
        self, callback: Callable[[], None], failed: Callable[[BaseException], None]
    ) -> None:
        self.callback, self.failed = callback, failed
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Pacer:
    def __init__(self, quantum: float = 0.002) -> None:
        self.quantum = quantum
        self._heap: list[tuple[float, int, trio.lowlevel.Task | Timer]] = []
        self._cancelled: set[int] = set()
        self._order = itertools.count()
        self._timer_moved = trio.Event()

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until ``deadline`` (trio's clock), waking at most one quantum late.
        Cancellable like any sleep."""
        if deadline <= trio.current_time():
            await trio.lowlevel.checkpoint()
            return
        key = next(self._order)
        earliest = self._heap[0][0] if self._heap else None
        heapq.heappush(self._heap, (deadline, key, trio.lowlevel.current_task()))
        if earliest is None or deadline < earliest:
            self._timer_moved.set()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._cancelled.add(key)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def call_at(
        self,
        deadline: float,
        callback: Callable[[], None],
        failed: Callable[[BaseException], None],
    ) -> Timer:
        """Call ``callback()`` in the timer task once ``deadline`` (trio's clock) has come,
        at most one quantum late (at the next tick when it has come already). It must not
        block or wait (it runs in no task of its own: it may use ``*_nowait`` calls and
        ``trio.lowlevel.reschedule``); if it raises, anything at all (a ``BaseException``
        too), ``failed(error)`` is called with the error (the owner's to handle; the timer
        goes on). Calling order among calls due
        in the same tick: by deadline, then by scheduling order."""
        timer = Timer(callback, failed)
        earliest = self._heap[0][0] if self._heap else None
        heapq.heappush(self._heap, (deadline, next(self._order), timer))
        if earliest is None or deadline < earliest:
            self._timer_moved.set()
        return timer

    async def run(self) -> None:
        """The timer task; run it for as long as sleepers may come."""
        while True:
            now = trio.current_time()
            heap = self._heap
            while heap and heap[0][0] <= now:
                _, key, due = heapq.heappop(heap)
                if isinstance(due, Timer):
                    if not due.cancelled:
                        _call(due)
                elif key in self._cancelled:
                    self._cancelled.discard(key)
                else:
                    trio.lowlevel.reschedule(due)
            self._timer_moved = trio.Event()
            if heap:
                # At least one quantum apart, so one wakeup serves every sleeper due by then.
                wake = max(heap[0][0], now + self.quantum)
                with trio.move_on_at(wake):
                    await self._timer_moved.wait()
            else:
                await self._timer_moved.wait()


def _call(timer: Timer) -> None:
    # BaseException too: the timer is a system task, and one that raises crashes the whole
    # run (TrioInternalError); the callback cannot checkpoint, so no Cancelled comes here.
    try:
        timer.callback()
    except BaseException as exc:
        with contextlib.suppress(BaseException):  # the owner's handler failed: its task is gone
            timer.failed(exc)


def shared_pacer() -> Pacer:
    """This ``trio.run``'s pacer, its timer started as a system task on first use (system
    tasks are cancelled when the run's main task ends)."""
    try:
        return _SHARED.get()
    except LookupError:
        pacer = Pacer(quantum=0.001)  # a 20 ms frame may start at most 1 ms late
        _SHARED.set(pacer)
        trio.lowlevel.spawn_system_task(pacer.run, name="shared pacer")
        return pacer


async def paced_sleep_until(deadline: float) -> None:
    """``trio.sleep_until`` through this run's shared pacer (at most 1 ms late)."""
    await shared_pacer().sleep_until(deadline)
