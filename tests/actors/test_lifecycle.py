"""A session's lifecycle through the public facade (issue 13): how it starts, fails and
ends, as an application sees it. Start-up, failure and exit run on the real clock over
real loopback sockets (with generous bounds); the rest under the autojump clock."""

from __future__ import annotations

import dataclasses
import threading
import time
import wave
from pathlib import Path
from typing import Any

import pytest
import trio
from trio.testing import MockClock

import actors
from actors import (
    CollectorSink,
    ConnectFailed,
    CredentialsRefused,
    GeminiLiveError,
    LinkOptions,
    ModelNotSupported,
    RealtimeModel,
    RealtimeSession,
    SessionClosed,
    WavSink,
    tool,
)
from actors.event_queue import EventQueue, StreamBudget
from actors.pipeline import Pipeline
from actors.playout import NullSink
from emulator import Behaviour, Reply, Scenario, ToolCallSpec, Turn, open_emulator
from protocol import wire as w
from runtime import messages as m
from tests.fakes import SETUP_COMPLETE, MemoryTransport, ScriptedConnection, ScriptedTransport

HELLO = Scenario(
    turns=(
        Turn(user="hi", replies=(Reply(say="Hello there, nice to meet you."),)),
        Turn(user="again", replies=(Reply(say="Hello again."),)),
    ),
    behaviour=Behaviour(pace="fast"),
)


async def until(live: RealtimeSession, kind: type[Any], seconds: float = 30) -> Any:
    with trio.fail_after(seconds):
        async for event in live.events():
            if isinstance(event, kind):
                return event
    raise AssertionError(f"the session ended before a {kind.__name__}")


# --- leaving ------------------------------------------------------------------------------


async def test_leaving_after_a_normal_conversation_is_quick_on_a_real_clock() -> None:
    # Main took 2.00 s every time: transcriber, playout, encoder and router never saw an
    # end and were cancelled at the grace deadline.
    async with open_emulator(scenario=HELLO) as emu:
        model = RealtimeModel(endpoint=emu.url)
        sink = CollectorSink()
        async with model.session(sink=sink) as live:
            live.send_text("hi")
            await until(live, m.PlayoutFinished)
            began = time.perf_counter()
        left = time.perf_counter() - began
        with trio.fail_after(10):
            await emu.wait_until_idle()  # the connection was closed, not dropped
    print(f"left the session in {left * 1000:.1f} ms")
    assert left < 1.0  # the goal is under 100 ms; the bound is generous for a busy machine
    assert sink.closed
    assert sink.pcm


async def test_a_cancelled_block_stops_the_session_and_the_cancellation_goes_on() -> None:
    async with open_emulator(scenario=HELLO) as emu:
        model = RealtimeModel(endpoint=emu.url)
        sink = CollectorSink()
        with trio.move_on_after(0.5) as scope:
            async with model.session(sink=sink) as live:
                await trio.sleep_forever()
        assert scope.cancelled_caught
        assert sink.closed
        with pytest.raises(SessionClosed):
            live.send_text("too late")
        with trio.fail_after(10):
            await emu.wait_until_idle()


async def test_a_reply_that_keeps_playing_does_not_hold_up_leaving(
    autojump_clock: MockClock,
) -> None:
    long = Scenario(turns=(Turn(user="hi", replies=(Reply(say="word " * 200),)),))
    async with open_emulator(scenario=long) as emu, trio.open_nursery() as nursery:
        model = RealtimeModel(endpoint=emu.url, transport=MemoryTransport(emu, nursery))
        async with model.session() as live:
            live.send_text("hi")
            await until(live, m.PlayoutProgress)
            began = trio.current_time()
        assert trio.current_time() - began < 0.5  # not the minute of buffered speech
        nursery.cancel_scope.cancel()


# --- entering -----------------------------------------------------------------------------


async def test_entering_waits_for_setup_complete(autojump_clock: MockClock) -> None:
    async def slow_server(conn: ScriptedConnection) -> None:
        await trio.sleep(7)
        conn.push(SETUP_COMPLETE)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        model = RealtimeModel(
            endpoint="ws://127.0.0.1:9", transport=ScriptedTransport(slow_server, nursery)
        )
        async with model.session():
            assert trio.current_time() == pytest.approx(7)
        nursery.cancel_scope.cancel()


async def test_a_link_that_crashes_before_connecting_fails_the_start_not_the_body(
    autojump_clock: MockClock,
) -> None:
    # Main counted a crashed actor as ready: the body ran with no session behind it.
    class Broken:
        def connect(self, url: str, headers: object) -> Any:
            raise RuntimeError("a bug in the transport")

    model = RealtimeModel(endpoint="ws://127.0.0.1:9", transport=Broken())
    entered = False
    with pytest.raises(RuntimeError, match="a bug in the transport"):
        async with model.session():
            entered = True
    assert not entered


