"""The link's network seam: a small WebSocket interface and two clients behind it.

``Transport.connect(url, headers)`` is an async context manager giving a ``Connection``
with ``send``, ``receive`` and ``aclose``. Failures are translated at this boundary:
``ConnectFailed`` (the handshake did not complete; ``host`` and ``cause`` say where and
why: DNS, refused, TLS verification, timeout; ``status`` is the HTTP status when the
server answered one) and ``TransportClosed`` (the open connection ended; ``code`` is the
close code, 1006 when it dropped without one).

- ``NativeTransport`` (the default): RFC 6455 spoken directly over the trio stream with
  the sans-IO codec in protocol/websocket.py. No reader task: ``receive`` reads the socket
  in the caller's task, so a server message costs one task wakeup instead of two, and no
  wsproto; over plain TCP, ``send`` writes straight to the socket when it has room (no
  scheduler round trip; ``send_all`` for the rest). Measured in ``make bench`` (session
  load), it is the cheaper client.
- ``WebSocketTransport``: trio-websocket (wsproto), with its limits set explicitly.

Tests plug either client in over an in-memory stream (tests/fakes.py), so the link is
tested without sockets; both are also tested over real loopback ws:// and wss://.

There is deliberately no keepalive: Gemini can take 30 s to answer a ping, and a client
that closes on a late pong kills healthy sessions.
"""

from __future__ import annotations

import base64
import collections
import errno
import os
import re
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

import trio
import trio_websocket

from actors.errors import ConnectFailed, TransportError

__all__ = [
    "ConnectFailed",
    "Connection",
    "DirectConnection",
    "NativeTransport",
    "PeerProtocolViolation",
    "Transport",
    "TransportClosed",
    "TransportError",
    "WebSocketTransport",
    "connect_cause",
    "native_over",
    "websocket_over",
]
from protocol import limits
from protocol import websocket as rfc6455
from runtime.errors import leaves

MAX_MESSAGE_SIZE = limits.MAX_SERVER_MESSAGE_BYTES
QUEUE_SIZE = 1024  # large: trio-websocket's aclose() stalls while its queue is full
CONNECT_TIMEOUT = 20.0
CLOSE_TIMEOUT = limits.CLIENT_CLOSE_TIMEOUT


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


# --- secrets -------------------------------------------------------------------------------

_SECRET_HEADERS = frozenset(
    {"x-goog-api-key", "authorization", "proxy-authorization", "cookie", "x-api-key"}
)
_SECRET_QUERY_KEYS = frozenset({"key", "access_token"})
_SECRET_QUERY = re.compile(r"(?i)\b(key|access_token)=[^&#\s'\"]+")
# What a repr may escape or quote around a value: a secret is removed piece by piece.
_REPR_BREAKS = re.compile(r"[\x00-\x20\x7f\\'\"]+")
_MIN_SECRET_PIECE = 4  # shorter pieces would blank ordinary words, and reveal little


@dataclass(frozen=True)
class Redactor:
    """Blanks secrets out of texts that may quote a request: the credential headers'
    values and ``key=``/``access_token=`` query values (also in the forms a repr gives
    them, e.g. ``b'key\\n'`` in h11's messages)."""

    secrets: tuple[str, ...] = ()

    @classmethod
    def for_request(cls, target: str, headers: Sequence[tuple[str, str]]) -> Redactor:
        values = [value for name, value in headers if name.lower() in _SECRET_HEADERS]
        query = urlsplit(target).query
        values += [
            v
            for k, v in parse_qsl(query, keep_blank_values=True)
            if k.lower() in _SECRET_QUERY_KEYS
        ]
        pieces: set[str] = set()
        for value in values:
            parts = [p for p in _REPR_BREAKS.split(value) if p]
            if len(parts) > 1 and parts[0].lower() in ("bearer", "basic", "token"):
                parts = parts[1:]  # an Authorization scheme is no secret
            pieces.update(p for p in parts if len(p) >= _MIN_SECRET_PIECE)
        return cls(tuple(sorted(pieces, key=len, reverse=True)))

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "<redacted>")
        return _SECRET_QUERY.sub(r"\1=<redacted>", text)

    def is_clean(self, error: BaseException) -> bool:
        """Whether no text in ``error``'s chain (message, repr, causes) holds a secret."""
        seen: set[int] = set()
        pending: list[BaseException | None] = [error]
        while pending:
            current = pending.pop()
            if current is None or id(current) in seen:
                continue
            seen.add(id(current))
            for text in (str(current), repr(current)):
                if self(text) != text:
                    return False
            pending += [current.__cause__, current.__context__]
            if isinstance(current, BaseExceptionGroup):
                pending += current.exceptions
        return True


