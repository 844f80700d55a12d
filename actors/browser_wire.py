"""The browser socket's protocol, sans-IO: bytes and text in, typed messages out.

One WebSocket per session. Binary messages carry media, behind a 12-byte header
(little-endian)::

    offset size  field
    0      1     kind: 1 = audio (mono PCM16 LE), 2 = video (one JPEG image)
    1      1     version: 1
    2      2     reserved, 0
    4      4     sample rate in Hz (audio; 0 for video)
    8      4     sequence number (per kind, from 0, wrapping at 2**32)
    12     ...   payload

The browser sends its microphone as audio at one of ``INPUT_RATES`` and camera frames as
video; the server sends the agent's voice as audio at 24 kHz. Text messages are JSON
objects with a ``type``: the browser sends ``text`` (a typed turn) and ``interrupt``
(stop the reply now); the server sends what ``event_message`` makes of the session's
events (transcripts, tool calls and results, interruptions, metrics), ``ready`` once the
session is live, and ``error`` before it closes the socket for a failed session.

Anything else is the peer's fault: ``BrowserProtocolError`` carries the WebSocket close
code (1003 unsupported data, 1007 invalid data, 1008 policy, 1009 too big) and a reason
that names the limit (``actors.browser_limits``).
"""

from __future__ import annotations

import struct
from typing import Any, Literal

import msgspec

from actors import browser_limits as limits
from actors.events import ResponseContent
from protocol.errors import RemoteProtocolError
from runtime import messages as m
from runtime.audio import OUTPUT_RATE

VERSION = 1
HEADER = struct.Struct("<BBHII")
HEADER_BYTES = HEADER.size
AUDIO, VIDEO = 1, 2

# WebSocket close codes (RFC 6455 section 7.4.1), and the two servers use for load.
NORMAL = 1000
GOING_AWAY = 1001
UNSUPPORTED_DATA = 1003
INVALID_DATA = 1007
POLICY_VIOLATION = 1008
TOO_BIG = 1009
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013
# What a close reason may hold: 123 bytes of UTF-8 (a close frame's payload is 125).
MAX_REASON_BYTES = 123


class BrowserProtocolError(RemoteProtocolError):
    """The browser broke the socket's protocol or a limit: close with ``code``, saying
    ``str(error)`` as the reason."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class AudioIn(msgspec.Struct, frozen=True):
    pcm: bytes  # mono PCM16 LE
    sample_rate: int
    sequence: int


class VideoIn(msgspec.Struct, frozen=True):
    jpeg: bytes
    sequence: int


class TextTurn(
    msgspec.Struct, frozen=True, tag="text", tag_field="type", forbid_unknown_fields=True
):
    text: str


class Interrupt(
    msgspec.Struct, frozen=True, tag="interrupt", tag_field="type", forbid_unknown_fields=True
):
    pass


Control = TextTurn | Interrupt
_control = msgspec.json.Decoder(Control)


def decode_binary(data: bytes) -> AudioIn | VideoIn:
    """One binary message from the browser; ``BrowserProtocolError`` for a bad header,
    a size past its limit, or a sample rate not in ``INPUT_RATES``."""
    if len(data) < HEADER_BYTES:
        raise BrowserProtocolError(
            f"binary message of {len(data)} bytes is shorter than the {HEADER_BYTES}-byte header",
            INVALID_DATA,
        )
    kind, version, _, rate, sequence = HEADER.unpack_from(data)
    if version != VERSION:
        raise BrowserProtocolError(
            f"protocol version {version} (this server speaks {VERSION})", UNSUPPORTED_DATA
        )
    payload = data[HEADER_BYTES:]
    if kind == AUDIO:
        if len(payload) > limits.MAX_AUDIO_MESSAGE_BYTES:
            raise BrowserProtocolError(
                f"audio message of {len(payload)} bytes exceeds {limits.MAX_AUDIO_MESSAGE_BYTES}",
                TOO_BIG,
            )
        if rate not in limits.INPUT_RATES:
            rates = ", ".join(str(r) for r in limits.INPUT_RATES)
            raise BrowserProtocolError(
                f"unsupported sample rate {rate} Hz (takes {rates})", UNSUPPORTED_DATA
            )
        if len(payload) % 2:
            raise BrowserProtocolError(
                f"audio payload of {len(payload)} bytes is not whole PCM16 samples", INVALID_DATA
            )
        return AudioIn(pcm=payload, sample_rate=rate, sequence=sequence)
    if kind == VIDEO:
        if len(payload) > limits.MAX_VIDEO_MESSAGE_BYTES:
            raise BrowserProtocolError(
                f"video message of {len(payload)} bytes exceeds {limits.MAX_VIDEO_MESSAGE_BYTES}",
                TOO_BIG,
            )
        return VideoIn(jpeg=payload, sequence=sequence)
    raise BrowserProtocolError(
        f"unknown binary message kind {kind} (1 audio, 2 video)", UNSUPPORTED_DATA
    )


def decode_control(text: str) -> Control:
    """One JSON control message from the browser; ``BrowserProtocolError`` for one past
    ``MAX_CONTROL_BYTES``, invalid JSON, an unknown type or field, or a text turn past
    ``MAX_TEXT_CHARS``."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.MAX_CONTROL_BYTES:
        raise BrowserProtocolError(
            f"control message of {size} bytes exceeds {limits.MAX_CONTROL_BYTES}", TOO_BIG
        )
    try:
        message = _control.decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BrowserProtocolError(f"invalid control message: {exc}", INVALID_DATA) from exc
    if isinstance(message, TextTurn) and len(message.text) > limits.MAX_TEXT_CHARS:
        raise BrowserProtocolError(
            f"text turn of {len(message.text)} characters exceeds {limits.MAX_TEXT_CHARS}", TOO_BIG
        )
    return message


