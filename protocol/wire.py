"""The Gemini Live wire format (``BidiGenerateContent``) as msgspec Structs, and its codec.

Field names are Python snake_case and go on the wire as lowerCamelCase; ``None`` fields are
left out; bytes travel as standard base64. Unknown fields are ignored on decode, so a newer
server does not break an older client. Free-form JSON (function arguments and responses,
JSON schemas, empty tool configs such as ``googleSearch: {}``) is kept as ``dict[str, Any]``
and never rewritten.

``encode()`` serialises any client message (wrapped under its top-level key) or a whole
``ServerMessage``. ``decode_server()`` reads what a server sends, strictly and fast.
``protocol.lenient.decode_client()`` reads what real clients send, leniently. Both check a
frame against the JSON limits (``protocol.limits``) before parsing it.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final, Literal

import msgspec

from protocol import limits
from protocol.errors import LocalProtocolError, RemoteProtocolError, validation_path

Modality = Literal["AUDIO", "TEXT", "IMAGE"]
MediaResolution = Literal[
    "MEDIA_RESOLUTION_UNSPECIFIED",
    "MEDIA_RESOLUTION_LOW",
    "MEDIA_RESOLUTION_MEDIUM",
    "MEDIA_RESOLUTION_HIGH",
]
Behavior = Literal["UNSPECIFIED", "BLOCKING", "NON_BLOCKING"]
Scheduling = Literal["SCHEDULING_UNSPECIFIED", "SILENT", "WHEN_IDLE", "INTERRUPT"]
StartSensitivity = Literal[
    "START_SENSITIVITY_UNSPECIFIED", "START_SENSITIVITY_HIGH", "START_SENSITIVITY_LOW"
]
EndSensitivity = Literal[
    "END_SENSITIVITY_UNSPECIFIED", "END_SENSITIVITY_HIGH", "END_SENSITIVITY_LOW"
]
ActivityHandling = Literal[
    "ACTIVITY_HANDLING_UNSPECIFIED", "START_OF_ACTIVITY_INTERRUPTS", "NO_INTERRUPTION"
]
TurnCoverage = Literal[
    "TURN_COVERAGE_UNSPECIFIED",
    "TURN_INCLUDES_ONLY_ACTIVITY",
    "TURN_INCLUDES_ALL_INPUT",
    "TURN_INCLUDES_AUDIO_ACTIVITY_AND_ALL_VIDEO",
]
ThinkingLevel = Literal["THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH", "XHIGH"]
TranscriptionMode = Literal["MODE_UNSPECIFIED", "VERBATIM", "SMART"]

# Enum values a server sends are kept as plain strings (a newer service may add values);
# these are the values google-genai 3.6.1 knows.
INTERACTION_STATUSES: Final = (
    "INTERACTION_STATUS_UNSPECIFIED",
    "IN_PROGRESS",
    "REQUIRES_ACTION",
    "IDLE",
)
VOICE_ACTIVITY_TYPES: Final = ("TYPE_UNSPECIFIED", "ACTIVITY_START", "ACTIVITY_END")
VAD_SIGNAL_TYPES: Final = (
    "VAD_SIGNAL_TYPE_UNSPECIFIED",
    "VAD_SIGNAL_TYPE_SOS",
    "VAD_SIGNAL_TYPE_EOS",
)
SERVICE_TIERS: Final = ("unspecified", "flex", "standard", "priority")  # lower case on the wire
TRAFFIC_TYPES: Final = (
    "TRAFFIC_TYPE_UNSPECIFIED",
    "ON_DEMAND",
    "ON_DEMAND_PRIORITY",
    "ON_DEMAND_FLEX",
    "ON_DEMAND_OFFPEAK",
    "PROVISIONED_THROUGHPUT",
)
CODE_OUTCOMES: Final = (
    "OUTCOME_UNSPECIFIED",
    "OUTCOME_OK",
    "OUTCOME_FAILED",
    "OUTCOME_DEADLINE_EXCEEDED",
)
URL_RETRIEVAL_STATUSES: Final = (
    "URL_RETRIEVAL_STATUS_UNSPECIFIED",
    "URL_RETRIEVAL_STATUS_SUCCESS",
    "URL_RETRIEVAL_STATUS_ERROR",
    "URL_RETRIEVAL_STATUS_PAYWALL",
    "URL_RETRIEVAL_STATUS_UNSAFE",
)

JsonObject = dict[str, Any]
# A Struct's field values as a tuple, in C: counting its Nones is the cheap emptiness test.
_astuple: Final = msgspec.structs.astuple


class WireStruct(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """Base of every wire Struct: camelCase names, ``None`` fields omitted."""


# --- shared content types ---------------------------------------------------------------


class Blob(WireStruct):
    mime_type: str | None = None
    data: bytes | None = None
    display_name: str | None = None


class FileData(WireStruct):
    file_uri: str | None = None
    mime_type: str | None = None
    display_name: str | None = None


class PartialArg(WireStruct):
    """One streamed piece of a function call's arguments (Vertex): the value at
    ``json_path`` (RFC 9535, e.g. ``$.city``); ``will_continue`` says more follow."""

    json_path: str | None = None
    string_value: str | None = None
    number_value: float | None = None
    bool_value: bool | None = None
    null_value: Literal["NULL_VALUE"] | None = None
    will_continue: bool | None = None


class FunctionCall(WireStruct):
    id: str | None = None  # always set on the Gemini API; Vertex may leave it out
    name: str | None = None
    args: JsonObject | None = None
    partial_args: list[PartialArg] | None = None  # Vertex: arguments streamed
    will_continue: bool | None = None  # Vertex: more partialArgs for this call follow


class FunctionResponsePart(WireStruct):
    """Media returned with a function response."""

    inline_data: Blob | None = None
    file_data: FileData | None = None


class FunctionResponse(WireStruct):
    id: str | None = None
    name: str | None = None
    response: JsonObject | None = None
    scheduling: Scheduling | None = None  # NON_BLOCKING calls only; default WHEN_IDLE
    will_continue: bool | None = None  # NON_BLOCKING calls only: more responses follow
    parts: list[FunctionResponsePart] | None = None


class ExecutableCode(WireStruct):
    """Code the model wrote and ran (the codeExecution tool); ``id`` pairs it with its
    ``CodeExecutionResult``."""

    code: str | None = None
    language: str | None = None  # "PYTHON"
    id: str | None = None


class CodeExecutionResult(WireStruct):
    outcome: str | None = None  # one of CODE_OUTCOMES
    output: str | None = None
    id: str | None = None


class ServerToolCall(WireStruct):
    """``Part.toolCall``: a built-in tool the server ran (Gemini API)."""

    id: str | None = None
    tool_type: str | None = None  # GOOGLE_SEARCH_WEB, URL_CONTEXT, ...
    args: JsonObject | None = None


class ServerToolResponse(WireStruct):
    """``Part.toolResponse``: what a built-in tool returned (Gemini API)."""

    id: str | None = None
    tool_type: str | None = None
    response: JsonObject | None = None


class Part(WireStruct):
    text: str | None = None
    inline_data: Blob | None = None
    file_data: FileData | None = None
    function_call: FunctionCall | None = None
    function_response: FunctionResponse | None = None
    thought: bool | None = None
    thought_signature: bytes | None = None
    executable_code: ExecutableCode | None = None
    code_execution_result: CodeExecutionResult | None = None
    tool_call: ServerToolCall | None = None
    tool_response: ServerToolResponse | None = None


class Content(WireStruct):
    role: str | None = None
    parts: list[Part] | None = None


# --- setup ------------------------------------------------------------------------------


class PrebuiltVoiceConfig(WireStruct):
    voice_name: str | None = None


class VoiceConfig(WireStruct):
    prebuilt_voice_config: PrebuiltVoiceConfig | None = None


class SpeakerVoiceConfig(WireStruct):
    speaker: str | None = None
    voice_config: VoiceConfig | None = None


class MultiSpeakerVoiceConfig(WireStruct):
    speaker_voice_configs: list[SpeakerVoiceConfig] | None = None  # exactly two


class SpeechConfig(WireStruct):
    voice_config: VoiceConfig | None = None
    language_code: str | None = None
    # Excludes voice_config; google-genai 3.6.1 refuses to send it to Live.
    multi_speaker_voice_config: MultiSpeakerVoiceConfig | None = None


class ThinkingConfig(WireStruct):
    thinking_budget: int | None = None
    thinking_level: ThinkingLevel | None = None
    include_thoughts: bool | None = None


class GenerationConfig(WireStruct):
    response_modalities: list[Modality] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: float | None = None
    max_output_tokens: int | None = None
    candidate_count: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    media_resolution: MediaResolution | None = None
    speech_config: SpeechConfig | None = None
    thinking_config: ThinkingConfig | None = None
    enable_affective_dialog: bool | None = None


class FunctionDeclaration(WireStruct):
    name: str
    description: str | None = None
    parameters: JsonObject | None = None
    parameters_json_schema: Any = None
    response: JsonObject | None = None
    response_json_schema: Any = None
    behavior: Behavior | None = None


class Tool(WireStruct):
    """One tool kind per object. Built-in tools' configurations are free-form JSON (the
    SDK writes their nested keys in snake_case, kept as sent)."""

    function_declarations: list[FunctionDeclaration] | None = None
    google_search: JsonObject | None = None
    google_search_retrieval: JsonObject | None = None
    code_execution: JsonObject | None = None
    url_context: JsonObject | None = None
    google_maps: JsonObject | None = None
    computer_use: JsonObject | None = None
    file_search: JsonObject | None = None  # Gemini API only
    mcp_servers: list[JsonObject] | None = None  # Gemini API only
    retrieval: JsonObject | None = None  # Vertex only
    enterprise_web_search: JsonObject | None = None  # Vertex only
    parallel_ai_search: JsonObject | None = None  # Vertex only
    exa_ai_search: JsonObject | None = None  # Vertex only


class AutomaticActivityDetection(WireStruct):
    disabled: bool | None = None
    start_of_speech_sensitivity: StartSensitivity | None = None
    end_of_speech_sensitivity: EndSensitivity | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None


class RealtimeInputConfig(WireStruct):
    automatic_activity_detection: AutomaticActivityDetection | None = None
    activity_handling: ActivityHandling | None = None
    turn_coverage: TurnCoverage | None = None


class LanguageHints(WireStruct):
    language_codes: list[str] | None = None


class AudioTranscriptionConfig(WireStruct):
    """Transcription of input or output audio; ``{}`` turns it on with the defaults."""

    language_codes: list[str] | None = None  # BCP-47 hints; none: detect the language
    custom_vocabulary: list[str] | None = None
    word_timestamp: bool | None = None  # words with their offsets
    diarization: bool | None = None  # speaker labels
    mode: TranscriptionMode | None = None  # VERBATIM (default) or SMART
    source_text: str | None = None
    language_hints: LanguageHints | None = None
    adaptation_phrases: list[str] | None = None


class SlidingWindow(WireStruct):
    target_tokens: int | None = None


class ContextWindowCompression(WireStruct):
    trigger_tokens: int | None = None
    sliding_window: SlidingWindow | None = None


class SessionResumptionConfig(WireStruct):
    handle: str | None = None
    transparent: bool | None = None


class ProactivityConfig(WireStruct):
    proactive_audio: bool | None = None
    proactive_video: bool | None = None  # a generation may follow any image; needs audio


class HistoryConfig(WireStruct):
    initial_history_in_client_content: bool | None = None


# --- client messages --------------------------------------------------------------------


class Setup(WireStruct):
    """``setup``: the first client message; fixes the configuration of the connection."""

    model: str
    generation_config: GenerationConfig | None = None
    system_instruction: Content | None = None
    tools: list[Tool] | None = None
    realtime_input_config: RealtimeInputConfig | None = None
    input_audio_transcription: AudioTranscriptionConfig | None = None
    output_audio_transcription: AudioTranscriptionConfig | None = None
    context_window_compression: ContextWindowCompression | None = None
    session_resumption: SessionResumptionConfig | None = None
    proactivity: ProactivityConfig | None = None
    history_config: HistoryConfig | None = None
    explicit_vad_signal: bool | None = None  # Vertex only (allowlisted)


class ClientContent(WireStruct):
    """``clientContent``: turns appended to the history; ``turn_complete`` starts a reply."""

    turns: list[Content] | None = None
    turn_complete: bool | None = None


class ActivityStart(WireStruct):
    pass


class ActivityEnd(WireStruct):
    pass


class RealtimeInput(WireStruct):
    """``realtimeInput``: exactly one of its fields is set (``media_chunks`` is deprecated)."""

    audio: Blob | None = None
    video: Blob | None = None
    text: str | None = None
    activity_start: ActivityStart | None = None
    activity_end: ActivityEnd | None = None
    audio_stream_end: bool | None = None
    media_chunks: list[Blob] | None = None


class ToolResponse(WireStruct):
    """``toolResponse``: answers to ``toolCall``s; the Gemini API requires each ``id``."""

    function_responses: list[FunctionResponse] | None = None


class ContextUpdateTools(WireStruct):
    tools: list[Tool] | None = None


class ContextUpdate(WireStruct):
    """``contextUpdate``: new system instruction and/or tools for the rest of the session."""

    system_instruction: Content | None = None
    tools: ContextUpdateTools | None = None


ClientMessage = Setup | ClientContent | RealtimeInput | ToolResponse | ContextUpdate


class ClientEnvelope(WireStruct):
    """One client frame: exactly one of these top-level keys is set."""

    setup: Setup | None = None
    client_content: ClientContent | None = None
    realtime_input: RealtimeInput | None = None
    tool_response: ToolResponse | None = None
    context_update: ContextUpdate | None = None


# --- server messages --------------------------------------------------------------------


class SetupComplete(WireStruct):
    session_id: str | None = None


class WordInfo(WireStruct):
    word: str | None = None
    start_offset: str | None = None  # durations from the start of the audio stream
    end_offset: str | None = None


class Transcription(WireStruct):
    text: str | None = None
    finished: bool | None = None
    language_code: str | None = None
    speaker_label: str | None = None  # with diarization: "spk_1", "spk_2"
    words: list[WordInfo] | None = None  # with wordTimestamp
    start_offset: str | None = None
    end_offset: str | None = None


class GroundingChunkWeb(WireStruct):
    uri: str | None = None
    title: str | None = None
    domain: str | None = None


class GroundingChunk(WireStruct):
    web: GroundingChunkWeb | None = None
    retrieved_context: JsonObject | None = None
    maps: JsonObject | None = None
    image: JsonObject | None = None


class Segment(WireStruct):
    start_index: int | None = None
    end_index: int | None = None
    part_index: int | None = None
    text: str | None = None


class GroundingSupport(WireStruct):
    segment: Segment | None = None
    grounding_chunk_indices: list[int] | None = None
    confidence_scores: list[float] | None = None
    rendered_parts: list[int] | None = None


class SearchEntryPoint(WireStruct):
    rendered_content: str | None = None  # HTML the terms require showing with the answer
    sdk_blob: bytes | None = None


class GroundingMetadata(WireStruct):
    """What a built-in search grounded the turn on (``googleSearch``)."""

    grounding_chunks: list[GroundingChunk] | None = None
    grounding_supports: list[GroundingSupport] | None = None
    search_entry_point: SearchEntryPoint | None = None
    web_search_queries: list[str] | None = None
    image_search_queries: list[str] | None = None
    retrieval_queries: list[str] | None = None
    retrieval_metadata: JsonObject | None = None
    source_flagging_uris: list[JsonObject] | None = None
    google_maps_widget_context_token: str | None = None


class UrlMetadata(WireStruct):
    retrieved_url: str | None = None
    url_retrieval_status: str | None = None  # one of URL_RETRIEVAL_STATUSES


class UrlContextMetadata(WireStruct):
    """Which URLs the ``urlContext`` tool fetched, and how that went."""

    url_metadata: list[UrlMetadata] | None = None


class ServerContent(WireStruct):
    model_turn: Content | None = None
    generation_complete: bool | None = None
    turn_complete: bool | None = None
    interrupted: bool | None = None
    input_transcription: Transcription | None = None
    interim_input_transcription: Transcription | None = None  # updated while the user speaks
    output_transcription: Transcription | None = None
    grounding_metadata: GroundingMetadata | None = None
    url_context_metadata: UrlContextMetadata | None = None
    turn_complete_reason: str | None = None  # NEED_MORE_INPUT, safety reasons...
    waiting_for_input: bool | None = None
    interaction_status: str | None = None  # one of INTERACTION_STATUSES; with turnComplete


class ToolCall(WireStruct):
    function_calls: list[FunctionCall] | None = None


class ToolCallCancellation(WireStruct):
    ids: list[str] | None = None


class GoAway(WireStruct):
    time_left: str | None = None


class SessionResumptionUpdate(WireStruct):
    new_handle: str | None = None
    resumable: bool | None = None
    last_consumed_client_message_index: int | None = None


class ModalityTokenCount(WireStruct):
    modality: str | None = None
    token_count: int | None = None


class UsageMetadata(WireStruct):
    """Token usage; the Gemini API says ``response*``, Vertex says ``candidates*``."""

    prompt_token_count: int | None = None
    cached_content_token_count: int | None = None
    response_token_count: int | None = None
    candidates_token_count: int | None = None
    tool_use_prompt_token_count: int | None = None
    thoughts_token_count: int | None = None
    total_token_count: int | None = None
    prompt_tokens_details: list[ModalityTokenCount] | None = None
    cache_tokens_details: list[ModalityTokenCount] | None = None
    response_tokens_details: list[ModalityTokenCount] | None = None
    candidates_tokens_details: list[ModalityTokenCount] | None = None
    tool_use_prompt_tokens_details: list[ModalityTokenCount] | None = None
    traffic_type: str | None = None  # Vertex only: one of TRAFFIC_TYPES
    service_tier: str | None = None  # Gemini API only: one of SERVICE_TIERS (lower case)

    @property
    def output_tokens(self) -> int | None:
        """Response tokens whichever name the server used for them."""
        if self.response_token_count is not None:
            return self.response_token_count
        return self.candidates_token_count


class VoiceActivity(WireStruct):
    """The service's activity detection heard the user start or stop speaking."""

    type: str | None = None  # one of VOICE_ACTIVITY_TYPES
    audio_offset: str | None = None  # a duration from the start of the audio stream


