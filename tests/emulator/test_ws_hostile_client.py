"""The emulator's WebSocket server (``ServerWebSocket``) against hostile and broken
clients, over real loopback sockets, in both of its modes: the portable path (trio's
stream only, ``reactor=None``) and the fast path (a ``ReadReactor`` reading the socket).

Each client is a small script in the test writing raw frames. The server must close with
the right code when the client breaks the protocol, bound what one connection makes it
hold (an unfinished message, queued messages, pongs owed) and how long it waits.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from emulator.reactor import ReadReactor
from emulator.wsserver import (
    ByteBudget,
    ConnectionClosed,
    ServerWebSocket,
    accept,
    accept_upgrade,
)
from protocol import limits
from protocol import websocket as rfc6455
from protocol.errors import LocalProtocolError

KEY = "MDEyMzQ1Njc4OWFiY2RlZg=="
UPGRADE = (
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
).encode()
MODES = pytest.mark.parametrize("reactor", [False, True], ids=["portable", "reactor"])


def client_frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, masked: bool = True, rsv: int = 0
) -> bytes:
    first = (0x80 if fin else 0) | rsv | opcode
    length = len(payload)
    bit = 0x80 if masked else 0
    if length < 126:
        header = bytes((first, bit | length))
    elif length < 65536:
        header = bytes((first, bit | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((first, bit | 127)) + length.to_bytes(8, "big")
    if not masked:
        return header + payload
    mask = os.urandom(4)
    return header + mask + rfc6455._unmask(payload, mask)


def announce(length: int) -> bytes:
    """A masked binary frame's header announcing ``length`` bytes (mask of zeros)."""
    return bytes((0x82, 0x80 | 127)) + length.to_bytes(8, "big") + b"\0\0\0\0"


class GuardedSocket:
    """A trio socket that fails the test if anything reaches for its private stdlib
    socket: the portable path must not."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "_sock":
            raise AssertionError("trio's private socket touched without a reactor")
        return getattr(self._inner, name)


class RawClient:
    """The test's side: writes raw bytes, reads the server's frames with our codec."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.codec = rfc6455.WebSocket(rfc6455.Role.CLIENT, max_message_size=64 << 20)

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def events(self, until: type) -> list[rfc6455.Event]:
        """Frames from the server until one of type ``until`` (or EOF)."""
        events: list[rfc6455.Event] = []
        while not any(isinstance(e, until) for e in events):
            data = await self.stream.receive_some(65536)
            if not data:
                break
            events += self.codec.receive_data(data)
        return events

    async def pongs_until_close(self) -> list[bytes]:
        pongs: list[bytes] = []
        parser = rfc6455.FrameParser(masked=False)
        buffer = b""
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                return pongs
            buffer += data
            while len(buffer) >= 2 and len(buffer) >= 2 + (buffer[1] & 0x7F):
                opcode, end = buffer[0] & 0x0F, 2 + (buffer[1] & 0x7F)
                if opcode == rfc6455.OP_PONG:
                    pongs.append(buffer[2:end])
                elif opcode == rfc6455.OP_CLOSE:
                    return pongs
                else:
                    parser.feed(buffer[:end])
                buffer = buffer[end:]


@asynccontextmanager
async def connections(
    count: int,
    *,
    reactor: bool,
    max_message_size: int = limits.MAX_CLIENT_MESSAGE_BYTES,
    budget: ByteBudget | None = None,
) -> AsyncIterator[list[tuple[ServerWebSocket, RawClient]]]:
    """``count`` upgraded connections on 127.0.0.1: (server's WebSocket, raw client)."""
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    async with listener, trio.open_nursery() as nursery:
        read_reactor = ReadReactor() if reactor else None
        if read_reactor is not None:
            nursery.start_soon(read_reactor.run)
        pairs: list[tuple[ServerWebSocket, RawClient]] = []
        for _ in range(count):
            client = await trio.open_tcp_stream("127.0.0.1", port)
            await client.send_all(UPGRADE)
            server = await listener.accept()
            assert isinstance(server, trio.SocketStream)
            if not reactor:
                server.socket = GuardedSocket(server.socket)  # type: ignore[assignment]
            upgrade = await accept_upgrade(server)
            assert upgrade is not None
            ws = await accept(
                server,
                *upgrade,
                max_message_size=max_message_size,
                reactor=read_reactor,
                budget=budget,
            )
            response = await client.receive_some(4096)
            assert response.startswith(b"HTTP/1.1 101")
            pairs.append((ws, RawClient(client)))
        try:
            yield pairs
        finally:
            for ws, raw in pairs:
                await ws.abort()
                await raw.stream.aclose()
            nursery.cancel_scope.cancel()


