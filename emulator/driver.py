"""The I/O shell of one emulated session: the trio tasks, the WebSocket and the timers.

Everything this module decides, it asks a sans-IO part: ``protocol.server_session`` what a
client message means and whether a message may be sent, ``emulator.turn_taking`` who has
the floor, ``emulator.player`` what a reply does. What is left here is doing it: a reader
task (client frames in; audio may also be taken synchronously by the WebSocket's read
callback, through the same ``_take`` path), a responder task (user turns out as replies,
performing the player's steps), a lifetime timer (goAway, then the close), injected
faults, and the close itself. Errors go out only as close frames with the real codes:
1007 bad client message, 1008 unknown model or unsupported option or invalid handle, 1011
internal error or deadline, 1000 for the session's audio limit and the lifetime's end.
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
    PaceUntil,
    Pause,
    ScriptPlayer,
    Send,
    Step,
)
from emulator.scenario import Scenario
from emulator.stats import EmulatorStats
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
from runtime.clock import Pacer

log = logging.getLogger("emulator")

CLOSE_WAIT_S = 2.0  # how long a close waits for the client's close frame
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455: 125 bytes of close payload, 2 of them the code


@dataclass(frozen=True)
class SessionServices:
    """What every session of one emulator shares."""

    scenario: Scenario
    faults: FaultPlan
    stats: EmulatorStats
    pacer: Pacer
    conversations: ConversationStore


class _Closed(Exception):
    """The connection was closed on purpose; unwinds the session's tasks."""


def service_rules(handshake: Handshake, scenario: Scenario) -> ServiceRules:
    """What the emulated service accepts on this endpoint, for this scenario."""
    behaviour = scenario.behaviour
    return ServiceRules(
        api=handshake.api,
        version=handshake.version,
        models=behaviour.models,
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
        self, services: SessionServices, ws: ServerWebSocket, handshake: Handshake, index: int
    ) -> None:
        self.services = services
        self.ws = ws
        self.index = index
        self.session = ServerSession(service_rules(handshake, services.scenario))
        self.interrupt = trio.Event()  # set on barge-in; a new one for every reply
        self._turn_ready = trio.Event()
        self._calls_answered = trio.Event()  # also set on barge-in: wakes a tool wait
        self._nursery: trio.Nursery | None = None
        self._turns: TurnTaking | None = None
        self._player: ScriptPlayer | None = None
        self._conversation: Conversation | None = None
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
                nursery.start_soon(self._lifetime)
        except* _Closed:
            pass
        except* ConnectionClosed:
            log.info("connection %d: closed by the client", self.index)
        except* trio.BrokenResourceError:
            log.info("connection %d: transport broken", self.index)

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
        self._conversation = conversation
        self._turns = TurnTaking(config, conversation.history)
        self._player = ScriptPlayer(
            self.services.scenario,
            config,
            conversation,
            now=trio.current_time,
            pace_factor=self._pace_factor,
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
        return conversation

    # --- reading --------------------------------------------------------------------

    async def _next_event(self) -> ClientEvent | None:
        """What the next client message means; a rejected one closes the connection."""
        frame = await self.ws.receive()
        self.services.stats.messages_in += 1
        try:
            return self.session.receive_frame(frame)
        except ClientRejected as exc:
            await self.close(exc.close_code, str(exc))

    async def _read(self) -> None:
        while True:
            self._take(await self._next_event())

    def _take_fast(self, frame: bytes | str) -> bool:
        """Take an audio chunk synchronously, in the WebSocket's read callback: almost all
        input is audio, and this spares it a task switch. Anything else, or audio the
        session rejects, returns False and reaches ``_read`` in order (a rejected message
        changes nothing, so the reader meets the same rejection and closes)."""
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
        if type(event) is ToolResponsesReceived and event.answered:
            self._calls_answered.set()
        if reaction is not NO_REACTION:
            if Reaction.BARGE_IN in reaction:
                self.interrupt.set()
                self._calls_answered.set()
            if Reaction.USER_TURN in reaction:
                self._turn_ready.set()
            if Reaction.MERGED in reaction:
                self.services.stats.user_turns_merged += 1

    # --- replying -------------------------------------------------------------------

    async def _respond(self) -> None:
        assert self._turns is not None
        while True:
            user_turn = self._turns.next_turn()
            if user_turn is None:
                await self._turn_ready.wait()
                self._turn_ready = trio.Event()
                continue
            await self._reply(user_turn)

    async def _reply(self, user_turn: UserTurn) -> None:
        assert self._turns is not None
        assert self._player is not None
        turn = self._player.next_turn()
        self.interrupt = trio.Event()
        self._turns.replying = True
        try:
            completed = await self._perform(self._player.reply(turn, user_turn.text or turn.user))
        finally:
            self._turns.replying = False
        if not completed:
            await self._perform(self._player.interrupted(self.session.pending_calls), whole=True)
        self.services.stats.turns += 1
        await self._apply_faults("turn-end")

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

    # --- sending --------------------------------------------------------------------

    async def send(self, message: w.ServerMessage) -> None:
        """Send one message, then fire the faults due after it."""
        try:
            frame = self.session.send(message)
        except LocalProtocolError as exc:
            log.error("connection %d: not sent, a bug: %s", self.index, exc)
            await self.close(1011, f"internal error: {_short(exc)}")
        await self._send_frame(frame)

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
        assert self._conversation is not None
        if self.session.config is None or not self.session.config.resumption:
            return
        handle = self.services.conversations.issue_handle(self._conversation) if resumable else None
        update = w.SessionResumptionUpdate(new_handle=handle, resumable=resumable)
        await self.send(w.ServerMessage(session_resumption_update=update))

    # --- time and faults ------------------------------------------------------------

    async def _lifetime(self) -> None:
        behaviour = self.services.scenario.behaviour
        notice = min(behaviour.go_away_notice_s, behaviour.connection_lifetime_s)
        await trio.sleep(behaviour.connection_lifetime_s - notice)
        await self._go_away(notice)

    async def _go_away(self, time_left: float) -> None:
        go_away = w.GoAway(time_left=w.format_duration(time_left))
        await self._send_frame(self.session.send(w.ServerMessage(go_away=go_away)), faults=False)
        assert self._nursery is not None
        self._nursery.start_soon(self._close_after, time_left)

    async def _close_after(self, seconds: float) -> None:
        await trio.sleep(seconds)
        await self.close(1000, "connection lifetime reached after goAway")

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


def _short(exc: Exception) -> str:
    return str(exc)[:80]
