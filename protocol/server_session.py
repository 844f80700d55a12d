"""The server's side of one Gemini Live connection, sans-IO: the mirror of ``protocol.session``.

Theory. The turn state is the client's own table (``protocol.session.TRANSITIONS``) stepped
from the other end: the client's ``setup`` moves IDLE to SETUP_SENT, our ``setupComplete``
moves it to READY, and every message we send steps it exactly as the client will step it
on receipt. So a message the client would refuse is caught here, before it is written, as
our bug (``LocalProtocolError``); the tolerated oddities the real service produces (an
``interrupted`` before any content...) are allowed and counted in ``anomalies``.

``receive()`` says what a client message means (``SetupRequested``, ``AudioReceived``,
``ToolResponsesReceived``...), or raises ``ClientRejected`` with the close code the service
answers with: 1007 for a malformed, misplaced or oversized message or one the model's
family refuses (``protocol.models``), 1008 for an unknown model or an unsupported option,
1000 when the session's audio allowance is used up. A rejected message changes nothing.
``send()`` takes a server message and returns its frame. What outlives the connection
(session id, audio time, tool-call numbering) is a ``SessionRecord``, handed over by
``accept()`` when the server answers the setup.

It never does I/O, never waits and never decides *what* to say: that is the caller's
(the emulator's script player). The order of use: receive the setup, ``accept()`` it or
close, then receive and send in any order.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import msgspec

from protocol import models, wire
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.lenient import decode_client
from protocol.models import INVALID_ARGUMENT, ModelFamily
from protocol.session import TOLERATED, TRANSITIONS, Event, State

S, E = State, Event
INPUT_RATE: Final = wire.INPUT_RATE  # the rate audio is taken to have when its mimeType names none


class ClientRejected(RemoteProtocolError):
    """A client message the service refuses: close the connection with ``close_code``
    (1007, 1008 or 1000), the error's text being the reason."""

    def __init__(self, close_code: int, reason: str, *, field: str | None = None) -> None:
        super().__init__(reason, field=field)
        self.close_code = close_code


@dataclass(frozen=True)
class ServiceRules:
    """What the served endpoint accepts: its API and version, its models and its limits."""

    api: models.Api = "gemini"  # or "vertex"
    version: str = "v1beta"
    # Names (or fnmatch patterns) served besides protocol.models.KNOWN_MODELS, with the
    # rules of the closest family; a listed retired name is served too.
    models: tuple[str, ...] = ()
    # Any other name: "plausible" serves gemini-*live* and gemini-*native-audio* names
    # with the closest family's rules and refuses the rest (1008); "refuse" refuses
    # every one; "any" serves every one.
    unknown_models: Literal["plausible", "refuse", "any"] = "plausible"
    families: Mapping[str, ModelFamily] = field(default_factory=lambda: dict(models.FAMILIES))
    transparent_on_gemini_api: bool = False  # the SDK refuses it there; the server too
    omit_call_ids: bool = False  # Vertex: tool calls go out without ids, as Vertex may
    session_audio_limit_s: float = 900.0  # without contextWindowCompression
    session_audio_video_limit_s: float = 120.0  # ... once video was sent
    max_text_chars: int = 32_768  # one realtimeInput.text, or one clientContent turn
    max_content_turns: int = 1_000  # turns in one clientContent
    max_function_responses: int = 128  # functionResponses in one toolResponse
    max_server_message_bytes: int = 1 << 20  # the SDK's client refuses larger frames


