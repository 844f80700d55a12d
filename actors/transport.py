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
        await _close_stream(self._ws)


def _closed(exc: trio_websocket.ConnectionClosed) -> TransportClosed:
    reason = exc.reason
    if reason is None:
        return TransportClosed(1006, "")
    return TransportClosed(reason.code, reason.reason or "")


async def _close_stream(ws: trio_websocket.WebSocketConnection) -> None:
    # When the server closes first, trio-websocket's client can stop reading before the
    # server's TCP close arrives and never close its socket: close the stream here.
    stream = getattr(ws, "_stream", None)
    if stream is not None:
        await trio.aclose_forcefully(stream)


@dataclass(frozen=True)
class WebSocketTransport:
    """Production transport: trio-websocket with its limits set explicitly."""

    ssl_context: ssl.SSLContext | None = None
    connect_timeout: float = CONNECT_TIMEOUT

    @asynccontextmanager
    async def connect(
        self, url: str, headers: Sequence[tuple[str, str]]
    ) -> AsyncIterator[Connection]:
        extra = [(name.encode(), value.encode()) for name, value in headers]
        context = self.ssl_context
        if context is None and urlsplit(url).scheme == "wss":
            context = ssl.create_default_context()
        entered: trio_websocket.WebSocketConnection | None = None
        try:
            async with trio_websocket.open_websocket_url(
                url,
                ssl_context=context,
                extra_headers=extra,
                message_queue_size=QUEUE_SIZE,
                max_message_size=MAX_MESSAGE_SIZE,
                connect_timeout=self.connect_timeout,
                disconnect_timeout=CLOSE_TIMEOUT,
            ) as ws:
                entered = ws
                yield WebSocketConnection(ws)
        except trio_websocket.ConnectionRejected as exc:
            raise ConnectFailed("the server refused the handshake", exc.status_code) from exc
        except (trio_websocket.HandshakeError, OSError, trio.TooSlowError) as exc:
            if entered is not None:
                raise
            cause = exc.__cause__ or exc
            raise ConnectFailed(f"{type(cause).__name__}: {cause}") from exc
        finally:
            if entered is not None:
                await _close_stream(entered)
