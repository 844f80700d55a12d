"""The public facade: RealtimeModel's validation and a session's methods, end to end
against the emulator (in-memory transport, autojump clock)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import pytest
import trio
from trio.testing import MockClock

from actors.events import Event, ResponseContent, event_name
from actors.playout import CollectorSink
from actors.realtime import RealtimeModel, RealtimeSession
from actors.tools import tool
from emulator import Behaviour, Reply, Scenario, ToolCallSpec, Turn, open_emulator
from protocol import wire as w
from runtime import messages as m
from tests.fakes import MemoryTransport


@tool
async def get_weather(city: str) -> dict[str, object]:
    """Weather for a city."""
    return {"city": city, "sky": "sunny"}


SCENARIO = Scenario(
    turns=(
        Turn(
            user="What's the weather in Paris?",
            replies=(
                Reply(tool_calls=(ToolCallSpec(name="get_weather", args={"city": "Paris"}),)),
                Reply(say="Sunny in Paris."),
            ),
        ),
        Turn(
            user="Thanks",
            replies=(Reply(say="You are welcome, and this reply is rather long " * 3),),
        ),
    ),
    behaviour=Behaviour(pace="realtime", first_audio_delay_ms=100),
)


def test_validation_like_the_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "GOOGLE_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_CLOUD_PROJECT",
        "GOOGLE_CLOUD_LOCATION",
    ):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="API key is required"):
        RealtimeModel()
    with pytest.raises(ValueError, match="project and a location"):
        RealtimeModel(vertexai=True)
    monkeypatch.setenv("GOOGLE_API_KEY", "env-secret")
    model = RealtimeModel(instructions="Be brief.", voice="Kore", temperature=0.3, language="fr-FR")
    assert "secret" not in repr(model)
    assert model.capabilities.input_audio_sample_rate == 16000
    setup = model.setup(__import__("actors.tools", fromlist=["ToolSet"]).ToolSet([get_weather]))
    assert setup.model == "models/gemini-3.8-live"  # the current default
    assert setup.generation_config is not None
    assert setup.generation_config.temperature == 0.3
    assert setup.generation_config.speech_config == w.SpeechConfig(
        voice_config=w.VoiceConfig(prebuilt_voice_config=w.PrebuiltVoiceConfig(voice_name="Kore")),
        language_code="fr-FR",
    )
    assert setup.tools is not None
    assert setup.tools[0].function_declarations[0].name == "get_weather"  # type: ignore[index]
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "p")
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "europe-west4")
    assert (
        RealtimeModel(vertexai=True)
        .setup(__import__("actors.tools", fromlist=["ToolSet"]).ToolSet())
        .model.startswith("projects/p/locations/europe-west4/")
    )
    assert (
        RealtimeModel(endpoint="ws://127.0.0.1:9")
        .setup(__import__("actors.tools", fromlist=["ToolSet"]).ToolSet())
        .model.startswith("models/")
    )


def speech() -> np.ndarray:
    t = np.arange(int(48000 * 0.5)) / 48000
    voiced = 0.3 * np.sin(2 * np.pi * 220 * t)
    silent = np.zeros(int(48000 * 0.8))
    mono = np.concatenate([voiced, silent]).astype(np.float32)
    return np.stack([mono, mono], axis=1)  # 48 kHz stereo float


@asynccontextmanager
async def session(
    sink: CollectorSink, audio_events: bool = True, **options: object
) -> AsyncIterator[tuple[RealtimeSession, MemoryTransport]]:
    async with open_emulator(scenario=SCENARIO) as emu, trio.open_nursery() as nursery:
        transport = MemoryTransport(emu, nursery)
        model = RealtimeModel(endpoint=emu.url, transport=transport, **options)  # type: ignore[arg-type]
        async with model.session(tools=[get_weather], sink=sink, audio_events=audio_events) as live:
            yield live, transport
        nursery.cancel_scope.cancel()


async def until(live: RealtimeSession, name: str) -> list[Event]:
    seen: list[Event] = []
    with trio.fail_after(60):
        async for event in live.events():
            seen.append(event)
            if event_name(event) == name:
                return seen
    raise AssertionError(f"no {name}")


async def test_a_spoken_conversation_through_the_facade(autojump_clock: MockClock) -> None:
    sink = CollectorSink()
    async with session(sink) as (live, _):
        live.push_audio(speech(), sample_rate=48000)
        seen = await until(live, "agent_speech_transcription_completed")
        names = [event_name(e) for e in seen]
        assert names.index("input_speech_transcription_completed") < names.index(
            "function_calls_collected"
        )
        assert "function_calls_finished" in names
        assert not live.playout_complete.is_set()
        with trio.fail_after(30):
            await live.playout_complete.wait()
        history = live.chat_ctx_copy()
        assert [(h.role, h.text) for h in history] == [
            ("user", "What's the weather in Paris?"),
            ("agent", "Sunny in Paris."),
        ]
    assert len(sink.pcm) > 0


async def test_the_session_methods_reach_the_wire(autojump_clock: MockClock) -> None:
    async with session(CollectorSink()) as (live, transport):
        live.set_chat_ctx([m.ChatTurn(role="user", text="My name is Ada.")])
        live.update_instructions("Answer in French.")
        live.send_text("hello")
        await until(live, "agent_speech_stopped")
        live.create_response()
        await trio.sleep(1)
        with pytest.raises(RuntimeError, match="automatic_activity_detection=False"):
            live.commit_audio_buffer()
    sent = transport.sent
    assert (
        w.ClientContent(
            turns=[w.Content(role="user", parts=[w.Part(text="My name is Ada.")])],
            turn_complete=False,
        )
        in sent
    )
    assert (
        w.ContextUpdate(
            system_instruction=w.Content(role="user", parts=[w.Part(text="Answer in French.")])
        )
        in sent
    )
    assert w.ClientContent(turn_complete=True) in sent


async def test_manual_activity_and_interrupt(autojump_clock: MockClock) -> None:
    sink = CollectorSink()
    async with session(sink, automatic_activity_detection=False) as (live, transport):
        live.start_user_turn()
        live.push_audio((speech()[:, 0] * 32767).astype(np.int16), sample_rate=48000)
        live.commit_audio_buffer()
        await until(live, "function_calls_finished")
        await until(live, "agent_speech_stopped")
        live.send_text("thanks")
        with trio.fail_after(60):
            async for event in live.events():  # wait until the second reply is playing
                if isinstance(event, m.PlayoutProgress) and event.turn_id == 2:
                    break
        live.interrupt()
        interrupted_at = trio.current_time()
        await trio.sleep(2)
        assert len([t for t in sink.times if t > interrupted_at]) <= 1  # stopped within one frame
    kinds = [
        w.envelope_key(x)
        + (
            ":" + next(f for f in x.__struct_fields__ if getattr(x, f) is not None)
            if isinstance(x, w.RealtimeInput)
            else ""
        )
        for x in transport.sent
    ]
    assert "realtimeInput:activity_start" in kinds
    assert "realtimeInput:activity_end" in kinds


async def test_a_video_source_beside_the_audio(autojump_clock: MockClock) -> None:
    from actors.capture import FrameSource

    frames = [np.full((48, 64, 3), value, np.uint8) for value in (0, 128)]
    async with open_emulator(scenario=SCENARIO) as emu, trio.open_nursery() as nursery:
        transport = MemoryTransport(emu, nursery)
        model = RealtimeModel(endpoint=emu.url, transport=transport)
        async with model.session(video=FrameSource(frames, fps=1.0), sink=CollectorSink()) as live:
            live.push_audio(speech(), sample_rate=48000)
            await until(live, "agent_speech_stopped")
        nursery.cancel_scope.cancel()
    videos = [x for x in transport.sent if isinstance(x, w.RealtimeInput) and x.video is not None]
    assert videos
    assert videos[0].video is not None
    assert videos[0].video.mime_type == "image/jpeg"


async def test_a_go_away_handover_is_invisible_to_the_conversation(
    autojump_clock: MockClock,
) -> None:
    async with (
        open_emulator(scenario=SCENARIO, faults=["goaway:at=turn-end,time_left=5"]) as emu,
        trio.open_nursery() as nursery,
    ):
        model = RealtimeModel(endpoint=emu.url, transport=MemoryTransport(emu, nursery))
        async with model.session(tools=[get_weather], sink=CollectorSink()) as live:
            live.push_audio(speech(), sample_rate=48000)
            first = await until(live, "agent_speech_transcription_completed")
            handover = await until(live, "reconnected")
            live.send_text("thanks")
            second = await until(live, "agent_speech_transcription_completed")
        nursery.cancel_scope.cancel()
    names = [event_name(e) for e in first + handover]
    assert "reconnecting" in names
    assert m.Reconnected(restored=True) in handover
    final = second[-1]
    assert isinstance(final, m.TranscriptCompleted)
    assert final.transcript.startswith("You are welcome")  # the second scripted turn: resumed
    assert emu.max_active_connections == 1


async def test_response_content_added_carries_the_replys_text_and_audio_streams(
    autojump_clock: MockClock,
) -> None:
    from emulator.audio import synthesize_speech

    async with session(CollectorSink()) as (live, _):
        live.push_audio(speech(), sample_rate=48000)
        with trio.fail_after(60):
            async for event in live.events():
                if isinstance(event, ResponseContent):
                    content = event
                    break
        assert (content.item_id, content.content_type, content.turn_id) == (
            "turn-1-agent",
            "audio",
            1,
        )
        text = "".join([piece async for piece in content.text_stream])
        audio = b"".join([chunk async for chunk in content.audio_stream])  # ends with the turn
    assert text == "Sunny in Paris."
    assert audio == synthesize_speech("Sunny in Paris.")
    assert event_name(content) == "response_content_added"


async def test_model_audio_reaches_the_application_only_when_it_asks(
    autojump_clock: MockClock,
) -> None:
    from emulator.audio import synthesize_speech

    heard: dict[bool, tuple[list[Event], bytes, bytes, list[m.ChatTurn]]] = {}
    for audio_events in (True, False):
        sink = CollectorSink()
        async with session(sink, audio_events=audio_events) as (live, _):
            live.push_audio(speech(), sample_rate=48000)
            seen = await until(live, "agent_speech_stopped")
            content = next(e for e in seen if isinstance(e, ResponseContent))
            streamed = b"".join([chunk async for chunk in content.audio_stream])
            with trio.fail_after(30):
                await live.playout_complete.wait()
            heard[audio_events] = (seen, streamed, sink.pcm, live.chat_ctx_copy())
    spoken = synthesize_speech("Sunny in Paris.")
    seen, streamed, played, history = heard[True]  # the default: as the seed
    assert b"".join(e.data for e in seen if isinstance(e, m.ModelAudio)) == spoken
    assert streamed == spoken
    lean_seen, lean_streamed, lean_played, lean_history = heard[False]
    assert not any(isinstance(e, m.ModelAudio) for e in lean_seen)
    assert lean_streamed == b""  # the reply's audio stream ends empty
    # Everything else is the same: what was played, the transcripts, the history.
    assert lean_played == played == spoken
    assert lean_history == history
    assert sorted(event_name(e) for e in lean_seen if not isinstance(e, ResponseContent)) == sorted(
        event_name(e) for e in seen if not isinstance(e, ResponseContent | m.ModelAudio)
    )


async def test_push_video_with_encode_options_sends_at_once(autojump_clock: MockClock) -> None:
    from actors.realtime import EncodeOptions

    async with session(CollectorSink()) as (live, transport):
        live.push_video(
            np.zeros((600, 800, 3), np.uint8), EncodeOptions(format="PNG", width=400, height=400)
        )
        await trio.sleep(0.5)
    videos = [
        x.video for x in transport.sent if isinstance(x, w.RealtimeInput) and x.video is not None
    ]
    assert len(videos) == 1
    assert videos[0].mime_type == "image/png"
    assert videos[0].data is not None
    assert videos[0].data[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="uint8"):
        live.push_video(np.zeros((4, 4, 3), np.float32))
