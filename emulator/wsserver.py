"""The emulator's WebSocket server I/O: the handshake over a trio stream, then one
connection driven through the sans-IO ``protocol.websocket.WebSocket`` (its states, its
closing handshake, its limits).

``ServerWebSocket`` is read by one task at a time (``receive``) and written by any
(``send``, serialised by a lock). Given a ``ReadReactor`` on plain TCP, the reactor's task
feeds it and a ``fast_handler`` may take data messages synchronously; it then also reads
and writes the socket directly, skipping trio's speculative read that fails with EAGAIN on
every message (most of the per-message cost at this scale). Without a reactor (TLS, the
portable path, in-memory streams) it only uses the trio stream, and ``receive()`` reads it.

What partly received messages hold is also counted against a ``ByteBudget`` shared by every
connection: the one that would take it past its limit is closed with 1013.

``read_request`` reads the first request of a connection: a WebSocket upgrade, or an
HTTP POST (the emulator's one REST call, ``emulator.rest``).
"""

from __future__ import annotations

import collections
import contextlib
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import trio

from emulator.reactor import ReadReactor
from protocol import limits
from protocol.websocket import (
    ConnectionClosed,
    ConnectionState,
    HandshakeError,
    HandshakeReader,
    Message,
    Role,
    UpgradeRequest,
    WebSocket,
    accept_response,
    reject_response,
)

__all__ = [
    "ByteBudget",
    "CloseReason",
    "ConnectionClosed",
    "ServerWebSocket",
    "accept",
    "accept_upgrade",
    "read_request",
    "reject",
]

_READING = (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING)
_LOCAL_CLOSING = ConnectionState.LOCAL_CLOSING
_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError)


@dataclass(frozen=True)
class CloseReason:
    code: int
    reason: str