async def test_a_refused_key_is_one_typed_error_after_one_connection() -> None:
    # Main retried it 5 times and raised ExceptionGroup[SupervisorGaveUp <- CredentialsRefused].
    async with open_emulator(scenario=HELLO, api_key="the-right-key") as emu:
        model = RealtimeModel(endpoint=emu.url, api_key="a-wrong-key")
        with trio.fail_after(10), pytest.raises(CredentialsRefused, match="refused"):
            async with model.session():
                raise AssertionError("entered a session the server refused")
        assert emu.connections == 1


async def test_a_closed_port_raises_connect_failed_naming_host_and_cause() -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    options = LinkOptions(connect_timeout=3.0)
    model = RealtimeModel(endpoint=f"ws://127.0.0.1:{port}", link_options=options)
    began = time.perf_counter()
    with trio.fail_after(20), pytest.raises(ConnectFailed) as info:
        async with model.session():
            raise AssertionError("entered a session with nothing listening")
    assert 2.5 < time.perf_counter() - began < 10  # the deadline, not forever
    assert info.value.host == f"127.0.0.1:{port}"
    assert info.value.cause == "connection refused"
    assert str(info.value).startswith(f"cannot connect to 127.0.0.1:{port}: connection refused (")


@pytest.mark.parametrize(("answer_at", "connects"), [(29.9, True), (30.0, False)])
async def test_the_connect_deadline_at_its_limit_and_one_past(
    autojump_clock: MockClock, answer_at: float, connects: bool
) -> None:
    async def late_server(conn: ScriptedConnection) -> None:
        await trio.sleep(answer_at)
        conn.push(SETUP_COMPLETE)
        await trio.sleep_forever()

    options = LinkOptions(connect_timeout=30.0, setup_timeout=60.0)
    async with trio.open_nursery() as nursery:
        transport = ScriptedTransport(late_server, nursery)
        model = RealtimeModel(endpoint="ws://h.test:1", transport=transport, link_options=options)
        if connects:
            async with model.session():
                pass
        else:
            with pytest.raises(ConnectFailed) as info:
                async with model.session():
                    pass
            assert info.value.cause == "timed out waiting for setupComplete"
            assert info.value.host == "h.test:1"
        nursery.cancel_scope.cancel()


# --- failing while the block runs ---------------------------------------------------------


async def test_a_fatal_close_mid_session_cancels_the_block_and_is_raised_as_itself(
    autojump_clock: MockClock,
) -> None:
    async with (
        open_emulator(scenario=HELLO, faults=["close:code=1008,at=mid-reply"]) as emu,
        trio.open_nursery() as nursery,
    ):
        model = RealtimeModel(endpoint=emu.url, transport=MemoryTransport(emu, nursery))

        async def converse() -> None:
            async with model.session() as live:
                live.send_text("hi")
                await trio.sleep_forever()  # cancelled when the session fails

        with pytest.raises(ModelNotSupported, match="1008"):  # not an ExceptionGroup
            await converse()
        assert emu.connections == 1  # never restarted
        nursery.cancel_scope.cancel()


async def test_the_blocks_own_error_comes_out_untouched(autojump_clock: MockClock) -> None:
    async with open_emulator(scenario=HELLO) as emu, trio.open_nursery() as nursery:
        model = RealtimeModel(endpoint=emu.url, transport=MemoryTransport(emu, nursery))
        mine = KeyError("mine")
        with pytest.raises(KeyError) as info:
            async with model.session():
                raise mine
        assert info.value is mine
        nursery.cancel_scope.cancel()


# --- ownership ------------------------------------------------------------------------------


@dataclasses.dataclass
class FailingOnce:
    """A WAV sink whose device hiccups once: the write raises, later writes work."""

    inner: WavSink
    fail_at: int = 3
    writes: int = 0

    async def open(self) -> None:
        await self.inner.open()

    async def write(self, pcm: bytes) -> None:
        self.writes += 1
        if self.writes == self.fail_at:
            raise OSError("the device hiccuped")
        await self.inner.write(pcm)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_restarted_playout_gets_the_same_sink_back_intact(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    # Main's playout closed the sink on its way out, so after one crash every turn failed
    # with "'NoneType' object has no attribute 'write'" until the restart limit hit.
    path = tmp_path / "reply.wav"
    sink = FailingOnce(WavSink(path))
    async with open_emulator(scenario=HELLO) as emu, trio.open_nursery() as nursery:
        model = RealtimeModel(endpoint=emu.url, transport=MemoryTransport(emu, nursery))
        async with model.session(sink=sink) as live:
            live.send_text("hi")
            crashed = await until(live, m.ActorCrashed)
            assert crashed.actor == "playout"
            live.send_text("again")
            second = await until(live, m.PlayoutFinished)
            assert (second.turn_id, second.interrupted) == (2, False)
        nursery.cancel_scope.cancel()
    with wave.open(str(path), "rb") as written:
        assert written.getnframes() >= second.samples_played > 0


TRIO_PRIMITIVES = (
    trio.Event,
    trio.CancelScope,
    trio.Lock,
    trio.CapacityLimiter,
    trio.MemorySendChannel,
    trio.MemoryReceiveChannel,
    trio.Nursery,
)


def trio_primitives_in(value: object, seen: set[int] | None = None) -> list[str]:
    """Every trio primitive reachable from ``value`` through fields and containers."""
    seen = set() if seen is None else seen
    if id(value) in seen or isinstance(value, str | bytes | int | float | type | type(None)):
        return []
    seen.add(id(value))
    if isinstance(value, TRIO_PRIMITIVES):
        return [type(value).__name__]
    if isinstance(value, dict):
        items: list[object] = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple | set | frozenset):
        items = list(value)
    elif hasattr(value, "__dict__") or hasattr(value, "__struct_fields__"):
        names = getattr(value, "__struct_fields__", None) or vars(value)
        items = [getattr(value, name) for name in names]
    elif hasattr(value, "__iter__") and not isinstance(value, str):
        try:
            items = list(value)
        except TypeError:
            return []
    else:
        return []
    return [found for item in items for found in trio_primitives_in(item, seen)]


