"""The gemini-link actor: one Gemini Live session over as many connections as it takes.

It reads the pipeline's outgoing messages (``AudioChunk``, ``VideoFrame``, ``TextInput``,
activity signals, ``ToolResult``, ``ResponseRequested``, ``InstructionsUpdated``) and
writes everything the server says, as internal messages, to ``incoming``, together with
its own events (``Connected``, ``Reconnecting``, ``Reconnected``, ``ServerFault``,
``Dropped``).

- What goes on the wire follows the model's family (``protocol.client_rules``): typed
  text, context, reply requests, initial history (``historyConfig`` on 3.x).
- Every setup asks for session resumption; a reconnect resumes with the latest resumable
  handle (also one stored by an earlier process). Without one (or when the server
  refuses it) the conversation history is re-seeded, tool calls and results as text:
  calls the lost session left pending get no ``toolResponse`` (the new session never
  issued them), their results go in as text the model is asked to answer; the
  ``Reconnected`` event says ``restored=False``.
- With transparent resumption (Vertex) the frames written and not yet consumed
  (``lastConsumedClientMessageIndex``) are replayed first on a resumed connection,
  within ``unconsumed_bytes``.
- A changed setup (``SetupChanged``: tools, options) moves the session to a new
  connection at the next turn boundary, resuming it; ``AudioCleared`` drops the audio
  not yet written.
- Retryable ends (1000 while the session is wanted, 1001, 1006, 1011-1014, network
  errors, no setupComplete in time, a server that breaks the protocol) reconnect. Fatal
  ones raise a ``LinkError`` subclass naming the likely cause (1007, 1008, a refused key
  or handshake).
- Until the session's first setupComplete, connecting has one overall deadline
  (``connect_timeout``): past it, or when the reconnect rule gives up first, the link
  raises ``ConnectFailed`` naming the host and the last attempt's cause (DNS, refused,
  TLS verification, timeout, an HTTP status, no setupComplete).
- Every new connection goes through one rule (``Reconnects``): a capped, jittered backoff
  counted over failures in a row, giving up (``ReconnectGaveUp``) past
  ``max_reconnect_attempts``; a connection that completed a turn or stayed up
  ``healthy_after`` seconds starts the count again, and only such a connection's goAway
  hands over at once. On top, at most ``connections_per_window`` connections start per
  ``connection_window`` seconds, whatever the reason.
- A server that breaks the protocol (a message we cannot read, one impossible in the
  session's state, or a WebSocket violation) is the server's fault: the connection is
  closed with 1007 (1002 for an impossible sequence), a ``ServerFault`` says so, and the
  link reconnects by the rule above.
- On ``goAway`` the link hands over at the next turn boundary, or just before the deadline
  if none comes (the server may go silent); it closes the old socket before resuming.
- Outgoing messages wait in order while disconnected. Audio is bounded in time
  (``audio_buffer_seconds``): past it the oldest audio is dropped and reported.
- A tool result is sent only if its call still awaits one (not cancelled, not answered).
- Each side of a turn's transcript is capped at ``transcript_chars``: the rest is dropped,
  counted, and reported (one ``Dropped``) when the turn ends.

Structure: ``LinkState`` is what outlives connections and restarts, plain data (no trio
primitive). ``Link`` is one incarnation of the actor, ``ConnectionRun`` one connection;
each connection's end is an ``Ended`` value (an ``Outcome`` and its reason), returned, not
raised, so the control flow reads top to bottom in ``Link.run``.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import itertools
import logging
import math
import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import urlsplit

import msgspec
import trio

from actors import limits
from actors.endpoint import Endpoint, MissingCredentials
from actors.errors import (
    ConnectFailed,
    CredentialsRefused,
    HandshakeRejected,
    InvalidRequest,
    LinkError,
    ModelNotSupported,
    ReconnectGaveUp,
)
from actors.transport import (
    Connection,
    DirectConnection,
    PeerProtocolViolation,
    Transport,
    TransportClosed,
)
from protocol import RemoteProtocolError, wire
from protocol.client_rules import ClientRules, folded_call, folded_result
from protocol.session import LiveSession, State
from runtime import messages as m
from runtime.audio import INPUT_BYTES_PER_SECOND, INPUT_MIME
from runtime.drops import DropCounter
from runtime.supervisor import ActorContext, Backoff
from runtime.wiring import WAKE, Wake, deliver, receive_or_wake, take

log = logging.getLogger("gemini_live.link")  # the library never prints: it logs

__all__ = [
    "ConnectFailed",
    "CredentialsRefused",
    "HandshakeRejected",
    "InvalidRequest",
    "LinkError",
    "LinkOptions",
    "LinkState",
    "ModelNotSupported",
    "ReconnectGaveUp",
    "gemini_link",
]


@dataclass(frozen=True)
class LinkOptions:
    """The link's bounds and timings; the defaults are ``actors.limits``."""

    audio_buffer_seconds: float = limits.OUTGOING_AUDIO_SECONDS
    backoff: Backoff = limits.RECONNECT_BACKOFF
    max_reconnect_attempts: int = limits.RECONNECT_ATTEMPTS
    setup_timeout: float = limits.SETUP_TIMEOUT
    connect_timeout: float = limits.CONNECT_DEADLINE
    handover_margin: float = limits.HANDOVER_MARGIN
    history_turns: int = limits.RESEED_TURNS
    healthy_after: float = limits.HEALTHY_AFTER
    transcript_chars: int = limits.TRANSCRIPT_CHARS
    connections_per_window: int = limits.CONNECTIONS_PER_WINDOW
    connection_window: float = limits.CONNECTION_WINDOW
    unconsumed_bytes: int = limits.UNCONSUMED_BYTES
    random: Callable[[], float] = _random.random


