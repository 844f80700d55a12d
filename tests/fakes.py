"""Fakes with the same interfaces as what they replace.

``MemoryTransport`` is the link's ``Transport`` without sockets: the real trio-websocket
client, over an in-memory stream pair, talking to a real emulator's connection handler.
Everything above the socket is the production code, and the autojump clock is exact.
It records every frame the client sends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import trio
import trio.testing
import trio_websocket

from actors.transport import (
    MAX_MESSAGE_SIZE,
    QUEUE_SIZE,
    ConnectFailed,
    Connection,
    WebSocketConnection,
)
from emulator import Emulator
from protocol import decode_client
from protocol import wire as w


class RecordingConnection(WebSocketConnection):
    def __init__(self, ws: trio_websocket.WebSocketConnection, sent: list[w.ClientMessage]) -> None:
        super().__init__(ws)
        self._sent = sent

    async def send(self, frame: bytes) -> None:
        await super().send(frame)
        self._sent.append(decode_client(frame))


@dataclass
class MemoryTransport:
    emulator: Emulator
    nursery: trio.Nursery  # runs both ends' background tasks
    sent: list[w.ClientMessage] = field(default_factory=list)
    connects: int = 0

    @asynccontextmanager
    async def connect(
        self, url: str, headers: Sequence[tuple[str, str]]
    ) -> AsyncIterator[Connection]:
        self.connects += 1
        client, server = trio.testing.memory_stream_pair()
        self.nursery.start_soon(self.emulator.handle_stream, server, None)
        parts = urlsplit(url)
        resource = parts.path + (f"?{parts.query}" if parts.query else "")
        extra = [(k.encode(), v.encode()) for k, v in headers]
        try:
            ws, scope = await self.nursery.start(
                _client, client, parts.hostname or "localhost", resource, extra
            )
        except BaseExceptionGroup as group:
            rejected = group.subgroup(trio_websocket.ConnectionRejected)
            if rejected is not None:
                status = _first(rejected).status_code  # type: ignore[attr-defined]
                raise ConnectFailed("the server refused the handshake", status) from None
            raise ConnectFailed(f"handshake failed: {group!r}") from None
        try:
            yield RecordingConnection(ws, self.sent)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await ws.aclose()
            await trio.aclose_forcefully(client)
            scope.cancel()

    def kinds(self) -> list[str]:
        """The top-level key of every frame the client sent, in order."""
        return [w.envelope_key(message) for message in self.sent]


async def _client(
    stream: trio.abc.Stream,
    host: str,
    resource: str,
    headers: list[tuple[bytes, bytes]],
    task_status: trio.TaskStatus[tuple[trio_websocket.WebSocketConnection, trio.CancelScope]],
) -> None:
    """Open one client connection and host its reader task until cancelled.

    The handshake runs here, beside the reader: when the server refuses it, the reader's
    error cancels the handshake wait and reaches ``nursery.start()``, as it does inside
    ``open_websocket_url``.
    """
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


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
