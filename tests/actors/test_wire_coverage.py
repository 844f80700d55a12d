"""Issue 16, what google-genai 3.6.1 has on the wire, surfaced through RealtimeModel:
transcription options and details, interim input transcription, proactive video,
explicit VAD signals (Vertex), streamed function-call arguments (Vertex), the server's own
tool parts, waitingForInput, interactionStatus, voice activity (its end is never
"input_speech_started"), and model metrics by modality like LiveKit's."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import trio
from google.genai import types
from trio.testing import MockClock

from actors.events import event_name
from actors.playout import CollectorSink
from actors.realtime import RealtimeModel, TranscriptionOptions
from actors.tools import ToolSet, tool
from emulator import Behaviour, Reply, Scenario, Turn
from protocol import encode
from protocol import wire as w
from protocol.client_rules import ModelRuleError
from runtime import messages as m
from tests.actors.helpers import (
    FAST,
    VERTEX_PATH,
    live_session,
    named,
    reply,
    three_turns,
    until,
)
from tests.fakes import SETUP_COMPLETE, ScriptedConnection, ScriptedTransport
from tests.protocol.sdk import sdk_parse_client

URL = "ws://127.0.0.1:9"


async def test_transcription_options_reach_the_setup_and_the_service_takes_them(
    autojump_clock: MockClock,
) -> None:
    options = TranscriptionOptions(
        language_codes=("fr-FR", "en-US"),
        custom_vocabulary=("Trio",),
        word_timestamps=True,
        diarization=True,
        mode="SMART",
    )
    async with live_session(three_turns(), enable_user_audio_transcription=options) as (
        live,
        transport,
        _,
    ):
        live.send_text("Hi")
        assert await reply(live) == "First answer."
    setup = transport.sent[0]
    assert isinstance(setup, w.Setup)
    parsed = sdk_parse_client(encode(setup)).setup
    assert parsed is not None
    assert parsed.input_audio_transcription == types.AudioTranscriptionConfig(
        language_codes=["fr-FR", "en-US"],
        custom_vocabulary=["Trio"],
        word_timestamp=True,
        diarization=True,
        mode=types.AudioTranscriptionConfigMode.SMART,
    )
    assert parsed.output_audio_transcription == types.AudioTranscriptionConfig()


def test_proactive_video_explicit_vad_and_multi_speaker() -> None:
    two_five = "gemini-2.5-flash-native-audio-preview-12-2025"
    setup = RealtimeModel(
        endpoint=URL, model=two_five, proactive_audio=True, proactive_video=True
    ).setup(ToolSet())
    assert setup.proactivity == w.ProactivityConfig(proactive_audio=True, proactive_video=True)
    with pytest.raises(ModelRuleError, match="needs proactive_audio"):
        RealtimeModel(endpoint=URL, model=two_five, proactive_video=True)
    with pytest.raises(ModelRuleError, match="proactivity"):
        RealtimeModel(endpoint=URL, model="gemini-3.1-flash-live-preview", proactive_video=True)
    # 3.8: proactive audio is always on, so video may be asked alone.
    assert RealtimeModel(endpoint=URL, proactive_video=True).setup(ToolSet()).proactivity == (
        w.ProactivityConfig(proactive_video=True)
    )
    with pytest.raises(ModelRuleError, match="Vertex AI only"):
        RealtimeModel(endpoint=URL, explicit_vad_signal=True)
    vertex = RealtimeModel(endpoint=URL + VERTEX_PATH, explicit_vad_signal=True).setup(ToolSet())
    assert vertex.explicit_vad_signal is True
    assert sdk_parse_client(encode(vertex)).setup is not None
    with pytest.raises(ValueError, match="Vertex AI only"):
        RealtimeModel(api_key="k", transparent_resumption=True)  # the real Gemini API
    # No RealtimeModel option sends multiSpeakerVoiceConfig: google-genai 3.6.1 refuses it
    # for Live ("multi_speaker_voice_config is not supported in the live API").
    assert "multi_speaker" not in RealtimeModel.__init__.__code__.co_varnames


PACED = Scenario(
    turns=(Turn(replies=(Reply(say="A reply paced as it is spoken."),)),),
    behaviour=Behaviour(pace="realtime", first_audio_delay_ms=150),
)


async def test_model_metrics_per_reply_like_livekits(autojump_clock: MockClock) -> None:
    async with live_session(PACED) as (live, _, _):
        live.send_text("Hi")
        events = await until(live, named("metrics_collected"))
    metrics = events[-1]
    assert isinstance(metrics, m.ModelMetrics)
    assert metrics.turn_id == 1
    assert metrics.ttft is not None
    assert metrics.ttft >= 0.15  # the emulated model's thinking time
    assert metrics.duration > 1
    assert metrics.output_tokens > 0
    assert metrics.tokens_per_second == pytest.approx(metrics.output_tokens / metrics.duration)
    assert set(metrics.input_by_modality) == {"AUDIO", "TEXT"}
    assert set(metrics.output_by_modality) == {"AUDIO"}
    assert (metrics.service_tier, metrics.traffic_type) == ("standard", None)
    assert not metrics.cancelled
    async with live_session(PACED, path=VERTEX_PATH) as (live, _, _):
        live.send_text("Hi")
        events = await until(live, named("metrics_collected"))
    vertex = events[-1]
    assert isinstance(vertex, m.ModelMetrics)
    assert (vertex.service_tier, vertex.traffic_type) == (None, "ON_DEMAND")
    assert vertex.output_tokens > 0  # Vertex's candidatesTokenCount


async def test_waiting_for_input_and_interaction_status(autojump_clock: MockClock) -> None:
    scenario = Scenario(
        turns=(
            Turn(
                replies=(Reply(say="Go on."),),
                turn_complete_reason="NEED_MORE_INPUT",
                waiting_for_input=True,
            ),
        ),
        behaviour=FAST,
    )
    async with live_session(scenario, model="gemini-3.8-live-extended-thinking") as (live, _, _):
        live.send_text("Well, I")
        events = await until(live, named("interaction_status_changed"))
    completed = next(e for e in events if isinstance(e, m.TurnCompleted))
    assert (completed.reason, completed.waiting_for_input) == ("NEED_MORE_INPUT", True)
    status = events[-1]
    assert isinstance(status, m.InteractionStatusChanged)
    assert (status.status, status.turn_id) == ("IDLE", 1)


def speech() -> np.ndarray:
    t = np.arange(int(16000 * 0.6)) / 16000
    voiced = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)
    return np.concatenate([voiced, np.zeros(16000, np.int16)])


async def test_the_end_of_speech_is_input_speech_stopped_never_started(
    autojump_clock: MockClock,
) -> None:
    scenario = Scenario(turns=(Turn(replies=(Reply(say="Heard you."),)),), behaviour=FAST)
    async with live_session(scenario) as (live, _, _):
        live.push_audio(speech(), sample_rate=16000)
        events = await until(live, named("metrics_collected"))
    activity = [e for e in events if isinstance(e, m.VoiceActivityDetected)]
    assert [a.kind for a in activity] == ["start", "end"]
    assert [event_name(a) for a in activity] == ["input_speech_started", "input_speech_stopped"]
    assert activity[1].audio_offset is not None
    metrics = events[-1]
    assert isinstance(metrics, m.ModelMetrics)
    assert metrics.ttft is not None  # from the server's voiceActivity END


@tool
async def book(city: str, seats: int) -> str:
    """Book seats."""
    return f"{seats} seats in {city}"


def content(**fields: Any) -> dict[str, Any]:
    return {"serverContent": fields}


async def vertex_server(conn: ScriptedConnection) -> None:
    """A Vertex-like server: details Google's docs describe and the emulator does not send
    (interim transcription, diarization, words, streamed arguments, server tool parts,
    explicit VAD signals)."""
    conn.push(SETUP_COMPLETE)
    conn.push({"voiceActivityDetectionSignal": {"vadSignalType": "VAD_SIGNAL_TYPE_SOS"}})
    conn.push(content(interimInputTranscription={"text": "Book two", "languageCode": "en-US"}))
    conn.push(
        content(
            inputTranscription={
                "text": "Book two seats in Paris.",
                "finished": True,
                "languageCode": "en-US",
                "speakerLabel": "spk_1",
                "words": [{"word": "Book", "startOffset": "0.100s", "endOffset": "0.400s"}],
            }
        )
    )
    conn.push({"voiceActivityDetectionSignal": {"vadSignalType": "VAD_SIGNAL_TYPE_EOS"}})
    parts = [
        {"toolCall": {"id": "s1", "toolType": "GOOGLE_SEARCH_WEB", "args": {"q": "paris"}}},
        {"toolResponse": {"id": "s1", "toolType": "GOOGLE_SEARCH_WEB", "response": {"n": 1}}},
    ]
    conn.push(content(modelTurn={"parts": parts}))
    call = {
        "id": "c1",
        "name": "book",
        "willContinue": True,
        "partialArgs": [{"jsonPath": "$.city", "stringValue": "Pa", "willContinue": True}],
    }
    conn.push({"toolCall": {"functionCalls": [call]}})
    rest = [{"jsonPath": "$.city", "stringValue": "ris"}, {"jsonPath": "$.seats", "numberValue": 2}]
    conn.push({"toolCall": {"functionCalls": [{"id": "c1", "partialArgs": rest}]}})
    with trio.fail_after(10):
        while not any("toolResponse" in frame for frame in conn.sent):  # noqa: ASYNC110
            await trio.sleep(0.01)
    conn.push(content(outputTranscription={"text": "Booked."}, turnComplete=True))
    await trio.sleep_forever()


async def test_vertex_details_reach_the_application(autojump_clock: MockClock) -> None:
    async with trio.open_nursery() as nursery:
        transport = ScriptedTransport(vertex_server, nursery)
        model = RealtimeModel(
            endpoint=URL + VERTEX_PATH,
            transport=transport,
            enable_user_audio_transcription=TranscriptionOptions(diarization=True),
        )
        async with model.session(tools=[book], sink=CollectorSink()) as live:
            events = await until(live, named("agent_speech_stopped"))
        nursery.cancel_scope.cancel()
    names = [event_name(e) for e in events]
    assert names.count("input_speech_started") == 1
    assert names.count("input_speech_stopped") == 1
    interim = next(e for e in events if isinstance(e, m.InterimInputTranscript))
    assert (event_name(interim), interim.text, interim.language_code) == (
        "input_speech_transcription_interim",
        "Book two",
        "en-US",
    )
    heard = next(e for e in events if isinstance(e, m.TranscriptFragment) and e.role == "user")
    assert (heard.speaker_label, heard.words) == (
        "spk_1",
        (m.Word(word="Book", start=0.1, end=0.4),),
    )
    called = next(e for e in events if isinstance(e, m.ServerToolCalled))
    assert (event_name(called), called.tool_type, called.args) == (
        "server_tool_called",
        "GOOGLE_SEARCH_WEB",
        {"q": "paris"},
    )
    assert "server_tool_returned" in names
    request = next(e for e in events if isinstance(e, m.ToolCallRequested))
    assert request.args == {"city": "Paris", "seats": 2.0}  # assembled from the pieces
    result = next(e for e in events if isinstance(e, m.ToolResult))
    assert result.output == "2 seats in Paris"
    assert transport.connections[0].sent[0]["setup"]["sessionResumption"] == {"transparent": True}


def test_model_families_other_than_the_table_can_be_given(monkeypatch: pytest.MonkeyPatch) -> None:
    guessed = RealtimeModel(endpoint=URL, model="gemini-4.0-flash-live")
    assert (guessed.rules.family.name, guessed.rules.known) == ("3.8", False)
    assert RealtimeModel(endpoint=URL, model="gemini-4.0-flash-live", family="2.5").rules.known
    del monkeypatch  # the family table itself is data (protocol.models.FAMILIES)


async def test_a_text_model_reply_keeps_working_on_2_5(autojump_clock: MockClock) -> None:
    scenario = Scenario(
        turns=(Turn(replies=(Reply(say="Typed back."),)),),
        behaviour=Behaviour(pace="fast", first_audio_delay_ms=0),
    )
    async with live_session(
        scenario, model="gemini-2.5-flash-native-audio-preview-12-2025", modalities=("TEXT",)
    ) as (live, _, _):
        live.send_text("Hi")
        with trio.fail_after(30):
            events = await until(live, named("agent_speech_stopped"))
    assert "".join(e.text for e in events if isinstance(e, m.ModelText)) == "Typed back."