class ByteBudget:
    """Bytes held by many connections together, against one limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def adjust(self, delta: int) -> bool:
        """Count ``delta`` more bytes (fewer if negative); False if now past the limit."""
        self.used += delta
        return self.used <= self.limit


OVER_BUDGET = CloseReason(1013, "server busy: too many partly received messages, try again")


class ServerWebSocket:
    """One accepted WebSocket (see the module docstring for the two ways input arrives).

    Holds at most one message being assembled (``max_message_size``), one read of
    unparsed input, and ``MAX_QUEUED_BYTES`` of messages ``receive()`` has not taken: at
    that, a reactor stops reading this socket until they are taken."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        max_message_size: int = limits.MAX_CLIENT_MESSAGE_BYTES,
        leftover: bytes = b"",
        reactor: ReadReactor | None = None,
        budget: ByteBudget | None = None,
    ) -> None:
        self._stream = stream
        self._ws = WebSocket(Role.SERVER, max_message_size=max_message_size)
        self._budget = budget
        self._held = 0  # what this connection counts in the budget
        self._refused: CloseReason | None = None  # past the budget: closing with this
        raw: socket.socket | None = None
        if reactor is not None and isinstance(stream, trio.SocketStream):
            raw = stream.socket._sock  # type: ignore[attr-defined]  # trio's private socket
        self._socket = raw
        self._reactor = reactor if raw is not None else None
        self._watching = False  # registered with the reactor
        self._messages: collections.deque[bytes | str] = collections.deque()
        self._queued_bytes = 0  # object sizes of the queued messages, not just payloads
        self._input_ended = False  # EOF read, or the stream closed by us
        self._internal_error: BaseException | None = None
        self._wakeup = trio.Event()
        self._send_lock = trio.StrictFIFOLock()
        self._reading = False
        self._stream_closed = False
        self.fast_handler: Callable[[bytes | str], bool] | None = None
        """Called synchronously with each data message while nothing waits in the queue;
        returning True means it was handled and ``receive()`` will not see it."""
        if leftover:
            self._ingest(leftover)
        self._watch()

    @property
    def state(self) -> ConnectionState:
        return self._ws.state

    @property
    def close_reason(self) -> CloseReason | None:
        """The first close (the client's, or ours), 1006 if the stream just ended."""
        code = self._ws.close_code
        return None if code is None else CloseReason(code, self._ws.close_reason)

    @property
    def buffered_bytes(self) -> int:
        """What the client makes us hold: an unfinished frame or message, and the queue."""
        return self._ws.buffered_bytes + self._queued_bytes

    # --- input (synchronous core, shared by both ways of reading) ----------------------

    @property
    def _reads_more(self) -> bool:
        return (
            not self._input_ended
            and self._internal_error is None
            and self._refused is None
            and self._ws.state in _READING
        )

    def _ingest(self, data: bytes) -> None:
        if self._input_ended:
            return  # bytes read before an abort() took effect
        if not data:
            self._input_ended = True
        closing = self._ws.state is _LOCAL_CLOSING
        news = not data  # something for the async side: the fast path wakes no task
        for event in self._ws.receive_data(data):
            if type(event) is not Message:
                news = True  # a pong owed, or the state changed
                continue
            if closing:
                continue  # we closed: data still in flight is moot
            handler = self.fast_handler
            if not self._messages and handler is not None and handler(event.data):
                continue
            self._messages.append(event.data)
            self._queued_bytes += sys.getsizeof(event.data)
            news = True
        if self._budget is not None and self._ws.buffered_bytes != self._held:
            news |= self._account(self._ws.buffered_bytes)
        if news:
            self._wake()
            self._watch()

    def _account(self, held: int) -> bool:
        """Count what this connection holds now in the shared budget; True if that made it
        go past the limit (this connection is then refused: it reads no more)."""
        assert self._budget is not None
        delta, self._held = held - self._held, held
        if self._budget.adjust(delta) or delta <= 0 or self._refused is not None:
            return False
        self._refused = OVER_BUDGET
        return True

    def _watch(self) -> None:
        """Keep the reactor watching the socket exactly while we want its input."""
        reactor, sock = self._reactor, self._socket
        if reactor is None or sock is None:
            return
        wanted = self._reads_more and self._queued_bytes < limits.MAX_QUEUED_BYTES
        if wanted and not self._watching:
            reactor.add(sock, self._on_readable, self._on_reader_error)
        elif self._watching and not wanted:
            reactor.remove(sock)
        self._watching = wanted

    def _on_readable(self) -> None:
        assert self._socket is not None
        try:
            data = self._socket.recv(limits.READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self._ingest(data)

    def _on_reader_error(self, exc: BaseException) -> None:
        # The reactor dropped the socket: a fast_handler raised.
        self._watching = False
        self._internal_error = exc
        self._wake()

    def _wake(self) -> None:
        self._wakeup.set()
        self._wakeup = trio.Event()

    # --- input (async side) ---------------------------------------------------------------

    async def receive(self) -> bytes | str:
        """Wait for the next data message (text as ``str``), answering pings meanwhile.

        Raises ``ConnectionClosed`` once the client closed (its close is answered), the
        stream ended (1006), the client broke the protocol (we closed with 1002/1007/1009)
        or a ``fast_handler`` failed (we closed with 1011). Messages that arrived before
        any of these are returned first."""
        while True:
            await self._flush()
            if self._messages:
                data = self._messages.popleft()
                self._queued_bytes -= sys.getsizeof(data)
                self._watch()
                return data
            if not self._reads_more:
                await self._finish_input()
            await self._next_input()

    async def _next_input(self) -> None:
        """Wait until the synchronous side has something new (reading it, in task mode)."""
        if self._reactor is not None or self._reading:
            await self._wakeup.wait()
            return
        self._reading = True
        try:
            try:
                data = bytes(await self._stream.receive_some(limits.READ_SIZE))
            except _STREAM_ERRORS:
                data = b""
        finally:
            self._reading = False
        self._ingest(data)

    async def _flush(self) -> None:
        """Write what the protocol owes the client: a pong, or the close after a violation."""
        owed = self._ws.data_to_send()
        if owed:
            await self._send_raw(owed)

    async def _finish_input(self) -> NoReturn:
        """Answer how the input ended, then raise ``ConnectionClosed``."""
        error = self._internal_error
        if error is not None:
            await self._send_close(1011, "internal error")
            raise ConnectionClosed(1011, "internal error") from error
        refused = self._refused
        if refused is not None and self._ws.state in _READING:
            await self._send_close(refused.code, refused.reason)
            raise ConnectionClosed(refused.code, refused.reason)
        if self._ws.state is ConnectionState.REMOTE_CLOSING:
            await self._send_close(None, "")  # echo the client's code
        reason = self.close_reason or CloseReason(1006, "")
        raise ConnectionClosed(reason.code, reason.reason) from self._ws.failure

    # --- writing --------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        """Send one binary message. Raises ``ConnectionClosed`` once closing has begun."""
        await self._send_raw(self._ws.send_message(data))

    async def _send_raw(self, frame: bytes) -> None:
        sock = self._socket
        if sock is not None and not self._send_lock.locked() and not self._stream_closed:
            # Fast path (reactor mode): one non-blocking send, no lock round trip, when
            # nothing else is being sent. Whatever the kernel does not take goes out under
            # the lock: taking the free lock is immediate, so no other frame slips in.
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                sent = sock.send(frame)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise self._dropped() from exc
            if sent == len(frame):
                return
            frame = frame[sent:]
            self._send_lock.acquire_nowait()
            try:
                await self._send_all(frame)
            finally:
                self._send_lock.release()
            return
        async with self._send_lock:
            await self._send_all(frame)

    async def _send_all(self, frame: bytes) -> None:
        try:
            await self._stream.send_all(frame)
        except _STREAM_ERRORS as exc:
            raise self._dropped() from exc

    def _dropped(self) -> ConnectionClosed:
        """The stream broke under a write: the connection is over (1006 unless a close
        came first)."""
        self._end_input()
        reason = self.close_reason or CloseReason(1006, "")
        return ConnectionClosed(reason.code, reason.reason or "connection dropped")

    async def _send_close(self, code: int | None, reason: str) -> None:
        """Send our close once (``code`` None echoes the client's); a broken stream is
        ignored, as the connection is over either way."""
        if self._ws.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            return
        frame = self._ws.close(code, reason)
        self._messages.clear()  # closing: what the application did not take is moot
        self._queued_bytes = 0
        self._watch()
        with contextlib.suppress(ConnectionClosed):
            await self._send_raw(frame)

    # --- closing --------------------------------------------------------------------

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code``: send the close frame, wait (at most ``SERVER_CLOSE_TIMEOUT``)
        for the client's, then close TCP. Waiting matters: closing with unread bytes makes
        the kernel reset the connection, and the client may then never read our close
        code. Idempotent. Raises ``LocalProtocolError`` for a code that may not be sent."""
        with trio.move_on_after(limits.SERVER_CLOSE_TIMEOUT):
            await self._send_close(code, reason)
            while self._reads_more:
                await self._next_input()
        await self.abort()

    async def abort(self) -> None:
        """Close TCP now, with no close frame (the client sees 1006). Idempotent."""
        if not self._stream_closed:
            self._stream_closed = True
            self._end_input()
            await self._stream.aclose()

    def _end_input(self) -> None:
        if not self._input_ended:
            self._input_ended = True
            self._ws.receive_data(b"")
        if self._budget is not None and self._held:
            self._account(0)  # the stream is closed: what it held is let go
        self._watch()
        self._wake()


@dataclass(frozen=True)
class PostStart:
    """An HTTP POST began: the bytes read so far (its head, at least its first line)."""

    data: bytes


async def read_request(
    stream: trio.abc.Stream,
) -> tuple[UpgradeRequest, bytes] | PostStart | None:
    """The connection's first request: an upgrade request (and what followed it), or the
    start of a POST for ``emulator.rest``. None when the upgrade was bad or late (as
    ``accept_upgrade``)."""
    data = b""
    try:
        with trio.fail_after(limits.HANDSHAKE_TIMEOUT):
            while len(data) < 5 and b"\n" not in data:
                more = await _receive(stream)
                if not more:
                    break
                data += more
    except trio.TooSlowError:
        await trio.aclose_forcefully(stream)
        return None
    if data.startswith(b"POST "):
        return PostStart(data)
    return await accept_upgrade(stream, data)


async def _receive(stream: trio.abc.Stream) -> bytes:
    try:
        return bytes(await stream.receive_some(limits.READ_SIZE))
    except _STREAM_ERRORS:
        return b""


async def accept_upgrade(
    stream: trio.abc.Stream, first: bytes = b""
) -> tuple[UpgradeRequest, bytes] | None:
    """Read the client's upgrade request (at most ``MAX_HANDSHAKE_BYTES`` within
    ``HANDSHAKE_TIMEOUT``; ``first`` is what was read of it already). On a bad one,
    answer with an HTTP error and close the stream; on none in time, close the stream.
    Then return None."""
    reader = HandshakeReader(limits.MAX_HANDSHAKE_BYTES)
    try:
        with trio.fail_after(limits.HANDSHAKE_TIMEOUT):
            data = first or await _receive(stream)
            while True:
                request = reader.feed(data)
                if request is not None:
                    return request, reader.trailing_data
                data = await _receive(stream)
    except HandshakeError as exc:
        await reject(stream, exc.status, exc.reason.encode())
    except trio.TooSlowError:
        await trio.aclose_forcefully(stream)
    return None


async def reject(stream: trio.abc.Stream, status: int, body: bytes) -> None:
    """Refuse the upgrade with an HTTP status and close the stream."""
    with contextlib.suppress(*_STREAM_ERRORS):
        await stream.send_all(reject_response(status, body))
    await stream.aclose()


async def accept(
    stream: trio.abc.Stream,
    request: UpgradeRequest,
    leftover: bytes,
    *,
    max_message_size: int = limits.MAX_CLIENT_MESSAGE_BYTES,
    reactor: ReadReactor | None = None,
    budget: ByteBudget | None = None,
) -> ServerWebSocket:
    """Complete the handshake (101) and return the open WebSocket. ``reactor`` is used only
    on plain TCP; without one only the trio stream is used (the portable path)."""
    await stream.send_all(accept_response(request))
    return ServerWebSocket(
        stream,
        max_message_size=max_message_size,
        leftover=leftover,
        reactor=reactor,
        budget=budget,
    )
