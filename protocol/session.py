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

import enum
from dataclasses import dataclass, field
from typing import Final

from protocol import events as m
from protocol import wire
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

    def is_pending(self, call_id: str) -> bool:
        return call_id in self.pending_calls

    # --- outgoing -------------------------------------------------------------------

    def send(self, message: wire.ClientMessage) -> bytes:
        """Check ``message`` against the state, record it, and return the frame to write.

        Raises ``LocalProtocolError`` for a second setup, input before ``setupComplete``,
        or a tool response for a call that is unknown, cancelled or already answered.
        """
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
        if _asks_for_reply(message):
            self._awaiting_reply = True
            typed = _typed_text(message) if self._transcribe_typed else ""
            if typed:
                self._typed = f"{self._typed} {typed}" if self._typed else typed
        return frame

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
        elif self._awaiting_reply and not self.pending_calls:
            # A question went out and nothing of its reply came back: it is lost with the
            # connection as surely as a reply cut short, and the application must know.
            self._last_turn_id += 1
            out.append(
                m.TurnCompleted(
                    turn_id=self._last_turn_id, interrupted=True, reason="CONNECTION_LOST"
                )
            )
        self._awaiting_reply = False
        self._typed = ""
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
        # interimInputTranscription is taken (the table's INFO) and not reported: an early,
        # revisable view of the inputTranscription that follows.
        if content.interim_input_transcription is not None:
            self._step(E.INFO, "interimInputTranscription")
        if content.input_transcription is not None:
            self._step(E.INFO, "inputTranscription")
            text = content.input_transcription.text or ""
            finished = bool(content.input_transcription.finished)
            if text or finished:
                out.append(
                    m.TranscriptFragment(
                        role="user", turn_id=self.user_turn_id, text=text, finished=finished
                    )
                )
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
                    out.append(
                        m.TranscriptFragment(
                            role="agent",
                            turn_id=turn_id,
                            text=transcript.text or "",
                            finished=bool(transcript.finished),
                        )
                    )
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
            if not call.id or not call.name:
                raise RemoteProtocolError("a function call needs an id and a name", field=where)
            if call.id in self.pending_calls or call.id in self._answered:
                raise RemoteProtocolError(f"tool call id {call.id!r} reused", field=f"{where}.id")
            self.pending_calls[call.id] = PendingCall(call.id, call.name, turn_id)
            out.append(
                m.ToolCallRequested(
                    call_id=call.id, name=call.name, args=call.args or {}, turn_id=turn_id
                )
            )

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
