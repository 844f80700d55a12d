"""Fakes with the same interfaces as what they replace.

``MemoryTransport`` is the link's ``Transport`` without sockets: a production WebSocket
client (``native_over``, the default, or trio-websocket's ``websocket_over``) over an
in-memory stream pair, talking to a real emulator's connection handler. Everything above
the socket is production code, and the autojump clock is exact. It records every frame the
client sends.

``ScriptedTransport`` is the link's ``Transport`` with a test script as the server, for
servers that misbehave in ways the emulator does not (hostile peers, exact timings).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import trio
import trio.testing

from actors.transport import Connection, TransportClosed, native_over, websocket_over
from emulator import Emulator
from protocol import decode_client
from protocol import wire as w


@dataclass
class RecordingConnection:
    """A ``Connection`` that keeps every message it sent, decoded."""

    inner: Connection
    sent: list[w.ClientMessage]

    async def send(self, frame: bytes) -> None:
        await self.inner.send(frame)
        self.sent.append(decode_client(frame))

    async def receive(self) -> bytes | str:
        return await self.inner.receive()

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        await self.inner.aclose(code, reason)


@dataclass
class MemoryTransport:
    emulator: Emulator
    nursery: trio.Nursery  # runs the emulator's side of each connection
    sent: list[w.ClientMessage] = field(default_factory=list)
    connects: int = 0
    client: str = "native"  # or "trio-websocket"

    @asynccontextmanager
    async def connect(
        self, url: str, headers: Sequence[tuple[str, str]]
    ) -> AsyncIterator[Connection]:
        self.connects += 1
        client, server = trio.testing.memory_stream_pair()
        self.nursery.start_soon(self.emulator.handle_stream, server, None)
        parts = urlsplit(url)
        resource = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            over = native_over if self.client == "native" else websocket_over
            async with over(client, parts.hostname or "localhost", resource, headers) as conn:
                yield RecordingConnection(conn, self.sent)
        finally:
            await trio.aclose_forcefully(client)

    def kinds(self) -> list[str]:
        """The top-level key of every frame the client sent, in order."""
        return [w.envelope_key(message) for message in self.sent]


# --- a scripted server behind the Connection interface ----------------------------------------


@dataclass
class ScriptedConnection:
    """The link's ``Connection`` with a test script playing the server: the script
    ``push``es frames (JSON-able values are encoded) or ``end``s the connection with the
    error the transport would raise; everything the link sends is kept in ``sent``."""

    index: int
    sent: list[Any] = field(default_factory=list)
    closed_with: tuple[int, str] | None = None  # the link's aclose(code, reason)

    def __post_init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[bytes | str | TransportClosed](
            math.inf
        )
        self._ended: TransportClosed | None = None

    # the server's side (the script)

    def push(self, message: Any) -> None:
        frame = message if isinstance(message, bytes | str) else json.dumps(message)
        self._send.send_nowait(frame)

    def end(self, error: TransportClosed) -> None:
        self._send.send_nowait(error)

    # the client's side (the link)

    async def send(self, frame: bytes) -> None:
        await trio.lowlevel.checkpoint()
        if self._ended is not None:
            raise TransportClosed(self._ended.code, self._ended.reason)
        self.sent.append(json.loads(frame))

    async def receive(self) -> bytes | str:
        item = await self._receive.receive()
        if isinstance(item, TransportClosed):
            self._ended = item
            raise item
        return item

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        if self.closed_with is None:
            self.closed_with = (code, reason)


Script = Callable[[ScriptedConnection], Awaitable[None]]
SETUP_COMPLETE: dict[str, Any] = {"setupComplete": {}}


@dataclass
class ScriptedTransport:
    """A ``Transport`` whose every connection runs ``script`` (in ``nursery``) as the
    server; ``connections`` are kept, with when each started."""

    script: Script
    nursery: trio.Nursery
    connections: list[ScriptedConnection] = field(default_factory=list)
    started: list[float] = field(default_factory=list)

    @asynccontextmanager
    async def connect(
        self, url: str, headers: Sequence[tuple[str, str]]
    ) -> AsyncIterator[ScriptedConnection]:
        conn = ScriptedConnection(len(self.connections) + 1)
        self.connections.append(conn)
        self.started.append(trio.current_time())
        scope = trio.CancelScope()
        self.nursery.start_soon(self._serve, conn, scope)
        try:
            yield conn
        finally:
            scope.cancel()  # the server's script ends with its connection

    async def _serve(self, conn: ScriptedConnection, scope: trio.CancelScope) -> None:
        with scope:
            await self.script(conn)