def state(ws: ServerWebSocket) -> rfc6455.ConnectionState:
    return ws.state  # a call, so that a type checker does not narrow it across awaits


@pytest.fixture
def virtual_clock() -> MockClock:
    return MockClock(autojump_threshold=0.05)


# --- both modes work fully ---------------------------------------------------------------


@MODES
async def test_messages_pings_and_the_clients_close(reactor: bool) -> None:
    async with connections(1, reactor=reactor) as [(ws, client)]:
        with trio.fail_after(10):
            await client.send(
                client_frame(rfc6455.OP_TEXT, "héllo".encode())
                + client_frame(rfc6455.OP_PING, b"there?")
                + client_frame(rfc6455.OP_BINARY, b"\x00\x01")
            )
            assert await ws.receive() == "héllo"
            assert await ws.receive() == b"\x00\x01"
            await ws.send(b"from the server")
            assert state(ws) is rfc6455.ConnectionState.OPEN
            await client.send(client_frame(rfc6455.OP_CLOSE, (1001).to_bytes(2, "big") + b"bye"))
            with pytest.raises(ConnectionClosed) as info:
                await ws.receive()
            assert (info.value.code, info.value.reason) == (1001, "bye")
            assert ws.state is rfc6455.ConnectionState.CLOSED
            events = await client.events(until=rfc6455.Close)
    assert events == [rfc6455.Message(b"from the server"), rfc6455.Close(1001, "")]
    with pytest.raises(ConnectionClosed):
        await ws.send(b"late")


@MODES
async def test_our_close_waits_for_the_clients_and_reads_what_was_in_flight(
    reactor: bool,
) -> None:
    async with connections(1, reactor=reactor) as [(ws, client)]:

        async def answer() -> None:
            events = await client.events(until=rfc6455.Close)
            assert events == [rfc6455.Close(1000, "done")]
            await client.send(client_frame(rfc6455.OP_BINARY, b"in flight"))
            await client.send(client_frame(rfc6455.OP_CLOSE, (1000).to_bytes(2, "big")))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer)
                await ws.aclose(1000, "done")
    assert ws.close_reason is not None
    assert ws.close_reason.code == 1000
    assert ws.state is rfc6455.ConnectionState.CLOSED


# --- the client breaks the protocol ----------------------------------------------------------

VIOLATIONS = {
    "unmasked": (client_frame(rfc6455.OP_BINARY, b"x", masked=False), 1002, "masked"),
    "rsv": (client_frame(rfc6455.OP_BINARY, b"x", rsv=0x20), 1002, "reserved bits"),
    "opcode": (client_frame(0x7, b"x"), 1002, "unknown opcode 7"),
    "long-ping": (client_frame(rfc6455.OP_PING, b"p" * 126), 1002, "control frames"),
    "fragmented-close": (client_frame(rfc6455.OP_CLOSE, fin=False), 1002, "control frames"),
    "utf8": (client_frame(rfc6455.OP_TEXT, b"\xc3("), 1007, "UTF-8"),
    "too-big": (announce(limits.MAX_CLIENT_MESSAGE_BYTES + 1), 1009, "larger than"),
    "bad-close-code": (client_frame(rfc6455.OP_CLOSE, (1006).to_bytes(2, "big")), 1002, "1006"),
}


@MODES
@pytest.mark.parametrize("case", list(VIOLATIONS))
async def test_a_violation_closes_with_its_code_after_the_messages_before_it(
    reactor: bool, case: str
) -> None:
    data, code, says = VIOLATIONS[case]
    async with connections(1, reactor=reactor) as [(ws, client)]:
        with trio.fail_after(10):
            await client.send(client_frame(rfc6455.OP_BINARY, b"first") + data)
            assert await ws.receive() == b"first"
            with pytest.raises(ConnectionClosed) as info:
                await ws.receive()
            events = await client.events(until=rfc6455.Close)
    assert info.value.code == code
    assert isinstance(info.value.__cause__, rfc6455.WebSocketProtocolError)
    close = events[-1]
    assert isinstance(close, rfc6455.Close)
    assert close.code == code
    assert says in close.reason


@MODES
async def test_a_failing_fast_handler_closes_with_1011(reactor: bool) -> None:
    def broken(data: bytes | str) -> bool:
        raise RuntimeError("handler bug")

    async with connections(1, reactor=reactor) as [(ws, client)]:
        ws.fast_handler = broken
        with trio.fail_after(10):
            await client.send(client_frame(rfc6455.OP_BINARY, b"audio"))
            if reactor:  # the reactor's task ran the handler: the connection says so
                with pytest.raises(ConnectionClosed) as info:
                    await ws.receive()
                assert info.value.code == 1011
                events = await client.events(until=rfc6455.Close)
                assert events[-1] == rfc6455.Close(1011, "internal error")
            else:  # the handler runs in the caller of receive(): its error is the caller's
                with pytest.raises(RuntimeError, match="handler bug"):
                    await ws.receive()