_NO_SECRETS = Redactor()


def _connect_failed(
    redact: Redactor,
    reason: str,
    status: int | None = None,
    cause: BaseException | None = None,
    host: str = "",
) -> ConnectFailed:
    """A ``ConnectFailed`` with its text redacted; ``cause`` is attached only if nothing
    in it quotes a secret. Raise it outside any ``except`` block, so that no exception
    context (which a traceback would print) can carry one either."""
    # A certificate that fails verification fails the same way next time.
    retryable = not reason.startswith(CERTIFICATE_REFUSED)
    error = ConnectFailed(redact(reason), status, host=host, retryable=retryable)
    if cause is not None and redact.is_clean(cause):
        error.__cause__ = cause
    return error


class Connection(Protocol):
    async def send(self, frame: bytes) -> None:
        """Send one message; raises ``TransportClosed`` if the connection has ended."""

    async def receive(self) -> bytes | str:
        """Wait for the next message; raises ``TransportClosed`` when the connection ends."""

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code`` (bounded wait for the peer's close). Idempotent."""


@runtime_checkable
class DirectConnection(Connection, Protocol):
    """A ``Connection`` that can also send without waiting, straight to its socket, from
    synchronous code (an inline handler run in another actor's task or a clock callback)."""

    @property
    def writes_directly(self) -> bool:
        """Whether ``send_nowait`` can ever write (plain TCP); False for TLS and
        in-memory streams, which are always written with ``send``."""

    def send_nowait(self, frame: bytes) -> bool:
        """Send one message now, without waiting: True when it is written whole; False
        when only part of it fit in the socket's buffer and this connection holds the
        rest (``flush`` writes it, as does the next ``send``, before anything else).
        Raises ``trio.WouldBlock`` having done nothing when it cannot start now (no
        direct write, or a write in progress, or a rest held), ``TransportClosed``
        like ``send``."""

    async def flush(self) -> None:
        """Write the rest ``send_nowait`` held, waiting for room (a checkpoint even when
        nothing is held). Raises ``TransportClosed`` like ``send``. Cancelled before
        writing, the rest stays held; cancelled mid-write, the connection is broken as a
        cancelled ``send`` leaves it."""


class Transport(Protocol):
    def connect(
        self, url: str, headers: Sequence[tuple[str, str]]
    ) -> AbstractAsyncContextManager[Connection]: ...


class WebSocketConnection:
    """A ``Connection`` over a trio-websocket client."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, redact: Redactor = _NO_SECRETS):
        self._ws = ws
        self._redact = redact
        self._closing = False

    async def send(self, frame: bytes) -> None:
        try:
            await self._ws.send_message(frame)
        except trio_websocket.ConnectionClosed as exc:
            raise self._closed(exc) from exc

    async def receive(self) -> bytes | str:
        try:
            return await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise self._closed(exc) from exc

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        self._closing = True
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self._ws.aclose(code, reason or None)

    def _closed(self, exc: trio_websocket.ConnectionClosed) -> TransportClosed:
        reason = exc.reason
        if reason is None:
            return TransportClosed(1006, "")
        text = self._redact(reason.reason or "")
        if reason.code != 1006 and not self._closing and _closed_by_us(self._ws):
            return PeerProtocolViolation(reason.code, text)
        return TransportClosed(reason.code, text)


def _closed_by_us(ws: trio_websocket.WebSocketConnection) -> bool:
    """Whether trio-websocket ended the connection itself (wsproto found the server's
    frames invalid, or a message too big), which it reports just like the server's close.
    Only wsproto's state tells them apart: the server's close leaves it REMOTE_CLOSING or
    CLOSED, a parse failure OPEN (trio-websocket sends no close then), its own 1009
    LOCAL_CLOSING. Private, so tests/actors/test_hostile_server.py pins it."""
    state = ws._wsproto.state
    return state.name in ("OPEN", "LOCAL_CLOSING")


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
        """Raises ``ConnectFailed`` (its text never quotes a credential) or, for a header
        value HTTP cannot carry (a key ending in a newline...), ``LocalProtocolError``
        naming the header but not its value."""
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
    ask for; always closed. Network failures while connecting, and a broken stream that
    escapes the block, become ``ConnectFailed``; the block's own timeouts stay themselves."""
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    stream: trio.abc.Stream | None = None
    failure: ConnectFailed | None = None
    where = f"{host}:{port}"
    try:
        try:
            with trio.fail_after(connect_timeout):
                stream = await trio.open_tcp_stream(host, port)
                if secure:
                    context = ssl_context or ssl.create_default_context()
                    stream = trio.SSLStream(
                        stream, context, server_hostname=host, https_compatible=True
                    )
                    await stream.do_handshake()
        except trio.TooSlowError as exc:
            reason = f"timed out after {connect_timeout:g} s"
            failure = _connect_failed(Redactor.for_request(url, []), reason, cause=exc, host=where)
        if failure is None:
            assert stream is not None
            yield stream, host, resource
    except (OSError, trio.BrokenResourceError) as exc:
        reason = connect_cause(exc)
        failure = _connect_failed(Redactor.for_request(url, []), reason, cause=exc, host=where)
    finally:
        if stream is not None:
            await trio.aclose_forcefully(stream)
    if failure is not None:
        raise failure


_UNREACHABLE = (errno.ENETUNREACH, errno.EHOSTUNREACH)
CERTIFICATE_REFUSED = "TLS certificate verification failed"


def connect_cause(error: BaseException) -> str:
    """What a failed TCP or TLS connection means, in a few words: the DNS lookup, a
    refusal, certificate verification, a timeout, an unreachable network."""
    pending: list[BaseException | None] = [error]
    seen: list[BaseException] = []
    while pending:  # the error, its causes, and the attempts trio grouped (one per address)
        current = pending.pop(0)
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        if isinstance(current, BaseExceptionGroup):
            pending += current.exceptions
        pending.append(current.__cause__)
    for current in seen:
        if isinstance(current, socket.gaierror):
            return f"DNS lookup failed ({current.strerror})"
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"{CERTIFICATE_REFUSED} ({current.verify_message})"
        if isinstance(current, ssl.SSLError):
            return f"TLS handshake failed ({current.reason or current})"
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, TimeoutError):
            return "timed out"
        if isinstance(current, OSError) and current.errno in (
            errno.ENETUNREACH,
            errno.EHOSTUNREACH,
        ):
            return f"unreachable ({current.strerror})"
    return f"{type(error).__name__}: {error}"