# --- what outlives connections and restarts: plain data ----------------------------------


@dataclass
class Outbox:
    """Outgoing messages not yet written, in order. Audio is bounded in bytes (the oldest
    chunk goes first); other messages are the application's own and few. ``unsent_frame``
    is the head message already encoded (and recorded by the session) when a connection
    failed writing it: it goes out first on the next connection."""

    pending: collections.deque[m.InternalMessage] = field(default_factory=collections.deque)
    audio_bytes: int = 0
    unsent_frame: bytes | None = None
    unsent_rest: list[bytes] = field(default_factory=list)  # the head's further frames
    dropped: DropCounter = field(
        default_factory=lambda: DropCounter(
            "audio (buffer bound while disconnected)", limits.DROP_REPORT_INTERVAL
        )
    )

    def put(self, message: m.InternalMessage, audio_limit: int) -> None:
        self.pending.append(message)
        if isinstance(message, m.AudioChunk):
            self.audio_bytes += len(message.data)
            while self.audio_bytes > audio_limit and self._drop_oldest_audio():
                pass

    def pop(self) -> None:
        """The head message was written."""
        message = self.pending.popleft()
        if isinstance(message, m.AudioChunk):
            self.audio_bytes -= len(message.data)

    def clear_audio(self) -> int:
        """Drop every audio chunk not being written; how many."""
        head: list[m.InternalMessage] = (
            [self.pending.popleft()] if self.unsent_frame is not None else []
        )
        kept: list[m.InternalMessage] = [p for p in self.pending if not isinstance(p, m.AudioChunk)]
        dropped = len(self.pending) - len(kept)
        self.pending = collections.deque(head + kept)
        self.audio_bytes = sum(len(p.data) for p in self.pending if isinstance(p, m.AudioChunk))
        return dropped

    def take_results(self, call_ids: set[str]) -> list[m.ToolResult]:
        """Take out the queued results of these calls (not one being written)."""
        start = 1 if self.unsent_frame is not None else 0
        taken = [
            p
            for index, p in enumerate(self.pending)
            if index >= start and isinstance(p, m.ToolResult) and p.call_id in call_ids
        ]
        for result in taken:
            self.pending.remove(result)
        return taken

    def _drop_oldest_audio(self) -> bool:
        # The head is never dropped while its frame is half written (``unsent_frame``).
        start = 1 if self.unsent_frame is not None else 0
        candidates = itertools.islice(enumerate(self.pending), start, None)
        index = next((i for i, p in candidates if isinstance(p, m.AudioChunk)), None)
        if index is None:
            return False
        chunk = self.pending[index]
        assert isinstance(chunk, m.AudioChunk)
        del self.pending[index]
        self.audio_bytes -= len(chunk.data)
        self.dropped.add()
        return True


@dataclass
class History:
    """The conversation's text per turn and side: the per-turn transcript budget, and what
    the link re-seeds a session with when the server cannot resume it. Kept as lists of
    fragments (joined once, when re-seeding), never as strings grown by concatenation."""

    _sides: dict[tuple[int, m.Role], list[str]] = field(default_factory=dict)
    _lengths: dict[tuple[int, m.Role], int] = field(default_factory=dict)
    dropped_chars: int = 0  # past the budget, not yet reported
    # What else the model was given or did, as text, by (turn, where): a turn's tool calls
    # and results go before its agent side (IN_TURN), context added after it (AFTER); the
    # initial history is (0, AFTER).
    _extra: dict[tuple[int, int], list[wire.Content]] = field(default_factory=dict)
    reply_owed: bool = False  # a folded tool result awaits the model's answer

    IN_TURN: ClassVar[int] = 0
    AFTER: ClassVar[int] = 1

    def add(
        self, turn_id: int, contents: list[wire.Content], *, turns: int, where: int = 1
    ) -> None:
        """Record turns the model was given (``where=AFTER`` turn ``turn_id``; 0: at the
        start, kept whatever the bound) or a tool call or result of turn ``turn_id``
        (``IN_TURN``). Keeps the latest ``4 * turns`` entries besides the initial ones."""
        self._extra.setdefault((turn_id, where), []).extend(contents)
        while sum(len(v) for k, v in self._extra.items() if k[0]) > 4 * turns:
            oldest = min(k for k in self._extra if k[0])
            self._extra[oldest].pop(0)
            if not self._extra[oldest]:
                del self._extra[oldest]

    def admit(self, turn_id: int, role: m.Role, text: str, *, budget: int, turns: int) -> str:
        """Record the part of ``text`` within the side's budget of ``budget`` characters
        and return it; count the rest. Keeps the latest ``turns`` turns."""
        key = (turn_id, role)
        if key not in self._sides:
            self._sides[key], self._lengths[key] = [], 0
            while len(self._sides) > 2 * turns:
                oldest = min(self._sides)
                del self._sides[oldest], self._lengths[oldest]
        kept = text[: max(0, budget - self._lengths[key])]
        self.dropped_chars += len(text) - len(kept)
        if kept:
            self._sides[key].append(kept)
            self._lengths[key] += len(kept)
        return kept

    def contents(self, turns: int) -> list[wire.Content]:
        """The last ``turns`` turns as Live content, in order: in each, the user's side,
        the turn's tool calls and results, the agent's side, then what the model was
        given after it (the initial history first)."""
        sides = sorted(self._sides, key=lambda key: (key[0], key[1] != "user"))[-2 * turns :]
        first = sides[0][0] if sides else math.inf
        kept = {turn for turn, _ in sides} | {t for t, _ in self._extra if t >= first}
        spoken = set(sides)
        out = list(self._extra.get((0, self.AFTER), ()))
        for turn_id in sorted(kept - {0}):
            for role in ("user", "agent"):
                if role == "agent":
                    out += self._extra.get((turn_id, self.IN_TURN), ())
                if (turn_id, role) in spoken and self._lengths[(turn_id, role)]:
                    text = "".join(self._sides[(turn_id, role)])
                    speaker = "user" if role == "user" else "model"
                    out.append(wire.Content(role=speaker, parts=[wire.Part(text=text)]))
            out += self._extra.get((turn_id, self.AFTER), ())
        return out


