"""The shared pacer: never early, at most one quantum late, cancellable."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from runtime.clock import Pacer


async def test_sleepers_wake_no_earlier_and_at_most_one_quantum_late(
    autojump_clock: MockClock,
) -> None:
    pacer = Pacer(quantum=0.002)
    woke: list[tuple[float, float]] = []

    async def sleeper(deadline: float) -> None:
        await pacer.sleep_until(deadline)
        woke.append((deadline, trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pacer.run)
        start = trio.current_time()
        deadlines = [start + 0.0105 * k for k in (5, 1, 3, 2, 4)] + [start + 0.0101, start + 0.0102]
        async with trio.open_nursery() as sleepers:
            for deadline in deadlines:
                sleepers.start_soon(sleeper, deadline)
        nursery.cancel_scope.cancel()
    assert len(woke) == len(deadlines)
    for deadline, at in woke:
        assert deadline <= at <= deadline + 0.002 + 1e-9


async def test_one_timer_wakeup_serves_sleepers_close_together(autojump_clock: MockClock) -> None:
    pacer = Pacer(quantum=0.005)
    times: list[float] = []

    async def sleeper(deadline: float) -> None:
        await pacer.sleep_until(deadline)
        times.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pacer.run)
        await trio.sleep(0.001)
        base = trio.current_time()
        async with trio.open_nursery() as sleepers:
            for k in range(10):
                sleepers.start_soon(sleeper, base + 0.010 + 0.0004 * k)  # 10 deadlines in 4 ms
        nursery.cancel_scope.cancel()
    assert len(set(times)) <= 2


async def test_a_sleep_can_be_cancelled_and_past_deadlines_return_at_once(
    autojump_clock: MockClock,
) -> None:
    pacer = Pacer()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pacer.run)
        with trio.move_on_after(0.05) as scope:
            await pacer.sleep_until(trio.current_time() + 10)
        assert scope.cancelled_caught
        before = trio.current_time()
        await pacer.sleep_until(before - 1)
        assert trio.current_time() == before
        await pacer.sleep_until(trio.current_time() + 0.02)  # the cancelled one is skipped
        assert trio.current_time() == pytest.approx(before + 0.02, abs=0.0021)
        nursery.cancel_scope.cancel()
