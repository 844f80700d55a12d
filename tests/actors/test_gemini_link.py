"""The gemini-link actor against the emulator, over the in-memory transport, on the
autojump clock: conversations, tools, every fault the emulator injects, and fatal ends."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trio
from trio.testing import MockClock

from actors import endpoint as ep
from actors.gemini_link import (
    CredentialsRefused,
    HandshakeRejected,
    LinkOptions,
    LinkState,
    ModelNotSupported,
    ReconnectGaveUp,
    gemini_link,
)
from actors.transport import TransportClosed
from emulator import Behaviour, Emulator, Reply, Scenario, ToolCallSpec, Turn, open_emulator
from protocol import wire as w
from runtime import messages as m
from runtime.supervisor import ActorContext, Backoff, no_jitter
from tests.fakes import MemoryTransport

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
SETUP = w.Setup(
    model="",
    generation_config=w.GenerationConfig(response_modalities=["AUDIO"]),
    input_audio_transcription=w.AudioTranscriptionConfig(),
    output_audio_transcription=w.AudioTranscriptionConfig(),
)
OPTIONS = LinkOptions(backoff=Backoff(initial=0.25, maximum=2.0, jitter=0.2), random=no_jitter)
FAST = Behaviour(pace="fast", first_audio_delay_ms=0)
SCRIPT = Scenario(
    turns=(
        Turn(user="One?", replies=(Reply(say="First answer."),)),
        Turn(user="Two?", replies=(Reply(say="Second answer."),)),
        Turn(user="Three?", replies=(Reply(say="Third answer."),)),
    ),
    behaviour=FAST,
)


@dataclass
class Link:
    outgoing: trio.MemorySendChannel[m.InternalMessage]
    incoming: trio.MemoryReceiveChannel[m.InternalMessage]
    ctx: ActorContext
    state: LinkState
    transport: MemoryTransport
    emulator: Emulator
    seen: list[m.InternalMessage] = field(default_factory=list)

    async def until(
        self, predicate: Callable[[m.InternalMessage], bool], limit: float = 60
    ) -> list[m.InternalMessage]:
        got: list[m.InternalMessage] = []
        with trio.fail_after(limit):
            while True:
                message = await self.incoming.receive()
                self.seen.append(message)
                got.append(message)
                if predicate(message):
                    return got

    async def say(self, text: str) -> list[m.InternalMessage]:
        """A typed turn; everything up to its turnComplete."""
        await self.outgoing.send(m.TextInput(text=text))
        return await self.until(lambda x: isinstance(x, m.TurnCompleted))


def agent_text(messages: list[m.InternalMessage]) -> str:
    return "".join(
        x.text for x in messages if isinstance(x, m.TranscriptFragment) and x.role == "agent"
    )


@asynccontextmanager
async def running_link(
    scenario: Scenario = SCRIPT,
    *,
    faults: tuple[str, ...] = (),
    options: LinkOptions = OPTIONS,
    api_key: str | None = None,
    endpoint: ep.Endpoint | None = None,
) -> AsyncIterator[Link]:
    outgoing_send, outgoing_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    incoming_send, incoming_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    state = LinkState()
    async with (
        open_emulator(scenario=scenario, faults=faults, api_key=api_key) as emu,
        trio.open_nursery() as nursery,
    ):
        transport = MemoryTransport(emu, nursery)
        ready = trio.Event()
        ctx = ActorContext("link", 1, trio.Event(), ready.set)
        target = endpoint or ep.custom(emu.url, MODEL, api_key=api_key)

        async def run() -> None:
            await gemini_link(
                ctx,
                endpoint=target,
                setup=SETUP,
                transport=transport,
                outgoing=outgoing_receive,
                incoming=incoming_send,
                state=state,
                options=options,
            )

        nursery.start_soon(run)
        with trio.fail_after(30):
            await ready.wait()
        yield Link(outgoing_send, incoming_receive, ctx, state, transport, emu)
        ctx.stopping.set()


async def test_a_conversation_through_the_link(autojump_clock: MockClock) -> None:
    async with running_link() as link:
        turn = await link.say("hello")
        assert agent_text(turn) == "First answer."
        kinds = [type(x) for x in turn]
        assert m.TurnStarted in kinds
        assert m.ModelAudio in kinds
        assert kinds[-1] is m.TurnCompleted
        assert m.Connected(resumed=False) in link.seen or m.Connected(resumed=False) in turn
        assert link.transport.kinds()[:2] == ["setup", "clientContent"]
        setup = link.transport.sent[0]
        assert isinstance(setup, w.Setup)
        assert setup.model == f"models/{MODEL}"
        assert setup.session_resumption == w.SessionResumptionConfig()


async def test_tool_calls_go_out_and_their_results_come_back(autojump_clock: MockClock) -> None:
    scenario = Scenario(
        turns=(
            Turn(
                replies=(
                    Reply(tool_calls=(ToolCallSpec(name="lookup", args={"q": 1}),)),
                    Reply(say="Found it."),
                )
            ),
        ),
        behaviour=FAST,
    )
    async with running_link(scenario) as link:
        await link.outgoing.send(m.TextInput(text="look it up"))
        got = await link.until(lambda x: isinstance(x, m.ToolCallRequested))
        call = got[-1]
        assert isinstance(call, m.ToolCallRequested)
        assert (call.name, call.args) == ("lookup", {"q": 1})
        await link.outgoing.send(
            m.ToolResult(call_id=call.call_id, name="lookup", output={"answer": 42})
        )
        rest = await link.until(lambda x: isinstance(x, m.TurnCompleted))
        assert agent_text(rest) == "Found it."
        response = next(x for x in link.transport.sent if isinstance(x, w.ToolResponse))
        assert response.function_responses == [
            w.FunctionResponse(id=call.call_id, name="lookup", response={"output": {"answer": 42}})
        ]


@pytest.mark.parametrize(
    ("fault", "code"), [("close:code=1011,at=mid-reply", 1011), ("drop:at=mid-reply", 1006)]
)
async def test_a_lost_connection_is_resumed_where_it_was(
    autojump_clock: MockClock, fault: str, code: int
) -> None:
    async with running_link(faults=(fault,)) as link:
        cut = await link.say("one")  # the fault cuts this reply short
        assert cut[-1] == m.TurnCompleted(turn_id=1, interrupted=True, reason="CONNECTION_LOST")
        await link.until(lambda x: isinstance(x, m.Reconnected))
        events = [x for x in link.seen if isinstance(x, m.Reconnecting | m.Reconnected)]
        reason = "closed with 1011 injected fault" if code == 1011 else "closed with 1006"
        assert events == [
            m.Reconnecting(reason=reason, attempt=1, delay=0.25),
            m.Reconnected(restored=True),
        ]
        turn = await link.say("two")
        assert agent_text(turn) == "Second answer."  # the conversation went on: resumed


async def test_go_away_hands_over_at_a_turn_boundary_closing_the_old_socket_first(
    autojump_clock: MockClock,
) -> None:
    async with running_link(faults=("goaway:at=turn-end,time_left=10",)) as link:
        first = await link.say("one")
        assert agent_text(first) == "First answer."
        await link.until(lambda x: isinstance(x, m.Reconnected))
        handover = next(x for x in link.seen if isinstance(x, m.Reconnecting))
        assert handover == m.Reconnecting(reason="goAway handover", attempt=0, delay=0.0)
        assert m.Reconnected(restored=True) in link.seen
        assert link.emulator.max_active_connections == 1  # never two sockets at once
        assert agent_text(await link.say("two")) == "Second answer."


async def test_go_away_with_no_turn_boundary_moves_on_its_own_timer(
    autojump_clock: MockClock,
) -> None:
    long = Scenario(
        turns=(Turn(replies=(Reply(say="word " * 80),)), Turn(replies=(Reply(say="Next."),))),
        behaviour=Behaviour(pace="realtime", first_audio_delay_ms=0),
    )
    options = LinkOptions(handover_margin=1.0, random=no_jitter)
    async with running_link(
        long, faults=("goaway:at=mid-reply,time_left=3",), options=options
    ) as link:
        await link.outgoing.send(m.TextInput(text="talk"))
        got = await link.until(lambda x: isinstance(x, m.GoAwayReceived))
        received_at = trio.current_time()
        assert got[-1] == m.GoAwayReceived(time_left=3.0)
        await link.until(lambda x: isinstance(x, m.Reconnecting))
        assert trio.current_time() - received_at == pytest.approx(
            2.0, abs=0.05
        )  # deadline - margin
        await link.until(lambda x: isinstance(x, m.Reconnected))
        assert link.emulator.max_active_connections == 1


async def test_a_refused_resumption_reseeds_the_history(autojump_clock: MockClock) -> None:
    async with running_link(faults=("refuse-resume", "close:code=1011,at=turn-end")) as link:
        await link.say("one")
        await link.until(lambda x: isinstance(x, m.Reconnected))
        reasons = [x.reason for x in link.seen if isinstance(x, m.Reconnecting)]
        assert reasons[0].startswith("closed with 1011")
        assert reasons[1].startswith("resumption refused")
        assert link.seen[-1] == m.Reconnected(restored=False)
        seed = [
            x for x in link.transport.sent if isinstance(x, w.ClientContent) and not x.turn_complete
        ]
        assert seed
        assert seed[0].turns == [
            w.Content(role="user", parts=[w.Part(text="one")]),  # typed input is its transcript
            w.Content(role="model", parts=[w.Part(text="First answer.")]),
        ]


async def test_audio_waits_while_disconnected_within_its_bound(autojump_clock: MockClock) -> None:
    options = LinkOptions(
        audio_buffer_seconds=0.1, backoff=Backoff(initial=1.0, jitter=0), random=no_jitter
    )
    chunk = bytes(640)  # 20 ms
    async with running_link(faults=("drop:at=mid-reply",), options=options) as link:
        await link.outgoing.send(m.TextInput(text="one"))
        await link.until(lambda x: isinstance(x, m.Reconnecting))
        for sequence in range(20):  # 400 ms of audio while the link is down
            await link.outgoing.send(m.AudioChunk(data=chunk, timestamp=0.0, sequence=sequence))
        got = await link.until(lambda x: isinstance(x, m.Reconnected))
        assert link.state.outbox.dropped.total == 15  # only the newest 100 ms (5 chunks) kept
        # Reported aggregated: the first drop at once, the rest when the link is back.
        reports = [x for x in got if isinstance(x, m.Dropped)]
        assert reports == [
            m.Dropped(what="audio (buffer bound while disconnected)", count=1),
            m.Dropped(what="audio (buffer bound while disconnected)", count=14),
        ]
        await trio.sleep(1)
        audio_sent = [x for x in link.transport.sent if isinstance(x, w.RealtimeInput) and x.audio]
        assert len(audio_sent) == 5


async def test_results_for_cancelled_calls_are_not_sent(autojump_clock: MockClock) -> None:
    scenario = Scenario(
        turns=(Turn(replies=(Reply(tool_calls=(ToolCallSpec(name="slow"),)), Reply(say="never"))),),
        behaviour=FAST,
    )
    async with running_link(scenario) as link:
        await link.outgoing.send(m.TextInput(text="go"))
        call = (await link.until(lambda x: isinstance(x, m.ToolCallRequested)))[-1]
        assert isinstance(call, m.ToolCallRequested)
        await link.outgoing.send(m.TextInput(text="stop, something else"))  # barge-in
        await link.until(lambda x: isinstance(x, m.ToolCallsCancelled))
        await link.outgoing.send(m.ToolResult(call_id=call.call_id, name="slow", output="late"))
        await link.until(lambda x: isinstance(x, m.TurnCompleted) and not x.interrupted)
        assert not any(isinstance(x, w.ToolResponse) for x in link.transport.sent)


async def test_a_malformed_server_frame_is_the_servers_fault_and_the_session_resumes(
    autojump_clock: MockClock,
) -> None:
    async with running_link(faults=("malformed:at=mid-reply",)) as link:
        cut = await link.say("one")  # the bad frame ends the connection mid-reply
        assert cut[-1] == m.TurnCompleted(turn_id=1, interrupted=True, reason="CONNECTION_LOST")
        fault = next(x for x in cut if isinstance(x, m.ServerFault))
        assert fault.code == 1007
        assert fault.what.startswith("the server sent a message the client cannot read")
        await link.until(lambda x: isinstance(x, m.Reconnected))
        reconnecting = next(x for x in link.seen if isinstance(x, m.Reconnecting))
        assert (reconnecting.attempt, reconnecting.delay) == (1, 0.25)  # the usual backoff
        assert m.Reconnected(restored=True) in link.seen
        assert agent_text(await link.say("two")) == "Second answer."


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"endpoint_model": "gemini-9-ultra"}, ModelNotSupported, "model and API do not match"),
        ({"api_key": "right", "key_sent": "wrong"}, CredentialsRefused, "key was refused"),
        ({"path": "/ws/wrong.path"}, HandshakeRejected, "HTTP 404"),
    ],
    ids=["unknown-model", "wrong-key", "wrong-path"],
)
async def test_fatal_ends_raise_typed_errors(
    autojump_clock: MockClock, kwargs: dict[str, str], error: type[Exception], words: str
) -> None:
    async with (
        open_emulator(scenario=SCRIPT, api_key=kwargs.get("api_key")) as emu,
        trio.open_nursery() as nursery,
    ):
        target = ep.custom(
            emu.url + kwargs.get("path", ""),
            kwargs.get("endpoint_model", MODEL),
            api_key=kwargs.get("key_sent", kwargs.get("api_key")),
        )
        _outgoing_send, outgoing_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
        incoming_send, _incoming_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
        ctx = ActorContext("link", 1, trio.Event(), lambda: None)
        with pytest.raises(error, match=words) as info:
            await gemini_link(
                ctx,
                endpoint=target,
                setup=SETUP,
                transport=MemoryTransport(emu, nursery),
                outgoing=outgoing_receive,
                incoming=incoming_send,
                state=LinkState(),
                options=OPTIONS,
            )
        assert "wrong" not in str(info.value) or kwargs.get("path")  # no key in the message
        nursery.cancel_scope.cancel()


async def test_failures_in_a_row_start_again_after_a_healthy_connection(
    autojump_clock: MockClock,
) -> None:
    # Every connection completes a turn and is then closed: more closes than
    # max_reconnect_attempts, but never two failures in a row, so the link never gives up.
    options = LinkOptions(max_reconnect_attempts=1, random=no_jitter)
    faults = ("close:code=1011,at=turn-end,repeat=true",)
    async with running_link(faults=faults, options=options) as link:
        for text, answer in (("One?", "First"), ("Two?", "Second"), ("Three?", "Third")):
            turn = await link.say(text)
            assert agent_text(turn) == f"{answer} answer."
            await link.until(lambda x: isinstance(x, m.Reconnected))
    attempts = [x.attempt for x in link.seen if isinstance(x, m.Reconnecting)]
    assert attempts == [1, 1, 1]


async def test_reconnecting_gives_up_after_too_many_failures(autojump_clock: MockClock) -> None:
    options = LinkOptions(max_reconnect_attempts=2, random=no_jitter)
    faults = ("close:code=1011,after=2,repeat=true",)
    async with open_emulator(scenario=SCRIPT, faults=faults) as emu, trio.open_nursery() as nursery:
        _outgoing_send, outgoing_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
        incoming_send, incoming_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
        transport = MemoryTransport(emu, nursery)
        with pytest.raises(
            ReconnectGaveUp, match="gave up after 2 reconnect attempts; last: closed with 1011"
        ):
            await gemini_link(
                ActorContext("link", 1, trio.Event(), lambda: None),
                endpoint=ep.custom(emu.url, MODEL),
                setup=SETUP,
                transport=transport,
                outgoing=outgoing_receive,
                incoming=incoming_send,
                state=LinkState(),
                options=options,
            )
        assert transport.connects == 3
        attempts = [x.attempt for x in _drain(incoming_receive) if isinstance(x, m.Reconnecting)]
        assert attempts == [1, 2]
        nursery.cancel_scope.cancel()


def _drain(channel: trio.MemoryReceiveChannel[m.InternalMessage]) -> list[m.InternalMessage]:
    out: list[m.InternalMessage] = []
    while True:
        try:
            out.append(channel.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return out


async def test_a_slow_or_stalled_server_is_not_killed_by_a_keepalive(
    autojump_clock: MockClock,
) -> None:
    slow = Scenario(
        turns=(
            Turn(replies=(Reply(say="Slowly, slowly."),)),
            Turn(replies=(Reply(say="Still here."),)),
        ),
        behaviour=Behaviour(pace="realtime", first_audio_delay_ms=3000),
    )
    async with running_link(slow, faults=("slow:factor=10",)) as link:
        turn = await link.say("one")  # 30 s before the first audio
        assert agent_text(turn) == "Slowly, slowly."
    async with running_link(SCRIPT, faults=("stall:at=mid-reply",)) as link:
        await link.outgoing.send(m.TextInput(text="one"))
        with trio.move_on_after(120):  # the server goes silent for two minutes
            await link.until(lambda x: isinstance(x, m.Reconnecting | m.TurnCompleted), limit=130)
        assert not any(isinstance(x, m.Reconnecting) for x in link.seen)


async def test_audio_within_the_bound_is_all_delivered_in_order(autojump_clock: MockClock) -> None:
    options = LinkOptions(
        audio_buffer_seconds=10.0, backoff=Backoff(initial=1.0, jitter=0), random=no_jitter
    )
    async with running_link(faults=("drop:at=mid-reply",), options=options) as link:
        await link.outgoing.send(m.TextInput(text="one"))
        await link.until(lambda x: isinstance(x, m.Reconnecting))
        for sequence in range(50):  # one second of audio while the link is down
            data = sequence.to_bytes(2, "little") * 320
            await link.outgoing.send(m.AudioChunk(data=data, timestamp=0.0, sequence=sequence))
        await link.outgoing.send(m.AudioStreamEnded(timestamp=0.0))
        got = await link.until(lambda x: isinstance(x, m.Reconnected))
        await trio.sleep(1)
    assert not any(isinstance(x, m.Dropped) for x in got)
    sent = [x for x in link.transport.sent if isinstance(x, w.RealtimeInput)]
    audio = [int.from_bytes(x.audio.data[:2], "little") for x in sent if x.audio and x.audio.data]
    assert audio == list(range(50))  # nothing lost, nothing reordered
    assert sent[-1] == w.RealtimeInput(audio_stream_end=True)  # and control after it, in order


@dataclass
class ClosingTwice:
    """A transport whose first connection ends with one close seen by both the receiver
    and a sender blocked in a write; later connections stay up."""

    connects: int = 0
    closed: trio.Event = field(default_factory=trio.Event)
    writing: trio.Event = field(default_factory=trio.Event)

    @asynccontextmanager
    async def connect(self, url: str, headers: object) -> AsyncIterator[ClosingTwice]:
        self.connects += 1
        self._setup_sent = False
        yield self

    async def send(self, frame: bytes) -> None:
        if b'"setup"' in frame[:10] or self.connects > 1:
            return
        self.writing.set()
        await self.closed.wait()  # a write stuck behind a full socket buffer
        raise TransportClosed(1011, "injected fault")

    async def receive(self) -> bytes | str:
        if not self._setup_sent:
            self._setup_sent = True
            return b'{"setupComplete":{}}'
        if self.connects > 1:
            await trio.sleep_forever()
        await self.closed.wait()
        raise TransportClosed(1011, "injected fault")

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        pass


async def test_one_close_seen_by_receiver_and_sender_at_once_reconnects(
    autojump_clock: MockClock,
) -> None:
    # Found by the soak: the two TransportClosed came out as a group and crashed the link.
    transport = ClosingTwice()
    outgoing_send, outgoing_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    incoming_send, incoming_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    ctx = ActorContext("link", 1, trio.Event(), lambda: None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: gemini_link(
                ctx,
                endpoint=ep.custom("ws://127.0.0.1:9/", MODEL),
                setup=SETUP,
                transport=transport,
                outgoing=outgoing_receive,
                incoming=incoming_send,
                state=LinkState(),
                options=OPTIONS,
            )
        )
        await outgoing_send.send(m.TextInput(text="hello"))
        await transport.writing.wait()
        transport.closed.set()
        seen: list[m.InternalMessage] = []
        with trio.fail_after(10):
            while not isinstance(message := await incoming_receive.receive(), m.Reconnected):
                seen.append(message)
        ctx.stopping.set()
    assert m.Reconnecting(reason="closed with 1011 injected fault", attempt=1, delay=0.25) in seen
    assert transport.connects == 2