_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
_OPEN, _LOCAL_CLOSING, _REMOTE_CLOSING, _CLOSED = rfc6455.ConnectionState
# Direct writes between two that yield to the scheduler (a checkpoint before the write):
# a sender with a backlog still lets the other tasks run at least every this many frames.
DIRECT_WRITES_PER_YIELD = 16


def _direct_writer(stream: trio.abc.Stream) -> Callable[[bytes | memoryview], int] | None:
    """For a plain TCP stream on POSIX: a function making one non-blocking ``send`` on its
    socket (``os.write`` on the descriptor: the same system call with no flags that trio's
    own ``socket.send`` makes), returning the bytes written (0 when the socket's buffer is
    full); it raises ``trio.BrokenResourceError`` when the connection is broken and
    ``trio.ClosedResourceError`` once the socket is closed, as ``send_all`` would. None for
    anything else (TLS, in-memory streams): those are always written through ``send_all``.

    Why: trio's ``send_all`` writes at once when the socket has room, then always makes a
    scheduler round trip (a cancel-shielded checkpoint); with a frame every 20 ms per
    session, that round trip is most of the cost of sending (issue 17)."""
    if os.name != "posix" or type(stream) is not trio.SocketStream:
        return None
    sock = stream.socket

    def write(data: bytes | memoryview) -> int:
        fd = sock.fileno()  # -1 once closed: never write to a descriptor reused since
        if fd < 0:
            raise trio.ClosedResourceError("the socket was closed")
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc

    return write