class VoiceActivityDetectionSignal(WireStruct):
    vad_signal_type: str | None = None  # one of VAD_SIGNAL_TYPES (allowlisted only)


class ServerMessage(WireStruct):
    """One server frame. Several top-level keys may be set at once."""

    setup_complete: SetupComplete | None = None
    server_content: ServerContent | None = None
    tool_call: ToolCall | None = None
    tool_call_cancellation: ToolCallCancellation | None = None
    go_away: GoAway | None = None
    session_resumption_update: SessionResumptionUpdate | None = None
    usage_metadata: UsageMetadata | None = None
    voice_activity: VoiceActivity | None = None
    voice_activity_detection_signal: VoiceActivityDetectionSignal | None = None

    def is_empty(self) -> bool:
        """True when no known top-level key is set (the SDK's receive() crashes on it)."""
        return _astuple(self).count(None) == len(self.__struct_fields__)


# --- codec ------------------------------------------------------------------------------

_ENVELOPE_KEY: Final[dict[type[WireStruct], str]] = {
    Setup: "setup",
    ClientContent: "clientContent",
    RealtimeInput: "realtimeInput",
    ToolResponse: "toolResponse",
    ContextUpdate: "contextUpdate",
}
# A client frame is its message wrapped under one key: written directly, not via an envelope.
_ENVELOPE_PREFIX: Final = {cls: b'{"' + key.encode() + b'":' for cls, key in _ENVELOPE_KEY.items()}
_REALTIME_INPUT_FIELDS: Final = RealtimeInput.__struct_fields__
_REALTIME_INPUT_PREFIX: Final = _ENVELOPE_PREFIX[RealtimeInput]

