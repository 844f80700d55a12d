"""Many paced sleeps served by one timer.

``trio.sleep`` is a cancel scope with a deadline: every sleep ends in a cancellation,
which under load (hundreds of sessions, a reply chunk every 40 ms each) costs more than
sending the chunk. The pacer keeps one heap of sleepers and one timer task that wakes,
on a grid of ``quantum`` seconds, every sleeper that is due. A sleep may end up to one
quantum late; the emulator's pacing-lag statistics measure against exact schedules, so
that shows.
"""

from __future__ import annotations

import heapq
import itertools

import trio


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
