"""A small hostile Gemini Live server for tests: real sockets on 127.0.0.1, WebSocket by hand.

It speaks just enough RFC 6455 (the handshake, unmasked server frames, masked client
frames) to do what a broken or malicious server would: say setupComplete and then send
whatever a test scripts. It depends on nothing in this project, so it cannot share a bug
with the client under test.

    async with hostile_server(script) as server:     # script(peer) runs per connection
        model = RealtimeModel(endpoint=server.url)
        ...
    server.connections                                 # how many connected
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import trio

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final server frame."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return header + payload


@dataclass
class Peer:
    """One accepted connection, after the handshake."""

    stream: trio.SocketStream
    index: int
    request: bytes
    _buffer: bytearray = field(default_factory=bytearray)

    async def send(self, message: Any) -> None:
        """A text frame: ``message`` as JSON (bytes and str are sent as they are)."""
        if isinstance(message, bytes | str):
            data = message.encode() if isinstance(message, str) else message
        else:
            data = json.dumps(message).encode()
        await self.stream.send_all(frame(OP_TEXT, data))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame and shut the socket (no waiting for the client's)."""
        with suppress(trio.BrokenResourceError):
            await self.stream.send_all(frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()))
        await self.stream.aclose()

    async def receive(self) -> tuple[int, bytes]:
        """The next client frame as (opcode, unmasked payload); (OP_CLOSE, b"") at EOF."""
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            try:
                chunk = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                chunk = b""
            if not chunk:
                return OP_CLOSE, b""
            self._buffer += chunk

    async def receive_json(self) -> Any:
        """The next client data message, parsed (control frames skipped)."""
        while True:
            opcode, payload = await self.receive()
            if opcode in (OP_TEXT, OP_BINARY):
                return json.loads(payload)
            if opcode == OP_CLOSE:
                raise EOFError("the client closed")

    async def drain(self) -> tuple[int, bytes]:
        """Read and discard client frames until its close; the close frame's payload."""
        while True:
            opcode, payload = await self.receive()
            if opcode == OP_CLOSE:
                return opcode, payload

    async def until_closed(self) -> None:
        """Read and discard client frames until its close, and answer that close (so the
        client does not wait for it)."""
        _, payload = await self.drain()
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.stream.send_all(frame(OP_CLOSE, payload[:2]))

    def _parse(self) -> tuple[int, bytes] | None:
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        length, offset = buffer[1] & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                return None
            length, offset = struct.unpack_from("!H", buffer, 2)[0], 4
        elif length == 127:
            if len(buffer) < 10:
                return None
            length, offset = struct.unpack_from("!Q", buffer, 2)[0], 10
        end = offset + 4 + length
        if len(buffer) < end:
            return None
        mask = bytes(buffer[offset : offset + 4])
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(buffer[offset + 4 : end]))
        opcode = buffer[0] & 0x0F
        del buffer[:end]
        return opcode, body


Script = Callable[[Peer], Awaitable[None]]


@dataclass
class HostileServer:
    port: int
    connections: int = 0
    peers: list[Peer] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


async def _handshake(stream: trio.SocketStream) -> bytes:
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError("closed during the handshake")
        request += chunk
    head, _, rest = request.partition(b"\r\n\r\n")
    assert not rest, "the client sent data before the handshake's answer"
    key = next(
        line.split(b":", 1)[1].strip()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    await stream.send_all(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    return head


async def setup_complete(peer: Peer) -> Any:
    """Read the client's setup and answer setupComplete; the setup message."""
    setup = await peer.receive_json()
    await peer.send({"setupComplete": {}})
    return setup


@asynccontextmanager
async def hostile_server(script: Script) -> AsyncIterator[HostileServer]:
    """Serve ``script`` to every connection on 127.0.0.1 (port 0) until the block exits.
    A script's failure ends only its own connection."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    server = HostileServer(port)

    async def handle(stream: trio.SocketStream) -> None:
        server.connections += 1
        index = server.connections
        try:
            request = await _handshake(stream)
            peer = Peer(stream, index, request)
            server.peers.append(peer)
            await script(peer)
        except (trio.BrokenResourceError, trio.ClosedResourceError, EOFError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        yield server
        nursery.cancel_scope.cancel()