# --- what a client can make the server hold ----------------------------------------------------


@MODES
@pytest.mark.parametrize("payload", [b"", b"y"], ids=["empty", "one-byte"])
async def test_endless_continuation_frames_end_at_the_fragment_limit(
    reactor: bool, payload: bytes
) -> None:
    async with connections(1, reactor=reactor) as [(ws, client)]:
        start = client_frame(rfc6455.OP_TEXT, b"{", fin=False)
        more = client_frame(rfc6455.OP_CONTINUATION, payload, fin=False)
        with trio.fail_after(10):
            await client.send(start + more * (limits.MAX_FRAGMENTS + 100))
            with pytest.raises(ConnectionClosed) as info:
                await ws.receive()
    assert info.value.code == 1009
    assert ws.buffered_bytes == 0


@MODES
async def test_partial_frames_past_the_limit_are_refused_on_their_header(reactor: bool) -> None:
    """Measured on the old emulator: 20 partial 15 MB frames held 288 MiB. A frame
    announcing more than the limit is refused before its payload is read."""
    async with connections(20, reactor=reactor) as pairs:
        with trio.fail_after(20):
            for _ws, client in pairs:
                await client.send(announce(15_000_000) + b"a" * 65536)
            for ws, _client in pairs:
                with pytest.raises(ConnectionClosed) as info:
                    await ws.receive()
                assert info.value.code == 1009
                assert ws.buffered_bytes == 0


@MODES
async def test_partial_frames_at_the_limit_hold_what_arrived_and_no_more(reactor: bool) -> None:
    limit, count = 1 << 20, 3  # a smaller limit: the bound is the same arithmetic
    async with connections(count, reactor=reactor, max_message_size=limit) as pairs:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                received: list[bytes | str] = []

                async def serve(ws: ServerWebSocket) -> None:
                    received.append(await ws.receive())

                for ws, client in pairs:
                    nursery.start_soon(serve, ws)
                    await client.send(announce(limit) + b"a" * (limit - 1))
                for ws, _client in pairs:
                    await held_at_least(ws, limit - 1)
                held = [ws.buffered_bytes for ws, _client in pairs]
                assert held == [limit - 1] * count
                assert sum(held) <= count * (limit + limits.READ_SIZE)
                for _ws, client in pairs:
                    await client.send(b"a")  # the last byte: every message completes
        assert received == [b"a" * limit] * count
        for ws, client in pairs:
            await client.send(announce(limit + 1))
            with pytest.raises(ConnectionClosed) as info:
                await ws.receive()
            assert info.value.code == 1009


@MODES
async def test_partial_messages_of_every_connection_at_the_budget_and_one_byte_past(
    reactor: bool,
) -> None:
    """One budget for what every connection holds of unfinished messages: at it, all go
    on; one byte past it, the connection that took it there is closed 1013 (try again
    later) and lets go of what it held; the others are untouched."""
    budget = ByteBudget(3000)
    async with connections(2, reactor=reactor, budget=budget) as [(ws_a, a), (ws_b, b)]:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                outcomes: dict[str, bytes | str | int] = {}

                async def serve(name: str, ws: ServerWebSocket) -> None:
                    try:
                        outcomes[name] = await ws.receive()
                    except ConnectionClosed as exc:
                        outcomes[name] = exc.code

                nursery.start_soon(serve, "a", ws_a)
                nursery.start_soon(serve, "b", ws_b)
                await a.send(announce(2000) + b"a" * 1500)
                await b.send(announce(2000) + b"b" * 1500)
                await held_at_least(ws_a, 1500)
                await held_at_least(ws_b, 1500)
                assert budget.used == 3000  # at the budget: both go on
                await trio.testing.wait_all_tasks_blocked()
                assert outcomes == {}
                await b.send(b"b")  # one byte past it
                closes = [e for e in await b.events(rfc6455.Close) if isinstance(e, rfc6455.Close)]
                assert [c.code for c in closes] == [1013]
                await ws_b.abort()
                assert budget.used == 1500  # b let go of what it held
                await a.send(b"a" * 500)  # a's message completes
        assert outcomes == {"a": b"a" * 2000, "b": 1013}
    assert budget.used == 0


async def held_at_least(ws: ServerWebSocket, size: int) -> None:
    """Wait (polling: the server has no event for it) until ``ws`` holds ``size`` bytes."""
    while ws.buffered_bytes < size:  # noqa: ASYNC110
        await trio.sleep(0.01)