class NativeConnection:
    """A ``Connection`` speaking RFC 6455 over a trio stream it does not own, through the
    sans-IO ``protocol.websocket.WebSocket`` (its states, limits and closing handshake).

    ``receive`` answers pings and the server's close itself. ``send`` may run beside
    ``receive`` (they share only a lock around writes); ``aclose`` must not run beside
    ``receive``. When the server breaks the protocol, we close with 1002/1007/1009 and
    ``receive``/``send`` raise ``PeerProtocolViolation``."""

    def __init__(
        self, stream: trio.abc.Stream, buffered: bytes = b"", redact: Redactor = _NO_SECRETS
    ) -> None:
        self._stream = stream
        self._ws = rfc6455.WebSocket(rfc6455.Role.CLIENT, max_message_size=MAX_MESSAGE_SIZE)
        self._events: collections.deque[rfc6455.Event] = collections.deque()
        self._buffered = buffered
        self._redact = redact
        self._writing = False  # a write is in progress (a pong or close may queue behind it)
        self._written = trio.Event()
        self._queued_writes = 0
        self._ended: TransportClosed | None = None
        self._write_nowait = _direct_writer(stream)
        self._direct_writes = 0  # since the last one that yielded
        self._rest: memoryview | None = None  # of a frame ``send_nowait`` began: goes first

    @property
    def writes_directly(self) -> bool:
        return self._write_nowait is not None

    def send_nowait(self, frame: bytes) -> bool:
        """``DirectConnection.send_nowait``: one non-blocking write of the whole frame;
        what the socket did not take is held for ``flush`` (or the next write)."""
        write = self._write_nowait
        if write is None or self._writing or self._rest is not None:
            raise trio.WouldBlock
        data = self._framed(frame)
        try:
            written = write(data)
        except _STREAM_ERRORS as exc:
            raise self._send_failed(exc) from exc
        if written == len(data):
            return True
        self._rest = memoryview(data)[written:]
        return False

    async def flush(self) -> None:
        """``DirectConnection.flush``: write the rest ``send_nowait`` held."""
        if self._ended is not None:
            raise self._ending()
        if self._rest is None:
            await trio.lowlevel.checkpoint()
            return
        await self._write(b"")

    async def send(self, frame: bytes) -> None:
        await self._write(self._framed(frame))

    def _framed(self, frame: bytes) -> bytes:
        """``frame`` as a WebSocket message's bytes; raises how the connection ended, or
        ``TransportClosed`` once closing began."""
        if self._ended is not None:
            raise self._ending()
        try:
            return self._ws.send_message(frame)
        except rfc6455.ConnectionClosed as exc:  # closing began (aclose)
            raise TransportClosed(exc.code, self._redact(exc.reason)) from None

    def _send_failed(self, error: BaseException) -> TransportClosed:
        """The connection is lost: the error a failed write raises (from ``error``)."""
        self._lost()
        return TransportClosed(1006, f"sending failed: {type(error).__name__}")

    async def receive(self) -> bytes | str:
        """Wait for the next message. Raises ``TransportClosed`` with the server's close
        code (answered), 1006 when the stream ended, or ``PeerProtocolViolation``."""
        while True:
            while self._events:
                event = self._events.popleft()
                if type(event) is rfc6455.Message:
                    return event.data
                await self._write_owed()  # a pong, or our close after a violation
                if isinstance(event, rfc6455.Close):
                    if self._ws.state is _REMOTE_CLOSING:
                        await self._write_quietly(self._ws.close())  # echoes its code
                    self._end(TransportClosed(event.code, self._redact(event.reason)))
                elif isinstance(event, rfc6455.ProtocolViolation):
                    self._end(PeerProtocolViolation(event.code, event.reason))
            if self._ended is not None:
                raise self._ending()
            data, self._buffered = self._buffered, b""
            if not data:
                try:
                    data = bytes(await self._stream.receive_some(limits.READ_SIZE))
                except _STREAM_ERRORS:
                    data = b""
                if self._over():
                    continue  # a write failed meanwhile: the connection is over
            if not data:
                self._lost()
                continue
            self._events.extend(self._ws.receive_data(data))

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Send a close (once) and wait, at most ``CLOSE_TIMEOUT``, for the server's; the
        caller then closes the stream. Idempotent. Raises ``LocalProtocolError`` for a
        code that may not be sent (1005, 1006, 1015...)."""
        with trio.move_on_after(CLOSE_TIMEOUT):
            if self._ended is None and self._ws.state in (_OPEN, _REMOTE_CLOSING):
                await self._write_quietly(self._ws.close(code, reason))
            while self._ended is None:
                try:
                    await self.receive()
                except TransportClosed:
                    break
        self._end(TransportClosed(code, reason))

    def _over(self) -> bool:
        return self._ended is not None

    def _ending(self) -> TransportClosed:
        """A fresh copy of how the connection ended, of the same type."""
        ended = self._ended
        assert ended is not None
        error = type(ended)(ended.code, ended.reason)
        error.__cause__ = self._ws.failure
        return error

    async def _write_owed(self) -> None:
        owed = self._ws.data_to_send()
        if owed:
            await self._write_quietly(owed)

    async def _write_quietly(self, data: bytes) -> None:
        with suppress(TransportClosed):
            await self._write(data)

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
            if self._write_nowait is None:
                await self._stream.send_all(data)
            else:
                await self._write_direct(data, self._write_nowait)
        except _STREAM_ERRORS as exc:
            raise self._send_failed(exc) from exc
        finally:
            self._writing = False
            if self._queued_writes:  # rare; nothing to allocate on every write otherwise
                self._written.set()
                self._written = trio.Event()

    async def _write_direct(
        self, data: bytes, write_nowait: Callable[[bytes | memoryview], int]
    ) -> None:
        """Write ``data`` straight to the socket when it has room (no scheduler round
        trip); what does not fit (a partial write, a full buffer) goes through
        ``send_all``, which waits for room. Always a cancellation point *before* anything
        is written (cancelled, nothing was sent; cancelled later, inside ``send_all``, the
        stream is broken as with ``send_all`` alone), and every
        ``DIRECT_WRITES_PER_YIELD`` writes a full checkpoint, so the caller's task
        still lets others run."""
        self._direct_writes += 1
        if self._direct_writes >= DIRECT_WRITES_PER_YIELD:
            self._direct_writes = 0
            await trio.lowlevel.checkpoint()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        if self._rest is not None:  # the rest of a frame ``send_nowait`` began goes first
            data, self._rest = bytes(self._rest) + data, None
        written = write_nowait(data)
        if written < len(data):
            self._direct_writes = 0  # send_all yields
            await self._stream.send_all(memoryview(data)[written:])

    def _lost(self) -> None:
        self._rest = None  # never written now
        self._ws.receive_data(b"")
        self._end(TransportClosed(1006, ""))

    def _end(self, error: TransportClosed) -> None:
        if self._ended is None:
            self._ended = error


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
    answered one; its text never quotes a credential), ``LocalProtocolError`` if a header
    cannot be sent (naming it, never its value). Closes the WebSocket (not the stream:
    that is the caller's) on the way out, bounded by ``CLOSE_TIMEOUT``."""
    redact = Redactor.for_request(resource, headers)
    key = base64.b64encode(os.urandom(16))
    extra = [(name.encode(), value.encode()) for name, value in headers]
    handshake = rfc6455.ClientHandshake(host, resource, extra, key)
    failure = await _client_handshake(stream, handshake, handshake_timeout, redact)
    if failure is not None:
        raise failure
    conn = NativeConnection(stream, handshake.trailing_data, redact)
    try:
        yield conn
    finally:
        with trio.CancelScope(shield=True):
            await conn.aclose()