@dataclass(frozen=True)
class SessionConfig:
    """What a connection's setup asked for, as the server uses it (the setup itself is not
    kept: it may be large, and every field the server acts on is here)."""

    model: str
    family: ModelFamily
    text_mode: bool  # responseModalities [TEXT]; otherwise AUDIO
    activity_detection: wire.AutomaticActivityDetection | None
    automatic_activity_detection: bool
    interruptible: bool  # activityHandling is not NO_INTERRUPTION
    input_transcription: bool
    output_transcription: bool
    resumption: bool  # sessionResumption was given: send sessionResumptionUpdates
    resume_handle: str | None
    transparent: bool  # send lastConsumedClientMessageIndex with resumption updates
    compression: bool  # contextWindowCompression lifts the session's audio limit
    history_seed: bool  # historyConfig: the first clientContent is history, not a turn
    behaviors: Mapping[str, str]  # declared function -> its behavior (or the default)
    builtin_tools: frozenset[str]  # declared built-in tools: "googleSearch", ...

    @classmethod
    def from_setup(
        cls, setup: wire.Setup, family: ModelFamily = models.FAMILIES["2.5"]
    ) -> SessionConfig:
        realtime = setup.realtime_input_config or wire.RealtimeInputConfig()
        detection = realtime.automatic_activity_detection
        resumption = setup.session_resumption
        history = setup.history_config
        behaviors: dict[str, str] = {}
        builtin: set[str] = set()
        for tool in setup.tools or ():
            for declaration in tool.function_declarations or ():
                behavior = declaration.behavior
                if behavior is None or behavior == "UNSPECIFIED":
                    behavior = family.default_tool_behavior
                behaviors[declaration.name] = behavior
            builtin.update(
                name for name, value in _BUILTIN_TOOLS.items() if getattr(tool, value) is not None
            )
        return cls(
            model=models.model_id(setup.model),
            family=family,
            text_mode=_modalities(setup) == ["TEXT"],
            activity_detection=detection,
            automatic_activity_detection=not (detection is not None and detection.disabled),
            interruptible=realtime.activity_handling != "NO_INTERRUPTION",
            input_transcription=setup.input_audio_transcription is not None,
            output_transcription=setup.output_audio_transcription is not None,
            resumption=resumption is not None,
            resume_handle=(resumption.handle or None) if resumption is not None else None,
            transparent=bool(resumption is not None and resumption.transparent),
            compression=setup.context_window_compression is not None,
            history_seed=bool(
                family.history_config
                and history is not None
                and history.initial_history_in_client_content
            ),
            behaviors=behaviors,
            builtin_tools=frozenset(builtin),
        )

    def non_blocking(self, function: str) -> bool:
        """Whether calls of ``function`` run NON_BLOCKING (declared, or the family's
        default for an undeclared one)."""
        behavior = self.behaviors.get(function, self.family.default_tool_behavior)
        return behavior == "NON_BLOCKING"


# Built-in tools the emulated models can use: wire name -> wire.Tool field.
_BUILTIN_TOOLS: Final = {
    "googleSearch": "google_search",
    "codeExecution": "code_execution",
    "urlContext": "url_context",
}


@dataclass
class SessionRecord:
    """What a session keeps across its connections, as far as the protocol is concerned."""

    session_id: str
    audio_seconds: float = 0.0  # counted against the session's audio limit
    video_seen: bool = False  # the lower audio+video limit applies from then on
    calls_issued: int = 0

    def new_call_id(self) -> str:
        """A fresh tool-call id, unique in this session."""
        self.calls_issued += 1
        return f"call-{self.session_id}-{self.calls_issued}"

    def issued(self, call_id: str) -> bool:
        """Whether this session issued ``call_id`` (on any of its connections)."""
        prefix = f"call-{self.session_id}-"
        number = call_id[len(prefix) :] if call_id.startswith(prefix) else ""
        return number.isascii() and number.isdigit() and 0 < int(number) <= self.calls_issued


@dataclass(frozen=True)
class SetupConstraints:
    """What an ephemeral token locks: its setup (a ``bidiGenerateContentSetup``) and the
    fields locked. No ``field_mask``: the token's whole setup replaces the client's."""

    setup: wire.Setup
    field_mask: tuple[str, ...] | None = None


def constrained_setup(client: wire.Setup, constraints: SetupConstraints) -> wire.Setup:
    """The setup a token's user gets: the client's, with the locked fields the token's.

    As google-genai documents it: without a field mask everything the token sets applies
    and the client's own configuration is ignored; with one, each listed path (camelCase,
    dotted: ``generationConfig.temperature``) takes the token's value (or is cleared when
    the token has none). The resumption handle is always the client's: resuming is how a
    token's session goes on. Raises ``ClientRejected`` (1007) for a setup that is no
    longer valid once merged.
    """
    ours: dict[str, Any] = msgspec.to_builtins(client)
    locked: dict[str, Any] = msgspec.to_builtins(constraints.setup)
    handle = client.session_resumption.handle if client.session_resumption else None
    if constraints.field_mask is None:
        merged = {**locked, "model": locked.get("model") or ours["model"]}
        if "sessionResumption" in ours and "sessionResumption" not in merged:
            merged["sessionResumption"] = ours["sessionResumption"]
    else:
        merged = ours
        for path in constraints.field_mask:
            _copy_path(locked, merged, [key for key in path.strip().split(".") if key])
    if handle is not None:
        merged.setdefault("sessionResumption", {})["handle"] = handle
    try:
        return msgspec.convert(merged, wire.Setup)
    except msgspec.ValidationError as exc:
        raise ClientRejected(1007, f"{INVALID_ARGUMENT} {exc}", field="setup") from exc