_encoder = msgspec.json.Encoder()
_server_decoder = msgspec.json.Decoder(ServerMessage, strict=False)  # int64 may be a string
# The errors msgspec raises for bad input: DecodeError (and ValidationError, a subclass),
# UnicodeError for a str frame holding a lone surrogate.
_DECODE_ERRORS: Final = (msgspec.DecodeError, UnicodeError)


def encode(message: ClientMessage | ServerMessage, *, ids_required: bool = True) -> bytes:
    """Serialise a message to its canonical JSON frame (camelCase, standard base64).

    A client message is wrapped under its top-level key (``{"realtimeInput": {...}}``); a
    ``ServerMessage`` is written as it is. Raises ``LocalProtocolError`` for a message that
    must not be sent: a ``realtimeInput`` with zero or several fields, a ``toolResponse``
    without ids (unless ``ids_required=False``: Vertex answers id-less calls by name), or
    a ``ServerMessage`` with no top-level key.
    """
    if isinstance(message, RealtimeInput):
        # Every audio chunk comes here: count the unset fields in C, name them only to fail.
        if (
            type(message) is RealtimeInput
            and len(_REALTIME_INPUT_FIELDS) - _astuple(message).count(None) == 1
        ):
            return _REALTIME_INPUT_PREFIX + _encoder.encode(message) + b"}"
        set_fields = [f for f in _REALTIME_INPUT_FIELDS if getattr(message, f) is not None]
        if len(set_fields) != 1:
            raise LocalProtocolError(
                f"realtimeInput must carry exactly one field, got {len(set_fields)}: {set_fields}",
                field="realtimeInput",
            )
        return _ENVELOPE_PREFIX[RealtimeInput] + _encoder.encode(message) + b"}"
    if isinstance(message, ServerMessage):
        if message.is_empty():
            raise LocalProtocolError("a server message needs at least one top-level key")
        return _encoder.encode(message)
    if isinstance(message, ToolResponse) and ids_required:
        for index, response in enumerate(message.function_responses or ()):
            if not response.id:
                raise LocalProtocolError(
                    "every function response needs the id of its call",
                    field=f"toolResponse.functionResponses[{index}].id",
                )
    prefix = _ENVELOPE_PREFIX.get(type(message))
    if prefix is None:
        raise LocalProtocolError(f"not a wire message: {type(message).__name__}")
    return prefix + _encoder.encode(message) + b"}"