async def test_state_that_outlives_an_actor_holds_no_trio_primitive(
    autojump_clock: MockClock,
) -> None:
    @tool(timeout=60)
    async def slow_lookup(key: str) -> str:
        """Look a key up, slowly."""
        await trio.sleep(30)
        return key

    scenario = Scenario(
        turns=(
            Turn(
                user="hi",
                replies=(
                    Reply(tool_calls=(ToolCallSpec(name="slow_lookup", args={"key": "k"}),)),
                    Reply(say="Done."),
                ),
            ),
        )
    )
    async with open_emulator(scenario=scenario) as emu, trio.open_nursery() as nursery:
        model = RealtimeModel(endpoint=emu.url, transport=MemoryTransport(emu, nursery))
        async with model.session(tools=[slow_lookup]) as live:
            live.send_text("hi")
            await until(live, m.ToolCallRequested)
            await trio.sleep(1)  # the call is running now
            pipeline = live._pipeline
            kept = {
                "link": pipeline._link_state,
                "executor": pipeline._executor_state,
                "metrics": pipeline._metrics,
                "transcripts": pipeline.transcripts,
            }
            assert pipeline._executor_state.running  # the running call is in the state
            assert {name: trio_primitives_in(state) for name, state in kept.items()} == {
                name: [] for name in kept
            }
        nursery.cancel_scope.cancel()


# --- threads ------------------------------------------------------------------------------


async def test_forty_blocked_sync_tools_do_not_starve_the_wav_sink(tmp_path: Path) -> None:
    # Main ran tools on trio's default thread limiter (40 tokens): forty tools stuck in
    # their threads (each already answered "timed out") left no token for WavSink to open
    # or close its file, so the reply had 0 bytes and leaving the session hung.
    release = threading.Event()

    @tool(timeout=0.2)
    def stuck(key: str) -> str:
        """Never returns while the test runs."""
        release.wait()
        return key

    calls = tuple(ToolCallSpec(name="stuck", args={"key": str(i)}) for i in range(40))
    scenario = Scenario(
        turns=(Turn(user="hi", replies=(Reply(tool_calls=calls), Reply(say="Still here."))),),
        behaviour=Behaviour(pace="fast"),
    )
    path = tmp_path / "reply.wav"
    try:
        async with open_emulator(scenario=scenario) as emu:
            model = RealtimeModel(endpoint=emu.url)
            with trio.fail_after(30):
                async with model.session(tools=[stuck], sink=WavSink(path)) as live:
                    live.send_text("hi")
                    finished = await until(live, m.PlayoutFinished)
    finally:
        release.set()
    with wave.open(str(path), "rb") as written:
        assert written.getnframes() == finished.samples_played > 0


# --- playout_complete ---------------------------------------------------------------------


def test_a_waiter_on_a_reply_is_woken_when_the_next_reply_started_first() -> None:
    model = RealtimeModel(endpoint="ws://127.0.0.1:9")
    pipeline = Pipeline(endpoint=model._endpoint, setup=w.Setup(model="m"), sink=NullSink())
    live = RealtimeSession(model, pipeline, EventQueue())
    replies: dict[int, Any] = {}
    budget = StreamBudget()
    live._on_event(m.TurnStarted(turn_id=1), replies, budget)
    first = live.playout_complete
    live._on_event(m.TurnStarted(turn_id=2), replies, budget)  # before turn 1 finished playing
    second = live.playout_complete
    live._on_event(
        m.PlayoutFinished(turn_id=1, samples_played=9, interrupted=False), replies, budget
    )
    assert first.is_set()
    assert not second.is_set()
    live._on_event(
        m.PlayoutFinished(turn_id=2, samples_played=9, interrupted=False), replies, budget
    )
    assert second.is_set()
    assert live.playout_complete.is_set()


# --- the public API -----------------------------------------------------------------------


def test_every_error_the_library_exports_is_a_gemini_live_error() -> None:
    exported = {name: getattr(actors, name) for name in actors.__all__}
    errors = {
        name: value
        for name, value in exported.items()
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    assert {"GeminiLiveError", "LinkError", "ConnectFailed", "SupervisorGaveUp"} <= set(errors)
    assert [name for name, error in errors.items() if not issubclass(error, GeminiLiveError)] == []
    assert sorted(actors.__all__) == actors.__all__
    assert all(hasattr(actors, name) for name in actors.__all__)
