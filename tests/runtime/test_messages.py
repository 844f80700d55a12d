"""Internal messages: explicit, stable, unique tags; lossless serialisation."""

from __future__ import annotations

from typing import get_args

import pytest

from protocol import RemoteProtocolError
from runtime import messages as m

STABLE_TAGS = {
    "RawAudio": "audio.raw",
    "AudioChunk": "audio.chunk",
    "RawVideo": "video.raw",
    "VideoFrame": "video.frame",
    "EndOfStream": "stream.end",
    "TextInput": "input.text",
    "ActivityStarted": "input.activity_start",
    "ActivityEnded": "input.activity_end",
    "AudioStreamEnded": "input.audio_stream_end",
    "SpeechEnded": "input.speech_end",
    "ResponseRequested": "input.create_response",
    "InstructionsUpdated": "input.instructions",
    "SessionReady": "session.ready",
    "TurnStarted": "turn.started",
    "ModelAudio": "model.audio",
    "ModelText": "model.text",
    "GenerationCompleted": "turn.generation_complete",
    "TurnInterrupted": "turn.interrupted",
    "TurnCompleted": "turn.complete",
    "TranscriptFragment": "transcript.fragment",
    "TranscriptUpdated": "transcript.interim",
    "TranscriptCompleted": "transcript.completed",
    "VoiceActivityDetected": "voice_activity",
    "ToolCallRequested": "tool.call",
    "ToolCallsCancelled": "tool.cancelled",
    "ToolResult": "tool.result",
    "ResumptionUpdated": "session.resumption",
    "GoAwayReceived": "session.go_away",
    "UsageReported": "usage",
    "InteractionStatusChanged": "session.interaction_status",
    "GroundingReported": "model.grounding",
    "ModelCode": "model.code",
    "ModelCodeResult": "model.code_result",
    "Connected": "link.connected",
    "Reconnecting": "link.reconnecting",
    "Reconnected": "link.reconnected",
    "ServerFault": "link.server_fault",
    "Dropped": "dropped",
    "PlayoutProgress": "playout.progress",
    "PlayoutFinished": "playout.finished",
    "PlayoutUnderrun": "playout.underrun",
    "ActorStarted": "actor.started",
    "ActorCrashed": "actor.crashed",
    "ActorRestarting": "actor.restarting",
    "ActorGaveUp": "actor.gave_up",
    "MetricRecorded": "metrics",
    "SetupChanged": "input.setup",
    "AudioCleared": "input.clear_audio",
    "InterimInputTranscript": "transcript.user_interim",
    "ServerToolCalled": "model.tool_call",
    "ServerToolReturned": "model.tool_response",
    "ModelMetrics": "metrics.model",
}


def test_every_message_has_its_stable_tag() -> None:
    classes = get_args(m.InternalMessage)
    assert {cls.__name__: cls.__struct_config__.tag for cls in classes} == STABLE_TAGS


def test_messages_are_immutable() -> None:
    message = m.TurnStarted(turn_id=1)
    with pytest.raises(AttributeError):
        message.turn_id = 2  # type: ignore[misc,unused-ignore]


@pytest.mark.parametrize(
    "message",
    [
        m.RawAudio(
            data=b"\x00\x01", sample_rate=48000, channels=2, sample_format="s16", timestamp=1.5
        ),
        m.ModelAudio(turn_id=3, data=b"\x01\x02\x03\x04", offset=480),
        m.ToolCallRequested(call_id="c1", name="f", args={"a": [1, {"b": None}]}, turn_id=1),
        m.ToolResult(call_id="c1", name="f", error="boom", scheduling="INTERRUPT"),
        m.ResponseRequested(turns=(m.ChatTurn(role="user", text="hi", item_id="u1"),)),
        m.ToolCallsCancelled(call_ids=("a", "b")),
    ],
)
def test_messages_round_trip(message: m.InternalMessage) -> None:
    assert m.decode_message(m.encode_message(message)) == message


def test_decode_message_rejects_garbage_with_a_typed_error() -> None:
    with pytest.raises(RemoteProtocolError):
        m.decode_message(b"\xc1")
    with pytest.raises(RemoteProtocolError):
        m.decode_message(m.encode_message(m.TurnStarted(turn_id=1))[:-1])
