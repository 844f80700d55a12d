"""The emulator's WebSocket server I/O: the handshake over a trio stream and one socket.

``ServerWebSocket`` is read by one task at a time (``receive``) and written by any
(``send``, serialised by a lock). On plain TCP it waits for readability and then reads the
socket directly, skipping trio's speculative read that fails with EAGAIN on every message:
that is most of the per-message cost at this scale. Over TLS it reads the ``SSLStream``.
"""

from __future__ import annotations

import collections
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import trio

from emulator.reactor import ReadReactor
from protocol.websocket import (
    OP_BINARY,
    OP_PONG,
    Close,
    FrameParser,
    HandshakeError,
    HandshakeReader,
    Message,
    Ping,
    UpgradeRequest,
    WebSocketProtocolError,
    accept_response,
    encode_close,
    encode_frame,
    reject_response,
)

READ_SIZE: Final = 65536
CLOSE_TIMEOUT: Final = 2.0
HANDSHAKE_TIMEOUT: Final = 10.0


class ConnectionClosed(Exception):
    """The WebSocket is closed: by the client (its code), by us, or abruptly (1006)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}".strip())
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class CloseReason:
    code: int
    reason: str


class ServerWebSocket:
    """One accepted WebSocket. Input arrives in one of two ways: with a ``reactor``
    (plain TCP), the reactor's task feeds it and ``fast_handler`` may take data messages
    synchronously; without one (TLS), ``receive()`` reads the stream itself."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        max_message_size: int,
        leftover: bytes = b"",
        reactor: ReadReactor | None = None,
    ) -> None:
        self._stream = stream
        raw = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._socket: socket.socket | None = raw._sock if raw is not None else None  # type: ignore[attr-defined]
        self._parser = FrameParser(max_message_size)
        self._messages: collections.deque[bytes | str] = collections.deque()
        self._replies: list[bytes] = []  # pongs to send, from the synchronous side
        self._client_close: Close | None = None
        self._protocol_error: WebSocketProtocolError | None = None
        self._eof = False
        self._wakeup = trio.Event()
        self._send_lock = trio.StrictFIFOLock()
        self._reading = False
        self._close_sent = False
        self._finished = False
        self._stream_closed = False
        self.close_reason: CloseReason | None = None
        self.fast_handler: Callable[[bytes | str], bool] | None = None
        """Called synchronously with each data message while nothing waits in the queue;
        returning True means it was handled and ``receive()`` will not see it."""
        self._reactor = reactor if self._socket is not None else None
        if leftover:
            self._ingest(leftover)
        if self._reactor is not None and self._socket is not None and not self._input_ended:
            self._reactor.add(self._socket, self._on_readable, self._on_reader_error)

    # --- input (synchronous core, shared by both ways of reading) ----------------------

    @property
    def _input_ended(self) -> bool:
        return self._eof or self._client_close is not None or self._protocol_error is not None

    def _ingest(self, data: bytes) -> None:
        if not data:
            self._eof = True
            self._stop_reading()
            self._wake()
            return
        try:
            events = self._parser.feed(data)
        except WebSocketProtocolError as exc:
            self._protocol_error = exc
            self._stop_reading()
            self._wake()
            return
        for event in events:
            if isinstance(event, Message):
                handler = self.fast_handler
                if not self._messages and handler is not None and handler(event.data):
                    continue
                self._messages.append(event.data)
                self._wake()
            elif isinstance(event, Ping):
                self._replies.append(encode_frame(OP_PONG, event.payload))
                self._wake()
            elif isinstance(event, Close):
                self._client_close = event
                self._stop_reading()
                self._wake()
                return

    def _on_readable(self) -> None:
        assert self._socket is not None
        try:
            data = self._socket.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self._ingest(data)

    def _on_reader_error(self, exc: BaseException) -> None:
        self._protocol_error = WebSocketProtocolError(1011, "internal error")
        self._wake()

    def _stop_reading(self) -> None:
        if self._reactor is not None and self._socket is not None:
            self._reactor.remove(self._socket)

    def _wake(self) -> None:
        self._wakeup.set()
        self._wakeup = trio.Event()

    # --- input (async side) ---------------------------------------------------------------

    async def receive(self) -> bytes | str:
        """Wait for the next data message (text as ``str``), answering pings meanwhile.

        Raises ``ConnectionClosed`` once the client closed (its close is answered), the
        stream ended (1006) or the client broke the protocol (closed with 1002/1007/1009).
        """
        while True:
            await self._flush_replies()
            if self._messages:
                return self._messages.popleft()
            if self._finished or self._input_ended:
                await self._finish_input()
                reason = self.close_reason or CloseReason(1006, "")
                raise ConnectionClosed(reason.code, reason.reason)
            await self._next_input()

    async def _next_input(self) -> None:
        """Wait until the synchronous side has something new (reading it, in task mode)."""
        if self._reactor is not None or self._reading:
            await self._wakeup.wait()
            return
        self._reading = True
        try:
            self._ingest(await self._read_some())
        finally:
            self._reading = False

    async def _read_some(self) -> bytes:
        sock = self._socket
        if sock is None:
            try:
                return bytes(await self._stream.receive_some(READ_SIZE))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return b""
        while True:
            try:
                await trio.lowlevel.wait_readable(sock)
            except trio.ClosedResourceError:  # abort() from another task
                return b""
            try:
                return sock.recv(READ_SIZE)
            except BlockingIOError:
                continue
            except OSError:
                return b""

    async def _flush_replies(self) -> None:
        while self._replies and not self._close_sent:
            await self._send_raw(self._replies.pop(0))

    async def _finish_input(self) -> None:
        """Answer how the input ended: echo the client's close, or close with the error."""
        if self._protocol_error is not None:
            error = self._protocol_error
            await self._send_close(error.code, error.reason)
            self._peer_finished(CloseReason(error.code, error.reason))
        elif self._client_close is not None:
            close = self._client_close
            if not self._close_sent:
                await self._send_close(1000 if close.code == 1005 else close.code, "")
            self._peer_finished(CloseReason(close.code, close.reason))
        else:
            self._peer_finished(CloseReason(1006, "connection dropped without a close frame"))

    def _peer_finished(self, reason: CloseReason) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        self._finished = True

    # --- writing --------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        """Send one binary message. Raises ``ConnectionClosed`` once closing has begun."""
        if self._close_sent or self._finished:
            reason = self.close_reason or CloseReason(1006, "")
            raise ConnectionClosed(reason.code, reason.reason)
        await self._send_raw(encode_frame(OP_BINARY, data))

    async def _send_raw(self, frame: bytes) -> None:
        sock = self._socket
        if sock is not None and not self._send_lock.locked() and not self._stream_closed:
            # Fast path: one non-blocking send, no lock round trip, when nothing else is
            # being sent. Whatever the kernel does not take goes out under the lock: taking
            # the free lock is immediate, so no other frame can slip in between.
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                sent = sock.send(frame)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._peer_finished(CloseReason(1006, "connection dropped"))
                raise ConnectionClosed(1006, "connection dropped") from exc
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
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._peer_finished(CloseReason(1006, "connection dropped"))
            raise ConnectionClosed(1006, "connection dropped") from exc

    async def _send_close(self, code: int, reason: str) -> None:
        if self._close_sent:
            return
        self._close_sent = True
        if self.close_reason is None:
            self.close_reason = CloseReason(code, reason)
        with contextlib.suppress(ConnectionClosed):
            await self._send_raw(encode_close(code, reason))

    # --- closing --------------------------------------------------------------------

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code``: send the close frame, wait (bounded) for the client's, then
        close TCP. Waiting matters: closing with unread bytes makes the kernel reset the
        connection, and the client may then never read our close code. Idempotent."""
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self._send_close(code, reason)
            while not self._input_ended and not self._stream_closed:
                await self._next_input()
        await self.abort()

    async def abort(self) -> None:
        """Close TCP now, with no close frame (the client sees 1006)."""
        if not self._stream_closed:
            self._stream_closed = True
            self._stop_reading()
            self._peer_finished(CloseReason(1006, "closed"))
            self._wake()
            await self._stream.aclose()


async def accept_upgrade(
    stream: trio.abc.Stream,
) -> tuple[UpgradeRequest, bytes] | None:
    """Read the client's upgrade request. On a bad one, answer with an HTTP error, close
    the stream and return None."""
    reader = HandshakeReader()
    try:
        with trio.fail_after(HANDSHAKE_TIMEOUT):
            while True:
                try:
                    data = bytes(await stream.receive_some(READ_SIZE))
                except trio.BrokenResourceError:
                    data = b""
                request = reader.feed(data)
                if request is not None:
                    return request, reader.trailing_data
    except HandshakeError as exc:
        await reject(stream, exc.status, exc.reason.encode())
    except trio.TooSlowError:
        await stream.aclose()
    return None


async def reject(stream: trio.abc.Stream, status: int, body: bytes) -> None:
    """Refuse the upgrade with an HTTP status and close the stream."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(reject_response(status, body))
    await stream.aclose()


async def accept(
    stream: trio.abc.Stream,
    request: UpgradeRequest,
    leftover: bytes,
    *,
    max_message_size: int,
    reactor: ReadReactor | None = None,
) -> ServerWebSocket:
    """Complete the handshake (101) and return the open WebSocket."""
    await stream.send_all(accept_response(request))
    return ServerWebSocket(
        stream, max_message_size=max_message_size, leftover=leftover, reactor=reactor
    )
