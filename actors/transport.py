"""The link's network seam: a small WebSocket interface and its trio-websocket version.

``Transport.connect(url, headers)`` is an async context manager giving a ``Connection``
with ``send``, ``receive`` and ``aclose``. Failures are translated at this boundary:
``ConnectFailed`` (the handshake did not complete; ``status`` is the HTTP status when the
server answered one) and ``TransportClosed`` (the open connection ended; ``code`` is the
close code, 1006 when it dropped without one). Tests plug in the same trio-websocket client
over an in-memory stream (tests/fakes.py), so the link is tested without sockets.

There is deliberately no keepalive: Gemini can take 30 s to answer a ping, and a client
that closes on a late pong kills healthy sessions.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import trio
import trio_websocket

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
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
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
class WebSocketTransport:
    """Production transport: trio-websocket with its limits set explicitly.

    It opens the TCP (and TLS) stream itself and hands it to trio-websocket, so the socket
    is closed on every way out: trio-websocket's own dialling leaks it when the server
    refuses the handshake or closes first.
    """

    ssl_context: ssl.SSLContext | None = None
    connect_timeout: float = CONNECT_TIMEOUT

    @asynccontextmanager
    async def connect(
        self, url: str, headers: Sequence[tuple[str, str]]
    ) -> AsyncIterator[Connection]:
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        host = parts.hostname or "localhost"
        port = parts.port or (443 if secure else 80)
        resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        stream: trio.abc.Stream | None = None
        try:
            with trio.fail_after(self.connect_timeout):
                stream = await trio.open_tcp_stream(host, port)
                if secure:
                    context = self.ssl_context or ssl.create_default_context()
                    stream = trio.SSLStream(
                        stream, context, server_hostname=host, https_compatible=True
                    )
                    await stream.do_handshake()
            async with websocket_over(
                stream, host, resource, headers, self.connect_timeout
            ) as conn:
                yield conn
        except (OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if stream is not None:
                await trio.aclose_forcefully(stream)


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