def _copy_path(source: dict[str, Any], target: dict[str, Any], keys: list[str]) -> None:
    """Make ``target`` hold what ``source`` holds at the path ``keys`` (nothing if it
    holds nothing there)."""
    if not keys:
        return
    key, rest = keys[0], keys[1:]
    if not rest:
        if key in source:
            target[key] = source[key]
        else:
            target.pop(key, None)
        return
    below = source.get(key)
    below = below if isinstance(below, dict) else {}
    child = target.get(key)
    if not isinstance(child, dict):
        if not below:
            return  # nothing there on either side
        child = target[key] = {}
    _copy_path(below, child, rest)


# --- what client messages mean -------------------------------------------------------------


class SetupRequested(msgspec.Struct, frozen=True, gc=False):
    config: SessionConfig


class AudioReceived(msgspec.Struct, frozen=True, gc=False):
    data: bytes
    rate: int  # from the mimeType (16 kHz when it names none); audio time counts at it


class VideoReceived(msgspec.Struct, frozen=True, gc=False):
    pass


class TextReceived(msgspec.Struct, frozen=True, gc=False):
    text: str


class ActivityStarted(msgspec.Struct, frozen=True, gc=False):
    pass


class ActivityEnded(msgspec.Struct, frozen=True, gc=False):
    pass


class AudioStreamEnded(msgspec.Struct, frozen=True, gc=False):
    pass


class ContentReceived(msgspec.Struct, frozen=True, gc=False):
    turns: tuple[tuple[str, str], ...]  # (role, text) of each turn, in order
    turn_complete: bool
    history_only: bool = False  # initial history (historyConfig): it starts no reply


class ToolResponsesReceived(msgspec.Struct, frozen=True, gc=False):
    answered: tuple[str, ...]  # calls now complete (a willContinue response keeps one open)
    responses: tuple[wire.FunctionResponse, ...]  # every response to a pending call
    # Responses to calls of an earlier connection of the session (after a resume): not
    # pending here, but a NON_BLOCKING call's result may still be spoken about.
    late: tuple[wire.FunctionResponse, ...] = ()


class ContextUpdated(msgspec.Struct, frozen=True, gc=False):
    update: wire.ContextUpdate


ClientEvent = (
    SetupRequested
    | AudioReceived
    | VideoReceived
    | TextReceived
    | ActivityStarted
    | ActivityEnded
    | AudioStreamEnded
    | ContentReceived
    | ToolResponsesReceived
    | ContextUpdated
)


