"""The I/O shell of one emulated session: the trio tasks, the WebSocket and the timers.

Everything this module decides, it asks a sans-IO part: ``protocol.server_session`` what a
client message means and whether a message may be sent, ``emulator.turn_taking`` who has
the floor, ``emulator.player`` what a reply does, ``emulator.tool_results`` when the
results of NON_BLOCKING calls are spoken about. What is left here is doing it: a reader
task (client frames in; audio may also be taken synchronously by the WebSocket's read
callback, through the same ``_take`` path), a responder task (user turns and results out
as replies, performing the player's steps), a notifier task (voiceActivity), a lifetime
timer (goAway, then the close; an ephemeral token's expiry), injected faults, and the
close itself. Errors go out only as close frames with the real codes: 1007 bad client
message, 1008 unknown model or unsupported option or invalid handle or spent token, 1011
internal error, deadline (the lifetime's end after goAway) or a resume while the old
socket is open, 1000 for the session's audio limit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NoReturn

import trio

from emulator.audio import AudioFileError
from emulator.conversation import Conversation, ConversationStore
from emulator.faults import Fault, FaultPlan, Point, with_unknown_fields
from emulator.handshake import Handshake
from emulator.limits import (
    MAX_CONTENT_TURNS,
    MAX_FUNCTION_RESPONSES,
    MAX_SERVER_MESSAGE_BYTES,
    MAX_TEXT_CHARS,
    SETUP_TIMEOUT_S,
)
from emulator.player import (
    AwaitTools,
    Checkpoint,
    Defer,
    PaceUntil,
    Pause,
    ScriptPlayer,
    Send,
    Step,
)
from emulator.scenario import Scenario
from emulator.stats import EmulatorStats
from emulator.tokens import Token, TokenRefused, TokenStore
from emulator.tool_results import ResultReply
from emulator.turn_taking import NO_REACTION, Reaction, TurnTaking, UserTurn
from emulator.wsserver import ConnectionClosed, ServerWebSocket
from protocol import RemoteProtocolError, decode_client
from protocol import wire as w
from protocol.errors import LocalProtocolError
from protocol.server_session import (
    ClientEvent,
    ClientRejected,
    ServerSession,
    ServiceRules,
    SetupRequested,
    ToolResponsesReceived,
)
from protocol.websocket import ConnectionState
from runtime.clock import Pacer

log = logging.getLogger("emulator")

CLOSE_WAIT_S = 2.0  # how long a close waits for the client's close frame
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455: 125 bytes of close payload, 2 of them the code
DEADLINE_REASON = "Deadline expired before operation could complete."  # the service's 1011
IN_USE_REASON = "Internal error encountered."  # 1011: a resume while the old socket is open


@dataclass(frozen=True)
class SessionServices:
    """What every session of one emulator shares."""

    scenario: Scenario
    faults: FaultPlan
    stats: EmulatorStats
    pacer: Pacer
    conversations: ConversationStore
    tokens: TokenStore


class _Closed(Exception):
    """The connection was closed on purpose; unwinds the session's tasks."""


def service_rules(handshake: Handshake, scenario: Scenario) -> ServiceRules:
    """What the emulated service accepts on this endpoint, for this scenario."""
    behaviour = scenario.behaviour
    return ServiceRules(
        api=handshake.api,
        version=handshake.version,
        models=behaviour.models,
        unknown_models=behaviour.unknown_models,
        families=behaviour.families_in_force(),
        transparent_on_gemini_api=behaviour.transparent_on_gemini_api,
        omit_call_ids=behaviour.omit_call_ids,
        session_audio_limit_s=behaviour.session_audio_limit_s,
        session_audio_video_limit_s=behaviour.session_audio_video_limit_s,
        max_text_chars=MAX_TEXT_CHARS,
        max_content_turns=MAX_CONTENT_TURNS,
        max_function_responses=MAX_FUNCTION_RESPONSES,
        max_server_message_bytes=MAX_SERVER_MESSAGE_BYTES,
    )


