"""What the sans-IO session state machine (``protocol.session``) reports: the events of one
Gemini Live session, decoded from the server's frames.

Every event is a frozen msgspec Struct with an explicit, stable tag (the ``type`` field when
serialised). The actor runtime (``runtime.messages``) builds its vocabulary on the same base,
so these travel on the actors' channels unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from protocol import wire

Role = Literal["user", "agent"]


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every message: session events here, actor messages in ``runtime.messages``."""


class SessionReady(Message, frozen=True, tag="session.ready"):
    """setupComplete arrived: the connection accepts input."""

    session_id: str | None = None


class TurnStarted(Message, frozen=True, tag="turn.started"):
    turn_id: int


class ModelAudio(Message, frozen=True, tag="model.audio"):
    """Model speech: mono PCM16 at ``sample_rate`` (24 kHz), ``offset`` samples into the turn."""

    turn_id: int
    data: bytes
    offset: int
    sample_rate: int = 24000


class ModelText(Message, frozen=True, tag="model.text"):
    turn_id: int
    text: str
    thought: bool = False


class GenerationCompleted(Message, frozen=True, tag="turn.generation_complete"):
    turn_id: int


class TurnInterrupted(Message, frozen=True, tag="turn.interrupted"):
    """The user barged in (or the connection was lost): stop playing ``turn_id`` now."""

    turn_id: int
    connection_lost: bool = False  # not the user: its tool calls still get their results


class TurnCompleted(Message, frozen=True, tag="turn.complete"):
    turn_id: int
    interrupted: bool = False
    reason: str | None = None  # turnCompleteReason (NEED_MORE_INPUT, safety reasons...)
    waiting_for_input: bool = False  # the model expects the user to go on


class Word(msgspec.Struct, frozen=True, kw_only=True):
    """One transcribed word with its place in the audio (seconds from the start of the
    connection's audio stream), when the setup asked for word timestamps."""

    word: str
    start: float | None = None
    end: float | None = None


class TranscriptFragment(Message, frozen=True, tag="transcript.fragment"):
    """A piece of a transcript, with what the transcription said about it (language,
    speaker with diarization, words and offsets with word timestamps; seconds)."""

    role: Role
    turn_id: int
    text: str
    finished: bool = False
    language_code: str | None = None
    speaker_label: str | None = None  # "spk_1", "spk_2" with diarization
    words: tuple[Word, ...] = ()
    start_offset: float | None = None
    end_offset: float | None = None


class InterimInputTranscript(Message, frozen=True, tag="transcript.user_interim"):
    """``interimInputTranscription``: a low-latency, revisable view of what the user is
    saying, updated while they speak; the ``TranscriptFragment``s that follow are final."""

    turn_id: int
    text: str
    finished: bool = False
    language_code: str | None = None
    speaker_label: str | None = None


class VoiceActivityDetected(Message, frozen=True, tag="voice_activity"):
    """The service heard the user start or stop speaking (``voiceActivity``, or the
    allowlisted ``voiceActivityDetectionSignal`` when ``signal``)."""

    kind: Literal["start", "end"]
    audio_offset: float | None = None  # seconds from the start of the audio stream
    signal: bool = False


class ToolCallRequested(Message, frozen=True, tag="tool.call"):
    call_id: str
    name: str
    args: dict[str, Any]
    turn_id: int


class ToolCallsCancelled(Message, frozen=True, tag="tool.cancelled"):
    call_ids: tuple[str, ...]


class ResumptionUpdated(Message, frozen=True, tag="session.resumption"):
    handle: str | None
    resumable: bool


class GoAwayReceived(Message, frozen=True, tag="session.go_away"):
    time_left: float


class UsageReported(Message, frozen=True, tag="usage"):
    """Token usage; the ``*_by_modality`` maps (AUDIO, TEXT, IMAGE, VIDEO...) hold only
    what the server reported (a missing modality is "not reported", not 0)."""

    turn_id: int | None
    prompt_tokens: int = 0
    response_tokens: int = 0
    total_tokens: int = 0
    thoughts_tokens: int = 0
    cached_tokens: int = 0
    tool_use_prompt_tokens: int = 0
    prompt_by_modality: dict[str, int] = msgspec.field(default_factory=dict)
    response_by_modality: dict[str, int] = msgspec.field(default_factory=dict)
    cached_by_modality: dict[str, int] = msgspec.field(default_factory=dict)
    service_tier: str | None = None  # Gemini API (lower case: "standard", "flex"...)
    traffic_type: str | None = None  # Vertex ("ON_DEMAND"...)


class InteractionStatusChanged(Message, frozen=True, tag="session.interaction_status"):
    """``interactionStatus`` (3.8 thinking models, with each turnComplete): IN_PROGRESS
    while the model is still working (a NON_BLOCKING call, background reasoning: more
    turns follow), IDLE once it is done. ``REQUIRES_ACTION`` (deprecated) means IDLE."""

    status: str
    turn_id: int | None = None


class GroundingReported(Message, frozen=True, tag="model.grounding"):
    """What a built-in tool grounded a turn on: search results (``googleSearch``) or the
    URLs fetched (``urlContext``)."""

    turn_id: int | None
    grounding: wire.GroundingMetadata | None = None
    url_context: wire.UrlContextMetadata | None = None


class ModelCode(Message, frozen=True, tag="model.code"):
    """Code the model ran with the built-in ``codeExecution`` tool; ``code_id`` pairs it
    with its ``ModelCodeResult``."""

    turn_id: int
    code: str
    language: str | None = None
    code_id: str | None = None


class ModelCodeResult(Message, frozen=True, tag="model.code_result"):
    turn_id: int
    outcome: str | None  # OUTCOME_OK, OUTCOME_FAILED, OUTCOME_DEADLINE_EXCEEDED
    output: str = ""
    code_id: str | None = None


class ServerToolCalled(Message, frozen=True, tag="model.tool_call"):
    """``Part.toolCall``: the server ran one of its built-in tools (search, URL context,
    maps...) for the turn; nothing for the client to answer."""

    turn_id: int
    tool_id: str | None
    tool_type: str | None  # GOOGLE_SEARCH_WEB, URL_CONTEXT, ...
    args: dict[str, Any] = msgspec.field(default_factory=dict)


class ServerToolReturned(Message, frozen=True, tag="model.tool_response"):
    """``Part.toolResponse``: what a built-in tool the server ran returned."""

    turn_id: int
    tool_id: str | None
    tool_type: str | None
    response: dict[str, Any] = msgspec.field(default_factory=dict)


SessionEvent = (
    SessionReady
    | TurnStarted
    | ModelAudio
    | ModelText
    | GenerationCompleted
    | TurnInterrupted
    | TurnCompleted
    | TranscriptFragment
    | InterimInputTranscript
    | VoiceActivityDetected
    | ToolCallRequested
    | ToolCallsCancelled
    | ResumptionUpdated
    | GoAwayReceived
    | UsageReported
    | InteractionStatusChanged
    | GroundingReported
    | ModelCode
    | ModelCodeResult
    | ServerToolCalled
    | ServerToolReturned
)