class Outcome(enum.Enum):
    """How one connection ended."""

    STOPPED = "stopped"  # asked to stop: closed normally; the link returns
    HANDOVER = "handover"  # goAway: closed normally, to resume on a fresh connection
    RESTART = "restart"  # the setup changed: closed normally, to resume with the new one
    CLOSED = "closed"  # the connection ended: a retryable close code, a drop, a failed write
    SERVER_FAULT = "server fault"  # the server broke the protocol; closed with close_code
    RESUME_REFUSED = "resume refused"  # closed while resuming: go on without the handle
    CONNECT_FAILED = "connect failed"  # no connection: network, TLS, HTTP 5xx or 429
    SETUP_TIMEOUT = "setup timeout"  # no setupComplete in time
    FATAL = "fatal"  # the session cannot go on: ``error`` says why


@dataclass(frozen=True)
class Ended:
    outcome: Outcome
    reason: str = ""
    error: LinkError | None = None  # FATAL: what the link raises
    cause: str = ""  # CONNECT_FAILED: in a few words (ConnectFailed.cause)
    close_code: int | None = None  # SERVER_FAULT: the code the connection is closed with
    healthy: bool = False  # it completed a turn or stayed up ``healthy_after`` seconds


@dataclass
class Reconnects:
    """The one rule every new connection goes through, whatever ended the last one."""

    failures: int = 0  # in a row
    starts: collections.deque[float] = field(default_factory=collections.deque)

    def started(self, now: float) -> None:
        self.starts.append(now)

    def after(self, ended: Ended, now: float, options: LinkOptions) -> tuple[int, float] | None:
        """(attempt, delay) before the next connection, or None to give up. Attempt 0 is
        a healthy connection's handover, which does not wait."""
        if ended.healthy:
            self.failures = 0
        at_once = ended.outcome is Outcome.RESTART
        if (ended.outcome is Outcome.HANDOVER and ended.healthy) or at_once:
            attempt, delay = 0, 0.0
        else:
            self.failures += 1
            if self.failures > options.max_reconnect_attempts:
                return None
            attempt = self.failures
            delay = options.backoff.delay(self.failures, options.random)
        return attempt, max(delay, self._rate_wait(now, options))

    def _rate_wait(self, now: float, options: LinkOptions) -> float:
        window, most = options.connection_window, options.connections_per_window
        while self.starts and self.starts[0] <= now - window:
            self.starts.popleft()
        if len(self.starts) < most:
            return 0.0
        return self.starts[-most] + window - now


@dataclass
class LinkState:
    """What outlives connections and link restarts (create one per session). Plain data:
    no trio primitive lives here."""

    session: LiveSession = field(default_factory=LiveSession)
    outbox: Outbox = field(default_factory=Outbox)
    history: History = field(default_factory=History)
    reconnects: Reconnects = field(default_factory=Reconnects)
    connections: int = 0  # connections that reached setupComplete
    rules: ClientRules | None = None  # how to speak to the model; None: from its name
    setup: wire.Setup | None = None  # a changed setup (SetupChanged) in force
    restart_wanted: str | None = None  # why the connection should move to the new setup


# --- the actor ---------------------------------------------------------------------------


async def gemini_link(
    ctx: ActorContext,
    *,
    endpoint: Endpoint,
    setup: wire.Setup,
    transport: Transport,
    outgoing: trio.MemoryReceiveChannel[m.InternalMessage],
    incoming: trio.MemorySendChannel[m.InternalMessage],
    state: LinkState,
    options: LinkOptions = LinkOptions(),
) -> None:
    """Run the session until ``ctx.stopping`` is set (then close normally and return).

    Says ready after the first setupComplete. Raises a ``LinkError`` on a fatal end.
    Closes its own ``outgoing`` and ``incoming`` endpoints on exit. Cancelled, it leaves
    unsent messages in ``state`` for the next incarnation.
    """
    async with outgoing, incoming:
        link = Link(ctx, endpoint, setup, transport, outgoing, incoming, state, options)
        error = await link.run()
    if error is not None:
        raise error from error.__cause__


