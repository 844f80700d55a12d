"""A sans-IO state machine of one Gemini Live session (in the style of h11).

Theory. A connection starts IDLE; sending ``setup`` moves it to SETUP_SENT and
``setupComplete`` to READY. Model output comes in turns: the first piece of content (model
parts, an output transcription or a tool call) opens a turn (MODEL_TURN);
``generationComplete`` ends its output (GENERATION_DONE); ``turnComplete`` ends it (READY).
``interrupted`` ends output early (INTERRUPTED): anything still arriving for that turn is
stale and dropped until its ``turnComplete``. The whole table is ``TRANSITIONS`` below: a
pair (state, event) maps to the next state, and a pair that is missing is illegal, except
for the tolerated oddities listed in ``TOLERATED`` (counted in ``anomalies``, since real
servers do send them and killing a session over them helps nobody). The table does not
know which end it serves: ``protocol.server_session`` steps the same one from the server's
side, so what a server may send is exactly what this client accepts.

Alongside the turn state it tracks what outlives a turn: tool calls awaiting their one
response, the latest resumption handle, the goAway notice and token usage. It never does
I/O: ``send()`` takes a wire message and returns the frame to write; ``receive_frame()``
takes a frame and returns the internal messages it means. The service transcribes audio
only: when the setup asks for input transcription, what the user typed is reported here
as the user's transcript of the turn it starts (a ``TranscriptFragment`` right after its
``TurnStarted``). Frames received after a
connection is lost belong to the next connection: call ``connection_lost()`` first.
"""

from __future__ import annotations

import collections
import enum
import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from protocol import events as m
from protocol import limits, wire
from protocol.errors import LocalProtocolError, RemoteProtocolError


class State(enum.Enum):
    IDLE = "idle"
    SETUP_SENT = "setup_sent"
    READY = "ready"
    MODEL_TURN = "model_turn"
    GENERATION_DONE = "generation_done"
    INTERRUPTED = "interrupted"

    # Members are singletons compared by identity: hash them as such, in C. (Enum's own
    # __hash__ is Python code, run twice for every table lookup, on every message.)
    __hash__ = object.__hash__


class Event(enum.Enum):
    SEND_SETUP = "send setup"
    SEND_INPUT = "send input"
    SETUP_COMPLETE = "setupComplete"
    CONTENT = "content"
    GENERATION_COMPLETE = "generationComplete"
    INTERRUPTED = "interrupted"
    TURN_COMPLETE = "turnComplete"
    INFO = "info"  # usage, resumption, goAway, input transcription, voice activity

    __hash__ = object.__hash__  # as State's


S, E = State, Event
_astuple: Final = msgspec.structs.astuple
# Fields of a ServerMessage and of a ServerContent, less the one set on the fast path.
_SERVER_KEYS_BUT_ONE: Final = len(wire.ServerMessage.__struct_fields__) - 1
_CONTENT_KEYS_BUT_ONE: Final = len(wire.ServerContent.__struct_fields__) - 1
SYNTHETIC_CALL_PREFIX: Final = "no-id-"  # the ids given to calls Vertex sent without one
_ACTIVE: Final = (S.READY, S.MODEL_TURN, S.GENERATION_DONE, S.INTERRUPTED)

TRANSITIONS: Final[dict[tuple[State, Event], State]] = {
    (S.IDLE, E.SEND_SETUP): S.SETUP_SENT,
    (S.SETUP_SENT, E.SETUP_COMPLETE): S.READY,
    (S.READY, E.CONTENT): S.MODEL_TURN,
    (S.MODEL_TURN, E.CONTENT): S.MODEL_TURN,
    (S.MODEL_TURN, E.GENERATION_COMPLETE): S.GENERATION_DONE,
    (S.MODEL_TURN, E.TURN_COMPLETE): S.READY,
    (S.MODEL_TURN, E.INTERRUPTED): S.INTERRUPTED,
    (S.GENERATION_DONE, E.CONTENT): S.GENERATION_DONE,  # trailing transcription or tool call
    (S.GENERATION_DONE, E.TURN_COMPLETE): S.READY,
    (S.GENERATION_DONE, E.INTERRUPTED): S.INTERRUPTED,
    (S.INTERRUPTED, E.CONTENT): S.INTERRUPTED,  # stale output of the interrupted turn
    (S.INTERRUPTED, E.INTERRUPTED): S.INTERRUPTED,
    (S.INTERRUPTED, E.TURN_COMPLETE): S.READY,
    **{(state, E.SEND_INPUT): state for state in _ACTIVE},
    **{(state, E.INFO): state for state in (S.SETUP_SENT, *_ACTIVE)},
}