def fit_close_reason(reason: str) -> str:
    """``reason`` cut to what a close frame holds, on a character boundary."""
    data = reason.encode("utf-8", "replace")[:MAX_CLOSE_REASON_BYTES]
    return data.decode("utf-8", "ignore")


class SessionDriver:
    """One emulated session over one accepted WebSocket. ``run()`` serves it to the end."""

    def __init__(
        self,
        services: SessionServices,
        ws: ServerWebSocket,
        handshake: Handshake,
        index: int,
        token: Token | None = None,
    ) -> None:
        self.services = services
        self.ws = ws
        self.index = index
        self.token = token  # the ephemeral token this session opened with
        constraints = token.constraints if token is not None else None
        self.session = ServerSession(service_rules(handshake, services.scenario), constraints)
        self.interrupt = trio.Event()  # set on barge-in; a new one for every reply
        # A reply to a user turn is counted in the stats once its turnComplete is written,
        # not once its last step ran: a client may leave on turnComplete, before the
        # resumption update that follows it can be sent.
        self._turn_uncounted = False
        self._turn_ready = trio.Event()  # a user turn or a result reply waits
        self._calls_answered = trio.Event()  # also set on barge-in: wakes a tool wait
        self._notice_ready = trio.Event()  # voiceActivity to report (in TurnTaking)
        self._nursery: trio.Nursery | None = None
        self._turns: TurnTaking | None = None
        self._player: ScriptPlayer | None = None
        self._conversation: Conversation | None = None
        self._losing = 0  # a "lose" fault: client messages still to read and not consume
        slow = services.faults.active("slow", connection=index)
        self._pace_factor = slow.factor if slow else 1.0
        self._unknown = services.faults.active("unknown", connection=index)

    # --- lifecycle ------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the session until it closes; returns once every task of it has ended.

        The client closing or vanishing ends it quietly. Any other exception is a bug of
        the emulator and propagates (the server closes with 1011 and keeps serving).
        """
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery  # first: a fault may fire on setupComplete itself
                await self._setup()
                nursery.start_soon(self._read)
                nursery.start_soon(self._respond)
                nursery.start_soon(self._notify)
                nursery.start_soon(self._lifetime)
        except* _Closed:
            pass
        except* ConnectionClosed:
            log.info("connection %d: closed by the client", self.index)
        except* trio.BrokenResourceError:
            log.info("connection %d: transport broken", self.index)
        finally:
            if self._conversation is not None and self._conversation.in_use == self._open:
                self._conversation.in_use = None

    def _open(self) -> bool:
        return self.ws.state is ConnectionState.OPEN

    async def close(self, code: int, reason: str) -> NoReturn:
        """Close with ``code`` and unwind every task of this session."""
        log.info("connection %d: closing %d %r", self.index, code, reason[:200])
        with trio.move_on_after(CLOSE_WAIT_S):
            await self.ws.aclose(code, fit_close_reason(reason))
        raise _Closed

    async def drop(self) -> NoReturn:
        """Drop the TCP connection with no close frame (the client sees 1006)."""
        log.info("connection %d: dropping TCP connection", self.index)
        await self.ws.abort()
        raise _Closed

    # --- setup ----------------------------------------------------------------------

    async def _setup(self) -> None:
        with trio.move_on_after(SETUP_TIMEOUT_S) as waiting:
            event = await self._next_event()
        if waiting.cancelled_caught:  # the service's code for a deadline
            await self.close(1011, f"Deadline expired: no setup within {SETUP_TIMEOUT_S:g} s")
        if not isinstance(event, SetupRequested):  # receive() rejects anything else first
            raise LocalProtocolError(f"the first client event was {type(event).__name__}")
        await self._start(event)

    async def _start(self, event: SetupRequested) -> None:
        config = event.config
        conversation = await self._conversation_for(config.resume_handle)
        if self.token is not None:
            try:
                self.services.tokens.admit(self.token, resuming=config.resume_handle is not None)
            except TokenRefused as exc:
                await self.close(exc.code, str(exc))
        self._conversation = conversation
        conversation.in_use = self._open
        self._turns = TurnTaking(config, conversation.history)
        self._player = ScriptPlayer(
            self.services.scenario,
            config,
            conversation,
            now=trio.current_time,
            pace_factor=self._pace_factor,
            api=self.session.rules.api,
        )
        await self._send_frame(self.session.accept(conversation.record))
        self.ws.fast_handler = self._take_fast
        if config.resumption:
            await self._update_resumption(resumable=True)

    async def _conversation_for(self, handle: str | None) -> Conversation:
        store = self.services.conversations
        if not handle:
            return store.new()
        refused = self._faults_due("setup")
        conversation = None if refused else store.resume(handle)
        if conversation is None:
            await self.close(1008, "session resumption handle is invalid or expired")
        if conversation.served_elsewhere:  # the service refuses while the old socket is open
            await self.close(1011, IN_USE_REASON)
        return conversation

    # --- reading --------------------------------------------------------------------

    async def _next_event(self) -> ClientEvent | None:
        """What the next client message means; a rejected one closes the connection."""
        frame = await self.ws.receive()
        self.services.stats.messages_in += 1
        if self._losing:
            await self._lose()
            return None
        try:
            return self.session.receive_frame(frame)
        except ClientRejected as exc:
            await self.close(exc.close_code, str(exc))

    async def _lose(self) -> None:
        """A "lose" fault: this message is read and never consumed; after the last one the
        connection drops (the client resumes and replays what was not consumed)."""
        self._losing -= 1
        if not self._losing:
            await self.drop()

    async def _read(self) -> None:
        while True:
            self._take(await self._next_event())

    def _take_fast(self, frame: bytes | str) -> bool:
        """Take an audio chunk synchronously, in the WebSocket's read callback: almost all
        input is audio, and this spares it a task switch. Anything else, or audio the
        session rejects, returns False and reaches ``_read`` in order (a rejected message
        changes nothing, so the reader meets the same rejection and closes)."""
        if self._losing:
            return False
        try:
            message = decode_client(frame)
        except RemoteProtocolError:
            return False
        if type(message) is not w.RealtimeInput or message.audio is None:
            return False
        try:
            event = self.session.receive(message)
        except ClientRejected:
            return False
        self.services.stats.messages_in += 1
        self._take(event)
        return True

    def _take(self, event: ClientEvent | None) -> None:
        """Act on what a client message meant: synchronous, whichever task reads."""
        if event is None:
            return
        assert self._turns is not None  # set before the reader starts
        reaction = self._turns.handle(event)
        if type(event) is ToolResponsesReceived:
            self._on_tool_responses(event)
        if reaction is not NO_REACTION:
            if Reaction.VOICE_ACTIVITY in reaction:
                self._on_voice_activity()
            if Reaction.BARGE_IN in reaction:
                self.interrupt.set()
                self._calls_answered.set()
            if Reaction.USER_TURN in reaction:
                self._turn_ready.set()
            if Reaction.MERGED in reaction:
                self.services.stats.user_turns_merged += 1

    def _on_tool_responses(self, event: ToolResponsesReceived) -> None:
        if event.answered:
            self._calls_answered.set()
        results = self._live_conversation().results
        interrupt = results.on_responses(event.responses + event.late)
        if results.busy:
            self._turn_ready.set()
        if interrupt and self._turns is not None and self._turns.replying:
            self.interrupt.set()  # INTERRUPT: the reply playing now stops for the result
            self._calls_answered.set()

    def _on_voice_activity(self) -> None:
        assert self._turns is not None
        if self.services.scenario.behaviour.voice_activity:
            self._notice_ready.set()
        else:
            self._turns.take_activity()  # heard, not reported

    # --- replying -------------------------------------------------------------------

    async def _respond(self) -> None:
        assert self._turns is not None
        results = self._live_conversation().results
        while True:
            result = results.next_reply()
            if result is not None:
                await self._result_reply(result)
                continue
            user_turn = self._turns.next_turn()
            if user_turn is None:
                await self._turn_ready.wait()
                self._turn_ready = trio.Event()
                continue
            await self._reply(user_turn)

    async def _reply(self, user_turn: UserTurn) -> None:
        assert self._player is not None
        if user_turn.empty:
            await self._play(self._player.empty_reply())
            return
        turn = self._player.next_turn()
        text = user_turn.text if user_turn.text and user_turn.text.strip() else turn.user
        self._turn_uncounted = True
        await self._play(self._player.reply(turn, text, spoken=user_turn.spoken))
        self._count_turn()
        await self._apply_faults("turn-end")

    def _count_turn(self) -> None:
        if self._turn_uncounted:
            self._turn_uncounted = False
            self.services.stats.turns += 1

    async def _result_reply(self, result: ResultReply) -> None:
        assert self._player is not None
        self.services.stats.result_replies += 1
        await self._play(self._player.result_reply(result))

    async def _play(self, steps: Iterator[Step]) -> None:
        """Perform a reply; on barge-in, end it as interrupted (pending BLOCKING calls are
        cancelled; NON_BLOCKING ones run on)."""
        assert self._turns is not None
        assert self._player is not None
        self.interrupt = trio.Event()
        self._turns.replying = True
        try:
            completed = await self._perform(steps)
        finally:
            self._turns.replying = False
        if not completed:
            running = self._live_conversation().results.running
            blocking = [c for c in self.session.pending_calls if c not in running]
            cancellable = [c for c in self.session.cancellable_calls if c in blocking]
            self.session.forget_calls([c for c in blocking if c not in cancellable])
            await self._perform(self._player.interrupted(cancellable), whole=True)

    async def _perform(self, steps: Iterator[Step], *, whole: bool = False) -> bool:
        """Perform the player's steps; False if a barge-in stopped them (never if ``whole``)."""
        try:
            for step in steps:
                if not whole and self.interrupt.is_set():
                    return False
                await self._perform_step(step)
        except AudioFileError as exc:
            log.error("connection %d: %s", self.index, exc)
            await self.close(1011, "internal error: scenario audio is unreadable")
        return True

    async def _perform_step(self, step: Step) -> None:
        if isinstance(step, Send):
            await self.send(step.message)
            content = step.message.server_content
            if content is not None and content.turn_complete:
                self._count_turn()
        elif isinstance(step, Pause):
            await self._pause(step.seconds)
        elif isinstance(step, PaceUntil):
            # The shared pacer, not a cancellable wait per chunk: a cancellation per chunk
            # was a large share of the emulator's CPU under load. Barge-in is noticed at
            # the next chunk instead, at most one chunk (40 ms at real-time pace) later.
            self.services.stats.record_lag(step.lag)
            await self.services.pacer.sleep_until(step.deadline)
        elif isinstance(step, AwaitTools):
            await self._await_tools(step.call_ids)
        elif isinstance(step, Checkpoint):
            await self._apply_faults(step.point)
        elif isinstance(step, Defer):
            self._live_conversation().results.defer(step.call_ids, step.replies, step.progress)
        else:
            await self._update_resumption(step.resumable)

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds`` unless a barge-in comes first."""
        if seconds > 0:
            with trio.move_on_after(seconds):
                await self.interrupt.wait()
        else:
            await trio.lowlevel.checkpoint()

    async def _await_tools(self, call_ids: tuple[str, ...]) -> None:
        """Until none of ``call_ids`` is pending any more, or a barge-in."""
        while not self.interrupt.is_set() and set(call_ids) & set(self.session.pending_calls):
            self._calls_answered = trio.Event()
            await self._calls_answered.wait()

    def _live_conversation(self) -> Conversation:
        assert self._conversation is not None  # set before any task but _setup runs
        return self._conversation

    # --- sending --------------------------------------------------------------------

    async def send(self, message: w.ServerMessage) -> None:
        """Send one message (after any voiceActivity notice due before it), then fire the
        faults due after it."""
        if self._notice_ready.is_set():
            await self._flush_notices()
        try:
            frame = self.session.send(message)
        except LocalProtocolError as exc:
            log.error("connection %d: not sent, a bug: %s", self.index, exc)
            await self.close(1011, f"internal error: {_short(exc)}")
        await self._send_frame(frame)

    async def _notify(self) -> None:
        """Send voiceActivity notices while no reply is sending them first."""
        while True:
            await self._notice_ready.wait()
            await self._flush_notices()

    async def _flush_notices(self) -> None:
        assert self._turns is not None
        self._notice_ready = trio.Event()
        for transition, offset in self._turns.take_activity():
            kind = "ACTIVITY_START" if transition == "start" else "ACTIVITY_END"
            notice = w.VoiceActivity(type=kind, audio_offset=w.format_duration(offset))
            await self._send_frame(self.session.send(w.ServerMessage(voice_activity=notice)))

    async def _send_frame(self, frame: bytes, *, faults: bool = True) -> None:
        unknown = self._unknown
        if (
            faults
            and unknown is not None
            and self.session.messages_sent % max(1, unknown.every) == 0
        ):
            frame = with_unknown_fields(frame)
        await self.ws.send(frame)
        self.services.stats.messages_out += 1
        if faults:
            await self._apply_faults("message")

    async def _update_resumption(self, resumable: bool) -> None:
        config = self.session.config
        if config is None or not config.resumption:
            return
        conversation = self._live_conversation()
        handle = self.services.conversations.issue_handle(conversation) if resumable else None
        update = w.SessionResumptionUpdate(
            new_handle=handle,
            resumable=resumable,
            last_consumed_client_message_index=self.session.last_consumed_index
            if config.transparent
            else None,
        )
        await self.send(w.ServerMessage(session_resumption_update=update))

    # --- time and faults ------------------------------------------------------------

    async def _lifetime(self) -> None:
        behaviour = self.services.scenario.behaviour
        notice = min(behaviour.go_away_notice_s, behaviour.connection_lifetime_s)
        go_away_in = behaviour.connection_lifetime_s - notice
        if self.token is not None:
            left = self.services.tokens.seconds_left(self.token)
            if left < go_away_in:  # the token's sessions end first
                await trio.sleep(left)
                await self.close(1008, "The auth token has expired.")
        await trio.sleep(go_away_in)
        await self._go_away(notice)

    async def _go_away(self, time_left: float) -> None:
        go_away = w.GoAway(time_left=w.format_duration(time_left))
        await self._send_frame(self.session.send(w.ServerMessage(go_away=go_away)), faults=False)
        assert self._nursery is not None
        self._nursery.start_soon(self._close_after, time_left)

    async def _close_after(self, seconds: float) -> None:
        await trio.sleep(seconds)
        await self.close(1011, DEADLINE_REASON)

    def _faults_due(self, point: Point) -> list[Fault]:
        return self.services.faults.due(
            point, messages_sent=self.session.messages_sent, connection=self.index
        )

    async def _apply_faults(self, point: Point) -> None:
        for fault in self._faults_due(point):
            log.info("connection %d: injecting %s", self.index, fault.kind)
            if fault.kind == "close":
                await self.close(fault.code, fault.reason)
            elif fault.kind == "drop":
                await self.drop()
            elif fault.kind == "goaway":
                await self._go_away(fault.time_left)
            elif fault.kind == "malformed":
                await self.ws.send(b'{"serverContent": {"modelTurn": ')
            elif fault.kind == "stall":
                await trio.sleep_forever()
            elif fault.kind == "lose":
                self._losing = max(1, fault.count)


def _short(exc: Exception) -> str:
    return str(exc)[:80]