@dataclass
class Link:
    """One incarnation of the link actor: connections one after another until the session
    ends, each through ``Reconnects``."""

    ctx: ActorContext
    endpoint: Endpoint
    setup: wire.Setup
    transport: Transport
    outgoing: trio.MemoryReceiveChannel[m.InternalMessage]
    incoming: trio.MemorySendChannel[m.InternalMessage]
    state: LinkState
    options: LinkOptions
    outgoing_ended: bool = False
    connecting: trio.CancelScope = field(default_factory=trio.CancelScope)
    attempts: int = 0
    last_failure: Ended | None = None
    phase: str = ""  # what the attempt in progress waits for, said as its failure

    @property
    def rules(self) -> ClientRules:
        """How to speak to the model: given, or from its name and the endpoint's API."""
        if self.state.rules is None:
            self.state.rules = ClientRules.for_model(self.endpoint.model, self.endpoint.wire_api)
        return self.state.rules

    async def run(self) -> LinkError | None:
        """Connect, serve, reconnect; the fatal error that ended the session, if any."""
        session = self.state.session
        session.max_unconsumed_bytes = self.options.unconsumed_bytes
        if session.state is not State.IDLE:  # a previous incarnation crashed mid-connection
            await self.report(session.connection_lost())
        # Until the session's first setupComplete, connecting has one deadline
        # (``_announce`` lifts it).
        if self.state.connections == 0:
            self.connecting.deadline = trio.current_time() + self.options.connect_timeout
        began = trio.current_time()
        with self.connecting:
            return await self._connections(began)
        return self._never_connected(began, timed_out=True)

    async def _connections(self, began: float) -> LinkError | None:
        session = self.state.session
        delay = 0.0
        while True:
            self.attempts += 1
            ended = await self._attempt(delay)
            if ended.outcome is Outcome.STOPPED:
                return None
            if ended.outcome is Outcome.FATAL:
                log.warning("the session cannot go on: %s", ended.reason)
                return ended.error
            self.last_failure = ended
            if ended.outcome is Outcome.SERVER_FAULT:
                await deliver(
                    self.incoming, m.ServerFault(what=ended.reason, code=ended.close_code or 0)
                )
            if ended.outcome is Outcome.RESUME_REFUSED:
                session.resumption_handle, session.resumable = None, False
            await self.report(session.connection_lost())
            step = self.state.reconnects.after(ended, trio.current_time(), self.options)
            if step is None and self.state.connections == 0:
                return self._never_connected(began, timed_out=False)
            if step is None:
                failures = self.state.reconnects.failures - 1
                return ReconnectGaveUp(
                    f"gave up after {failures} reconnect attempts; last: {ended.reason}"
                )
            attempt, delay = step
            log.info("connection ended (%s); connecting again in %.2f s", ended.reason, delay)
            await deliver(
                self.incoming, m.Reconnecting(reason=ended.reason, attempt=attempt, delay=delay)
            )

    def _never_connected(self, began: float, *, timed_out: bool) -> ConnectFailed:
        """The session never connected: where to, why (the last attempt's cause), and for
        how long it tried."""
        last = self.last_failure
        cause = (last.cause or last.reason) if last is not None else "timed out"
        if timed_out and self.phase:
            cause = self.phase  # cut during an attempt: what it was waiting for
        seconds = trio.current_time() - began
        tries = f"{self.attempts} attempt" + ("s" if self.attempts != 1 else "")
        how = (
            f"no session after {seconds:.0f} s, {tries}" if timed_out else f"gave up after {tries}"
        )

        parts = urlsplit(self.endpoint.url)
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        host = f"{parts.hostname}:{port}"
        return ConnectFailed(f"{cause} ({how})", host=host, cause=cause)

    async def _attempt(self, delay: float) -> Ended:
        """Wait ``delay``, then connect and serve one connection; how it ended. Until the
        connection can send, a pump queues outgoing messages in the outbox (the bound
        applies); then the sender takes them itself (one task hop fewer per message)."""
        pump = _Pump(self)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump.run)
            ended = await self._wait(delay) or await self._connect(pump)
            self.phase = ""  # (left as it was when the connect deadline cuts an attempt)
            await pump.stop()
        return ended

    async def _wait(self, delay: float) -> Ended | None:
        """Sleep ``delay`` seconds; an Ended if the session was asked to stop meanwhile."""
        with trio.move_on_after(delay):
            await self.ctx.stopping.wait()
        return Ended(Outcome.STOPPED) if self.ctx.stopping.is_set() else None

    async def _connect(self, pump: _Pump) -> Ended:
        now = trio.current_time()
        self.state.reconnects.started(now)
        try:
            self.phase = "timed out connecting"
            log.info("connecting to %s (attempt %d)", self.endpoint.url, self.attempts)
            headers = await self.endpoint.headers()
            async with self.transport.connect(self.endpoint.url, headers) as conn:
                self.phase = "timed out waiting for setupComplete"
                return await ConnectionRun(self, conn, now).run(pump)
        except ConnectFailed as exc:
            return _connect_failed(exc)
        except MissingCredentials as exc:  # Vertex: no token from the default credentials
            return _fatal(CredentialsRefused(str(exc)), exc)
        except TransportClosed as exc:  # from the transport's own close on the way out
            return _closed(exc)

    async def queue(self, message: m.InternalMessage) -> None:
        """Put ``message`` in the outbox; report audio the bound dropped (aggregated). A
        changed setup is kept for the next connection (and this one asked to move at its
        next turn boundary); cleared audio leaves the outbox and the replay buffer."""
        if isinstance(message, m.SetupChanged):
            self.state.setup = message.setup
            self.state.restart_wanted = message.reason
            return
        if isinstance(message, m.AudioCleared):
            count = self.state.outbox.clear_audio() + self.state.session.discard_unsent_audio()
            if count:
                await deliver(self.incoming, m.Dropped(what="audio (cleared)", count=count))
            return
        outbox = self.state.outbox
        outbox.put(message, int(self.options.audio_buffer_seconds * INPUT_BYTES_PER_SECOND))
        report = outbox.dropped.due(trio.current_time())
        if report is not None:
            await deliver(self.incoming, report)

    async def report(self, messages: list[m.SessionEvent]) -> None:
        for message in messages:
            await deliver(self.incoming, message)
        await self.report_transcript_drops()

    async def report_transcript_drops(self) -> None:
        history = self.state.history
        if history.dropped_chars:
            what = f"transcript text past {self.options.transcript_chars} characters a turn"
            await deliver(self.incoming, m.Dropped(what=what, count=history.dropped_chars))
            history.dropped_chars = 0