# Sequences real servers produce that are harmless: no state change, counted in anomalies.
TOLERATED: Final[frozenset[tuple[State, Event]]] = frozenset(
    {
        (S.READY, E.GENERATION_COMPLETE),  # an empty generation
        (S.READY, E.TURN_COMPLETE),  # an empty turn, or a second turnComplete
        (S.READY, E.INTERRUPTED),  # barge-in while the last reply is still playing locally
        (S.GENERATION_DONE, E.GENERATION_COMPLETE),
        (S.INTERRUPTED, E.GENERATION_COMPLETE),
    }
)


@dataclass
class PendingCall:
    call_id: str
    name: str
    turn_id: int
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class _StreamingCall:
    """A function call whose arguments are still arriving (``willContinue``)."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    chars: int = 0  # of string values so far
    continuing: set[tuple[str | int, ...]] = field(default_factory=set)  # strings not done


class _Sent(msgspec.Struct):
    """A client message written on this connection, kept until the server says it was
    consumed (transparent resumption). A Struct: one is made per message sent."""

    index: int
    frame: bytes
    audio: bool


@dataclass
class Usage:
    prompt_tokens: int = 0
    response_tokens: int = 0
    total_tokens: int = 0
    thoughts_tokens: int = 0
    cached_tokens: int = 0


@dataclass
class _Turn:
    turn_id: int
    audio_samples: int = 0


@dataclass
class LiveSession:
    """The protocol state of one Gemini Live session, across its connections.

    ``resumption_handle`` and ``pending_calls`` survive ``connection_lost()``; the turn state
    does not.
    """

    state: State = State.IDLE
    resumption_handle: str | None = None
    resumable: bool = False
    go_away_time_left: float | None = None
    session_id: str | None = None
    usage: Usage = field(default_factory=Usage)
    pending_calls: dict[str, PendingCall] = field(default_factory=dict)
    anomalies: int = 0
    stale_messages_dropped: int = 0
    messages_sent: int = 0
    # Transparent resumption: client messages not yet consumed, replayed after a resume.
    transparent: bool = False  # the setup asked for lastConsumedClientMessageIndex
    max_unconsumed_bytes: int = 2 << 20  # frames kept for replay; past it the oldest go
    unconsumed_forgotten: int = 0  # frames past that bound: lost if the connection drops
    _connection_index: int = 0  # client messages on this connection; the setup is 0
    _sent_log: collections.deque[_Sent] = field(default_factory=collections.deque)
    _sent_log_bytes: int = 0
    _replay: list[_Sent] = field(default_factory=list)
    _orphaned: dict[str, PendingCall] = field(default_factory=dict)
    _streaming: dict[str, _StreamingCall] = field(default_factory=dict)
    # Vertex may send calls without ids: each gets one of ours, which never goes back on
    # the wire (its response goes by name; Vertex answers the oldest call of that name).
    _synthetic: set[str] = field(default_factory=set)
    _synthetic_issued: int = 0
    _turn: _Turn | None = None
    _last_turn_id: int = 0
    _awaiting_reply: bool = False  # a user turn was sent, and nothing of its reply came yet
    _typed: str = ""  # what the user typed for the reply still to come
    _transcribe_typed: bool = False  # the setup asked for input transcription
    _answered: set[str] = field(default_factory=set)
    _cancelled: set[str] = field(default_factory=set)

    # --- queries --------------------------------------------------------------------

    @property
    def current_turn_id(self) -> int | None:
        """The open model turn, or None between turns."""
        return self._turn.turn_id if self._turn is not None else None

    @property
    def user_turn_id(self) -> int:
        """The turn the user's speech belongs to: the open one, else the next one."""
        return self._turn.turn_id if self._turn is not None else self._last_turn_id + 1

    @property
    def last_turn_id(self) -> int:
        """The latest turn opened (0 before any)."""
        return self._last_turn_id

    @property
    def awaiting_reply(self) -> bool:
        """A typed turn or reply request went out and nothing of its reply came yet."""
        return self._awaiting_reply

    def is_pending(self, call_id: str) -> bool:
        return call_id in self.pending_calls

    def is_orphaned(self, call_id: str) -> bool:
        """Whether ``call_id`` was orphaned (``orphan_pending_calls``) and not yet taken."""
        return call_id in self._orphaned

    @property
    def orphaned_calls(self) -> tuple[str, ...]:
        return tuple(self._orphaned)

    # --- outgoing -------------------------------------------------------------------

    def send(
        self, message: wire.ClientMessage, *, typed: bool = True, history: bool = False
    ) -> bytes:
        """Check ``message`` against the state, record it, and return the frame to write.

        ``typed=False``: text in it is not what the user typed (instructions, a folded
        tool result), so it is not reported as the user's transcript. ``history=True``:
        it is initial history (``historyConfig``), which asks for no reply. Raises
        ``LocalProtocolError`` for a second setup, input before ``setupComplete``, or a
        tool response for a call that is unknown, cancelled or already answered.
        """
        if (
            type(message) is wire.RealtimeInput
            and message.audio is not None
            and self.state in _ACTIVE
        ):
            # Most of what a session sends: what the general path below does for it (it
            # changes no state, asks for no reply), without the checks it cannot need.
            frame = wire.encode(message)
            self.messages_sent += 1
            self._log_sent(frame, True)
            return frame
        event = E.SEND_SETUP if isinstance(message, wire.Setup) else E.SEND_INPUT
        next_state = TRANSITIONS.get((self.state, event))
        if next_state is None:
            what = "a second setup" if event is E.SEND_SETUP else "input before setupComplete"
            raise LocalProtocolError(
                f"cannot send {what} in state {self.state.value}",
                field=wire.envelope_key(message),
            )
        if isinstance(message, wire.ToolResponse):
            self._check_tool_response(message)
            frame = self._encode_tool_response(message)
        else:
            frame = wire.encode(message)
        if isinstance(message, wire.ToolResponse):
            for response in message.function_responses or ():
                assert response.id is not None
                if not response.will_continue:
                    del self.pending_calls[response.id]
                    self._answered.add(response.id)
        self.state = next_state
        self.messages_sent += 1
        if isinstance(message, wire.Setup):
            self._transcribe_typed = message.input_audio_transcription is not None
            resumption = message.session_resumption
            self.transparent = bool(resumption is not None and resumption.transparent)
            self._connection_index = 0
        else:
            audio = isinstance(message, wire.RealtimeInput) and message.audio is not None
            self._log_sent(frame, audio)
        if _asks_for_reply(message) and not history:
            self._awaiting_reply = True
            text = _typed_text(message) if self._transcribe_typed and typed else ""
            if text:
                self._typed = f"{self._typed} {text}" if self._typed else text
        return frame

    # --- transparent resumption: replaying what the server did not consume -----------

    def _log_sent(self, frame: bytes, audio: bool) -> None:
        self._connection_index += 1
        if not self.transparent:
            return
        log = self._sent_log
        log.append(_Sent(self._connection_index, frame, audio))
        self._sent_log_bytes += len(frame)
        if self._sent_log_bytes > self.max_unconsumed_bytes:
            while self._sent_log_bytes > self.max_unconsumed_bytes and log:
                self._sent_log_bytes -= len(log.popleft().frame)
                self.unconsumed_forgotten += 1

    def _consumed(self, index: int) -> None:
        while self._sent_log and self._sent_log[0].index <= index:
            self._sent_log_bytes -= len(self._sent_log.popleft().frame)

    @property
    def replay_pending(self) -> int:
        """Messages of a lost connection the server had not consumed, to replay."""
        return len(self._replay)

    def replay_frames(self) -> list[bytes]:
        """The frames to write first on a resumed connection, in order: the messages the
        lost connection's server had not consumed (``lastConsumedClientMessageIndex``).
        Each is recorded as sent on this connection, so a replay cut short is replayed
        again after the next resume."""
        replay, self._replay = self._replay, []
        for sent in replay:
            self._log_sent(sent.frame, sent.audio)
        return [sent.frame for sent in replay]

    def discard_replay(self) -> int:
        """Forget what was to be replayed (the session was not resumed); how many."""
        count, self._replay = len(self._replay), []
        return count

    def discard_unsent_audio(self) -> int:
        """Forget the audio waiting to be replayed (the user's audio was cleared)."""
        kept = [sent for sent in self._replay if not sent.audio]
        count, self._replay = len(self._replay) - len(kept), kept
        return count

    # --- calls a new session never issued ---------------------------------------------

    def orphan_pending_calls(self) -> list[PendingCall]:
        """The session was not resumed: its pending calls cannot be answered with a
        toolResponse any more (the new session never issued them). They are taken out of
        ``pending_calls`` and returned, in order; ``take_orphan`` finds one by id."""
        orphans = list(self.pending_calls.values())
        self._orphaned.update(self.pending_calls)
        self.pending_calls.clear()
        self._streaming.clear()
        return orphans

    def take_orphan(self, call_id: str) -> PendingCall | None:
        """The orphaned call ``call_id`` (once: it is forgotten), or None."""
        return self._orphaned.pop(call_id, None)

    def _encode_tool_response(self, message: wire.ToolResponse) -> bytes:
        """The frame, with the ids we made up for id-less calls left out."""
        responses = message.function_responses or []
        if not any(r.id in self._synthetic for r in responses):
            return wire.encode(message)
        bare = [
            msgspec.structs.replace(r, id=None) if r.id in self._synthetic else r for r in responses
        ]
        return wire.encode(wire.ToolResponse(function_responses=bare), ids_required=False)

    def _check_tool_response(self, message: wire.ToolResponse) -> None:
        seen: set[str] = set()
        for index, response in enumerate(message.function_responses or ()):
            where = f"toolResponse.functionResponses[{index}].id"
            call_id = response.id
            if not call_id:
                raise LocalProtocolError("a function response needs its call id", field=where)
            if call_id in seen:
                raise LocalProtocolError(
                    f"call {call_id!r} answered twice in one message", field=where
                )
            seen.add(call_id)
            if call_id in self.pending_calls:
                continue
            if call_id in self._answered:
                problem = "was already answered"
            elif call_id in self._cancelled:
                problem = "was cancelled by the server"
            else:
                problem = "is unknown"
            raise LocalProtocolError(f"tool call {call_id!r} {problem}", field=where)

    def connection_lost(self) -> list[m.SessionEvent]:
        """The connection ended: close any open turn and get ready for the next connection.

        Pending tool calls, the resumption handle and usage are kept. Returns the messages
        that end the turn that was cut short, if any.
        """
        out: list[m.SessionEvent] = []
        if self._turn is not None:
            turn_id = self._turn.turn_id
            if self.state is not S.INTERRUPTED:
                out.append(m.TurnInterrupted(turn_id=turn_id, connection_lost=True))
            out.append(m.TurnCompleted(turn_id=turn_id, interrupted=True, reason="CONNECTION_LOST"))
            self._turn = None
        elif self._awaiting_reply:
            # A question went out and nothing of its reply came back: it is lost with the
            # connection as surely as a reply cut short, and the application must know,
            # whether or not an older tool call is still pending (its result goes out on
            # the next connection, but the question's reply is not owed there).
            self._last_turn_id += 1
            out.append(
                m.TurnCompleted(
                    turn_id=self._last_turn_id, interrupted=True, reason="CONNECTION_LOST"
                )
            )
        self._awaiting_reply = False
        self._typed = ""
        self._replay.extend(self._sent_log)
        self._sent_log.clear()
        self._sent_log_bytes = 0
        self._streaming.clear()  # arguments cut short: the call is reissued or cancelled
        self.state = State.IDLE
        self.go_away_time_left = None
        self.resumable = self.resumable and self.resumption_handle is not None
        return out

    # --- incoming -------------------------------------------------------------------

    def receive_frame(self, frame: bytes | str) -> list[m.SessionEvent]:
        """Decode a server frame and apply it; see ``receive``."""
        return self.receive(wire.decode_server(frame))

    def receive(self, message: wire.ServerMessage) -> list[m.SessionEvent]:
        """Apply one server message and return the internal messages it means, in order.

        Raises ``RemoteProtocolError`` for a sequence the server must not produce: anything
        before ``setupComplete`` or a second one, a tool call reusing a pending id.
        """
        # Most of what a server sends: more parts of the open turn, nothing else. What
        # the general path does for them (the state stays MODEL_TURN), minus its checks.
        turn = self._turn
        if (
            turn is not None
            and self.state is S.MODEL_TURN
            and _astuple(message).count(None) == _SERVER_KEYS_BUT_ONE
        ):
            content = message.server_content
            if (
                content is not None
                and content.model_turn is not None
                and content.model_turn.parts
                and _astuple(content).count(None) == _CONTENT_KEYS_BUT_ONE
            ):
                self._awaiting_reply = False
                out: list[m.SessionEvent] = []
                self._emit_parts(turn.turn_id, content.model_turn.parts, out)
                return out
        return self._receive_any(message)

    def _receive_any(self, message: wire.ServerMessage) -> list[m.SessionEvent]:
        """``receive``, for every message (the general path)."""
        out: list[m.SessionEvent] = []
        if message.setup_complete is not None:
            self._step(E.SETUP_COMPLETE, "setupComplete")
            self.session_id = message.setup_complete.session_id
            out.append(m.SessionReady(session_id=self.session_id))
        if message.session_resumption_update is not None:
            self._step(E.INFO, "sessionResumptionUpdate")
            self._on_resumption(message.session_resumption_update, out)
        if message.go_away is not None:
            self._step(E.INFO, "goAway")
            left = message.go_away.time_left
            self.go_away_time_left = wire.parse_duration(left) if left is not None else 0.0
            out.append(m.GoAwayReceived(time_left=self.go_away_time_left))
        if message.voice_activity is not None:
            self._step(E.INFO, "voiceActivity")
            activity = message.voice_activity
            if activity.type in ("ACTIVITY_START", "ACTIVITY_END"):
                offset = activity.audio_offset
                out.append(
                    m.VoiceActivityDetected(
                        kind="start" if activity.type == "ACTIVITY_START" else "end",
                        audio_offset=wire.parse_duration(offset) if offset is not None else None,
                    )
                )
        if message.voice_activity_detection_signal is not None:
            self._step(E.INFO, "voiceActivityDetectionSignal")
            signal = message.voice_activity_detection_signal.vad_signal_type
            if signal == "VAD_SIGNAL_TYPE_SOS":
                out.append(m.VoiceActivityDetected(kind="start", signal=True))
            elif signal == "VAD_SIGNAL_TYPE_EOS":
                out.append(m.VoiceActivityDetected(kind="end", signal=True))
        if message.tool_call_cancellation is not None:
            self._step(E.INFO, "toolCallCancellation")
            self._on_cancellation(message.tool_call_cancellation, out)
        if message.server_content is not None:
            self._on_server_content(message.server_content, out)
        if message.tool_call is not None:
            self._on_tool_call(message.tool_call, out)
        if message.usage_metadata is not None:
            self._step(E.INFO, "usageMetadata")
            self._on_usage(message.usage_metadata, out)
        return out

    def _step(self, event: Event, what: str) -> bool:
        """Apply ``event``; False when it was tolerated without a state change."""
        next_state = TRANSITIONS.get((self.state, event))
        if next_state is not None:
            self.state = next_state
            return True
        if (self.state, event) in TOLERATED:
            self.anomalies += 1
            return False
        raise RemoteProtocolError(f"unexpected {what} in state {self.state.value}", field=what)

    def _open_turn_for_content(self, what: str, out: list[m.SessionEvent]) -> int | None:
        """Step on content; the turn it belongs to, or None when it is stale."""
        was = self.state
        self._step(E.CONTENT, what)
        if was is S.INTERRUPTED:
            self.stale_messages_dropped += 1
            return None
        self._awaiting_reply = False
        if self._turn is None:
            self._last_turn_id += 1
            self._turn = _Turn(self._last_turn_id)
            out.append(m.TurnStarted(turn_id=self._turn.turn_id))
            if self._typed:
                out.append(
                    m.TranscriptFragment(
                        role="user", turn_id=self._turn.turn_id, text=self._typed, finished=True
                    )
                )
                self._typed = ""
        return self._turn.turn_id

    def _on_server_content(self, content: wire.ServerContent, out: list[m.SessionEvent]) -> None:
        interim = content.interim_input_transcription
        if interim is not None:
            self._step(E.INFO, "interimInputTranscription")
            if interim.text:
                out.append(
                    m.InterimInputTranscript(
                        turn_id=self.user_turn_id,
                        text=interim.text,
                        finished=bool(interim.finished),
                        language_code=interim.language_code,
                        speaker_label=interim.speaker_label,
                    )
                )
        if content.input_transcription is not None:
            self._step(E.INFO, "inputTranscription")
            heard = content.input_transcription
            if heard.text or heard.finished:
                out.append(_fragment("user", self.user_turn_id, heard))
        parts = content.model_turn.parts if content.model_turn is not None else None
        if parts:
            turn_id = self._open_turn_for_content("serverContent.modelTurn", out)
            if turn_id is not None:
                self._emit_parts(turn_id, parts, out)
        if content.output_transcription is not None:
            transcript = content.output_transcription
            if transcript.text or transcript.finished:
                turn_id = self._open_turn_for_content("serverContent.outputTranscription", out)
                if turn_id is not None:
                    out.append(_fragment("agent", turn_id, transcript))
        if content.grounding_metadata is not None or content.url_context_metadata is not None:
            out.append(
                m.GroundingReported(
                    turn_id=self.current_turn_id,
                    grounding=content.grounding_metadata,
                    url_context=content.url_context_metadata,
                )
            )
        if content.generation_complete and self._step(E.GENERATION_COMPLETE, "generationComplete"):
            assert self._turn is not None
            out.append(m.GenerationCompleted(turn_id=self._turn.turn_id))
        if content.interrupted:
            self._on_interrupted(out)
        turn_id = self.current_turn_id
        if content.turn_complete:
            was = self.state
            if self._step(E.TURN_COMPLETE, "turnComplete") and self._turn is not None:
                out.append(
                    m.TurnCompleted(
                        turn_id=self._turn.turn_id,
                        interrupted=was is S.INTERRUPTED,
                        reason=content.turn_complete_reason,
                        waiting_for_input=bool(content.waiting_for_input),
                    )
                )
                self._turn = None
        if content.interaction_status is not None:
            out.append(
                m.InteractionStatusChanged(status=content.interaction_status, turn_id=turn_id)
            )

    def _emit_parts(self, turn_id: int, parts: list[wire.Part], out: list[m.SessionEvent]) -> None:
        assert self._turn is not None
        for part in parts:
            blob = part.inline_data
            if blob is not None and blob.data and (blob.mime_type or "").startswith("audio/pcm"):
                rate = wire.pcm_rate(blob.mime_type or "", default=24000)
                out.append(
                    m.ModelAudio(
                        turn_id=turn_id,
                        data=blob.data,
                        offset=self._turn.audio_samples,
                        sample_rate=rate,
                    )
                )
                self._turn.audio_samples += len(blob.data) // 2
            if part.text:
                out.append(m.ModelText(turn_id=turn_id, text=part.text, thought=bool(part.thought)))
            code = part.executable_code
            if code is not None:
                out.append(
                    m.ModelCode(
                        turn_id=turn_id,
                        code=code.code or "",
                        language=code.language,
                        code_id=code.id,
                    )
                )
            result = part.code_execution_result
            if result is not None:
                out.append(
                    m.ModelCodeResult(
                        turn_id=turn_id,
                        outcome=result.outcome,
                        output=result.output or "",
                        code_id=result.id,
                    )
                )
            if part.tool_call is not None:
                call = part.tool_call
                out.append(
                    m.ServerToolCalled(
                        turn_id=turn_id,
                        tool_id=call.id,
                        tool_type=call.tool_type,
                        args=call.args or {},
                    )
                )
            if part.tool_response is not None:
                answer = part.tool_response
                out.append(
                    m.ServerToolReturned(
                        turn_id=turn_id,
                        tool_id=answer.id,
                        tool_type=answer.tool_type,
                        response=answer.response or {},
                    )
                )

    def _on_interrupted(self, out: list[m.SessionEvent]) -> None:
        was = self.state
        if self._step(E.INTERRUPTED, "interrupted"):
            if was is not S.INTERRUPTED and self._turn is not None:
                out.append(m.TurnInterrupted(turn_id=self._turn.turn_id))
        elif self._last_turn_id:
            # Barge-in after the last turn completed on the wire: its audio may still play.
            out.append(m.TurnInterrupted(turn_id=self._last_turn_id))

    def _on_tool_call(self, tool_call: wire.ToolCall, out: list[m.SessionEvent]) -> None:
        calls = tool_call.function_calls or []
        if not calls:
            return
        turn_id = self._open_turn_for_content("toolCall", out)
        if turn_id is None:
            turn_id = self._last_turn_id  # a call after barge-in still needs its answer
        for index, call in enumerate(calls):
            where = f"toolCall.functionCalls[{index}]"
            if not call.id and call.name:
                call = msgspec.structs.replace(call, id=self._id_for(call.name))
            streaming = self._streaming.get(call.id or "")
            if not call.id or not (call.name or streaming):
                raise RemoteProtocolError("a function call needs a name", field=where)
            if call.id in self.pending_calls or call.id in self._answered:
                raise RemoteProtocolError(f"tool call id {call.id!r} reused", field=f"{where}.id")
            args = self._streamed_args(call, streaming, where)
            if args is None:
                continue  # more of its arguments follow
            name = call.name or (streaming.name if streaming is not None else "")
            self.pending_calls[call.id] = PendingCall(call.id, name, turn_id, args)
            out.append(m.ToolCallRequested(call_id=call.id, name=name, args=args, turn_id=turn_id))

    def _id_for(self, name: str) -> str:
        """An id for a call the server sent without one: the one of a call of that name
        whose arguments are still streaming, or a new one."""
        for call_id, streaming in self._streaming.items():
            if call_id in self._synthetic and streaming.name == name:
                return call_id
        self._synthetic_issued += 1
        call_id = f"{SYNTHETIC_CALL_PREFIX}{self._synthetic_issued}"
        self._synthetic.add(call_id)
        return call_id

    def _streamed_args(
        self, call: wire.FunctionCall, streaming: _StreamingCall | None, where: str
    ) -> dict[str, Any] | None:
        """A call's arguments once complete; None while pieces are still to come (Vertex
        streams them as ``partialArgs`` with ``willContinue``). Raises
        ``RemoteProtocolError`` past the limits on streamed calls (``protocol.limits``)."""
        if streaming is None and not call.will_continue and not call.partial_args:
            return call.args or {}
        assert call.id is not None
        if streaming is None:
            if len(self._streaming) >= limits.MAX_STREAMING_CALLS:
                raise RemoteProtocolError(
                    f"more than {limits.MAX_STREAMING_CALLS} calls with streaming arguments",
                    field=where,
                )
            streaming = self._streaming[call.id] = _StreamingCall(call.name or "")
        for p, piece in enumerate(call.partial_args or ()):
            _apply_partial_arg(streaming, piece, f"{where}.partialArgs[{p}]")
        if call.args:
            streaming.args.update(call.args)
        if call.will_continue:
            return None
        del self._streaming[call.id]
        return streaming.args

    def _on_cancellation(
        self, cancellation: wire.ToolCallCancellation, out: list[m.SessionEvent]
    ) -> None:
        cancelled = tuple(i for i in cancellation.ids or () if self.pending_calls.pop(i, None))
        self._cancelled.update(cancelled)
        if cancelled:
            out.append(m.ToolCallsCancelled(call_ids=cancelled))

    def _on_resumption(
        self, update: wire.SessionResumptionUpdate, out: list[m.SessionEvent]
    ) -> None:
        self.resumable = bool(update.resumable)
        if update.resumable and update.new_handle:
            self.resumption_handle = update.new_handle
        if update.last_consumed_client_message_index is not None:
            self._consumed(update.last_consumed_client_message_index)
        out.append(m.ResumptionUpdated(handle=self.resumption_handle, resumable=self.resumable))

    def _on_usage(self, usage: wire.UsageMetadata, out: list[m.SessionEvent]) -> None:
        report = m.UsageReported(
            turn_id=self.current_turn_id
            if self.current_turn_id is not None
            else self._last_turn_id or None,
            prompt_tokens=usage.prompt_token_count or 0,
            response_tokens=usage.output_tokens or 0,
            total_tokens=usage.total_token_count or 0,
            thoughts_tokens=usage.thoughts_token_count or 0,
            cached_tokens=usage.cached_content_token_count or 0,
            tool_use_prompt_tokens=usage.tool_use_prompt_token_count or 0,
            prompt_by_modality=_by_modality(usage.prompt_tokens_details),
            response_by_modality=_by_modality(
                usage.response_tokens_details or usage.candidates_tokens_details
            ),
            cached_by_modality=_by_modality(usage.cache_tokens_details),
            service_tier=usage.service_tier,
            traffic_type=usage.traffic_type,
        )
        self.usage.prompt_tokens += report.prompt_tokens
        self.usage.response_tokens += report.response_tokens
        self.usage.total_tokens += report.total_tokens
        self.usage.thoughts_tokens += report.thoughts_tokens
        self.usage.cached_tokens += report.cached_tokens
        out.append(report)


