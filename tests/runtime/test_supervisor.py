"""The supervisor and the wiring, with fake actors under the autojump clock."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from runtime import (
    ActorContext,
    Backoff,
    ChildSpec,
    Intensity,
    Restart,
    Strategy,
    Supervisor,
    SupervisorGaveUp,
    Wiring,
)
from runtime import messages as m
from runtime.supervisor import Actor, no_jitter

NO_JITTER = Backoff(initial=0.1, maximum=1.0, multiplier=2.0, jitter=0.2)


class Recorder:
    """Collects the supervisor's lifecycle events with their times."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[m.InternalMessage](1000)
        self.events: list[tuple[float, m.InternalMessage]] = []

    def drain(self) -> list[tuple[float, m.InternalMessage]]:
        while True:
            try:
                self.events.append((trio.current_time(), self.receive.receive_nowait()))
            except trio.WouldBlock:
                return self.events

    def kinds(self, actor: str | None = None) -> list[str]:
        return [
            type(e).__name__
            for _, e in self.drain()
            if actor is None or getattr(e, "actor", None) == actor
        ]


def crashing(times: int, log: list[str], name: str) -> Actor:
    """An actor that fails ``times`` times, then runs until asked to stop."""

    async def actor(ctx: ActorContext) -> None:
        log.append(f"{name}#{ctx.incarnation}")
        ctx.ready()
        if ctx.incarnation <= times:
            await trio.sleep(0.01)
            raise RuntimeError(f"{name} broke")
        await ctx.stopping.wait()

    return actor


