"""Public names for the pipeline's events: the seed's where it has one.

``event_name(message)`` gives e.g. ``function_calls_collected`` for a ``ToolCallRequested``,
``input_speech_transcription_completed`` for the user's final transcript, ``reconnecting``,
``metrics``; the seed's style for what it did not have: ``input_speech_stopped`` (the
service heard the user stop: never ``input_speech_started``), ``grounding_received``,
``executable_code_received``, ``code_execution_result_received``, ``server_tool_called``,
``server_tool_returned``, ``input_speech_transcription_interim``,
``interaction_status_changed``, ``metrics_collected`` (LiveKit's name for model metrics).
``event_record(message, t)`` is the JSON object of one event (``type``,
``t``, its fields; tool results with ``result`` or ``error``), or None for raw media.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import trio

from runtime import messages as m


@dataclass
class ResponseContent:
    """The seed's ``response_content_added`` (its ``GeminiContent``): one reply, with its
    text and audio as streams that end when the turn does (the audio stream ends empty
    in a session opened with ``audio_events=False``)."""

    response_id: str
    item_id: str
    text_stream: trio.MemoryReceiveChannel[str]
    audio_stream: trio.MemoryReceiveChannel[bytes]
    content_type: Literal["audio", "text"] = "audio"
    output_index: int = 0
    content_index: int = 0
    turn_id: int = 0


Event = m.InternalMessage | ResponseContent

_NAMES = {
    "tool.call": "function_calls_collected",
    "tool.result": "function_calls_finished",
    "tool.cancelled": "function_calls_cancelled",
    "turn.started": "response_content_added",
    "turn.complete": "agent_speech_stopped",
    "voice_activity": "input_speech_started",  # kind "end": input_speech_stopped
    "input.speech_end": "input_speech_stopped",
    "link.reconnecting": "reconnecting",
    "link.reconnected": "reconnected",
    "actor.gave_up": "error",
    "metrics": "metrics",
    "metrics.model": "metrics_collected",
    "model.grounding": "grounding_received",
    "model.code": "executable_code_received",
    "model.code_result": "code_execution_result_received",
    "model.tool_call": "server_tool_called",
    "model.tool_response": "server_tool_returned",
    "transcript.user_interim": "input_speech_transcription_interim",
    "session.interaction_status": "interaction_status_changed",
}
_MEDIA = (
    m.ModelAudio,
    m.AudioChunk,
    m.RawAudio,
    m.RawVideo,
    m.VideoFrame,
    m.TranscriptFragment,
    m.TranscriptUpdated,
    m.InterimInputTranscript,
)


def event_name(message: Event) -> str:
    if isinstance(message, ResponseContent):
        return "response_content_added"
    if isinstance(message, m.TranscriptCompleted):
        return message.event
    if isinstance(message, m.VoiceActivityDetected) and message.kind == "end":
        return "input_speech_stopped"
    tag = type(message).__struct_config__.tag
    assert isinstance(tag, str)
    return _NAMES.get(tag, tag)


def event_record(message: Event, t: float) -> dict[str, Any] | None:
    """One JSON-able event record, or None for media (audio, video, interim transcripts)."""
    if isinstance(message, _MEDIA):
        return None
    if isinstance(message, ResponseContent):
        return {
            "type": event_name(message),
            "t": round(t, 6),
            "item_id": message.item_id,
            "turn_id": message.turn_id,
        }
    fields: dict[str, Any] = msgspec.to_builtins(message)
    fields.pop("type")
    if isinstance(message, m.ToolResult):
        fields = {"call_id": message.call_id, "name": message.name}
        fields.update(
            {"error": message.error} if message.error is not None else {"result": message.output}
        )
    return {"type": event_name(message), "t": round(t, 6), **fields}
