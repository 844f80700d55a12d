"""The gemini-link actor: one Gemini Live session over as many connections as it takes.

It reads the pipeline's outgoing messages (``AudioChunk``, ``VideoFrame``, ``TextInput``,
activity signals, ``ToolResult``, ``ResponseRequested``, ``InstructionsUpdated``) and
writes everything the server says, as internal messages, to ``incoming``, together with
its own events (``Connected``, ``Reconnecting``, ``Reconnected``, ``Dropped``).

- Every setup asks for session resumption; a reconnect resumes with the latest resumable
  handle. Without one (or when the server refuses it) the conversation history is
  re-seeded as ``clientContent`` and the ``Reconnected`` event says ``restored=False``.
- Retryable ends (1000 while the session is wanted, 1001, 1006, 1011-1014, network
  errors, no setupComplete in time) reconnect after a capped, jittered backoff. Fatal ones
  raise a ``LinkError`` subclass naming the likely cause (1007, 1008, a refused key or
  handshake); so does giving up after ``max_reconnect_attempts`` failures in a row (a
  connection that completed a turn or stayed up ``healthy_after`` seconds starts the
  count again).
- On ``goAway`` the link hands over at the next turn boundary, or on its own timer just
  before the deadline if none comes (the server may go silent); it closes the old socket
  before resuming.
- Outgoing messages wait in order while disconnected. Audio is bounded in time
  (``audio_buffer_seconds``): past it the oldest audio is dropped and reported.
- A tool result is sent only if its call still awaits one (not cancelled, not answered).
"""

from __future__ import annotations

import collections
import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import trio

from actors.endpoint import Endpoint
from actors.transport import ConnectFailed, Connection, Transport, TransportClosed
from protocol import RemoteProtocolError, wire
from protocol.session import LiveSession, State
from runtime import messages as m
from runtime.supervisor import ActorContext, Backoff
from runtime.wiring import deliver, take

AUDIO_MIME = "audio/pcm;rate=16000"
AUDIO_BYTES_PER_SECOND = 32000


class LinkError(Exception):
    """The session cannot go on; the message says the likely cause."""


class InvalidRequest(LinkError):
    """1007 (or 1002/1003/1009): the server rejected what we sent."""


class ModelNotSupported(LinkError):
    """1008: the model is unknown to this API, or an option is not supported."""


class CredentialsRefused(LinkError):
    """The key or token was refused."""


class HandshakeRejected(LinkError):
    """The server refused the WebSocket handshake (wrong URL or API version)."""


class ReconnectGaveUp(LinkError):
    """Reconnecting failed too many times in a row."""


RECONNECT_BACKOFF = Backoff(initial=0.25, maximum=8.0, multiplier=2.0, jitter=0.2)


@dataclass(frozen=True)
class LinkOptions:
    audio_buffer_seconds: float = 10.0
    backoff: Backoff = RECONNECT_BACKOFF
    max_reconnect_attempts: int = 8
    setup_timeout: float = 30.0
    handover_margin: float = 1.0  # how long before the goAway deadline the link moves anyway
    history_turns: int = 50  # re-seeded turns when a session cannot be resumed
    # A connection that completed a turn or stayed up this long was healthy: the next
    # failure counts as the first in a row, not one more.
    healthy_after: float = 30.0
    random: Callable[[], float] = _random.random


def _set_event() -> trio.Event:
    event = trio.Event()
    event.set()
    return event


@dataclass
class LinkState:
    """What outlives connections and link restarts (create one per session)."""

    session: LiveSession = field(default_factory=LiveSession)
    pending: collections.deque[m.InternalMessage] = field(default_factory=collections.deque)
    pending_audio_bytes: int = 0
    unsent_frame: bytes | None = None  # encoded, then the connection failed mid-send
    history: dict[tuple[int, str], str] = field(default_factory=dict)
    connections: int = 0
    audio_dropped: int = 0
    healthy: bool = False  # the current connection completed a turn
    # The pump takes outgoing messages only while no connection is up; the sender takes
    # them itself while one is (one task hop fewer per audio chunk).
    pump_allowed: trio.Event = field(default_factory=_set_event)
    pump_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    pump_parked: trio.Event = field(default_factory=_set_event)

    async def pause_pump(self) -> None:
        """Stop the pump taking messages; waits until it has queued any message already
        handed to it (a receive it was waiting in is cancelled without taking one)."""
        self.pump_allowed = trio.Event()
        self.pump_scope.cancel()
        await self.pump_parked.wait()

    def resume_pump(self) -> None:
        self.pump_allowed.set()

    def enqueue(self, message: m.InternalMessage, bound_bytes: int) -> int:
        """Queue an outgoing message; how many audio chunks the bound made it drop."""
        self.pending.append(message)
        dropped = 0
        if isinstance(message, m.AudioChunk):
            self.pending_audio_bytes += len(message.data)
            while self.pending_audio_bytes > bound_bytes:
                oldest = next(i for i, p in enumerate(self.pending) if isinstance(p, m.AudioChunk))
                chunk = self.pending[oldest]
                assert isinstance(chunk, m.AudioChunk)
                del self.pending[oldest]
                self.pending_audio_bytes -= len(chunk.data)
                dropped += 1
        self.audio_dropped += dropped
        return dropped