def _typed_text(message: wire.ClientMessage) -> str:
    """What the user typed in a message that asks for a reply ("" for none, or blank)."""
    if isinstance(message, wire.RealtimeInput):
        return (message.text or "").strip()
    assert isinstance(message, wire.ClientContent)
    for turn in reversed(message.turns or ()):
        if turn.role in (None, "user"):
            return " ".join(p.text for p in turn.parts or () if p.text).strip()
    return ""


def _asks_for_reply(message: wire.ClientMessage) -> bool:
    """A typed user turn: the server owes a reply (spoken turns are the server's to detect)."""
    if isinstance(message, wire.ClientContent):
        return bool(message.turn_complete)
    return isinstance(message, wire.RealtimeInput) and message.text is not None


def _by_modality(details: list[wire.ModalityTokenCount] | None) -> dict[str, int]:
    counts: dict[str, int] = {}
    for detail in details or ():
        if detail.modality:
            counts[detail.modality] = counts.get(detail.modality, 0) + (detail.token_count or 0)
    return counts


def _fragment(role: m.Role, turn_id: int, said: wire.Transcription) -> m.TranscriptFragment:
    return m.TranscriptFragment(
        role=role,
        turn_id=turn_id,
        text=said.text or "",
        finished=bool(said.finished),
        language_code=said.language_code,
        speaker_label=said.speaker_label,
        words=tuple(
            m.Word(word=w.word or "", start=_seconds(w.start_offset), end=_seconds(w.end_offset))
            for w in said.words or ()
        ),
        start_offset=_seconds(said.start_offset),
        end_offset=_seconds(said.end_offset),
    )