class _Pump:
    """Takes outgoing messages into the outbox while no connection sends them. Lives for
    one connection attempt; ``stop`` returns once it has queued what it took."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self._scope = trio.CancelScope()
        self._done = trio.Event()

    async def run(self) -> None:
        try:
            with self._scope:
                while not self._link.outgoing_ended:
                    try:
                        message = await take(self._link.outgoing)
                    except trio.EndOfChannel:
                        self._link.outgoing_ended = True
                        break
                    await self._link.queue(message)
        finally:
            self._done.set()

    async def stop(self) -> None:
        # A message handed to the pump as it is cancelled still reaches the outbox: wait
        # for that before the sender takes the next one, or the two could swap.
        self._scope.cancel()
        await self._done.wait()


class ConnectionRun:
    """One connection: setup, then sending and receiving at once until it ends. Every way
    it ends is an ``Ended`` (the first one recorded wins), never an exception; an error
    that is none of those (a bug) propagates as itself and the supervisor restarts the
    link."""

    def __init__(self, link: Link, conn: Connection, started: float) -> None:
        self.link = link
        self.conn = conn
        self.started = started
        self.session = link.state.session
        self.handle = self.session.resumption_handle
        self.completed_turn = False
        self.handover_at = math.inf  # set by goAway: move before the server's deadline
        self.seed: list[wire.ClientMessage] = []  # history first, when not resumed
        self._ended: Ended | None = None
        self._serving: trio.CancelScope | None = None
        # Sending inline (``_send_now``) needs a connection that writes straight to its
        # socket; ``_held``: it holds the rest of the outbox's ``unsent_frame``.
        self._direct = conn if isinstance(conn, DirectConnection) and conn.writes_directly else None
        self._held = False
        self._audio_limit = int(link.options.audio_buffer_seconds * INPUT_BYTES_PER_SECOND)

    async def run(self, pump: _Pump) -> Ended:
        if self.handle is None:
            self.seed = self._prepare_seed()
        ended = await self._setup()
        if ended is None:
            await pump.stop()  # from here the sender takes outgoing messages itself
            ended = await self._announce() or await self._serve()
        await self._close(ended)
        up = trio.current_time() - self.started
        healthy = self.completed_turn or up >= self.link.options.healthy_after
        return dataclasses.replace(ended, healthy=healthy)

    def _prepare_seed(self) -> list[wire.ClientMessage]:
        """What a session that is not resumed is given first: its history, tool calls
        and results as text. Calls still pending are orphaned (the new session never
        issued them: a toolResponse would be refused); their results queued, or one
        whose toolResponse was cut off mid-write, are folded in, and the model is asked
        to answer them."""
        link, state, session = self.link, self.link.state, self.session
        history, outbox = state.history, state.outbox
        if outbox.unsent_frame is not None and isinstance(outbox.pending[0], m.ToolResult):
            outbox.unsent_frame, outbox.unsent_rest = None, []
            outbox.pop()  # its result was folded into the history when it was encoded
            history.reply_owed = True
        session.orphan_pending_calls()
        for result in outbox.take_results(set(session.orphaned_calls)):
            orphan = session.take_orphan(result.call_id)
            assert orphan is not None
            folded = folded_result(orphan.name, result.output, result.error)
            history.add(
                orphan.turn_id, [folded], turns=link.options.history_turns, where=History.IN_TURN
            )
            history.reply_owed = True
        contents = history.contents(link.options.history_turns)
        return link.rules.seed(contents, reply_wanted=history.reply_owed)

    async def _setup(self) -> Ended | None:
        """Send setup and wait for setupComplete; None once the session is ready."""
        state = self.link.state
        setup = state.setup or self.link.setup
        state.restart_wanted = None  # this connection takes the latest setup
        seeding = any(isinstance(x, wire.ClientContent) and x.turns for x in self.seed)
        config = msgspec.structs.replace(
            setup,
            model=self.link.endpoint.model,
            session_resumption=wire.SessionResumptionConfig(
                handle=self.handle,
                transparent=(
                    setup.session_resumption or wire.SessionResumptionConfig()
                ).transparent,
            ),
            history_config=self.link.rules.history_config(seeding),
        )
        try:
            await self.conn.send(self.session.send(config))
            with trio.fail_after(self.link.options.setup_timeout):
                while self.session.state is State.SETUP_SENT:
                    ended = await self._receive(await self.conn.receive())
                    if ended is not None:
                        return ended
        except TransportClosed as exc:
            refused = exc.code in (1007, 1008) and not isinstance(exc, PeerProtocolViolation)
            if self.handle is not None and refused:
                closed = f"{exc.code} {exc.reason}".strip()
                return Ended(
                    Outcome.RESUME_REFUSED,
                    f"resumption refused ({closed}); re-seeding the history",
                )
            return _closed(exc)
        except trio.TooSlowError:
            timeout = self.link.options.setup_timeout
            return Ended(
                Outcome.SETUP_TIMEOUT,
                "no setupComplete in time",
                cause=f"no setupComplete within {timeout:g} s",
            )
        return None

    async def _announce(self) -> Ended | None:
        """Tell the pipeline the session is (back) up: first give a session that was not
        resumed its history (``seed``), or replay to a resumed one what its last
        connection's server had not consumed (transparent resumption)."""
        link, state, session = self.link, self.link.state, self.session
        state.connections += 1
        try:
            if self.handle is None:
                for message in self.seed:
                    history = link.rules.uses_history_config and (
                        isinstance(message, wire.ClientContent) and bool(message.turns)
                    )
                    await self.conn.send(session.send(message, typed=False, history=history))
                state.history.reply_owed = False
                lost = session.discard_replay()
            else:
                replay = session.replay_frames()
                self._drop_replayed_head(replay)
                for frame in replay:
                    await self.conn.send(frame)
                lost, session.unconsumed_forgotten = session.unconsumed_forgotten, 0
        except TransportClosed as exc:
            return _closed(exc)
        if lost:
            what = "client messages the server had not consumed (not replayed)"
            await deliver(link.incoming, m.Dropped(what=what, count=lost))
        log.info("session up (connection %d, resumed: %s)", state.connections, bool(self.handle))
        link.connecting.deadline = math.inf  # connected: the connect deadline is over
        link.ctx.ready()  # (again after a restart: the supervisor counts its health from here)
        if state.connections == 1:
            await deliver(link.incoming, m.Connected(resumed=self.handle is not None))
            return None
        dropped = state.outbox.dropped.flush()
        if dropped is not None:
            await deliver(link.incoming, dropped)
        await deliver(link.incoming, m.Reconnected(restored=self.handle is not None))
        return None

    def _drop_replayed_head(self, replay: list[bytes]) -> None:
        """The outbox's head message was encoded, and so recorded by the session, but not
        written whole when the last connection was lost (a partial or failed write): when
        the replay ends with its frames, the replay sends it, and the send loop must not
        send it again (the server would get it twice)."""
        outbox = self.link.state.outbox
        if outbox.unsent_frame is None:
            return
        head = [outbox.unsent_frame, *outbox.unsent_rest]
        tail = replay[-len(head) :]
        if len(tail) == len(head) and all(a is b for a, b in zip(tail, head, strict=True)):
            outbox.unsent_frame, outbox.unsent_rest = None, []
            outbox.pop()

    async def _serve(self) -> Ended:
        async with trio.open_nursery() as nursery:
            self._serving = nursery.cancel_scope
            nursery.start_soon(self._send_loop)
            nursery.start_soon(self._stop_when_asked)
            await self._receive_loop()
        assert self._ended is not None
        return self._ended

    def _end(self, ended: Ended) -> None:
        if self._ended is None:
            self._ended = ended
        if self._serving is not None:
            self._serving.cancel()

    async def _close(self, ended: Ended) -> None:
        if ended.outcome in (Outcome.STOPPED, Outcome.HANDOVER, Outcome.RESTART):
            await self.conn.aclose(1000, "")  # the old socket closes before resuming
        elif ended.outcome is Outcome.SERVER_FAULT and ended.close_code is not None:
            # A fixed reason: nothing the server sent is echoed back to it.
            await self.conn.aclose(ended.close_code, "invalid message from the server")

    # --- receiving -----------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        self._end(await self._read_until_end())

    async def _read_until_end(self) -> Ended:
        """Read and pass on server messages until the connection ends; how it ended."""
        try:
            while True:
                frame: bytes | str | None = None
                if self.handover_at == math.inf:  # no goAway: no deadline (and no scope)
                    frame = await self.conn.receive()
                else:
                    with trio.move_on_at(self.handover_at):
                        frame = await self.conn.receive()
                if frame is None:  # no turn boundary came before the goAway deadline
                    return Ended(Outcome.HANDOVER, "goAway handover")
                ended = await self._receive(frame)
                if ended is not None:
                    return ended
                if self.handover_at < math.inf and self._at_turn_boundary():
                    return Ended(Outcome.HANDOVER, "goAway handover")  # before the deadline
                restart = self._restart()
                if restart is not None:
                    return restart
        except TransportClosed as exc:
            return _closed(exc)

    def _at_turn_boundary(self) -> bool:
        return self.session.state is State.READY and not self.session.pending_calls

    def _restart(self) -> Ended | None:
        """An Ended when the setup changed and the conversation is between turns (no
        reply owed either): the session moves to a connection with the new setup."""
        reason = self.link.state.restart_wanted
        if reason is None or not self._at_turn_boundary() or self.session.awaiting_reply:
            return None
        return Ended(Outcome.RESTART, reason)

    async def _receive(self, frame: bytes | str) -> Ended | None:
        """Apply one server frame and pass on what it means; an Ended if it breaks the
        protocol (the server's fault: the connection is closed, then reconnected)."""
        try:
            message = wire.decode_server(frame)
        except RemoteProtocolError as exc:
            return _server_fault(f"the server sent a message the client cannot read: {exc}", 1007)
        try:
            events = self.session.receive(message)
        except RemoteProtocolError as exc:
            return _server_fault(f"the server sent an impossible message: {exc}", 1002)
        for event in events:
            admitted = self._admit(event)
            if admitted is not None:
                await deliver(self.link.incoming, admitted)
            if isinstance(event, m.TurnCompleted):
                await self.link.report_transcript_drops()
        return None

    def _admit(self, event: m.SessionEvent) -> m.SessionEvent | None:
        """Note what the link itself needs from ``event``; the event to pass on (its
        transcript text cut to the turn's budget), or None when nothing is left of it."""
        if isinstance(event, m.TurnCompleted) and not event.interrupted:
            self.completed_turn = True
        elif isinstance(event, m.ToolCallRequested):
            # Kept as text for a history re-seeded into a new session.
            self.link.state.history.add(
                event.turn_id,
                [folded_call(event.name, event.args)],
                turns=self.link.options.history_turns,
                where=History.IN_TURN,
            )
        elif isinstance(event, m.GoAwayReceived) and self.handover_at == math.inf:
            margin = self.link.options.handover_margin
            self.handover_at = trio.current_time() + event.time_left - margin
        elif isinstance(event, m.TranscriptFragment) and event.text:
            kept = self._budget(event.turn_id, event.role, event.text)
            if kept != event.text:
                return msgspec.structs.replace(event, text=kept) if kept or event.finished else None
        elif isinstance(event, m.ModelText) and not event.thought and event.text:
            kept = self._budget(event.turn_id, "agent", event.text)
            if kept != event.text:
                return msgspec.structs.replace(event, text=kept) if kept else None
        return event

    def _budget(self, turn_id: int, role: m.Role, text: str) -> str:
        options = self.link.options
        return self.link.state.history.admit(
            turn_id, role, text, budget=options.transcript_chars, turns=options.history_turns
        )

    # --- sending and stopping ------------------------------------------------------------

    async def _send_loop(self) -> None:
        """Send queued messages in order, then each new one as it comes; a message leaves
        the outbox only once written (cancelled mid-send, it stays for the next
        connection). While it waits with nothing queued, the sender may write an audio
        chunk or video frame itself (``_send_now``)."""
        link, outbox = self.link, self.link.state.outbox
        try:
            while True:
                if outbox.unsent_frame is not None:
                    if self._held:  # ``_send_now`` wrote part of it: the rest goes now
                        assert self._direct is not None
                        await self._direct.flush()
                        self._held = False
                    else:
                        await self.conn.send(outbox.unsent_frame)  # checked, recorded already
                    if outbox.unsent_rest:
                        outbox.unsent_frame = outbox.unsent_rest.pop(0)
                    else:
                        outbox.unsent_frame = None
                        outbox.pop()
                elif outbox.pending:
                    frames = [
                        self.session.send(client_message, typed=typed)
                        for client_message, typed in self._to_wire(outbox.pending[0])
                    ]
                    if not frames:
                        outbox.pop()
                    else:
                        outbox.unsent_frame, outbox.unsent_rest = frames[0], frames[1:]
                elif link.outgoing_ended:
                    await trio.sleep_forever()
                else:
                    message: m.InternalMessage | None
                    try:
                        if self._direct is None:
                            message = await take(link.outgoing)
                        else:
                            message = await receive_or_wake(link.outgoing, self._send_now)
                    except trio.EndOfChannel:
                        link.outgoing_ended = True
                        continue
                    if message is None:  # sent by ``_send_now``, but for the rest it held
                        continue
                    await link.queue(message)
                    restart = self._restart()
                    if restart is not None:
                        self._end(restart)
        except TransportClosed as exc:
            # The read side usually learns why the connection ended (the close code) at
            # the same moment: let it say so, and fall back on the write's error.
            await trio.sleep(limits.SEND_FAILURE_GRACE)
            self._end(_closed(exc))

    def _send_now(self, message: m.InternalMessage) -> bool | Wake:
        """The send loop's work for one audio chunk or video frame, in the sender's task
        (an inline handler: ``receive_or_wake``), when nothing waits to go before it:
        queued, encoded and recorded by the session exactly as the loop does, then
        written straight to the socket (``send_nowait``); it leaves the outbox once
        written whole. When only part of it fit, the connection holds the rest: ``WAKE``,
        and the loop writes it (the message stays the outbox's head until then, so a
        connection lost meanwhile sends it again on the next). Declines (False, nothing
        done) any other message, and any while something is queued, unsent or unreported,
        or a restart is wanted (the loop checks for one after each message). Raises
        ``TransportClosed`` (in the loop) when the connection has ended."""
        kind = type(message)
        outbox = self.link.state.outbox
        if (
            (kind is not m.AudioChunk and kind is not m.VideoFrame)
            or outbox.pending
            or outbox.unsent_frame is not None
            or outbox.dropped.unreported
            or self.link.state.restart_wanted is not None
        ):
            return False
        direct = self._direct
        assert direct is not None  # offered only then
        if isinstance(message, m.AudioChunk) and len(message.data) > self._audio_limit:
            return False  # the bound would drop it: the loop reports that
        client_message = _media_or_signal(message)
        assert client_message is not None
        outbox.put(message, self._audio_limit)
        outbox.unsent_frame = self.session.send(client_message, typed=True)
        try:
            whole = direct.send_nowait(outbox.unsent_frame)
        except trio.WouldBlock:  # another write is in progress: the loop sends it whole
            return WAKE
        if not whole:
            self._held = True
            return WAKE
        outbox.unsent_frame = None
        outbox.pop()
        return True

    async def _stop_when_asked(self) -> None:
        await self.link.ctx.stopping.wait()
        self._end(Ended(Outcome.STOPPED))

    def _to_wire(self, message: m.InternalMessage) -> list[tuple[wire.ClientMessage, bool]]:
        """The wire messages for an outgoing internal one, as the model wants them, each
        with whether its text is what the user typed; none when it must not be sent."""
        simple = _media_or_signal(message)
        if simple is not None:
            return [(simple, True)]
        session, rules = self.session, self.link.rules
        if isinstance(message, m.TextInput):
            text = wire.RealtimeInput(text=message.text) if message.realtime else None
            return [(text or rules.user_text(message.text), True)]
        if isinstance(message, m.ToolResult):
            return self._tool_result(message)
        if isinstance(message, m.ResponseRequested):
            turns = [("user" if t.role == "user" else "model", t.text) for t in message.turns]
            out: list[tuple[wire.ClientMessage, bool]] = []
            if turns:
                context = rules.context(turns)
                options = self.link.options
                history = self.link.state.history
                history.add(session.last_turn_id, context.turns or [], turns=options.history_turns)
                if message.respond and message.instructions is None and not rules.is_3x:
                    return [(msgspec.structs.replace(context, turn_complete=True), True)]
                out.append((context, True))
            if message.respond:
                typed = message.instructions is None
                out += [(x, typed) for x in rules.reply_request(message.instructions)]
            return out
        return []  # not for the server

    def _tool_result(self, message: m.ToolResult) -> list[tuple[wire.ClientMessage, bool]]:
        """A toolResponse for a call that awaits one; a call of a session that was not
        resumed gets its result as text the model answers; any other gets nothing
        (cancelled by the server, or already answered)."""
        session, history, turns = self.session, self.link.state.history, self.link.options
        pending = session.pending_calls.get(message.call_id)
        if pending is not None:
            if not message.will_continue:
                folded = folded_result(message.name, message.output, message.error)
                history.add(
                    pending.turn_id, [folded], turns=turns.history_turns, where=History.IN_TURN
                )
            body = (
                {"error": message.error}
                if message.error is not None
                else {"output": message.output}
            )
            response = wire.FunctionResponse(
                id=message.call_id,
                name=message.name,
                response=body,
                scheduling=message.scheduling,
                will_continue=message.will_continue,
            )
            return [(wire.ToolResponse(function_responses=[response]), True)]
        call = session.take_orphan(message.call_id) if not message.will_continue else None
        if call is None:
            return []
        folded = folded_result(call.name, message.output, message.error)
        history.add(call.turn_id, [folded], turns=turns.history_turns, where=History.IN_TURN)
        content = wire.ClientContent(turns=[folded], turn_complete=True)
        out: list[tuple[wire.ClientMessage, bool]] = [(content, False)]
        if self.link.rules.nudges:
            out.append((wire.RealtimeInput(text=" "), False))
        return out


