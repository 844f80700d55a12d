"""The messages actors exchange over memory channels.

Every message is a frozen msgspec Struct with an explicit, stable tag (the ``type`` field
when serialised), so a stream of them can be logged, replayed or sent across a process
boundary with ``encode_message``/``decode_message``. Bytes travel, not numpy arrays. Times
are seconds on trio's clock (``trio.current_time()``), supplied by the sender.

The session's own events (``protocol.events``: turns, model audio, transcripts, tool calls)
are re-exported here, so one namespace names everything that travels on a channel.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from protocol.errors import RemoteProtocolError
from protocol.events import (
    GenerationCompleted,
    GoAwayReceived,
    GroundingReported,
    InteractionStatusChanged,
    InterimInputTranscript,
    Message,
    ModelAudio,
    ModelCode,
    ModelCodeResult,
    ModelText,
    ResumptionUpdated,
    Role,
    ServerToolCalled,
    ServerToolReturned,
    SessionEvent,
    SessionReady,
    ToolCallRequested,
    ToolCallsCancelled,
    TranscriptFragment,
    TurnCompleted,
    TurnInterrupted,
    TurnStarted,
    UsageReported,
    VoiceActivityDetected,
    Word,
)
from protocol.wire import Scheduling, Setup

__all__ = [
    "ActivityEnded",
    "ActivityStarted",
    "ActorCrashed",
    "ActorGaveUp",
    "ActorRestarting",
    "ActorStarted",
    "AudioChunk",
    "AudioCleared",
    "AudioStreamEnded",
    "ChatTurn",
    "Connected",
    "Dropped",
    "EndOfStream",
    "GenerationCompleted",
    "GoAwayReceived",
    "GroundingReported",
    "InstructionsUpdated",
    "InteractionStatusChanged",
    "InterimInputTranscript",
    "InternalMessage",
    "Message",
    "MetricRecorded",
    "ModelAudio",
    "ModelCode",
    "ModelCodeResult",
    "ModelMetrics",
    "ModelText",
    "PixelFormat",
    "PlayoutFinished",
    "PlayoutProgress",
    "PlayoutUnderrun",
    "RawAudio",
    "RawVideo",
    "Reconnected",
    "Reconnecting",
    "ResponseRequested",
    "ResumptionUpdated",
    "Role",
    "SampleFormat",
    "Scheduling",
    "ServerFault",
    "ServerToolCalled",
    "ServerToolReturned",
    "SessionEvent",
    "SessionReady",
    "SetupChanged",
    "SpeechEnded",
    "TextInput",
    "ToolCallRequested",
    "ToolCallsCancelled",
    "ToolResult",
    "TranscriptCompleted",
    "TranscriptFragment",
    "TranscriptUpdated",
    "TurnCompleted",
    "TurnInterrupted",
    "TurnStarted",
    "UsageReported",
    "VideoFrame",
    "VoiceActivityDetected",
    "Word",
    "decode_message",
    "encode_message",
]

SampleFormat = Literal["s16", "s32", "f32"]
PixelFormat = Literal["rgb24", "rgba", "gray"]


# --- media in: capture -> encoder -> gemini-link ----------------------------------------


class RawAudio(Message, frozen=True, tag="audio.raw"):
    """Interleaved samples as captured, any rate and channel count."""

    data: bytes
    sample_rate: int
    channels: int
    sample_format: SampleFormat
    timestamp: float
    source: str = ""


class AudioChunk(Message, frozen=True, tag="audio.chunk"):
    """16 kHz mono little-endian PCM16, ready for ``realtimeInput.audio``."""

    data: bytes
    timestamp: float
    sequence: int


class RawVideo(Message, frozen=True, tag="video.raw"):
    """One uncompressed frame, rows top to bottom, no padding."""

    data: bytes
    width: int
    height: int
    pixel_format: PixelFormat
    timestamp: float


class VideoFrame(Message, frozen=True, tag="video.frame"):
    """One encoded still (JPEG or PNG), ready for ``realtimeInput.video``."""

    data: bytes
    mime_type: str
    width: int
    height: int
    timestamp: float


class EndOfStream(Message, frozen=True, tag="stream.end"):
    """The source named ``source`` has no more data: an orderly end, not an error."""

    source: str
    timestamp: float


# --- user input control: facade -> gemini-link -------------------------------------------


class TextInput(Message, frozen=True, tag="input.text"):
    """Text from the user; ``realtime`` sends it as realtimeInput, else as a complete turn."""

    text: str
    realtime: bool = False


class ActivityStarted(Message, frozen=True, tag="input.activity_start"):
    """Manual activity detection: the user started speaking."""

    timestamp: float


class ActivityEnded(Message, frozen=True, tag="input.activity_end"):
    """Manual activity detection: the user stopped speaking."""

    timestamp: float


class AudioStreamEnded(Message, frozen=True, tag="input.audio_stream_end"):
    """Automatic activity detection: the microphone stream paused or ended."""

    timestamp: float


class SpeechEnded(Message, frozen=True, tag="input.speech_end"):
    """The encoder's local level gate: the user's audio went quiet. ``timestamp`` is where
    the last loud audio ended (the stream's time); time to first audio counts from it,
    with trailing silence or a microphone that never ends as well."""

    timestamp: float


class ChatTurn(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of the conversation history."""

    role: Role
    text: str
    item_id: str = ""
    interrupted: bool = False


class ResponseRequested(Message, frozen=True, tag="input.create_response"):
    """Append ``turns`` to the history and, if ``respond``, ask the model to reply now,
    following ``instructions`` if given (for this reply only)."""

    turns: tuple[ChatTurn, ...] = ()
    respond: bool = True
    instructions: str | None = None


class InstructionsUpdated(Message, frozen=True, tag="input.instructions"):
    instructions: str


class SetupChanged(Message, frozen=True, tag="input.setup"):
    """The session goes on with this setup (new tools, voice, options): the link moves to
    a new connection at the next turn boundary, resuming the session with its handle."""

    setup: Setup
    reason: str


class AudioCleared(Message, frozen=True, tag="input.clear_audio"):
    """Forget the user's audio not yet sent (buffered in the encoder, or by the link
    while disconnected or for replay)."""

    timestamp: float


# --- model output: gemini-link -> playout, transcriber, application ----------------------


class TranscriptUpdated(Message, frozen=True, tag="transcript.interim"):
    """The transcript of one side of a turn so far (interim)."""

    role: Role
    turn_id: int
    text: str


class TranscriptCompleted(Message, frozen=True, tag="transcript.completed"):
    """The final transcript of one side of a turn (the seed's
    ``input_speech_transcription_completed`` / ``agent_speech_transcription_completed``).
    For an interrupted reply, ``transcript`` is the part that was heard."""

    role: Role
    turn_id: int
    item_id: str
    transcript: str
    interrupted: bool = False

    @property
    def event(self) -> str:
        """The seed's name for this event."""
        if self.role == "user":
            return "input_speech_transcription_completed"
        return "agent_speech_transcription_completed"


# --- tools: gemini-link <-> tool-executor -------------------------------------------------


class ToolResult(Message, frozen=True, tag="tool.result"):
    """The one response to a call: ``output`` (any JSON value) on success, else ``error``."""

    call_id: str
    name: str
    output: Any = None
    error: str | None = None
    scheduling: Scheduling | None = None
    will_continue: bool | None = None


# --- session state: gemini-link -> application -------------------------------------------


class Connected(Message, frozen=True, tag="link.connected"):
    resumed: bool


class Reconnecting(Message, frozen=True, tag="link.reconnecting"):
    reason: str
    attempt: int
    delay: float


class Reconnected(Message, frozen=True, tag="link.reconnected"):
    """``restored``: the server resumed the session; otherwise the history was re-seeded."""

    restored: bool


class ServerFault(Message, frozen=True, tag="link.server_fault"):
    """The server broke the protocol (a message we cannot read or that is impossible in
    the session's state, or a WebSocket violation): the connection was closed with
    ``code`` and the link reconnects, by the same backoff and give-up rule as any failure.
    The server's fault, never a rejection of what we sent."""

    what: str
    code: int


class Dropped(Message, frozen=True, tag="dropped"):
    """Something was discarded on purpose (by a bound or a latest-wins policy)."""

    what: str
    count: int


# --- playout: playout -> transcriber, application -----------------------------------------


class PlayoutProgress(Message, frozen=True, tag="playout.progress"):
    turn_id: int
    samples_played: int
    sample_rate: int = 24000


class PlayoutFinished(Message, frozen=True, tag="playout.finished"):
    turn_id: int
    samples_played: int
    interrupted: bool
    sample_rate: int = 24000


class PlayoutUnderrun(Message, frozen=True, tag="playout.underrun"):
    turn_id: int
    total_underruns: int


# --- lifecycle and metrics: every actor -> application ------------------------------------


class ActorStarted(Message, frozen=True, tag="actor.started"):
    actor: str
    incarnation: int


class ActorCrashed(Message, frozen=True, tag="actor.crashed"):
    actor: str
    error_type: str
    error: str


class ActorRestarting(Message, frozen=True, tag="actor.restarting"):
    actor: str
    attempt: int
    delay: float


class ActorGaveUp(Message, frozen=True, tag="actor.gave_up"):
    actor: str
    error: str


class MetricRecorded(Message, frozen=True, tag="metrics"):
    """A measurement, e.g. ``time_to_first_audio`` in seconds for ``turn_id``."""

    name: str
    value: float
    turn_id: int | None = None


class ModelMetrics(Message, frozen=True, tag="metrics.model"):
    """One reply's model metrics, as LiveKit's ``RealtimeModelMetrics`` has them, sent with
    each usage report of the turn. Times are seconds on trio's clock. ``ttft``: from the
    request (the end of the user's speech, typed text, a reply request) to the reply's
    first content; None when no request was seen (the model spoke on its own).
    ``duration``: from that first content to generationComplete (or turnComplete; so far,
    if neither came yet). Token counts by modality hold only what the server reported."""

    turn_id: int | None
    timestamp: float  # when the reply's first content came
    ttft: float | None
    duration: float
    cancelled: bool  # the reply was interrupted
    input_tokens: int
    output_tokens: int
    total_tokens: int
    tokens_per_second: float  # output tokens over duration
    input_by_modality: dict[str, int] = msgspec.field(default_factory=dict)
    output_by_modality: dict[str, int] = msgspec.field(default_factory=dict)
    cached_tokens: int = 0
    cached_by_modality: dict[str, int] = msgspec.field(default_factory=dict)
    thoughts_tokens: int = 0
    tool_use_prompt_tokens: int = 0
    service_tier: str | None = None
    traffic_type: str | None = None


InternalMessage = (
    RawAudio
    | AudioChunk
    | RawVideo
    | VideoFrame
    | EndOfStream
    | TextInput
    | ActivityStarted
    | ActivityEnded
    | AudioStreamEnded
    | SpeechEnded
    | ResponseRequested
    | InstructionsUpdated
    | SetupChanged
    | AudioCleared
    | SessionReady
    | TurnStarted
    | ModelAudio
    | ModelText
    | GenerationCompleted
    | TurnInterrupted
    | TurnCompleted
    | TranscriptFragment
    | InterimInputTranscript
    | TranscriptUpdated
    | TranscriptCompleted
    | VoiceActivityDetected
    | ToolCallRequested
    | ToolCallsCancelled
    | ToolResult
    | ResumptionUpdated
    | GoAwayReceived
    | UsageReported
    | InteractionStatusChanged
    | GroundingReported
    | ModelCode
    | ModelCodeResult
    | ServerToolCalled
    | ServerToolReturned
    | Connected
    | Reconnecting
    | Reconnected
    | ServerFault
    | Dropped
    | PlayoutProgress
    | PlayoutFinished
    | PlayoutUnderrun
    | ActorStarted
    | ActorCrashed
    | ActorRestarting
    | ActorGaveUp
    | MetricRecorded
    | ModelMetrics
)

_message_encoder = msgspec.msgpack.Encoder()
_message_decoder: msgspec.msgpack.Decoder[InternalMessage] = msgspec.msgpack.Decoder(
    InternalMessage
)


def encode_message(message: InternalMessage) -> bytes:
    """Serialise an internal message (msgpack, tagged by its ``type``)."""
    return _message_encoder.encode(message)


def decode_message(data: bytes) -> InternalMessage:
    """Inverse of ``encode_message``; raises ``RemoteProtocolError`` on bad input."""
    try:
        return _message_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise RemoteProtocolError(f"invalid internal message: {exc}") from exc