def _seconds(duration: str | None) -> float | None:
    return wire.parse_duration(duration) if duration is not None else None


# One step of an RFC 9535 path as Vertex writes partialArgs: .name, ['name'] or [index].
_PATH_STEP: Final = re.compile(r"\.([A-Za-z_][\w-]*)|\['((?:[^'\\]|\\.)*)'\]|\[(\d{1,9})\]")


def _json_path(path: str, where: str) -> tuple[str | int, ...]:
    """The keys and indexes of a jsonPath such as ``$.items[0].name``."""
    if not path.startswith("$"):
        raise RemoteProtocolError(f"jsonPath {path[:60]!r} does not start with $", field=where)
    steps: list[str | int] = []
    position = 1
    while position < len(path):
        match = _PATH_STEP.match(path, position)
        if match is None or len(steps) >= limits.MAX_JSON_PATH_SEGMENTS:
            raise RemoteProtocolError(
                f"unsupported or too long jsonPath {path[:60]!r}", field=f"{where}.jsonPath"
            )
        key, quoted, index = match.groups()
        if index is not None:
            if int(index) > limits.MAX_JSON_PATH_INDEX:
                raise RemoteProtocolError(
                    f"jsonPath index over {limits.MAX_JSON_PATH_INDEX}", field=f"{where}.jsonPath"
                )
            steps.append(int(index))
        else:
            steps.append(key if key is not None else re.sub(r"\\(.)", r"\1", quoted))
        position = match.end()
    if not steps:
        raise RemoteProtocolError("a jsonPath naming no argument", field=f"{where}.jsonPath")
    return tuple(steps)