async def _client_handshake(
    stream: trio.abc.Stream,
    handshake: rfc6455.ClientHandshake,
    handshake_timeout: float,
    redact: Redactor,
) -> ConnectFailed | None:
    """Write the upgrade request and read the answer (at most ``MAX_HANDSHAKE_BYTES``)
    within ``handshake_timeout``. Returns the failure instead of raising it (see
    ``_connect_failed``)."""
    try:
        with trio.fail_after(handshake_timeout):
            await stream.send_all(handshake.request)
            while True:
                try:
                    data = bytes(await stream.receive_some(limits.READ_SIZE))
                except _STREAM_ERRORS:
                    data = b""
                if handshake.feed(data):
                    return None
    except rfc6455.HandshakeError as exc:
        if exc.status >= 200 and exc.status != 101:
            return _connect_failed(redact, "the server refused the handshake", exc.status, exc)
        return _connect_failed(redact, f"handshake failed: {exc}", cause=exc)
    except trio.TooSlowError as exc:
        return _connect_failed(redact, "the handshake timed out", cause=exc)
    except _STREAM_ERRORS as exc:
        return _connect_failed(redact, f"handshake failed: {type(exc).__name__}: {exc}", cause=exc)


@asynccontextmanager
async def websocket_over(
    stream: trio.abc.Stream,
    host: str,
    resource: str,
    headers: Sequence[tuple[str, str]],
    handshake_timeout: float = CONNECT_TIMEOUT,
) -> AsyncIterator[WebSocketConnection]:
    """A trio-websocket client over an already open stream (TCP, TLS, or in memory).

    Raises ``ConnectFailed`` if the handshake fails (its text never quotes a credential),
    ``LocalProtocolError`` if a header cannot be sent (checked before trio-websocket sees
    it: h11's own message would quote the value); errors raised by the caller's block come
    out as themselves, not wrapped in exception groups. Closes the WebSocket (not the
    stream: that is the caller's) on the way out.
    """
    redact = Redactor.for_request(resource, headers)
    extra = [(name.encode(), value.encode()) for name, value in headers]
    rfc6455.check_request(resource, extra)
    try:
        async with trio.open_nursery() as nursery:
            failure: ConnectFailed | None = None
            try:
                with trio.fail_after(handshake_timeout):
                    ws, scope = await nursery.start(_client, stream, host, resource, extra)
            except BaseExceptionGroup as group:
                failure = _handshake_failure(group, redact)
            except trio.TooSlowError as exc:
                failure = _connect_failed(redact, "the handshake timed out", cause=exc)
            if failure is not None:
                raise failure
            try:
                yield WebSocketConnection(ws, redact)
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


def _handshake_failure(group: BaseExceptionGroup[BaseException], redact: Redactor) -> ConnectFailed:
    leaf = _single(group)
    if isinstance(leaf, trio_websocket.ConnectionRejected):
        return _connect_failed(redact, "the server refused the handshake", leaf.status_code)
    return _connect_failed(
        redact, f"handshake failed: {leaf!r}" if leaf is not None else repr(group)
    )


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The group's one error, or None (``runtime.errors`` flattens groups for everyone)."""
    found = leaves(group)
    return found[0] if len(found) == 1 else None
