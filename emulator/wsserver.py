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
from dataclasses import dataclass
from typing import Final

import trio

from emulator.wsframes import (
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
    def __init__(
        self, stream: trio.abc.Stream, *, max_message_size: int, leftover: bytes = b""
    ) -> None:
        self._stream = stream
        raw = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._socket: socket.socket | None = raw._sock if raw is not None else None  # type: ignore[attr-defined]
        self._parser = FrameParser(max_message_size)
        self._messages: collections.deque[bytes | str] = collections.deque()
        self._send_lock = trio.StrictFIFOLock()
        self._peer_done = trio.Event()  # the client's close arrived, or the stream ended
        self._reading = False
        self._close_sent = False
        self._stream_closed = False
        self.close_reason: CloseReason | None = None
        self._leftover = leftover

    # --- reading --------------------------------------------------------------------

    async def receive(self) -> bytes | str:
        """Wait for the next data message (text as ``str``), answering pings meanwhile.

        Raises ``ConnectionClosed`` once the client closed (its close is answered), the
        stream ended (1006) or the client broke the protocol (closed with 1002/1007/1009).
        """
        while not self._messages:
            if self._peer_done.is_set():
                reason = self.close_reason or CloseReason(1006, "")
                raise ConnectionClosed(reason.code, reason.reason)
            self._reading = True
            try:
                await self._read_events()
            finally:
                self._reading = False
        return self._messages.popleft()

    async def _read_some(self) -> bytes:
        if self._leftover:
            data, self._leftover = self._leftover, b""
            return data
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

    async def _read_events(self) -> None:
        data = await self._read_some()
        if not data:
            self._peer_finished(CloseReason(1006, "connection dropped without a close frame"))
            return
        try:
            events = self._parser.feed(data)
        except WebSocketProtocolError as exc:
            await self._send_close(exc.code, exc.reason)
            self._peer_finished(CloseReason(exc.code, exc.reason))
            return
        for event in events:
            if isinstance(event, Message):
                self._messages.append(event.data)
            elif isinstance(event, Ping):
                await self._send_raw(encode_frame(OP_PONG, event.payload))
            elif isinstance(event, Close):
                if not self._close_sent:
                    await self._send_close(1000 if event.code == 1005 else event.code, "")
                self._peer_finished(self.close_reason or CloseReason(event.code, event.reason))
                return

    def _peer_finished(self, reason: CloseReason) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        self._peer_done.set()

    # --- writing --------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        """Send one binary message. Raises ``ConnectionClosed`` once closing has begun."""
        if self._close_sent or self._peer_done.is_set():
            reason = self.close_reason or CloseReason(1006, "")
            raise ConnectionClosed(reason.code, reason.reason)
        await self._send_raw(encode_frame(OP_BINARY, data))

    async def send_raw_frame(self, frame: bytes) -> None:
        """Write bytes as they are (fault injection: frames that break the rules)."""
        await self._send_raw(frame)

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
            if self._reading:
                await self._peer_done.wait()
            else:
                while not self._peer_done.is_set():
                    await self._read_events()
        await self.abort()

    async def abort(self) -> None:
        """Close TCP now, with no close frame (the client sees 1006)."""
        if not self._stream_closed:
            self._stream_closed = True
            self._peer_finished(CloseReason(1006, "closed"))
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
    stream: trio.abc.Stream, request: UpgradeRequest, leftover: bytes, *, max_message_size: int
) -> ServerWebSocket:
    """Complete the handshake (101) and return the open WebSocket."""
    await stream.send_all(accept_response(request))
    return ServerWebSocket(stream, max_message_size=max_message_size, leftover=leftover)