class _Handover(Exception):
    """Leave this connection to resume on a fresh one (goAway)."""


class _Stop(Exception):
    """The session is over: close this connection normally."""


class _HandleRefused(Exception):
    """The server closed the connection while we tried to resume: resume no more."""


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
    Closes its own ``outgoing`` and ``incoming`` endpoints on exit.
    """
    try:
        async with outgoing, incoming, trio.open_nursery() as nursery:
            nursery.start_soon(_pump, outgoing, incoming, state, options)
            await _connections(ctx, endpoint, setup, transport, outgoing, incoming, state, options)
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        leaf = _single(group)
        if isinstance(leaf, Exception):  # one error (a LinkError, or a crash): as itself
            raise leaf from leaf.__cause__
        raise


async def _pump(
    outgoing: trio.MemoryReceiveChannel[m.InternalMessage],
    incoming: trio.MemorySendChannel[m.InternalMessage],
    state: LinkState,
    options: LinkOptions,
) -> None:
    """Queue outgoing messages while no connection is up (the bound applies); paused by
    ``_serve`` while it sends. Returns when ``outgoing`` ends."""
    while True:
        await state.pump_allowed.wait()
        if not state.pump_allowed.is_set():
            continue  # paused again before this task ran: the sender takes the messages
        state.pump_parked = trio.Event()
        try:
            with trio.CancelScope() as state.pump_scope:
                async for message in outgoing:
                    await _accept(message, incoming, state, options)
                return
        finally:
            state.pump_parked.set()


async def _accept(
    message: m.InternalMessage,
    incoming: trio.MemorySendChannel[m.InternalMessage],
    state: LinkState,
    options: LinkOptions,
) -> None:
    dropped = state.enqueue(message, int(options.audio_buffer_seconds * AUDIO_BYTES_PER_SECOND))
    if dropped:
        await deliver(
            incoming, m.Dropped(what="audio (buffer bound while disconnected)", count=dropped)
        )


async def _connections(
    ctx: ActorContext,
    endpoint: Endpoint,
    setup: wire.Setup,
    transport: Transport,
    outgoing: trio.MemoryReceiveChannel[m.InternalMessage],
    incoming: trio.MemorySendChannel[m.InternalMessage],
    state: LinkState,
    options: LinkOptions,
) -> None:
    failures = 0
    if state.session.state is not State.IDLE:  # a previous incarnation crashed mid-connection
        for message in state.session.connection_lost():
            await deliver(incoming, message)
    while True:
        delay = 0.0
        started, state.healthy = trio.current_time(), False
        try:
            async with transport.connect(endpoint.url, await endpoint.headers()) as conn:
                await _serve(ctx, conn, endpoint, setup, outgoing, incoming, state, options)
            return  # _serve returns only when the session is over
        except _Handover:
            reason, failures = "goAway handover", 0
        except _HandleRefused as exc:
            reason = f"resumption refused ({exc}); re-seeding the history"
            state.session.resumption_handle = None
            state.session.resumable = False
        except TransportClosed as exc:
            _raise_if_fatal(exc)
            reason = f"closed with {exc.code} {exc.reason}".strip()
            # Failures in a row: a session that ran for hours must not give up on its
            # ninth drop (the soak's fault storms made a link give up, which showed that
            # the count was never reset).
            if state.healthy or trio.current_time() - started >= options.healthy_after:
                failures = 0
            failures += 1
        except ConnectFailed as exc:
            if exc.status in (401, 403):
                raise CredentialsRefused(
                    f"the server refused the credentials (HTTP {exc.status})"
                ) from exc
            if exc.status is not None and exc.status < 500 and exc.status != 429:
                raise HandshakeRejected(
                    f"the server refused the handshake (HTTP {exc.status}): "
                    "check the URL and API version"
                ) from exc
            reason = str(exc)
            failures += 1
        except trio.TooSlowError:
            reason = "no setupComplete in time"
            failures += 1
        for message in state.session.connection_lost():
            await deliver(incoming, message)
        if failures > options.max_reconnect_attempts:
            raise ReconnectGaveUp(
                f"gave up after {failures - 1} reconnect attempts; last: {reason}"
            )
        if failures:
            delay = options.backoff.delay(failures, options.random)
        await deliver(incoming, m.Reconnecting(reason=reason, attempt=failures, delay=delay))
        await trio.sleep(delay)


def _raise_if_fatal(exc: TransportClosed) -> None:
    code, reason = exc.code, exc.reason
    said = f" (server said: {reason})" if reason else ""
    if code == 1007:
        if "api key" in reason.lower() or "credential" in reason.lower():
            raise CredentialsRefused(f"the key was refused{said}") from exc
        raise InvalidRequest(f"invalid argument or context too large (1007){said}") from exc
    if code == 1008:
        raise ModelNotSupported(
            f"the model and API do not match, or an option is unsupported (1008){said}"
        ) from exc
    if code in (1002, 1003, 1009):
        raise InvalidRequest(f"the server rejected our messages ({code}){said}") from exc


async def _serve(
    ctx: ActorContext,
    conn: Connection,
    endpoint: Endpoint,
    setup: wire.Setup,
    outgoing: trio.MemoryReceiveChannel[m.InternalMessage],
    incoming: trio.MemorySendChannel[m.InternalMessage],
    state: LinkState,
    options: LinkOptions,
) -> None:
    session = state.session
    handle = session.resumption_handle
    config = msgspec.structs.replace(
        setup,
        model=endpoint.model,
        session_resumption=wire.SessionResumptionConfig(
            handle=handle,
            transparent=(setup.session_resumption or wire.SessionResumptionConfig()).transparent,
        ),
    )
    await conn.send(session.send(config))
    try:
        with trio.fail_after(options.setup_timeout):
            while session.state is State.SETUP_SENT:
                await _receive_one(conn, incoming, state)
    except TransportClosed as exc:
        if handle is not None and exc.code in (1007, 1008):
            raise _HandleRefused(f"{exc.code} {exc.reason}".strip()) from exc
        raise
    state.connections += 1
    if state.connections == 1:
        await deliver(incoming, m.Connected(resumed=False))
        ctx.ready()
    else:
        if handle is None:
            await _reseed(conn, state, options)
        await deliver(incoming, m.Reconnected(restored=handle is not None))
    go_away = _GoAway()
    try:
        await state.pause_pump()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_send_pending, conn, outgoing, incoming, state, options)
            nursery.start_soon(_stop_when_asked, ctx)
            nursery.start_soon(_handover_timer, go_away)
            while True:
                for message in await _receive_one(conn, incoming, state):
                    if isinstance(message, m.GoAwayReceived) and not go_away.received.is_set():
                        go_away.deadline = (
                            trio.current_time() + message.time_left - options.handover_margin
                        )
                        go_away.received.set()
                at_boundary = session.state is State.READY and not session.pending_calls
                if go_away.received.is_set() and at_boundary:
                    raise _Handover  # a turn boundary came before the deadline
    except BaseExceptionGroup as group:
        if group.subgroup(_Stop) is not None:
            await conn.aclose(1000, "")
            return
        if group.subgroup(_Handover) is not None:
            await conn.aclose(1000, "")  # close the old socket before resuming
            raise _Handover from None
        leaves = _leaves(group)
        if all(isinstance(leaf, TransportClosed) for leaf in leaves):
            # One close, seen by the receiver and the sender at once (found by the soak: it
            # escaped as a group and crashed the actor instead of reconnecting).
            leaves = leaves[:1]
        if len(leaves) != 1:
            raise
        leaf = leaves[0]
        raise leaf from leaf.__cause__  # one error (a close, a send failure): as itself
    finally:
        state.resume_pump()


async def _receive_one(
    conn: Connection, incoming: trio.MemorySendChannel[m.InternalMessage], state: LinkState
) -> list[m.SessionEvent]:
    frame = await conn.receive()
    try:
        messages = state.session.receive_frame(frame)
    except RemoteProtocolError as exc:
        # A frame we cannot read: report and skip it rather than end a working session.
        await deliver(incoming, m.Dropped(what=f"server frame ({exc})", count=1))
        return []
    for message in messages:
        if isinstance(message, m.TurnCompleted) and not message.interrupted:
            state.healthy = True
        if isinstance(message, m.TranscriptFragment) and message.text:
            key = (message.turn_id, message.role)
            state.history[key] = state.history.get(key, "") + message.text
        await deliver(incoming, message)
    return messages


async def _send_pending(
    conn: Connection,
    outgoing: trio.MemoryReceiveChannel[m.InternalMessage],
    incoming: trio.MemorySendChannel[m.InternalMessage],
    state: LinkState,
    options: LinkOptions,
) -> None:
    """Send queued messages in order, then each new one as it comes; a message leaves
    the queue only once written (cancelled mid-send, it stays for the next connection)."""
    ended = False
    while True:
        if state.unsent_frame is not None:
            await conn.send(state.unsent_frame)  # already checked and recorded by the session
            state.unsent_frame = None
            _pop(state)
        elif state.pending:
            client_message = _to_wire(state.pending[0], state.session)
            if client_message is None:
                _pop(state)
                continue
            state.unsent_frame = state.session.send(client_message)
        elif ended:
            await trio.sleep_forever()
        else:
            try:
                message = await take(outgoing)
            except trio.EndOfChannel:
                ended = True
                continue
            await _accept(message, incoming, state, options)


def _pop(state: LinkState) -> None:
    message = state.pending.popleft()
    if isinstance(message, m.AudioChunk):
        state.pending_audio_bytes -= len(message.data)


async def _stop_when_asked(ctx: ActorContext) -> None:
    await ctx.stopping.wait()
    raise _Stop


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The only leaf error of a (nested) group, if there is exactly one."""
    leaves = list(_leaves(group))
    return leaves[0] if len(leaves) == 1 else None


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


