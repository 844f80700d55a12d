"""The server's side of one Gemini Live connection, sans-IO: the mirror of ``protocol.session``.

Theory. The turn state is the client's own table (``protocol.session.TRANSITIONS``) stepped
from the other end: the client's ``setup`` moves IDLE to SETUP_SENT, our ``setupComplete``
moves it to READY, and every message we send steps it exactly as the client will step it
on receipt. So a message the client would refuse is caught here, before it is written, as
our bug (``LocalProtocolError``); the tolerated oddities the real service produces (an
``interrupted`` before any content...) are allowed and counted in ``anomalies``.

``receive()`` says what a client message means (``SetupRequested``, ``AudioReceived``,
``ToolResponsesReceived``...), or raises ``ClientRejected`` with the close code the service
answers with: 1007 for a malformed, misplaced or oversized message, 1008 for an unknown
model or an unsupported option, 1000 when the session's audio allowance is used up. A
rejected message changes nothing. ``send()`` takes a server message and returns its frame.
What outlives the connection (session id, audio time, tool-call numbering) is a
``SessionRecord``, handed over by ``accept()`` when the server answers the setup.

It never does I/O, never waits and never decides *what* to say: that is the caller's
(the emulator's script player). The order of use: receive the setup, ``accept()`` it or
close, then receive and send in any order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import msgspec

from protocol import wire
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.lenient import decode_client
from protocol.session import TOLERATED, TRANSITIONS, Event, State

S, E = State, Event
INPUT_RATE: Final = 16000  # the rate audio is taken to have when its mimeType names none


class ClientRejected(RemoteProtocolError):
    """A client message the service refuses: close the connection with ``close_code``
    (1007, 1008 or 1000), the error's text being the reason."""

    def __init__(self, close_code: int, reason: str, *, field: str | None = None) -> None:
        super().__init__(reason, field=field)
        self.close_code = close_code


@dataclass(frozen=True)
class ServiceRules:
    """What the served endpoint accepts: its API and version, its models and its limits."""

    api: str = "gemini"  # or "vertex"
    version: str = "v1beta"
    models: tuple[str, ...] = ()  # model names without "models/"; empty: any
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
    text_mode: bool  # responseModalities [TEXT]; otherwise AUDIO
    activity_detection: wire.AutomaticActivityDetection | None
    automatic_activity_detection: bool
    interruptible: bool  # activityHandling is not NO_INTERRUPTION
    input_transcription: bool
    output_transcription: bool
    resumption: bool  # sessionResumption was given: send sessionResumptionUpdates
    resume_handle: str | None
    compression: bool  # contextWindowCompression lifts the session's audio limit

    @classmethod
    def from_setup(cls, setup: wire.Setup) -> SessionConfig:
        realtime = setup.realtime_input_config or wire.RealtimeInputConfig()
        detection = realtime.automatic_activity_detection
        resumption = setup.session_resumption
        return cls(
            model=setup.model.rsplit("/", 1)[-1],
            text_mode=_modalities(setup) == ["TEXT"],
            activity_detection=detection,
            automatic_activity_detection=not (detection is not None and detection.disabled),
            interruptible=realtime.activity_handling != "NO_INTERRUPTION",
            input_transcription=setup.input_audio_transcription is not None,
            output_transcription=setup.output_audio_transcription is not None,
            resumption=resumption is not None,
            resume_handle=(resumption.handle or None) if resumption is not None else None,
            compression=setup.context_window_compression is not None,
        )


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


# --- what client messages mean -------------------------------------------------------------


class SetupRequested(msgspec.Struct, frozen=True, gc=False):
    config: SessionConfig


class AudioReceived(msgspec.Struct, frozen=True, gc=False):
    data: bytes
    rate: int  # from the mimeType; audio time is still counted at 16 kHz


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


class ToolResponsesReceived(msgspec.Struct, frozen=True, gc=False):
    answered: tuple[str, ...]  # calls now complete (a willContinue response keeps one open)
    responses: tuple[wire.FunctionResponse, ...]  # every response to a pending call


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

    def __init__(self, rules: ServiceRules) -> None:
        self.rules = rules
        self.state = State.IDLE
        self.config: SessionConfig | None = None
        self.record: SessionRecord | None = None
        self.messages_received = 0  # client messages taken, setup included
        self.messages_sent = 0
        self.anomalies = 0  # tolerated oddities we sent (as the real service does)
        self._pending: dict[str, str] = {}  # call id -> name: issued here, not yet answered
        self._mime_type = ""  # the last audio mimeType and its rate, parsed once
        self._rate = INPUT_RATE
        self._input_allowed = False  # the table's (state, SEND_INPUT), kept with the state

    @property
    def pending_calls(self) -> tuple[str, ...]:
        """Tool calls sent on this connection and not answered (nor cancelled), in order."""
        return tuple(self._pending)

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
        config = SessionConfig.from_setup(setup)
        self._check_setup(setup, config)
        self.config = config
        self.state = TRANSITIONS[(self.state, E.SEND_SETUP)]
        self._input_allowed = (self.state, E.SEND_INPUT) in TRANSITIONS
        return SetupRequested(config)

    def _check_setup(self, setup: wire.Setup, config: SessionConfig) -> None:
        rules = self.rules
        if not config.model or (rules.models and config.model not in rules.models):
            raise ClientRejected(
                1008,
                f"models/{config.model[:60]} is not found for API version {rules.version}, "
                "or is not supported for bidiGenerateContent.",
                field="setup.model",
            )
        modalities = _modalities(setup)
        if len(modalities) != 1 or modalities[0] not in ("AUDIO", "TEXT"):
            raise ClientRejected(
                1008,
                f"unsupported responseModalities {modalities[:3]}: use one of AUDIO or TEXT",
                field="setup.generationConfig.responseModalities",
            )
        resumption = setup.session_resumption
        if resumption is not None and resumption.transparent and rules.api != "vertex":
            raise ClientRejected(
                1008,
                "transparent session resumption is only supported on Vertex AI",
                field="setup.sessionResumption.transparent",
            )

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
            return VideoReceived()
        if message.text is not None:
            self._check_text(message.text, "realtimeInput.text")
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
            self._mime_type = mime_type
        record = self._live_record()
        data = blob.data or b""
        seconds = record.audio_seconds + len(data) / (2 * INPUT_RATE)
        if seconds > self.rules.session_audio_limit_s or record.video_seen:
            self._check_audio_allowance(record, seconds)
        record.audio_seconds = seconds
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
        turns = []
        for index, content in enumerate(contents):
            text = " ".join(part.text for part in content.parts or () if part.text)
            self._check_text(text, f"clientContent.turns[{index}]")
            turns.append((content.role or "user", text))
        return ContentReceived(tuple(turns), bool(message.turn_complete))

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
        for index, response in enumerate(responses):
            call_id = response.id or ""
            # Calls issued on an earlier connection of the session are answered late after
            # a reconnect, and answers may follow a cancellation: accepted and ignored.
            if call_id not in self._pending and not record.issued(call_id):
                raise ClientRejected(
                    1007,
                    f"toolResponse.functionResponses[{index}].id {call_id[:60]!r} "
                    "matches no pending call",
                    field=f"toolResponse.functionResponses[{index}].id",
                )
        kept = [r for r in responses if (r.id or "") in self._pending]
        answered: list[str] = []
        for response in kept:
            call_id = response.id or ""
            if not response.will_continue and call_id in self._pending:
                del self._pending[call_id]
                answered.append(call_id)
        return ToolResponsesReceived(tuple(answered), tuple(kept))

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
