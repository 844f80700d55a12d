"""The link's network seam: a small WebSocket interface and two clients behind it.

``Transport.connect(url, headers)`` is an async context manager giving a ``Connection``
with ``send``, ``receive`` and ``aclose``. Failures are translated at this boundary:
``ConnectFailed`` (the handshake did not complete; ``status`` is the HTTP status when the
server answered one) and ``TransportClosed`` (the open connection ended; ``code`` is the
close code, 1006 when it dropped without one).

- ``NativeTransport`` (the default): RFC 6455 spoken directly over the trio stream with
  the sans-IO codec in protocol/websocket.py. No reader task: ``receive`` reads the socket
  in the caller's task, so a server message costs one task wakeup instead of two, and no
  wsproto. Measured in ``make bench`` (session load), it is the cheaper client.
- ``WebSocketTransport``: trio-websocket (wsproto), with its limits set explicitly.

Tests plug either client in over an in-memory stream (tests/fakes.py), so the link is
tested without sockets; both are also tested over real loopback ws:// and wss://.

There is deliberately no keepalive: Gemini can take 30 s to answer a ping, and a client
that closes on a late pong kills healthy sessions.
"""

from __future__ import annotations

import base64
import collections
import os
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import trio
import trio_websocket

from protocol import websocket as rfc6455

MAX_MESSAGE_SIZE = 16 << 20
QUEUE_SIZE = 1024  # large: trio-websocket's aclose() stalls while its queue is full
CONNECT_TIMEOUT = 20.0
CLOSE_TIMEOUT = 5.0


class TransportError(Exception):
    """The network failed the link (not a protocol problem)."""


class ConnectFailed(TransportError):
    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(f"connecting failed: {reason}" + (f" (HTTP {status})" if status else ""))
        self.status = status


class TransportClosed(TransportError):
    """The connection ended: the peer's close code and reason (1006 when it just dropped)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class PeerProtocolViolation(TransportClosed):
    """The peer broke the WebSocket protocol (invalid UTF-8, a bad close frame, an
    oversized or malformed frame...), so *we* closed the connection with ``code``
    (1002, 1007 or 1009). The server's fault, not a rejection of what we sent: retry it
    like a server error, never treat ``code`` as the server's verdict."""

    def __init__(self, code: int, reason: str) -> None:
        TransportError.__init__(self, f"the server broke the WebSocket protocol: {reason}")
        self.code = code
        self.reason = reason


