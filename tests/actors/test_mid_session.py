"""Issue 16, mid-session changes: update_tools and update_options move the session to a
new connection at the next turn boundary, resuming it with its handle (the one way every
model takes); generate_reply(instructions=...) is tested per family in
test_model_families; clear_audio forgets the user's audio not yet sent."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trio
from trio.testing import MockClock

from actors import endpoint as ep
from actors.encoder import AudioEncoder
from actors.events import event_name
from actors.gemini_link import Link, LinkOptions, LinkState
from actors.tools import GoogleSearch, tool
from emulator import Behaviour, Reply, Scenario, ToolCallSpec, Turn
from protocol import wire as w
from protocol.client_rules import ModelRuleError
from runtime import messages as m
from runtime.supervisor import ActorContext
from tests.actors.helpers import FAST, live_session, named, reply, until


@tool
async def get_weather(city: str) -> str:
    """Weather."""
    return "sunny"


@tool
async def get_time(zone: str) -> str:
    """The time in a zone."""
    return "noon"


SCENARIO = Scenario(
    turns=(
        Turn(replies=(Reply(say="First answer."),)),
        Turn(
            replies=(
                Reply(tool_calls=(ToolCallSpec(name="get_time", args={"zone": "CET"}),)),
                Reply(say="It is noon."),
            )
        ),
    ),
    behaviour=FAST,
)


async def test_update_tools_resumes_on_a_new_connection_with_the_new_tools(
    autojump_clock: MockClock,
) -> None:
    async with live_session(SCENARIO, session_options={"tools": [get_weather]}) as (
        live,
        transport,
        emu,
    ):
        live.send_text("Hi")
        assert await reply(live) == "First answer."
        live.update_tools([get_weather, get_time, GoogleSearch()])
        moved = await until(live, named("reconnected"))
        live.send_text("What time is it?")
        events = await until(live, named("agent_speech_transcription_completed"))
        assert emu.max_active_connections == 1  # the old socket closed before resuming
    assert m.Reconnecting(reason="tools updated", attempt=0, delay=0.0) in moved
    assert m.Reconnected(restored=True) in moved
    result = next(e for e in events if isinstance(e, m.ToolResult))
    assert (result.name, result.output, result.error) == ("get_time", "noon", None)
    setups = [x for x in transport.sent if isinstance(x, w.Setup)]
    assert len(setups) == 2
    second = setups[1]
    assert second.session_resumption is not None
    assert second.session_resumption.handle  # resumed, not re-seeded
    assert second.tools is not None
    declared = second.tools[0].function_declarations or []
    assert [d.name for d in declared] == ["get_weather", "get_time"]
    assert second.tools[1] == w.Tool(google_search={})
    # What the change cost: one setup on one new connection; nothing re-sent.
    assert not [x for x in transport.sent if isinstance(x, w.ClientContent) and x.turns]


async def test_a_change_waits_for_the_reply_playing_to_end(autojump_clock: MockClock) -> None:
    long = Scenario(
        turns=(Turn(replies=(Reply(say="A long answer " * 20),)),),
        behaviour=Behaviour(pace="realtime", first_audio_delay_ms=0),
    )
    async with live_session(long) as (live, _, _):
        live.send_text("Talk")
        await until(live, lambda e: isinstance(e, m.ModelAudio))
        live.update_options(voice="Kore")
        events = await until(live, named("reconnected"))
    names = [event_name(e) for e in events]
    assert names.index("agent_speech_stopped") < names.index("reconnecting")


async def test_update_options_changes_the_setup_and_refuses_what_the_model_does(
    autojump_clock: MockClock,
) -> None:
    async with live_session(SCENARIO) as (live, transport, _):
        live.send_text("Hi")
        await reply(live)
        with pytest.raises(ModelRuleError, match="no thinking"):
            live.update_options(thinking_level="LOW")  # gemini-3.8-live takes none
        live.update_options(voice="Kore", temperature=0.2, language="fr-FR")
        await until(live, named("reconnected"))
    setups = [x for x in transport.sent if isinstance(x, w.Setup)]
    assert len(setups) == 2
    config = setups[1].generation_config
    assert config is not None
    assert config.temperature == 0.2
    assert config.speech_config == w.SpeechConfig(
        voice_config=w.VoiceConfig(prebuilt_voice_config=w.PrebuiltVoiceConfig(voice_name="Kore")),
        language_code="fr-FR",
    )


def test_the_encoder_forgets_its_partial_chunk_when_audio_is_cleared() -> None:
    encoder = AudioEncoder(chunk_ms=20)
    pcm = (np.ones(480, np.int16) * 1000).tobytes()  # 30 ms at 16 kHz: one chunk and a half
    raw = m.RawAudio(data=pcm, sample_rate=16000, channels=1, sample_format="s16", timestamp=0)
    assert len(encoder.feed(raw)) == 1
    encoder.clear()
    assert encoder.end() == []  # the 10 ms left over are gone


async def test_clearing_audio_drops_what_the_link_holds_unsent(autojump_clock: MockClock) -> None:
    incoming_send, incoming_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    _, outgoing_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    state = LinkState()
    link = Link(
        ActorContext("link", 1, trio.Event(), lambda: None),
        ep.custom("ws://127.0.0.1:9", "gemini-3.8-live"),
        w.Setup(model=""),
        None,  # type: ignore[arg-type]  # never connects here
        outgoing_receive,
        incoming_send,
        state,
        LinkOptions(),
    )
    chunks = [m.AudioChunk(data=bytes(640), timestamp=0, sequence=n) for n in range(3)]
    for chunk in chunks:
        await link.queue(chunk)
    await link.queue(m.TextInput(text="kept"))
    await link.queue(m.AudioCleared(timestamp=1.0))
    assert list(state.outbox.pending) == [m.TextInput(text="kept")]
    assert state.outbox.audio_bytes == 0
    assert incoming_receive.receive_nowait() == m.Dropped(what="audio (cleared)", count=3)
    await link.queue(m.AudioCleared(timestamp=2.0))  # nothing left: nothing reported
    with pytest.raises(trio.WouldBlock):
        incoming_receive.receive_nowait()


async def test_clear_audio_through_the_facade(autojump_clock: MockClock) -> None:
    async with live_session(SCENARIO) as (live, transport, _):
        live.push_audio(np.zeros(240, np.int16), sample_rate=16000)  # 15 ms: under a chunk
        live.clear_audio()
        live.send_text("Hi")
        assert await reply(live) == "First answer."
    assert not [x for x in transport.sent if isinstance(x, w.RealtimeInput) and x.audio]


async def test_a_change_right_after_initial_history_moves_at_once(
    autojump_clock: MockClock,
) -> None:
    """Initial history on 3.x asks for no reply: nothing is owed, the change goes ahead."""
    history = [m.ChatTurn(role="user", text="I am Ada."), m.ChatTurn(role="agent", text="Hi Ada.")]
    async with live_session(SCENARIO, session_options={"chat_ctx": history}) as (live, _, _):
        live.update_tools([get_time])
        moved = await until(live, named("reconnected"), limit=5)
        live.send_text("Hi")
        assert await reply(live) == "First answer."
    assert m.Reconnected(restored=True) in moved