async def test_start_up_is_ordered_by_readiness(autojump_clock: MockClock) -> None:
    order: list[tuple[str, float]] = []

    def slow_starter(name: str, startup: float) -> Actor:
        async def actor(ctx: ActorContext) -> None:
            order.append((f"{name} starting", trio.current_time()))
            await trio.sleep(startup)
            ctx.ready()
            await ctx.stopping.wait()

        return actor

    recorder = Recorder()
    supervisor = Supervisor(
        [ChildSpec("a", slow_starter("a", 1.0)), ChildSpec("b", slow_starter("b", 0.5))],
        events=recorder.send,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        assert trio.current_time() == pytest.approx(1.5)  # started once both were ready
        supervisor.stop()
    assert order == [("a starting", 0.0), ("b starting", 1.0)]


async def test_one_for_one_restarts_only_the_failed_child_with_capped_backoff(
    autojump_clock: MockClock,
) -> None:
    log: list[str] = []
    recorder = Recorder()
    supervisor = Supervisor(
        [
            ChildSpec("steady", crashing(0, log, "steady")),
            ChildSpec("flaky", crashing(5, log, "flaky")),
        ],
        events=recorder.send,
        backoff=NO_JITTER,
        intensity=Intensity(max_restarts=10, window=60),
        random=no_jitter,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await trio.sleep(10)
        supervisor.stop()
    assert log.count("steady#1") == 1
    assert [entry for entry in log if entry.startswith("flaky")] == [
        f"flaky#{i}" for i in range(1, 7)
    ]
    delays = [e.delay for _, e in recorder.drain() if isinstance(e, m.ActorRestarting)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0])  # doubling, capped at 1.0
    crashes = [e for _, e in recorder.events if isinstance(e, m.ActorCrashed)]
    assert crashes[0] == m.ActorCrashed(
        actor="flaky", error_type="RuntimeError", error="flaky broke"
    )


async def test_a_crash_inside_an_actors_own_nursery_is_reported_as_itself(
    autojump_clock: MockClock,
) -> None:
    # Found by the soak: a failing sink was reported as "ExceptionGroup: Exceptions from
    # Trio nursery", which says nothing.
    async def actor(ctx: ActorContext) -> None:
        ctx.ready()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            raise OSError("the audio device went away")

    recorder = Recorder()
    supervisor = Supervisor([ChildSpec("playout", actor, Restart.TEMPORARY)], events=recorder.send)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await trio.sleep(1)
        supervisor.stop()
    crashes = [e for _, e in recorder.drain() if isinstance(e, m.ActorCrashed)]
    assert crashes == [
        m.ActorCrashed(actor="playout", error_type="OSError", error="the audio device went away")
    ]


async def test_jitter_comes_from_the_injected_random_source(autojump_clock: MockClock) -> None:
    recorder = Recorder()
    draws = iter([1.0, 0.0])
    supervisor = Supervisor(
        [ChildSpec("flaky", crashing(2, [], "flaky"))],
        events=recorder.send,
        backoff=NO_JITTER,
        random=lambda: next(draws),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await trio.sleep(5)
        supervisor.stop()
    delays = [e.delay for _, e in recorder.drain() if isinstance(e, m.ActorRestarting)]
    assert delays == pytest.approx([0.1 * 1.2, 0.2 * 0.8])


async def test_exceeding_the_restart_intensity_escalates(autojump_clock: MockClock) -> None:
    recorder = Recorder()
    supervisor = Supervisor(
        [ChildSpec("doomed", crashing(100, [], "doomed"))],
        events=recorder.send,
        backoff=Backoff(initial=0.01, maximum=0.01),
        intensity=Intensity(max_restarts=3, window=10),
    )
    with pytest.raises(
        SupervisorGaveUp, match="'doomed' failed again: 3 restarts within 10 s"
    ) as info:
        await supervisor.run()
    assert isinstance(info.value.__cause__, RuntimeError)
    kinds = recorder.kinds("doomed")
    assert kinds.count("ActorCrashed") == 4
    assert kinds[-1] == "ActorGaveUp"


async def test_a_child_failing_slowly_before_it_is_ready_still_gives_up(
    autojump_clock: MockClock,
) -> None:
    # Issue 13: the link, failing to connect, crashed every ~33 s; each incarnation
    # outlived the 5-per-30 s window, so the supervisor restarted it forever.
    async def never_ready(ctx: ActorContext) -> None:
        if ctx.incarnation == 1:
            ctx.ready()  # connected once, then lost it
            await trio.sleep(5)
        else:
            await trio.sleep(33)  # never connects again
        raise RuntimeError("cannot connect")

    recorder = Recorder()
    supervisor = Supervisor(
        [ChildSpec("steady", crashing(0, [], "steady")), ChildSpec("slowly", never_ready)],
        events=recorder.send,
        intensity=Intensity(max_restarts=2, window=30),
    )

    with pytest.raises(SupervisorGaveUp, match="2 restarts in a row"):
        await supervisor.run()
    assert 70 <= trio.current_time() < 75  # the third failure, at 5 + 33 + 33 s


async def test_restarts_of_a_child_that_fails_within_every_window_count_in_a_row(
    autojump_clock: MockClock,
) -> None:
    async def fails_every_20s(ctx: ActorContext) -> None:
        ctx.ready()
        await trio.sleep(20)
        raise RuntimeError("tired")

    supervisor = Supervisor(
        [ChildSpec("slowly", fails_every_20s)],
        events=Recorder().send,
        intensity=Intensity(max_restarts=2, window=30),
    )
    with pytest.raises(SupervisorGaveUp, match="'slowly' failed again: 2 restarts in a row"):
        await supervisor.run()
    assert trio.current_time() == pytest.approx(60, abs=1)  # the third failure


async def test_a_child_up_for_a_whole_window_between_failures_is_restarted_forever(
    autojump_clock: MockClock,
) -> None:
    async def fails_every_40s(ctx: ActorContext) -> None:
        ctx.ready()
        await trio.sleep(40)
        raise RuntimeError("tired")

    recorder = Recorder()
    supervisor = Supervisor(
        [ChildSpec("healthy", fails_every_40s)],
        events=recorder.send,
        intensity=Intensity(max_restarts=2, window=30),
        random=no_jitter,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await trio.sleep(400)  # ten failures, each after 40 s up
        supervisor.stop()
    restarts = [e for _, e in recorder.drain() if isinstance(e, m.ActorRestarting)]
    assert len(restarts) >= 9
    assert {r.attempt for r in restarts} == {1}  # every time a fresh start


class Fatal(Exception):
    pass


async def test_a_fatal_error_is_never_restarted_and_is_raised_as_itself(
    autojump_clock: MockClock,
) -> None:
    log: list[str] = []

    async def doomed(ctx: ActorContext) -> None:
        log.append(f"doomed#{ctx.incarnation}")
        ctx.ready()
        await trio.sleep(1)
        raise Fatal("the key was refused")

    recorder = Recorder()
    supervisor = Supervisor(
        [
            ChildSpec("steady", crashing(0, log, "steady")),
            ChildSpec("doomed", doomed, fatal=(Fatal,)),
        ],
        events=recorder.send,
    )
    with pytest.raises(Fatal, match="the key was refused"):  # not an ExceptionGroup
        await supervisor.run()
    assert trio.current_time() == pytest.approx(1)
    assert log == ["steady#1", "doomed#1"]
    assert "ActorRestarting" not in recorder.kinds()


async def test_a_first_incarnation_failing_before_it_is_ready_fails_the_start_up(
    autojump_clock: MockClock,
) -> None:
    log: list[str] = []

    async def cannot_start(ctx: ActorContext) -> None:
        log.append("cannot_start")
        await trio.sleep(1)
        raise OSError("no such device")

    supervisor = Supervisor(
        [
            ChildSpec("first", crashing(0, log, "first")),
            ChildSpec("broken", cannot_start),
            ChildSpec("never", crashing(0, log, "never")),
        ],
        events=Recorder().send,
    )
    async with trio.open_nursery() as nursery:
        with pytest.raises(OSError, match="no such device"):
            await nursery.start(supervisor.run)  # never "started": it raises
    assert log == ["first#1", "cannot_start"]  # not restarted, and nothing after it started


async def test_stop_ends_children_in_reverse_start_order_and_channels_drain_downstream() -> None:
    # On a real clock: the shutdown takes a few scheduler steps, not the grace period.
    wiring: Wiring[int] = Wiring()
    wiring.add("numbers")
    order: list[str] = []
    got: list[int] = []

    async def consumer(ctx: ActorContext) -> None:
        async with wiring.receiver("numbers") as receive:
            ctx.ready()
            async for n in receive:  # ends when every sender is closed: no stopping needed
                got.append(n)
        order.append("consumer")

    async def producer(ctx: ActorContext) -> None:
        async with wiring.sender("numbers") as send:
            ctx.ready()
            for n in range(3):
                await send.send(n)
            await ctx.stopping.wait()
            await send.send(3)  # a last word on the way out reaches the consumer
            order.append("producer")

    supervisor = Supervisor(
        [ChildSpec("consumer", consumer), ChildSpec("producer", producer)],
        events=Recorder().send,
        shutdown_grace=10.0,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        began = trio.current_time()
        wiring.close_senders()
        supervisor.stop()
    assert trio.current_time() - began < 1.0
    assert order == ["producer", "consumer"]
    assert got == [0, 1, 2, 3]


async def test_a_stop_during_a_restart_backoff_ends_at_once(autojump_clock: MockClock) -> None:
    supervisor = Supervisor(
        [ChildSpec("flaky", crashing(1, [], "flaky"))],
        events=Recorder().send,
        backoff=Backoff(initial=60, maximum=60),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await trio.sleep(1)  # it crashed and waits 60 s to restart
        stopped_at = trio.current_time()
        supervisor.stop()
    assert trio.current_time() == stopped_at


@pytest.mark.parametrize(
    ("policy", "fails", "incarnations"),
    [
        (Restart.PERMANENT, False, 3),
        (Restart.TRANSIENT, False, 1),
        (Restart.TRANSIENT, True, 3),
        (Restart.TEMPORARY, True, 1),
    ],
)
async def test_restart_policies(
    autojump_clock: MockClock, policy: Restart, fails: bool, incarnations: int
) -> None:
    runs: list[int] = []

    async def actor(ctx: ActorContext) -> None:
        runs.append(ctx.incarnation)
        ctx.ready()
        await trio.sleep(1)
        if fails:
            raise ValueError("no")

    supervisor = Supervisor(
        [ChildSpec("x", actor, policy)], events=Recorder().send, backoff=NO_JITTER
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await trio.sleep(2.5)
        supervisor.stop()
    assert len(runs) == incarnations


async def test_one_for_all_restarts_every_child_in_order(autojump_clock: MockClock) -> None:
    log: list[str] = []
    recorder = Recorder()
    supervisor = Supervisor(
        [
            ChildSpec("first", crashing(0, log, "first")),
            ChildSpec("second", crashing(1, log, "second")),
            ChildSpec("third", crashing(0, log, "third")),
        ],
        events=recorder.send,
        strategy=Strategy.ONE_FOR_ALL,
        backoff=NO_JITTER,
        random=no_jitter,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await trio.sleep(5)
        supervisor.stop()
    assert log == ["first#1", "second#1", "third#1", "first#2", "second#2", "third#2"]


async def test_one_for_all_starts_its_backoff_over_after_a_long_healthy_run(
    autojump_clock: MockClock,
) -> None:
    # Two quick failures, then a generation that runs longer than the intensity window,
    # then a failure: its backoff is the first step again, not the third (one-for-one
    # already did this; one-for-all never reset its count).
    lifetimes = [0.01, 0.01, 40.0, 0.01]

    async def flaky(ctx: ActorContext) -> None:
        ctx.ready()
        if ctx.incarnation <= len(lifetimes):
            await trio.sleep(lifetimes[ctx.incarnation - 1])
            raise RuntimeError("broke")
        await ctx.stopping.wait()

    async def steady(ctx: ActorContext) -> None:
        ctx.ready()
        await ctx.stopping.wait()

    recorder = Recorder()
    supervisor = Supervisor(
        [ChildSpec("steady", steady), ChildSpec("flaky", flaky)],
        events=recorder.send,
        strategy=Strategy.ONE_FOR_ALL,
        backoff=NO_JITTER,
        intensity=Intensity(max_restarts=10, window=30.0),
        random=no_jitter,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await trio.sleep(60)
        supervisor.stop()
    restarts = [e for _, e in recorder.drain() if isinstance(e, m.ActorRestarting)]
    assert [(r.attempt, r.delay) for r in restarts] == [(1, 0.1), (2, 0.2), (1, 0.1), (2, 0.2)]


async def test_stop_waits_for_a_graceful_exit_then_cancels(autojump_clock: MockClock) -> None:
    finished: list[str] = []

    async def polite(ctx: ActorContext) -> None:
        ctx.ready()
        await ctx.stopping.wait()
        await trio.sleep(0.5)  # flushing, within the grace period
        finished.append("polite")

    async def stubborn(ctx: ActorContext) -> None:
        ctx.ready()
        try:
            await trio.sleep_forever()
        finally:
            finished.append("stubborn cancelled")

    supervisor = Supervisor(
        [ChildSpec("stubborn", stubborn), ChildSpec("polite", polite)],  # stopped first
        events=Recorder().send,
        shutdown_grace=2.0,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        stopped_at = trio.current_time()
        supervisor.stop()
    assert trio.current_time() - stopped_at == pytest.approx(2.0)
    assert sorted(finished) == ["polite", "stubborn cancelled"]


def test_child_names_must_be_unique() -> None:
    async def actor(ctx: ActorContext) -> None:
        return None

    send, _ = trio.open_memory_channel[m.InternalMessage](1)
    with pytest.raises(ValueError, match="unique"):
        Supervisor([ChildSpec("a", actor), ChildSpec("a", actor)], events=send)


async def test_a_crashed_consumer_loses_nothing_queued_and_closes_nothing(
    autojump_clock: MockClock,
) -> None:
    wiring: Wiring[int] = Wiring()
    wiring.add("numbers")
    got: list[tuple[int, int]] = []

    async def producer(ctx: ActorContext) -> None:
        async with wiring.sender("numbers") as send:
            ctx.ready()
            for n in range(6):
                await send.send(n)
            await ctx.stopping.wait()

    async def consumer(ctx: ActorContext) -> None:
        ctx.ready()
        async with wiring.receiver("numbers") as receive:
            async for n in receive:
                got.append((ctx.incarnation, n))
                if n == 1 and ctx.incarnation == 1:
                    raise RuntimeError("crash with items still queued")

    supervisor = Supervisor(
        [ChildSpec("producer", producer), ChildSpec("consumer", consumer)],
        events=Recorder().send,
        backoff=NO_JITTER,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await trio.sleep(1)
        assert wiring.queued("numbers") == 0
        supervisor.stop()
    await wiring.aclose()
    assert [n for _, n in got] == [0, 1, 2, 3, 4, 5]  # nothing lost, nothing twice
    assert {inc for inc, n in got if n >= 2} == {2}  # the rest went to the new incarnation


async def test_the_wiring_names_unknown_channels_and_ends_channels_when_closed() -> None:
    wiring: Wiring[str] = Wiring()
    wiring.add("a", buffer=1)
    with pytest.raises(ValueError, match="exists"):
        wiring.add("a")
    with pytest.raises(KeyError, match="no channel 'b'"):
        wiring.sender("b")
    receive = wiring.receiver("a")
    async with wiring.sender("a") as send:
        await send.send("last")
    await wiring.aclose()
    assert await receive.receive() == "last"
    with pytest.raises(trio.EndOfChannel):
        await receive.receive()