def encode_audio(pcm: bytes, sequence: int, sample_rate: int = OUTPUT_RATE) -> bytes:
    """A binary audio message (what the server sends: the agent's voice, 24 kHz)."""
    return HEADER.pack(AUDIO, VERSION, 0, sample_rate, sequence % 2**32) + pcm


def encode_video(jpeg: bytes, sequence: int) -> bytes:
    """A binary video message (what the page sends for a camera frame)."""
    return HEADER.pack(VIDEO, VERSION, 0, 0, sequence % 2**32) + jpeg


def reason(text: str) -> str:
    """``text`` cut to fit a close frame (whole characters only)."""
    data = text.encode("utf-8")
    if len(data) <= MAX_REASON_BYTES:
        return text
    return data[: MAX_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."


Role = Literal["user", "agent"]


def event_message(event: m.InternalMessage | ResponseContent) -> dict[str, Any] | None:
    """The JSON the page gets for one session event, or None for what it does not show
    (media, which goes as binary, and internal bookkeeping)."""
    # One branch per event kind, in the order a turn produces them.
    if isinstance(event, m.VoiceActivityDetected):
        return {"type": "speech", "state": event.kind}
    if isinstance(event, ResponseContent | m.TurnStarted):  # the facade's name for a start
        return {"type": "turn_started", "turn_id": event.turn_id}
    if isinstance(event, m.TranscriptUpdated):
        return {
            "type": "transcript",
            "role": event.role,
            "turn_id": event.turn_id,
            "text": event.text,
            "final": False,
        }
    if isinstance(event, m.TranscriptCompleted):
        return {
            "type": "transcript",
            "role": event.role,
            "turn_id": event.turn_id,
            "text": event.transcript,
            "final": True,
            "interrupted": event.interrupted,
        }
    if isinstance(event, m.ToolCallRequested):
        return {
            "type": "tool_call",
            "call_id": event.call_id,
            "name": event.name,
            "args": event.args,
        }
    if isinstance(event, m.ToolResult):
        outcome = {"error": event.error} if event.error is not None else {"result": event.output}
        return {"type": "tool_result", "call_id": event.call_id, "name": event.name, **outcome}
    if isinstance(event, m.ToolCallsCancelled):
        return {"type": "tool_cancelled", "call_ids": list(event.call_ids)}
    if isinstance(event, m.TurnInterrupted):
        return {"type": "interrupted", "turn_id": event.turn_id}
    if isinstance(event, m.TurnCompleted):
        return {"type": "turn_complete", "turn_id": event.turn_id, "interrupted": event.interrupted}
    if isinstance(event, m.PlayoutFinished):
        return {
            "type": "playout_finished",
            "turn_id": event.turn_id,
            "samples_played": event.samples_played,
            "interrupted": event.interrupted,
        }
    if isinstance(event, m.MetricRecorded):
        return {
            "type": "metric",
            "name": event.name,
            "value": event.value,
            "turn_id": event.turn_id,
        }
    if isinstance(event, m.Reconnecting):
        return {"type": "link", "state": "reconnecting", "reason": event.reason}
    if isinstance(event, m.Reconnected):
        return {"type": "link", "state": "reconnected", "restored": event.restored}
    if isinstance(event, m.Dropped):
        return {"type": "dropped", "what": event.what, "count": event.count}
    if isinstance(event, m.ActorCrashed):
        return {"type": "notice", "text": f"{event.actor} crashed ({event.error_type}); restarting"}
    return None