class ServerSession:
    """One connection's protocol state, from the server's side (see the module docstring)."""

    def __init__(self, rules: ServiceRules, constraints: SetupConstraints | None = None) -> None:
        self.rules = rules
        self.constraints = constraints  # an ephemeral token's locked setup, if any
        self.state = State.IDLE
        self.config: SessionConfig | None = None
        self.record: SessionRecord | None = None
        self.messages_received = 0  # client messages taken, setup included
        self.messages_sent = 0
        self.anomalies = 0  # tolerated oddities we sent (as the real service does)
        self.seeding = False  # historyConfig: initial history is still being received
        self._pending: dict[str, str] = {}  # call id -> name: issued here, not yet answered
        self._ids_sent = True  # False: calls went out without ids (omit_call_ids, Vertex)
        self._mime_type = ""  # the last audio mimeType and its rate, parsed once
        self._rate = INPUT_RATE
        self._bytes_per_second = 2 * INPUT_RATE
        self._input_allowed = False  # the table's (state, SEND_INPUT), kept with the state

    @property
    def pending_calls(self) -> tuple[str, ...]:
        """Tool calls sent on this connection and not answered (nor cancelled), in order."""
        return tuple(self._pending)

    @property
    def cancellable_calls(self) -> tuple[str, ...]:
        """Pending calls the client knows by id (a toolCallCancellation may name them)."""
        return tuple(self._pending) if self._ids_sent else ()

    @property
    def last_consumed_index(self) -> int:
        """``lastConsumedClientMessageIndex``: the index of the last client message taken
        on this connection; the setup is 0, the next message 1."""
        return self.messages_received - 1

    def forget_calls(self, call_ids: Sequence[str]) -> None:
        """Stop waiting for these calls' responses (cancelled without telling the client,
        as calls without ids must be); a late response to one is ignored."""
        for call_id in call_ids:
            self._pending.pop(call_id, None)

    # --- incoming -------------------------------------------------------------------

    def receive_frame(self, frame: bytes | str) -> ClientEvent | None:
        """Decode a client frame leniently and apply it; see ``receive``."""
        try:
            message = decode_client(frame)
        except RemoteProtocolError as exc:
            raise ClientRejected(1007, f"Invalid client message: {exc}", field=exc.field) from exc
        return self.receive(message)

    def receive(self, message: wire.ClientMessage) -> ClientEvent | None:
        """What ``message`` means, or None for one that means nothing (an empty input).

        Raises ``ClientRejected`` (nothing changed) for a message the service refuses.
        """
        event: ClientEvent | None
        if type(message) is wire.RealtimeInput and message.audio and self._input_allowed:
            event = self._on_audio(message.audio)  # almost every message: first
        elif isinstance(message, wire.Setup):
            event = self._on_setup(message)
        else:
            self._check_input_allowed(message)
            if isinstance(message, wire.RealtimeInput):
                event = self._on_realtime_input(message)
            elif isinstance(message, wire.ClientContent):
                event = self._on_client_content(message)
            elif isinstance(message, wire.ToolResponse):
                event = self._on_tool_response(message)
            else:
                event = ContextUpdated(message)
        self.messages_received += 1
        return event

    def _check_input_allowed(self, message: wire.ClientMessage) -> None:
        if self._input_allowed:
            return
        key = wire.envelope_key(message)
        if self.state is S.IDLE:
            raise ClientRejected(1007, f"the first message must be setup, not {key}")
        raise ClientRejected(1007, f"{key} before setupComplete")

    def _on_setup(self, setup: wire.Setup) -> SetupRequested:
        if TRANSITIONS.get((self.state, E.SEND_SETUP)) is None:
            raise ClientRejected(1007, "setup must be the first message and is sent once")
        if self.constraints is not None:
            setup = constrained_setup(setup, self.constraints)
        family = self._family(setup.model)
        config = SessionConfig.from_setup(setup, family)
        self._check_setup(setup, config)
        self.config = config
        self.seeding = config.history_seed
        self.state = TRANSITIONS[(self.state, E.SEND_SETUP)]
        self._input_allowed = (self.state, E.SEND_INPUT) in TRANSITIONS
        return SetupRequested(config)

    def _family(self, model: str) -> ModelFamily:
        """The family whose rules ``model`` is served with; ``ClientRejected`` (1008, the
        service's words) for a name this endpoint does not serve."""
        rules, name = self.rules, models.model_id(model)
        known = models.family_of(name, rules.api)
        if known is not None:
            return rules.families.get(known.name, known)
        listed = any(fnmatch.fnmatchcase(name, pattern) for pattern in rules.models)
        unknown = name not in models.KNOWN_MODELS and name not in models.RETIRED_MODELS
        served = name and (
            listed
            or (unknown and rules.unknown_models == "any")
            or (
                unknown
                and rules.unknown_models == "plausible"
                and models.looks_like_live_model(name)
            )
        )
        if not served:
            raise ClientRejected(
                1008,
                f"models/{name[:60]} is not found for API version {rules.version}, "
                "or is not supported for bidiGenerateContent.",
                field="setup.model",
            )
        known_elsewhere = models.KNOWN_MODELS.get(name)
        family = (
            models.FAMILIES[known_elsewhere[0]]
            if known_elsewhere is not None
            else models.closest_family(name)
        )
        return rules.families.get(family.name, family)

    def _check_setup(self, setup: wire.Setup, config: SessionConfig) -> None:
        rules = self.rules
        modalities = _modalities(setup)
        if len(modalities) != 1 or modalities[0] not in ("AUDIO", "TEXT"):
            raise ClientRejected(
                1008,
                f"unsupported responseModalities {modalities[:3]}: use one of AUDIO or TEXT",
                field="setup.generationConfig.responseModalities",
            )
        resumption = setup.session_resumption
        if (
            resumption is not None
            and resumption.transparent
            and rules.api != "vertex"
            and not rules.transparent_on_gemini_api
        ):
            raise ClientRejected(
                1008,
                "transparent session resumption is only supported on Vertex AI",
                field="setup.sessionResumption.transparent",
            )
        problem = models.setup_problem(setup, config.family, rules.api)
        if problem is not None:
            raise ClientRejected(problem.code, problem.reason, field=problem.field)

    def _on_realtime_input(self, message: wire.RealtimeInput) -> ClientEvent | None:
        audio = message.audio
        if audio is None and message.media_chunks:
            # The deprecated list: its first audio chunk counts, and any image is video.
            chunks = message.media_chunks
            audio = next((b for b in chunks if (b.mime_type or "").startswith("audio/")), None)
            if any((b.mime_type or "").startswith("image/") for b in chunks):
                self._live_record().video_seen = True
        if audio is not None:
            return self._on_audio(audio)
        if message.video is not None:
            self._live_record().video_seen = True
            self.seeding = False
            return VideoReceived()
        if message.text is not None:
            self._check_text(message.text, "realtimeInput.text")
            self.seeding = False
            return TextReceived(message.text)
        automatic = self._live_config().automatic_activity_detection
        if message.activity_start is not None or message.activity_end is not None:
            name = "activityStart" if message.activity_start is not None else "activityEnd"
            if automatic:
                raise ClientRejected(
                    1007,
                    f"{name} needs automatic activity detection disabled",
                    field=f"realtimeInput.{name}",
                )
            return ActivityStarted() if message.activity_start is not None else ActivityEnded()
        if message.audio_stream_end and automatic:
            return AudioStreamEnded()
        return None

    def _on_audio(self, blob: wire.Blob) -> AudioReceived:
        """The hot path (every 20 ms of a session): checks first, then one update."""
        mime_type = blob.mime_type or ""
        if mime_type != self._mime_type:
            self._rate = self._audio_rate(mime_type)
            self._bytes_per_second = 2 * self._rate
            self._mime_type = mime_type
        record = self._live_record()
        data = blob.data or b""
        seconds = record.audio_seconds + len(data) / self._bytes_per_second
        if seconds > self.rules.session_audio_limit_s or record.video_seen:
            self._check_audio_allowance(record, seconds)
        record.audio_seconds = seconds
        self.seeding = False  # realtime input ends the initial history
        return AudioReceived(data, self._rate)

    def _check_audio_allowance(self, record: SessionRecord, seconds: float) -> None:
        rules = self.rules
        limit = (
            rules.session_audio_video_limit_s if record.video_seen else rules.session_audio_limit_s
        )
        if seconds > limit and not self._live_config().compression:
            raise ClientRejected(
                1000, "session length limit reached; enable contextWindowCompression"
            )

    def _audio_rate(self, mime_type: str) -> int:
        if not mime_type.startswith("audio/pcm"):
            raise ClientRejected(
                1007,
                f"unsupported audio mimeType {mime_type[:40]!r}: send audio/pcm;rate=16000",
                field="realtimeInput.audio.mimeType",
            )
        try:
            return wire.pcm_rate(mime_type, default=INPUT_RATE)
        except RemoteProtocolError as exc:
            raise ClientRejected(1007, str(exc), field="realtimeInput.audio.mimeType") from exc

    def _on_client_content(self, message: wire.ClientContent) -> ContentReceived:
        contents = message.turns or ()
        if len(contents) > self.rules.max_content_turns:
            raise ClientRejected(
                1007,
                f"clientContent has {len(contents)} turns, over the limit of "
                f"{self.rules.max_content_turns}",
                field="clientContent.turns",
            )
        config = self._live_config()
        turns = []
        for index, content in enumerate(contents):
            where = f"clientContent.turns[{index}]"
            text = " ".join(part.text for part in content.parts or () if part.text)
            self._check_text(text, where)
            role = self._content_role(content, config, where)
            if self.seeding and any(
                p.function_call or p.function_response for p in content.parts or ()
            ):
                raise ClientRejected(
                    1007,
                    f"{INVALID_ARGUMENT} initial history cannot hold function calls or responses",
                    field=f"{where}.parts",
                )
            if role != "system":  # Vertex: a new system instruction, not a turn
                turns.append((role, text))
        turn_complete = bool(message.turn_complete)
        if (
            turn_complete
            and not self.seeding
            and config.family.seed_ends_with_user
            and turns
            and turns[-1][0] == "model"
        ):
            raise ClientRejected(
                1007,
                f"{INVALID_ARGUMENT} the last turn must be the user's when turnComplete is set",
                field=f"clientContent.turns[{len(contents) - 1}].role",
            )
        history_only = self.seeding
        if turn_complete:
            self.seeding = False
        return ContentReceived(tuple(turns), turn_complete, history_only)

    def _content_role(self, content: wire.Content, config: SessionConfig, where: str) -> str:
        role = content.role
        if role is None and not config.family.content_role_required:
            return "user"
        if role in ("user", "model") or (role == "system" and self.rules.api == "vertex"):
            return role
        raise ClientRejected(
            1007,
            f"{INVALID_ARGUMENT} a turn's role must be user or model, not {str(role)[:20]!r}",
            field=f"{where}.role",
        )

    def _on_tool_response(self, message: wire.ToolResponse) -> ToolResponsesReceived:
        responses = message.function_responses or ()
        if len(responses) > self.rules.max_function_responses:
            raise ClientRejected(
                1007,
                f"toolResponse has {len(responses)} functionResponses, over the limit of "
                f"{self.rules.max_function_responses}",
                field="toolResponse.functionResponses",
            )
        record = self._live_record()
        vertex = self.rules.api == "vertex"
        named: list[wire.FunctionResponse] = []  # id-less Vertex responses, matched by name
        taken: set[str] = set()
        for index, response in enumerate(responses):
            call_id = response.id or ""
            if not call_id and vertex:
                # google-genai lets a Vertex response go without an id: it answers the
                # oldest pending call of that name (none: a late answer, ignored).
                match = next(
                    (i for i, n in self._pending.items() if n == response.name and i not in taken),
                    None,
                )
                if match is not None:
                    taken.add(match)
                    named.append(msgspec.structs.replace(response, id=match))
                continue
            # Calls issued on an earlier connection of the session are answered late after
            # a reconnect, and answers may follow a cancellation: accepted and ignored.
            if call_id not in self._pending and not record.issued(call_id):
                raise ClientRejected(
                    1007,
                    f"toolResponse.functionResponses[{index}].id {call_id[:60]!r} "
                    "matches no pending call",
                    field=f"toolResponse.functionResponses[{index}].id",
                )
        kept = [r for r in responses if r.id and r.id in self._pending] + named
        late = tuple(r for r in responses if r.id and r.id not in self._pending)
        answered: list[str] = []
        for response in kept:
            call_id = response.id or ""
            if not response.will_continue and call_id in self._pending:
                del self._pending[call_id]
                answered.append(call_id)
        return ToolResponsesReceived(tuple(answered), tuple(kept), late)

    def _check_text(self, text: str, where: str) -> None:
        if len(text) > self.rules.max_text_chars:
            raise ClientRejected(
                1007,
                f"{where} has {len(text)} characters, over the limit of "
                f"{self.rules.max_text_chars}",
                field=where,
            )

    # --- outgoing -------------------------------------------------------------------

    def accept(self, record: SessionRecord) -> bytes:
        """Answer the received setup: the ``setupComplete`` frame, for ``record``'s session
        (new, or resumed from a handle). Raises ``LocalProtocolError`` without a setup."""
        if self.state is not S.SETUP_SENT:
            raise LocalProtocolError(f"accept() needs a setup to answer, in state {self.state}")
        self.record = record
        return self.send(
            wire.ServerMessage(setup_complete=wire.SetupComplete(session_id=record.session_id))
        )

    def send(self, message: wire.ServerMessage) -> bytes:
        """Check ``message`` against the turn state, record it, and return its frame.

        Raises ``LocalProtocolError`` (nothing changed) for a message the client must
        refuse: out of turn order, a tool call reusing a pending id, or a frame over
        ``max_server_message_bytes``.
        """
        frame = wire.encode(message)
        if len(frame) > self.rules.max_server_message_bytes:
            raise LocalProtocolError(
                f"a {len(frame)}-byte server message, over the "
                f"{self.rules.max_server_message_bytes / 2**20:g} MiB clients accept"
            )
        state, anomalies = self.state, 0
        for event, what in server_message_events(message):
            next_state = TRANSITIONS.get((state, event))
            if next_state is not None:
                state = next_state
            elif (state, event) in TOLERATED:
                anomalies += 1
            else:
                raise LocalProtocolError(f"cannot send {what} in state {state.value}", field=what)
        if message.tool_call is not None:
            calls = message.tool_call.function_calls or []
            self._check_calls(calls)
            self._pending.update((call.id or "", call.name or "") for call in calls)
            if self.rules.omit_call_ids and self.rules.api == "vertex":
                # Vertex may send calls without ids: the client answers them by name.
                self._ids_sent = False
                bare = [msgspec.structs.replace(call, id=None) for call in calls]
                frame = wire.encode(
                    msgspec.structs.replace(message, tool_call=wire.ToolCall(function_calls=bare))
                )
        if message.tool_call_cancellation is not None:
            for call_id in message.tool_call_cancellation.ids or ():
                self._pending.pop(call_id, None)
        if state is not self.state:
            self.state = state
            self._input_allowed = (state, E.SEND_INPUT) in TRANSITIONS
        self.anomalies += anomalies
        self.messages_sent += 1
        return frame

    def _check_calls(self, calls: Sequence[wire.FunctionCall]) -> None:
        ids = [call.id for call in calls]
        for index, call in enumerate(calls):
            where = f"toolCall.functionCalls[{index}]"
            if not call.id or not call.name:
                raise LocalProtocolError("a function call needs an id and a name", field=where)
            if call.id in self._pending or ids.count(call.id) > 1:
                raise LocalProtocolError(f"tool call id {call.id!r} reused", field=f"{where}.id")

    def _live_config(self) -> SessionConfig:
        if self.config is None:  # _check_input_allowed lets no input in before the setup
            raise LocalProtocolError("no setup received")
        return self.config

    def _live_record(self) -> SessionRecord:
        if self.record is None:  # input is allowed only once accept() attached the record
            raise LocalProtocolError("no session accepted")
        return self.record