def decode_server(frame: bytes | str) -> ServerMessage:
    """Parse one server frame (a text or binary WebSocket message of UTF-8 JSON).

    int64 values may be numbers or strings (proto3 JSON writes them as strings).
    Raises ``RemoteProtocolError`` naming the offending field for malformed JSON, values of
    the wrong type, a frame past the JSON limits (``protocol.limits``), or a frame with no
    known top-level key.
    """
    fast = _server_audio_fast_path(frame)
    if fast is not None:
        return fast
    check_json_limits(frame)
    try:
        message = _server_decoder.decode(frame)
    except msgspec.ValidationError as exc:
        raise RemoteProtocolError(
            f"invalid server message: {exc}", field=validation_path(str(exc))
        ) from exc
    except _DECODE_ERRORS as exc:  # bad UTF-8 inside a string, a lone surrogate
        raise RemoteProtocolError(f"server frame is not valid JSON: {exc}") from exc
    if message.is_empty():
        raise RemoteProtocolError("server message has no known top-level key")
    return message


# A fast path for most of a client's traffic: one chunk of model audio, exactly as the
# service (and the emulator) writes it. These Structs forbid unknown fields, so their depth
# is fixed and needs no scan; any other shape fails fast and takes the checked path.
class _AudioBlob(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    mime_type: str
    data: bytes


class _AudioPart(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    inline_data: _AudioBlob


class _AudioTurn(msgspec.Struct, forbid_unknown_fields=True):
    parts: list[_AudioPart]
    role: str | None = None


class _AudioTranscription(msgspec.Struct, forbid_unknown_fields=True):
    text: str | None = None
    finished: bool | None = None


class _AudioContent(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    model_turn: _AudioTurn
    output_transcription: _AudioTranscription | None = None


class _AudioFrame(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    server_content: _AudioContent


_audio_frame_decoder = msgspec.json.Decoder(_AudioFrame)
# Tried on frames of this size only: a failed attempt costs more than checking a small
# frame, and a frame over 1 MiB could hold more parts than the container limit allows.
_AUDIO_FAST_PATH_BYTES: Final = range(512, (1 << 20) + 1)


def _server_audio_fast_path(frame: bytes | str) -> ServerMessage | None:
    if len(frame) not in _AUDIO_FAST_PATH_BYTES:
        return None
    try:
        content = _audio_frame_decoder.decode(frame).server_content
    except _DECODE_ERRORS:
        return None
    turn = content.model_turn
    parts = []
    for part in turn.parts:
        blob = part.inline_data
        parts.append(Part(inline_data=Blob(mime_type=blob.mime_type, data=blob.data)))
    said = content.output_transcription
    return ServerMessage(
        server_content=ServerContent(
            model_turn=Content(role=turn.role, parts=parts),
            output_transcription=None
            if said is None
            else Transcription(text=said.text, finished=said.finished),
        )
    )


# A JSON string (escapes included): removed before counting brackets, which strings may hold.
_JSON_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_A_BRACKET: Final = bytes(b for b in range(256) if b not in b"[]{}")
_ONE_KIND: Final = bytes.maketrans(b"{}", b"[]")  # depth only: the parser checks the kinds


def check_json_limits(frame: bytes | str) -> None:
    """Check a frame's nesting depth and container count before it is parsed.

    Raises ``RemoteProtocolError`` past ``MAX_JSON_DEPTH`` or ``MAX_JSON_CONTAINERS``
    (``protocol.limits``), or for brackets that do not pair (the frame is not JSON). Costs
    two byte counts for a frame with few brackets; otherwise one scan of the frame.
    """
    data = frame.encode("utf-8", "surrogatepass") if isinstance(frame, str) else frame
    if data.count(b"{") + data.count(b"[") <= limits.MAX_JSON_DEPTH:
        return  # neither limit can be reached (brackets inside strings only add)
    brackets = _JSON_STRING.sub(b"", data).translate(_ONE_KIND, _NOT_A_BRACKET)
    containers = brackets.count(b"[")
    if containers > limits.MAX_JSON_CONTAINERS:
        raise RemoteProtocolError(
            f"frame holds {containers} JSON arrays and objects, over the limit of "
            f"{limits.MAX_JSON_CONTAINERS}"
        )
    # Each round removes the innermost pairs: a frame nested N deep empties in N rounds.
    for _ in range(limits.MAX_JSON_DEPTH):
        if not brackets:
            return
        inner = brackets.replace(b"[]", b"")
        if len(inner) == len(brackets):  # nothing pairs any more
            if brackets.count(b"[") <= limits.MAX_JSON_DEPTH:
                raise RemoteProtocolError("frame is not valid JSON: brackets do not pair")
            break  # more left open than the limit: too deep, whatever follows
        brackets = inner
    if brackets:
        raise RemoteProtocolError(
            f"frame nests JSON deeper than the limit of {limits.MAX_JSON_DEPTH}"
        )


def envelope_key(message: ClientMessage) -> str:
    """The camelCase top-level key a client message travels under (e.g. ``realtimeInput``)."""
    return _ENVELOPE_KEY[type(message)]


_DURATION: Final = re.compile(r"([0-9]{1,12})(\.[0-9]{1,9})?s")


def parse_duration(value: str) -> float:
    """Seconds in a protobuf JSON duration such as ``"9.500s"`` (up to 10,000 years).

    Raises ``RemoteProtocolError`` for anything else: a sign, an exponent, no unit, more
    digits than a protobuf Duration holds, or more than ``MAX_DURATION_SECONDS``.
    """
    match = _DURATION.fullmatch(value.strip())
    seconds = float(match.group(0)[:-1]) if match else math.nan
    if not seconds <= limits.MAX_DURATION_SECONDS:  # also False for NaN
        raise RemoteProtocolError(f"invalid duration {value[:40]!r}", field="timeLeft")
    return seconds


INPUT_RATE: Final = 16000  # the rate realtimeInput audio has when its mimeType names none
OUTPUT_RATE: Final = 24000  # the rate the model speaks at (serverContent inlineData)


def pcm_rate(mime_type: str, *, default: int) -> int:
    """The sample rate of an ``audio/pcm;rate=N`` mimeType, ``default`` when it names none.

    Raises ``RemoteProtocolError`` for a rate that is not a decimal number between
    ``MIN_AUDIO_RATE`` and ``MAX_AUDIO_RATE`` (``protocol.limits``).
    """
    if len(mime_type) > _PCM_RATE_CACHED_CHARS:
        return _parse_pcm_rate(mime_type, default)
    key = (mime_type, default)
    rate = _pcm_rates.get(key)
    if rate is None:
        rate = _parse_pcm_rate(mime_type, default)
        if len(_pcm_rates) >= _PCM_RATES_CACHED:
            _pcm_rates.clear()  # a peer sending ever new mimeTypes gets no cache, not memory
        _pcm_rates[key] = rate
    return rate


# The rates of short, valid mimeTypes already parsed: every audio chunk names the same one.
_pcm_rates: dict[tuple[str, int], int] = {}
_PCM_RATES_CACHED: Final = 16
_PCM_RATE_CACHED_CHARS: Final = 64


def _parse_pcm_rate(mime_type: str, default: int) -> int:
    for param in mime_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() != "rate":
            continue
        value = value.strip()
        rate = int(value) if value.isascii() and value.isdigit() and len(value) <= 6 else 0
        if not limits.MIN_AUDIO_RATE <= rate <= limits.MAX_AUDIO_RATE:
            raise RemoteProtocolError(
                f"invalid audio rate {value[:20]!r} in mimeType: use "
                f"{limits.MIN_AUDIO_RATE}-{limits.MAX_AUDIO_RATE} Hz",
                field="mimeType",
            )
        return rate
    return default


def format_duration(seconds: float) -> str:
    """The protobuf JSON form of a duration: ``9.5`` becomes ``"9.500s"``."""
    return f"{seconds:.3f}s"