def _apply_partial_arg(call: _StreamingCall, piece: wire.PartialArg, where: str) -> None:
    """Put one streamed piece of a call's arguments in place: a string whose previous
    piece said ``willContinue`` is continued; any other value replaces what was there."""
    path = _json_path(piece.json_path or "", where)
    value: Any
    if piece.string_value is not None:
        value = piece.string_value
        call.chars += len(value)
        if call.chars > limits.MAX_STREAMED_ARGS_CHARS:
            raise RemoteProtocolError(
                f"streamed arguments over {limits.MAX_STREAMED_ARGS_CHARS} characters", field=where
            )
    elif piece.number_value is not None:
        value = piece.number_value
    elif piece.bool_value is not None:
        value = piece.bool_value
    else:
        value = None
    container: Any = call.args
    for step, following in itertools.pairwise(path):
        container = _child(container, step, [] if isinstance(following, int) else {}, where)
    last = path[-1]
    if isinstance(value, str) and path in call.continuing:
        previous = _get(container, last)
        value = (previous if isinstance(previous, str) else "") + value
    _set(container, last, value, where)
    if piece.will_continue and isinstance(value, str):
        call.continuing.add(path)
    else:
        call.continuing.discard(path)


def _child(container: Any, step: str | int, empty: Any, where: str) -> Any:
    current = _get(container, step)
    if isinstance(current, dict | list):
        return current
    _set(container, step, empty, where)
    return empty


def _get(container: Any, step: str | int) -> Any:
    if isinstance(container, dict) and isinstance(step, str):
        return container.get(step)
    if isinstance(container, list) and isinstance(step, int) and step < len(container):
        return container[step]
    return None


def _set(container: Any, step: str | int, value: Any, where: str) -> None:
    if isinstance(container, dict) and isinstance(step, str):
        container[step] = value
    elif isinstance(container, list) and isinstance(step, int):
        container.extend([None] * (step + 1 - len(container)))
        container[step] = value
    else:
        raise RemoteProtocolError("a jsonPath that mixes keys and indexes", field=where)
