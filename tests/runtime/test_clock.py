"""The shared pacer: never early, at most one quantum late, cancellable."""

from __future__ import annotations

import functools

import pytest
import trio
from trio.testing import MockClock

from runtime.clock import GRID, Pacer, on_grid


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


async def test_calls_at_deadlines_run_in_order_never_early_and_failures_go_to_their_owner(
    autojump_clock: MockClock,
) -> None:
    pacer = Pacer(quantum=0.002)
    calls: list[tuple[str, float, float]] = []
    failures: list[BaseException] = []

    def call(name: str, deadline: float) -> None:
        calls.append((name, deadline, trio.current_time()))
        if name == "fails":
            raise ValueError("a failing callback")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pacer.run)
        await trio.sleep(0.001)
        start = trio.current_time()
        for name, offset in [("c", 0.030), ("a", 0.010), ("fails", 0.015), ("b", 0.0101)]:
            deadline = start + offset
            pacer.call_at(deadline, functools.partial(call, name, deadline), failures.append)
        dropped = pacer.call_at(start + 0.02, lambda: call("dropped", 0.0), failures.append)
        dropped.cancel()
        chained: list[float] = []

        def again() -> None:  # a paced source: each call schedules the next
            chained.append(trio.current_time())
            if len(chained) < 5:
                pacer.call_at(start + 0.02 * len(chained), again, failures.append)

        pacer.call_at(start, again, failures.append)
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    assert [name for name, _, _ in calls] == ["a", "b", "fails", "c"]
    for _, deadline, at in calls:
        assert deadline <= at <= deadline + 0.002 + 1e-9
    assert [str(f) for f in failures] == ["a failing callback"]
    assert len(chained) == 5
    for k, at in enumerate(chained):
        assert start + 0.02 * k <= at <= start + 0.02 * k + 0.002 + 1e-9


def test_on_grid_is_the_first_grid_point_at_or_after_a_time() -> None:
    assert on_grid(0.0) == 0.0
    assert on_grid(0.005) == pytest.approx(0.005)
    assert on_grid(0.0051) == pytest.approx(0.010)
    assert on_grid(12.3456) == pytest.approx(12.35)
    for time in (0.0, 0.001, 0.0049999, 0.005, 1.0, 1234.5678):
        point = on_grid(time)
        assert time - 1e-9 <= point < time + GRID
        assert round(point / GRID, 6) == round(point / GRID)