class Connection(Protocol):
    async def send(self, frame: bytes) -> None:
        """Send one message; raises ``TransportClosed`` if the connection has ended."""

    async def receive(self) -> bytes | str:
        """Wait for the next message; raises ``TransportClosed`` when the connection ends."""

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code`` (bounded wait for the peer's close). Idempotent."""


class Transport(Protocol):
    def connect(
        self, url: str, headers: Sequence[tuple[str, str]]
    ) -> AbstractAsyncContextManager[Connection]: ...


class WebSocketConnection:
    """A ``Connection`` over a trio-websocket client."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self._ws = ws

    async def send(self, frame: bytes) -> None:
        try:
            await self._ws.send_message(frame)
        except trio_websocket.ConnectionClosed as exc:
            raise _closed(exc) from exc

    async def receive(self) -> bytes | str:
        try:
            return await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise _closed(exc) from exc

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self._ws.aclose(code, reason or None)


def _closed(exc: trio_websocket.ConnectionClosed) -> TransportClosed:
    reason = exc.reason
    if reason is None:
        return TransportClosed(1006, "")
    return TransportClosed(reason.code, reason.reason or "")


@dataclass(frozen=True)
class _StreamTransport:
    """Opens the TCP (and TLS) stream itself and runs a WebSocket client over it, so the
    socket is closed on every way out (trio-websocket's own dialling leaks it when the
    server refuses the handshake or closes first)."""

    ssl_context: ssl.SSLContext | None = None
    connect_timeout: float = CONNECT_TIMEOUT

    @asynccontextmanager
    async def connect(
        self, url: str, headers: Sequence[tuple[str, str]]
    ) -> AsyncIterator[Connection]:
        async with (
            _open_stream(url, self.ssl_context, self.connect_timeout) as (
                stream,
                host,
                resource,
            ),
            self._client(stream, host, resource, headers) as conn,
        ):
            yield conn

    def _client(
        self, stream: trio.abc.Stream, host: str, resource: str, headers: Sequence[tuple[str, str]]
    ) -> AbstractAsyncContextManager[Connection]:
        raise NotImplementedError


@dataclass(frozen=True)
class WebSocketTransport(_StreamTransport):
    """trio-websocket (wsproto) with its limits set explicitly."""

    def _client(
        self, stream: trio.abc.Stream, host: str, resource: str, headers: Sequence[tuple[str, str]]
    ) -> AbstractAsyncContextManager[Connection]:
        return websocket_over(stream, host, resource, headers, self.connect_timeout)


@dataclass(frozen=True)
class NativeTransport(_StreamTransport):
    """Default transport: our own RFC 6455 client (no reader task) over the stream."""

    def _client(
        self, stream: trio.abc.Stream, host: str, resource: str, headers: Sequence[tuple[str, str]]
    ) -> AbstractAsyncContextManager[Connection]:
        return native_over(stream, host, resource, headers, self.connect_timeout)


@asynccontextmanager
async def _open_stream(
    url: str, ssl_context: ssl.SSLContext | None, connect_timeout: float
) -> AsyncIterator[tuple[trio.abc.Stream, str, str]]:
    """A TCP (for wss://, TLS) stream to ``url``'s host, with the host and the resource to
    ask for; network failures before or after become ``ConnectFailed``; always closed."""
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    stream: trio.abc.Stream | None = None
    try:
        with trio.fail_after(connect_timeout):
            stream = await trio.open_tcp_stream(host, port)
            if secure:
                context = ssl_context or ssl.create_default_context()
                stream = trio.SSLStream(
                    stream, context, server_hostname=host, https_compatible=True
                )
                await stream.do_handshake()
        yield stream, host, resource
    except (OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
        raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
    finally:
        if stream is not None:
            await trio.aclose_forcefully(stream)


_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class NativeConnection:
    """A ``Connection`` speaking RFC 6455 over a trio stream it does not own.

    ``receive`` answers pings and the server's close itself. ``send`` may run beside
    ``receive`` (they share only a lock around writes); ``aclose`` must not run beside
    ``receive``."""

    def __init__(self, stream: trio.abc.Stream, buffered: bytes = b"") -> None:
        self._stream = stream
        self._parser = rfc6455.FrameParser(MAX_MESSAGE_SIZE, masked=False)
        self._events: collections.deque[rfc6455.Event] = collections.deque()
        self._buffered = buffered
        self._writing = False  # a write is in progress (a pong or close may queue behind it)
        self._written = trio.Event()
        self._queued_writes = 0
        self._ended: TransportClosed | None = None
        self._close_sent = False

    async def send(self, frame: bytes) -> None:
        if self._ended is not None:
            raise TransportClosed(self._ended.code, self._ended.reason)
        await self._write(rfc6455.encode_frame(rfc6455.OP_BINARY, frame, os.urandom(4)))

    async def receive(self) -> bytes | str:
        while True:
            while self._events:
                event = self._events.popleft()
                if isinstance(event, rfc6455.Message):
                    return event.data
                if isinstance(event, rfc6455.Ping):
                    pong = rfc6455.encode_frame(rfc6455.OP_PONG, event.payload, os.urandom(4))
                    await self._write(pong)
                else:  # the server's close: answer it, and the connection has ended
                    await self._send_close(event.code if event.code != 1005 else 1000, "")
                    self._end(event.code, event.reason)
            if self._ended is not None:
                raise TransportClosed(self._ended.code, self._ended.reason)
            data, self._buffered = self._buffered, b""
            if not data:
                try:
                    data = bytes(await self._stream.receive_some(65536))
                except _STREAM_ERRORS:
                    data = b""
            if not data:
                self._end(1006, "")
                continue
            try:
                self._events.extend(self._parser.feed(data))
            except rfc6455.WebSocketProtocolError as exc:
                await self._send_close(exc.code, exc.reason)
                self._end(exc.code, f"the server broke the protocol: {exc.reason}")

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Send a close (once) and wait, bounded, for the server's; the caller then closes
        the stream."""
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self._send_close(code, reason)
            while self._ended is None:
                try:
                    await self.receive()
                except TransportClosed:
                    break
        self._end(code, reason)

    async def _send_close(self, code: int, reason: str) -> None:
        if self._close_sent:
            return
        self._close_sent = True
        with suppress(TransportClosed):
            await self._write(rfc6455.encode_close(code, reason, os.urandom(4)))

    async def _write(self, data: bytes) -> None:
        # A flag, not a trio.Lock: acquiring a free Lock still costs a scheduler round
        # trip, and a write almost never finds another in progress.
        while self._writing:
            self._queued_writes += 1
            try:
                await self._written.wait()
            finally:
                self._queued_writes -= 1
        self._writing = True
        try:
            await self._stream.send_all(data)
        except _STREAM_ERRORS as exc:
            self._end(1006, "")
            raise TransportClosed(1006, f"sending failed: {type(exc).__name__}") from exc
        finally:
            self._writing = False
            if self._queued_writes:  # rare; nothing to allocate on every write otherwise
                self._written.set()
                self._written = trio.Event()

    def _end(self, code: int, reason: str) -> None:
        if self._ended is None:
            self._ended = TransportClosed(code, reason)


@asynccontextmanager
async def native_over(
    stream: trio.abc.Stream,
    host: str,
    resource: str,
    headers: Sequence[tuple[str, str]],
    handshake_timeout: float = CONNECT_TIMEOUT,
) -> AsyncIterator[NativeConnection]:
    """Our RFC 6455 client over an already open stream (TCP, TLS, or in memory).

    Raises ``ConnectFailed`` if the handshake fails (with the HTTP status when the server
    answered one). Closes the WebSocket (not the stream: that is the caller's) on the way
    out, bounded by ``CLOSE_TIMEOUT``."""
    key = base64.b64encode(os.urandom(16))
    extra = [(name.encode(), value.encode()) for name, value in headers]
    handshake = rfc6455.ClientHandshake(host, resource, extra, key)
    try:
        with trio.fail_after(handshake_timeout):
            await stream.send_all(handshake.request)
            while True:
                try:
                    data = bytes(await stream.receive_some(65536))
                except _STREAM_ERRORS:
                    data = b""
                if handshake.feed(data):
                    break
    except rfc6455.HandshakeError as exc:
        status = exc.status if exc.status >= 200 and exc.status != 101 else None
        if status is not None:
            raise ConnectFailed("the server refused the handshake", status) from exc
        raise ConnectFailed(f"handshake failed: {exc}") from exc
    except trio.TooSlowError as exc:
        raise ConnectFailed("the handshake timed out") from exc
    except _STREAM_ERRORS as exc:
        raise ConnectFailed(f"handshake failed: {type(exc).__name__}: {exc}") from exc
    conn = NativeConnection(stream, handshake.trailing_data)
    try:
        yield conn
    finally:
        with trio.CancelScope(shield=True):
            await conn.aclose()


@asynccontextmanager
async def websocket_over(
    stream: trio.abc.Stream,
    host: str,
    resource: str,
    headers: Sequence[tuple[str, str]],
    handshake_timeout: float = CONNECT_TIMEOUT,
) -> AsyncIterator[WebSocketConnection]:
    """A trio-websocket client over an already open stream (TCP, TLS, or in memory).

    Raises ``ConnectFailed`` if the handshake fails; errors raised by the caller's block
    come out as themselves, not wrapped in exception groups. Closes the WebSocket (not the
    stream: that is the caller's) on the way out.
    """
    extra = [(name.encode(), value.encode()) for name, value in headers]
    try:
        async with trio.open_nursery() as nursery:
            try:
                with trio.fail_after(handshake_timeout):
                    ws, scope = await nursery.start(_client, stream, host, resource, extra)
            except BaseExceptionGroup as group:
                raise _handshake_failure(group) from None
            except trio.TooSlowError as exc:
                raise ConnectFailed("the handshake timed out") from exc
            try:
                yield WebSocketConnection(ws)
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
                    await ws.aclose()
                scope.cancel()
    except BaseExceptionGroup as group:
        leaf = _single(group)  # one error, raised through our nursery: as itself
        if leaf is None:
            raise
        raise leaf from leaf.__cause__


async def _client(
    stream: trio.abc.Stream,
    host: str,
    resource: str,
    headers: list[tuple[bytes, bytes]],
    task_status: trio.TaskStatus[tuple[trio_websocket.WebSocketConnection, trio.CancelScope]],
) -> None:
    """Complete the handshake and host trio-websocket's reader task until cancelled (the
    reader's error on a refused handshake then reaches ``nursery.start``)."""
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            ws = await trio_websocket.wrap_client_stream(
                nursery,
                stream,  # type: ignore[arg-type]  # any trio Stream works; its hint is narrower
                host,
                resource,
                extra_headers=headers,
                message_queue_size=QUEUE_SIZE,
                max_message_size=MAX_MESSAGE_SIZE,
            )
            task_status.started((ws, scope))
            await trio.sleep_forever()


def _handshake_failure(group: BaseExceptionGroup[BaseException]) -> ConnectFailed:
    leaf = _single(group)
    if isinstance(leaf, trio_websocket.ConnectionRejected):
        return ConnectFailed("the server refused the handshake", leaf.status_code)
    return ConnectFailed(f"handshake failed: {leaf!r}" if leaf is not None else repr(group))


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop()
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            leaves.append(error)
    return leaves[0] if len(leaves) == 1 else None
