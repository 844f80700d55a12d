"""Fakes with the same interfaces as what they replace.

``MemoryTransport`` is the link's ``Transport`` without sockets: a production WebSocket
client (``native_over``, the default, or trio-websocket's ``websocket_over``) over an
in-memory stream pair, talking to a real emulator's connection handler. Everything above the socket is production code, and
the autojump clock is exact. It records every frame the client sends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import trio
import trio.testing

from actors.transport import Connection, native_over, websocket_over
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