# Top-level fields that step the table as INFO, in LiveSession.receive's order.
_INFO_FIELDS: Final = (
    "session_resumption_update",
    "go_away",
    "voice_activity",
    "voice_activity_detection_signal",
    "tool_call_cancellation",
)


def server_message_events(message: wire.ServerMessage) -> list[tuple[Event, str]]:
    """The turn-table events a server message carries, in the order
    ``protocol.session.LiveSession.receive`` applies them (tests check the two agree)."""
    events: list[tuple[Event, str]] = []
    if message.setup_complete is not None:
        events.append((E.SETUP_COMPLETE, "setupComplete"))
    for name in _INFO_FIELDS:
        if getattr(message, name) is not None:
            events.append((E.INFO, name))
    content = message.server_content
    if content is not None:
        if content.interim_input_transcription is not None:
            events.append((E.INFO, "interimInputTranscription"))
        if content.input_transcription is not None:
            events.append((E.INFO, "inputTranscription"))
        if content.model_turn is not None and content.model_turn.parts:
            events.append((E.CONTENT, "serverContent.modelTurn"))
        said = content.output_transcription
        if said is not None and (said.text or said.finished):
            events.append((E.CONTENT, "serverContent.outputTranscription"))
        if content.generation_complete:
            events.append((E.GENERATION_COMPLETE, "generationComplete"))
        if content.interrupted:
            events.append((E.INTERRUPTED, "interrupted"))
        if content.turn_complete:
            events.append((E.TURN_COMPLETE, "turnComplete"))
    if message.tool_call is not None and message.tool_call.function_calls:
        events.append((E.CONTENT, "toolCall"))
    if message.usage_metadata is not None:
        events.append((E.INFO, "usageMetadata"))
    return events


def _modalities(setup: wire.Setup) -> list[str]:
    config = setup.generation_config or wire.GenerationConfig()
    return list(config.response_modalities or ["AUDIO"])