@MODES
async def test_messages_nobody_takes_are_bounded_and_none_is_lost(reactor: bool) -> None:
    count, size = 4000, 1000
    async with connections(1, reactor=reactor) as [(ws, client)]:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                frames = b"".join(
                    client_frame(rfc6455.OP_BINARY, b"%06d" % i + b"m" * (size - 6))
                    for i in range(count)
                )
                nursery.start_soon(client.send, frames)  # blocks once TCP pushes back
                await trio.sleep(0.5)  # real time: the server reads what it will
                # The queue stops growing near its limit (plus one read's messages).
                assert ws.buffered_bytes <= limits.MAX_QUEUED_BYTES + 3 * limits.READ_SIZE
                for i in range(count):
                    assert await ws.receive() == b"%06d" % i + b"m" * (size - 6)


@MODES
async def test_a_ping_flood_is_answered_with_a_few_pongs(reactor: bool) -> None:
    pings = 5000
    async with connections(1, reactor=reactor) as [(ws, client)]:
        with trio.fail_after(10):
            flood = b"".join(client_frame(rfc6455.OP_PING, b"%d" % i) for i in range(pings))
            await client.send(flood + client_frame(rfc6455.OP_BINARY, b"after"))
            assert await ws.receive() == b"after"
            await ws.aclose()
            pongs = await client.pongs_until_close()
    assert 1 <= len(pongs) <= pings * 10 // limits.READ_SIZE + 1  # at most one per read
    assert pongs[-1] == b"%d" % (pings - 1)


# --- time: a client that never finishes something ------------------------------------------------


@MODES
async def test_a_client_that_never_answers_our_close_is_left_after_the_timeout(
    reactor: bool, virtual_clock: MockClock
) -> None:
    async with connections(1, reactor=reactor) as [(ws, _client)]:
        start = trio.current_time()
        await ws.aclose(1000)
        assert trio.current_time() - start == pytest.approx(limits.SERVER_CLOSE_TIMEOUT, abs=0.2)
        assert ws.state is rfc6455.ConnectionState.CLOSED


async def test_an_upgrade_request_that_never_ends_is_dropped(autojump_clock: MockClock) -> None:
    client, server = trio.testing.memory_stream_pair()

    async def trickle() -> None:
        await client.send_all(b"GET /ws HTTP/1.1\r\n")
        with suppress(trio.BrokenResourceError):  # until the server closes
            while True:
                await client.send_all(b"X")
                await trio.sleep(1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trickle)
        start = trio.current_time()
        assert await accept_upgrade(server) is None
        assert trio.current_time() - start == pytest.approx(limits.HANDSHAKE_TIMEOUT)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("extra", [0, 1], ids=["at-the-limit", "one-past"])
@pytest.mark.parametrize("pieces", [1, 3], ids=["one-read", "three-reads"])
async def test_upgrade_request_size_at_the_limit_and_one_past(extra: int, pieces: int) -> None:
    filler = limits.MAX_HANDSHAKE_BYTES - len(UPGRADE) - len(b"X-Pad: \r\n") + extra
    request = UPGRADE[:-2] + b"X-Pad: " + b"p" * filler + b"\r\n\r\n"
    assert len(request) == limits.MAX_HANDSHAKE_BYTES + extra
    client, server = trio.testing.memory_stream_pair()
    step = len(request) // pieces + 1
    for start in range(0, len(request), step):
        await client.send_all(request[start : start + step])
    upgrade = await accept_upgrade(server)
    if extra:
        assert upgrade is None
        answer = await client.receive_some(4096)
        assert answer.startswith(b"HTTP/1.1 431 ")
    else:
        assert upgrade is not None


# --- closing ----------------------------------------------------------------------------------


@MODES
@pytest.mark.parametrize("char", ["é", "€", "😀"])
async def test_a_long_multibyte_close_reason_reaches_the_client_intact(
    reactor: bool, char: str
) -> None:
    reason = "x" + char * 100  # cut at 123 bytes, in the middle of a character
    async with connections(1, reactor=reactor) as [(ws, client)]:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ws.aclose, 1011, reason)
                events = await client.events(until=rfc6455.Close)
                await client.send(client_frame(rfc6455.OP_CLOSE, (1011).to_bytes(2, "big")))
    close = events[-1]
    assert isinstance(close, rfc6455.Close)  # not a 1007 violation of our own making
    assert close.code == 1011
    assert reason.startswith(close.reason)
    assert len(close.reason.encode()) > 123 - len(char.encode())


async def test_a_close_code_that_may_not_be_sent_is_refused() -> None:
    async with connections(1, reactor=False) as [(ws, _client)]:
        with pytest.raises(LocalProtocolError, match="1006"):
            await ws.aclose(1006)