# --- how a connection ended --------------------------------------------------------------


def _closed(exc: TransportClosed) -> Ended:
    """A closed connection: fatal for the codes that mean we sent something wrong or
    unsupported, the server's fault when it broke the WebSocket protocol, else retryable."""
    if isinstance(exc, PeerProtocolViolation):
        return _server_fault(str(exc), exc.code)
    code, reason = exc.code, exc.reason
    said = f" (server said: {reason})" if reason else ""
    if code == 1007:
        if "api key" in reason.lower() or "credential" in reason.lower():
            return _fatal(CredentialsRefused(f"the key was refused{said}"), exc)
        return _fatal(InvalidRequest(f"invalid argument or context too large (1007){said}"), exc)
    if code == 1008 and "token" in reason.lower():
        return _fatal(
            CredentialsRefused(f"the ephemeral token was refused: mint a new one{said}"), exc
        )
    if code == 1008:
        return _fatal(
            ModelNotSupported(
                f"the model and API do not match, or an option is unsupported (1008){said}"
            ),
            exc,
        )
    if code in (1002, 1003, 1009):
        return _fatal(InvalidRequest(f"the server rejected our messages ({code}){said}"), exc)
    return Ended(Outcome.CLOSED, f"closed with {code} {reason}".strip())


def _connect_failed(exc: ConnectFailed) -> Ended:
    if exc.status in (401, 403):
        error: LinkError = CredentialsRefused(
            f"the server refused the credentials (HTTP {exc.status})"
        )
        return _fatal(error, exc)
    if exc.status is not None and exc.status < 500 and exc.status != 429:
        error = HandshakeRejected(
            f"the server refused the handshake (HTTP {exc.status}): check the URL and API version"
        )
        return _fatal(error, exc)
    if not exc.retryable:
        return Ended(Outcome.FATAL, str(exc), error=exc)
    cause = f"the server answered HTTP {exc.status}" if exc.status is not None else exc.cause
    return Ended(Outcome.CONNECT_FAILED, str(exc), cause=cause)