@dataclass
class _GoAway:
    received: trio.Event = field(default_factory=trio.Event)
    deadline: float = 0.0


async def _handover_timer(go_away: _GoAway) -> None:
    """Move before the goAway deadline even if no turn boundary comes (the server may go
    silent after goAway)."""
    await go_away.received.wait()
    await trio.sleep_until(go_away.deadline)
    raise _Handover


async def _reseed(conn: Connection, state: LinkState, options: LinkOptions) -> None:
    """Give a fresh session the conversation so far (it could not be resumed)."""
    turns = sorted(state.history.items(), key=lambda item: (item[0][0], item[0][1] != "user"))
    contents = [
        wire.Content(role="user" if role == "user" else "model", parts=[wire.Part(text=text)])
        for (_, role), text in turns[-2 * options.history_turns :]
    ]
    if contents:
        await conn.send(state.session.send(wire.ClientContent(turns=contents, turn_complete=False)))


def _to_wire(message: m.InternalMessage, session: LiveSession) -> wire.ClientMessage | None:
    """The wire message for an outgoing internal one; None when it must not be sent."""
    if isinstance(message, m.AudioChunk):
        return wire.RealtimeInput(audio=wire.Blob(mime_type=AUDIO_MIME, data=message.data))
    if isinstance(message, m.VideoFrame):
        return wire.RealtimeInput(video=wire.Blob(mime_type=message.mime_type, data=message.data))
    if isinstance(message, m.TextInput):
        if message.realtime:
            return wire.RealtimeInput(text=message.text)
        turn = wire.Content(role="user", parts=[wire.Part(text=message.text)])
        return wire.ClientContent(turns=[turn], turn_complete=True)
    if isinstance(message, m.ActivityStarted):
        return wire.RealtimeInput(activity_start=wire.ActivityStart())
    if isinstance(message, m.ActivityEnded):
        return wire.RealtimeInput(activity_end=wire.ActivityEnd())
    if isinstance(message, m.AudioStreamEnded):
        return wire.RealtimeInput(audio_stream_end=True)
    if isinstance(message, m.ToolResult):
        if not session.is_pending(message.call_id):
            return None  # cancelled by the server, or already answered
        body = {"error": message.error} if message.error is not None else {"output": message.output}
        response = wire.FunctionResponse(
            id=message.call_id,
            name=message.name,
            response=body,
            scheduling=message.scheduling,
            will_continue=message.will_continue,
        )
        return wire.ToolResponse(function_responses=[response])
    if isinstance(message, m.ResponseRequested):
        contents = [
            wire.Content(
                role="user" if t.role == "user" else "model", parts=[wire.Part(text=t.text)]
            )
            for t in message.turns
        ]
        return wire.ClientContent(turns=contents or None, turn_complete=message.respond)
    if isinstance(message, m.InstructionsUpdated):
        instruction = wire.Content(role="user", parts=[wire.Part(text=message.instructions)])
        return wire.ContextUpdate(system_instruction=instruction)
    return None  # not for the server
