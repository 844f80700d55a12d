"""Hostile and broken servers against both client transports, over real loopback sockets.

Each server is a small script in the test: it accepts the upgrade, then does one bad
thing. The client must bound what it holds and how long it waits, and when it closes
because the server broke the protocol it says so (``PeerProtocolViolation``, which the
link retries) instead of reporting the close code as the server's verdict. Credentials
never appear in what connect raises.
"""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from functools import partial

import pytest
import trio
from trio.testing import MockClock

from actors.transport import (
    CLOSE_TIMEOUT,
    ConnectFailed,
    Connection,
    NativeTransport,
    PeerProtocolViolation,
    TransportClosed,
    WebSocketTransport,
)
from protocol import limits
from protocol import websocket as rfc6455
from protocol.errors import LocalProtocolError

Script = Callable[[trio.SocketStream], Awaitable[None]]
TRANSPORTS = pytest.mark.parametrize(
    "transport_type", [NativeTransport, WebSocketTransport], ids=["native", "trio-websocket"]
)


@pytest.fixture
def virtual_clock() -> MockClock:
    """Jumps only after 50 ms of real idleness: loopback data in flight is not idleness."""
    return MockClock(autojump_threshold=0.05)


@asynccontextmanager
async def hostile_server(script: Script, *, upgrade: bool = True) -> AsyncIterator[str]:
    """A server on 127.0.0.1 running ``script`` on each connection (after accepting the
    WebSocket upgrade, unless ``upgrade`` is False); yields its ws:// URL."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            if upgrade:
                await accept_upgrade(stream)
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await script(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws"
        nursery.cancel_scope.cancel()


async def accept_upgrade(stream: trio.abc.Stream) -> None:
    reader = rfc6455.HandshakeReader()
    while (request := reader.feed(bytes(await stream.receive_some(65536)))) is None:
        pass
    await stream.send_all(rfc6455.accept_response(request))


async def read_client_frames(stream: trio.abc.Stream, count: int) -> list[tuple[int, bytes]]:
    """Read ``count`` frames from the client: (opcode, payload)."""
    frames: list[tuple[int, bytes]] = []
    buffer = b""
    while len(frames) < count:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        buffer += chunk
        while len(buffer) >= 6:
            length = buffer[1] & 0x7F
            end = 6 + length  # the client's control frames are short
            if length >= 126 or len(buffer) < end:
                break
            mask, body = buffer[2:6], buffer[6:end]
            frames.append((buffer[0] & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(body))))
            buffer = buffer[end:]
    return frames


async def receive_until_closed(conn: Connection) -> TransportClosed:
    with pytest.raises(TransportClosed) as info:
        await receive_forever(conn)
    return info.value


async def receive_forever(conn: Connection) -> None:
    while True:
        await conn.receive()


def close_code(payload: bytes) -> int:
    return int.from_bytes(payload[:2], "big")


# --- the server breaks the protocol: the client says so --------------------------------------

VIOLATIONS = {
    "invalid-utf8": (bytes((0x81, 2)) + b"\xff\xfe", 1007),
    "one-byte-close": (bytes((0x88, 1)) + b"\x03", 1002),
    "close-code-1004": (bytes((0x88, 2)) + (1004).to_bytes(2, "big"), 1002),
    "close-code-999": (bytes((0x88, 2)) + (999).to_bytes(2, "big"), 1002),
    "length-2^62": (bytes((0x82, 127)) + (1 << 62).to_bytes(8, "big") + b"x" * 100, 1009),
    "ping-over-125": (bytes((0x89, 126)) + (200).to_bytes(2, "big") + b"p" * 200, 1002),
    "fragmented-ping": (bytes((0x09, 1)) + b"p", 1002),
    "masked-frame": (bytes((0x82, 0x82)) + b"\x01\x02\x03\x04" + b"xx", 1002),
    "rsv-bit": (bytes((0xC2, 1)) + b"x", 1002),
    "unknown-opcode": (bytes((0x83, 1)) + b"x", 1002),
}


@TRANSPORTS
@pytest.mark.parametrize("case", list(VIOLATIONS))
async def test_a_server_that_breaks_the_protocol_is_reported_as_such(
    case: str, transport_type: type[NativeTransport | WebSocketTransport]
) -> None:
    frame, code = VIOLATIONS[case]
    native = transport_type is NativeTransport

    async def script(stream: trio.SocketStream) -> None:
        await stream.send_all(rfc6455.encode_frame(rfc6455.OP_BINARY, b"before") + frame)
        with trio.move_on_after(1):
            await stream.receive_some(65536)  # our close, or EOF; then drop the connection

    async with hostile_server(script) as url:
        async with transport_type(connect_timeout=5).connect(url, []) as conn:
            with trio.fail_after(10):
                assert await conn.receive() == b"before"  # what came first is not lost
                error = await receive_until_closed(conn)
            if native or code != 1009:
                assert isinstance(error, PeerProtocolViolation), error
                assert error.code == code
                assert str(error).startswith("the server broke the WebSocket protocol")
                with pytest.raises(PeerProtocolViolation):  # sending says the same
                    await conn.send(b"{}")
            else:
                # trio-websocket reads the 2^62-byte frame as a stream: it closes only once
                # more than its limit arrived; this server sends 100 bytes and drops.
                assert (type(error), error.code) == (TransportClosed, 1006)


@TRANSPORTS
async def test_a_message_over_the_limit_is_a_violation(
    transport_type: type[NativeTransport | WebSocketTransport],
) -> None:
    size = limits.MAX_SERVER_MESSAGE_BYTES + 1

    async def script(stream: trio.SocketStream) -> None:
        await stream.send_all(rfc6455.encode_frame(rfc6455.OP_BINARY, b"m" * size))
        with trio.move_on_after(5):
            await stream.receive_some(65536)

    async with hostile_server(script) as url:
        async with transport_type(connect_timeout=5).connect(url, []) as conn:
            with trio.fail_after(20):
                error = await receive_until_closed(conn)
    assert isinstance(error, PeerProtocolViolation)
    assert error.code == 1009


@pytest.mark.parametrize("case", list(VIOLATIONS))
async def test_the_native_client_closes_with_the_code_it_reports(case: str) -> None:
    frame, code = VIOLATIONS[case]
    sent: list[tuple[int, bytes]] = []

    async def script(stream: trio.SocketStream) -> None:
        await stream.send_all(frame)
        sent.extend(await read_client_frames(stream, 1))

    async with hostile_server(script) as url:
        async with NativeTransport(connect_timeout=5).connect(url, []) as conn:
            with trio.fail_after(10):
                await receive_until_closed(conn)
    assert sent[0][0] == rfc6455.OP_CLOSE
    assert close_code(sent[0][1]) == code


@TRANSPORTS
async def test_the_servers_own_close_is_still_its_verdict(
    transport_type: type[NativeTransport | WebSocketTransport],
) -> None:
    async def script(stream: trio.SocketStream) -> None:
        await stream.send_all(rfc6455.encode_close(1007, "bad request"))
        await read_client_frames(stream, 1)

    async with hostile_server(script) as url:
        async with transport_type(connect_timeout=5).connect(url, []) as conn:
            with trio.fail_after(10):
                error = await receive_until_closed(conn)
    assert type(error) is TransportClosed
    assert (error.code, error.reason) == (1007, "bad request")


# --- memory: what a server can make the client hold ------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"y"], ids=["empty", "one-byte"])
async def test_endless_continuation_frames_end_at_the_fragment_limit(payload: bytes) -> None:
    """Measured on the old client: 100 MB of empty continuations took it from 49 to 431 MB
    and never ended the message (the size cap counts payload only)."""
    sent: list[tuple[int, bytes]] = []
    extra = 50

    async def script(stream: trio.SocketStream) -> None:
        start = bytes((0x01, 1)) + b"{"  # a text message that never finishes
        continuation = bytes((0x00, len(payload))) + payload
        await stream.send_all(start + continuation * (limits.MAX_FRAGMENTS + extra))
        sent.extend(await read_client_frames(stream, 1))

    async with hostile_server(script) as url:
        async with NativeTransport(connect_timeout=5).connect(url, []) as conn:
            with trio.fail_after(10):
                error = await receive_until_closed(conn)
    assert isinstance(error, PeerProtocolViolation)
    assert error.code == 1009
    assert f"more than {limits.MAX_FRAGMENTS} frames" in error.reason
    assert sent
    assert sent[0][0] == rfc6455.OP_CLOSE


async def test_a_ping_flood_is_answered_with_a_few_pongs() -> None:
    pings = 5000
    received: list[tuple[int, bytes]] = []
    read = trio.Event()

    async def script(stream: trio.SocketStream) -> None:
        flood = b"".join(rfc6455.encode_frame(rfc6455.OP_PING, b"%d" % i) for i in range(pings))
        await stream.send_all(flood + rfc6455.encode_frame(rfc6455.OP_BINARY, b"after"))
        await trio.sleep(0.5)  # real time: let every pong the client sends arrive
        await stream.send_all(rfc6455.encode_close(1000))
        received.extend(await read_client_frames(stream, pings + 1))
        read.set()

    async with hostile_server(script) as url:
        async with NativeTransport(connect_timeout=5).connect(url, []) as conn:
            with trio.fail_after(10):
                assert await conn.receive() == b"after"
                await receive_until_closed(conn)
        with trio.fail_after(10):  # the server reads to the end of the stream, then stops
            await read.wait()
    pongs = [payload for opcode, payload in received if opcode == rfc6455.OP_PONG]
    assert 1 <= len(pongs) <= pings * 6 // limits.READ_SIZE + 1  # one per read at most
    assert pongs[-1] == b"%d" % (pings - 1)  # the latest ping is always answered


# --- time: a server that never finishes something ---------------------------------------------


@TRANSPORTS
async def test_a_handshake_answer_that_never_ends_times_out(
    transport_type: type[NativeTransport | WebSocketTransport], virtual_clock: MockClock
) -> None:
    async def script(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\n")
        while True:  # one header byte a second, forever
            await stream.send_all(b"X")
            await trio.sleep(1)

    async with hostile_server(script, upgrade=False) as url:
        start = trio.current_time()
        with pytest.raises(ConnectFailed, match="timed out"):
            async with transport_type(connect_timeout=7).connect(url, []):
                pass
        assert trio.current_time() - start == pytest.approx(7, abs=1.5)


@pytest.mark.parametrize("extra", [0, 1], ids=["at-the-limit", "one-past"])
async def test_handshake_answer_size_at_the_limit_and_one_past(
    extra: int, virtual_clock: MockClock
) -> None:
    async def script(stream: trio.SocketStream) -> None:
        reader = rfc6455.HandshakeReader()
        while (request := reader.feed(bytes(await stream.receive_some(65536)))) is None:
            pass
        head = rfc6455.accept_response(request)[:-2]  # without the blank line
        filler = limits.MAX_HANDSHAKE_BYTES - len(head) - len(b"X-Pad: \r\n\r\n") + extra
        await stream.send_all(head + b"X-Pad: " + b"p" * filler + b"\r\n\r\n")
        await trio.sleep_forever()

    async with hostile_server(script, upgrade=False) as url:
        if extra:
            with pytest.raises(ConnectFailed, match="head over"):
                async with NativeTransport(connect_timeout=5).connect(url, []):
                    pass
        else:
            async with NativeTransport(connect_timeout=5).connect(url, []):
                pass


async def test_a_server_that_never_answers_our_close_is_left_after_the_timeout(
    virtual_clock: MockClock,
) -> None:
    async def script(stream: trio.SocketStream) -> None:
        while True:  # keeps talking, never closes
            await stream.send_all(rfc6455.encode_frame(rfc6455.OP_BINARY, b"chatter"))
            await trio.sleep(0.5)

    async with hostile_server(script) as url:
        async with NativeTransport(connect_timeout=5).connect(url, []) as conn:
            start = trio.current_time()
            await conn.aclose()
            assert trio.current_time() - start == pytest.approx(CLOSE_TIMEOUT, abs=0.6)


# --- secrets ---------------------------------------------------------------------------------


def every_text(error: BaseException) -> str:
    """All a log or a traceback could show of ``error``, its causes and contexts."""
    texts = ["".join(traceback.format_exception(error))]
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args)]
        pending += [current.__cause__, current.__context__]
    return "\n".join(texts)


SECRET = "AIzaSyTHISisASECRETkey0123456789abcdef"


@TRANSPORTS
@pytest.mark.parametrize("suffix", ["\n", "\r", "\r\n", " ", "\x00"], ids=repr)
async def test_a_key_http_cannot_carry_is_refused_without_showing_it(
    suffix: str, transport_type: type[NativeTransport | WebSocketTransport]
) -> None:
    async def script(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    async with hostile_server(script, upgrade=False) as url:
        for headers, target in (
            ([("x-goog-api-key", SECRET + suffix)], url),
            ([("Authorization", f"Bearer {SECRET}{suffix}")], url),
            ([], f"{url}?key={SECRET}{suffix}"),
        ):
            with pytest.raises((LocalProtocolError, ConnectFailed)) as info:
                async with transport_type(connect_timeout=5).connect(target, headers):
                    pass
            assert SECRET not in every_text(info.value)
            if headers:
                assert headers[0][0] in str(info.value)  # it names the header


@TRANSPORTS
async def test_a_server_quoting_the_key_back_does_not_put_it_in_errors(
    transport_type: type[NativeTransport | WebSocketTransport],
) -> None:
    async def script(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(f"NOT HTTP {SECRET}\r\n\r\n".encode())

    async with hostile_server(script, upgrade=False) as url:
        with pytest.raises(ConnectFailed) as info:
            async with transport_type(connect_timeout=5).connect(
                f"{url}?key={SECRET}", [("x-goog-api-key", SECRET)]
            ):
                pass
    assert SECRET not in every_text(info.value)
    assert "<redacted>" in str(info.value) or "handshake failed" in str(info.value)