def _server_fault(reason: str, code: int) -> Ended:
    return Ended(Outcome.SERVER_FAULT, reason, close_code=code)


def _fatal(error: LinkError, cause: BaseException) -> Ended:
    error.__cause__ = cause
    return Ended(Outcome.FATAL, str(error), error=error)


def _media_or_signal(message: m.InternalMessage) -> wire.ClientMessage | None:
    """The one wire message of audio, video, activity signals and instructions; None for
    any other message."""
    if isinstance(message, m.AudioChunk):
        return wire.RealtimeInput(audio=wire.Blob(mime_type=INPUT_MIME, data=message.data))
    if isinstance(message, m.VideoFrame):
        return wire.RealtimeInput(video=wire.Blob(mime_type=message.mime_type, data=message.data))
    if isinstance(message, m.ActivityStarted):
        return wire.RealtimeInput(activity_start=wire.ActivityStart())
    if isinstance(message, m.ActivityEnded):
        return wire.RealtimeInput(activity_end=wire.ActivityEnd())
    if isinstance(message, m.AudioStreamEnded):
        return wire.RealtimeInput(audio_stream_end=True)
    if isinstance(message, m.InstructionsUpdated):
        instruction = wire.Content(role="user", parts=[wire.Part(text=message.instructions)])
        return wire.ContextUpdate(system_instruction=instruction)
    return None
