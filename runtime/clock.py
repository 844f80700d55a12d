"""Many paced sleeps served by one timer.

``trio.sleep`` is a cancel scope with a deadline: every sleep ends in a cancellation,
which under load (hundreds of sessions, a frame every 20 ms each) costs more than the
work the sleep paces. The pacer keeps one heap of sleepers and one timer task that wakes,
on a grid of ``quantum`` seconds, every sleeper that is due. A sleep may end up to one
quantum late; the load benchmarks measure lateness against exact schedules, so that shows.

The emulator runs its own ``Pacer``; capture and playout share one per ``trio.run``
(``shared_pacer()``), whose timer is a system task started on first use.
"""

from __future__ import annotations

import heapq
import itertools

import trio

_SHARED: trio.lowlevel.RunVar[Pacer] = trio.lowlevel.RunVar("shared_pacer")


class Pacer:
    def __init__(self, quantum: float = 0.002) -> None:
        self.quantum = quantum
        self._heap: list[tuple[float, int, trio.lowlevel.Task]] = []
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

    async def run(self) -> None:
        """The timer task; run it for as long as sleepers may come."""
        while True:
            now = trio.current_time()
            heap = self._heap
            while heap and heap[0][0] <= now:
                _, key, task = heapq.heappop(heap)
                if key in self._cancelled:
                    self._cancelled.discard(key)
                else:
                    trio.lowlevel.reschedule(task)
            self._timer_moved = trio.Event()
            if heap:
                # At least one quantum apart, so one wakeup serves every sleeper due by then.
                wake = max(heap[0][0], now + self.quantum)
                with trio.move_on_at(wake):
                    await self._timer_moved.wait()
            else:
                await self._timer_moved.wait()


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
