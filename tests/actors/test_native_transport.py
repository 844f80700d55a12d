"""The native RFC 6455 client against a scripted server over an in-memory stream.

The server side is written with the same sans-IO codec's server half, frame by frame, so
every client behaviour is checked at the byte level: masking, pings, both close
handshakes, protocol violations, handshake failures and timeouts.
"""

from __future__ import annotations

import os
import socket
import struct

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from actors.transport import (
    CLOSE_TIMEOUT,
    DIRECT_WRITES_PER_YIELD,
    MAX_MESSAGE_SIZE,
    ConnectFailed,
    DirectConnection,
    NativeConnection,
    PeerProtocolViolation,
    TransportClosed,
    native_over,
)
from protocol import websocket as rfc6455

HEADERS = [("x-goog-api-key", "test-key")]


async def accept(stream: trio.abc.Stream, after: bytes = b"") -> rfc6455.UpgradeRequest:
    """Read the client's upgrade request and accept it (with ``after`` in the same write)."""
    reader = rfc6455.HandshakeReader()
    while (request := reader.feed(bytes(await stream.receive_some(65536)))) is None:
        pass
    await stream.send_all(rfc6455.accept_response(request) + after)
    return request


async def read_frames(stream: trio.abc.Stream, count: int) -> list[tuple[int, bytes]]:
    """``count`` client frames as (first header byte, unmasked payload)."""
    buffer = b""
    frames: list[tuple[int, bytes]] = []
    while len(frames) < count:
        while True:
            if len(buffer) >= 2:
                length, offset = buffer[1] & 0x7F, 2
                if length == 126:
                    length, offset = int.from_bytes(buffer[2:4], "big"), 4
                assert buffer[1] & 0x80, "client frames must be masked"
                end = offset + 4 + length
                if len(buffer) >= end:
                    mask, body = buffer[offset : offset + 4], buffer[offset + 4 : end]
                    frames.append((buffer[0], bytes(b ^ mask[i % 4] for i, b in enumerate(body))))
                    buffer = buffer[end:]
                    break
            chunk = await stream.receive_some(65536)
            assert chunk, "the client closed the stream"
            buffer += chunk
    return frames


async def test_messages_both_ways_headers_and_frames_sent_with_the_handshake(
    autojump_clock: MockClock,
) -> None:
    client, server = trio.testing.memory_stream_pair()
    first = rfc6455.encode_frame(rfc6455.OP_BINARY, b'{"setupComplete":{}}')
    async with trio.open_nursery() as nursery:
        requests: list[rfc6455.UpgradeRequest] = []

        async def serve() -> None:
            requests.append(await accept(server, after=first))  # a frame right behind it
            assert await read_frames(server, 1) == [(0x82, b"hello")]
            text = rfc6455.encode_frame(rfc6455.OP_TEXT, "héllo".encode())
            await server.send_all(text)

        nursery.start_soon(serve)
        async with native_over(client, "example.test", "/ws/path?x=1", HEADERS) as conn:
            assert await conn.receive() == b'{"setupComplete":{}}'
            await conn.send(b"hello")
            assert await conn.receive() == "héllo"  # text frames come back as str
            nursery.cancel_scope.cancel()
    request = requests[0]
    assert request.target == "/ws/path?x=1"
    assert (b"x-goog-api-key", b"test-key") in request.headers
    assert (b"host", b"example.test") in request.headers


async def test_a_fragmented_message_is_reassembled_and_pings_are_answered(
    autojump_clock: MockClock,
) -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        pongs: list[tuple[int, bytes]] = []
        answered = trio.Event()

        async def serve() -> None:
            await accept(server)
            ping = rfc6455.encode_frame(rfc6455.OP_PING, b"are you there")
            part1 = bytes((rfc6455.OP_BINARY, 3)) + b"abc"  # not final
            part2 = bytes((0x80 | rfc6455.OP_CONTINUATION, 3)) + b"def"
            await server.send_all(part1 + ping + part2)
            pongs.extend(await read_frames(server, 1))
            answered.set()

        nursery.start_soon(serve)
        async with native_over(client, "h", "/", HEADERS) as conn:
            assert await conn.receive() == b"abcdef"
            with trio.fail_after(5):
                await answered.wait()
            nursery.cancel_scope.cancel()
    assert pongs == [(0x80 | rfc6455.OP_PONG, b"are you there")]


async def test_the_servers_close_ends_the_connection_with_its_code_and_is_answered() -> None:
    client, server = trio.testing.memory_stream_pair()
    echoed: list[tuple[int, bytes]] = []
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            await accept(server)
            await server.send_all(rfc6455.encode_close(1011, "internal error"))
            echoed.extend(await read_frames(server, 1))
            await server.aclose()

        nursery.start_soon(serve)
        async with native_over(client, "h", "/", HEADERS) as conn:
            with pytest.raises(TransportClosed) as info:
                await conn.receive()
            assert (info.value.code, info.value.reason) == (1011, "internal error")
            with pytest.raises(TransportClosed):  # and it stays ended
                await conn.send(b"late")
    assert echoed == [(0x80 | rfc6455.OP_CLOSE, (1011).to_bytes(2, "big"))]


async def test_a_dropped_stream_is_1006() -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            await accept(server)
            await server.aclose()

        nursery.start_soon(serve)
        async with native_over(client, "h", "/", HEADERS) as conn:
            with pytest.raises(TransportClosed) as info:
                await conn.receive()
            assert info.value.code == 1006


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (bytes((0x82, 0x80 | 2)) + b"\x01\x02\x03\x04" + b"xx", 1002),  # masked by a server
        (bytes((0xC2, 1)) + b"x", 1002),  # a reserved bit without an extension
        (bytes((0x81, 2)) + b"\xff\xfe", 1007),  # text that is not UTF-8
        (bytes((0x82, 127)) + (MAX_MESSAGE_SIZE + 1).to_bytes(8, "big"), 1009),
        (bytes((0x82, 127)) + (1 << 62).to_bytes(8, "big"), 1009),
        (bytes((0x88, 1)) + b"\x03", 1002),  # a 1-byte close
        (bytes((0x88, 2)) + (1004).to_bytes(2, "big"), 1002),  # a reserved close code
    ],
    ids=["masked", "reserved-bit", "bad-utf8", "too-big", "2^62", "one-byte-close", "close-1004"],
)
async def test_a_protocol_violation_closes_with_its_code(frame: bytes, code: int) -> None:
    client, server = trio.testing.memory_stream_pair()
    sent: list[tuple[int, bytes]] = []
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            await accept(server)
            await server.send_all(frame)
            sent.extend(await read_frames(server, 1))

        nursery.start_soon(serve)
        async with native_over(client, "h", "/", HEADERS) as conn:
            with pytest.raises(PeerProtocolViolation) as info:
                await conn.receive()
            assert info.value.code == code
            assert "the server broke the WebSocket protocol" in str(info.value)
            with pytest.raises(PeerProtocolViolation):  # and so does sending, after
                await conn.send(b"late")
    assert sent[0][0] == 0x80 | rfc6455.OP_CLOSE
    assert int.from_bytes(sent[0][1][:2], "big") == code


async def test_aclose_sends_a_close_and_waits_for_the_answer() -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        got: list[tuple[int, bytes]] = []

        async def serve() -> None:
            await accept(server)
            got.extend(await read_frames(server, 1))
            await server.send_all(rfc6455.encode_frame(rfc6455.OP_BINARY, b"in flight"))
            await server.send_all(rfc6455.encode_close(1000))

        nursery.start_soon(serve)
        async with native_over(client, "h", "/", HEADERS) as conn:
            await conn.aclose(1000, "bye")
    assert got == [(0x80 | rfc6455.OP_CLOSE, (1000).to_bytes(2, "big") + b"bye")]


async def test_aclose_is_bounded_when_the_server_never_answers(autojump_clock: MockClock) -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            await accept(server)
            await trio.sleep_forever()

        nursery.start_soon(serve)
        start = trio.current_time()
        async with native_over(client, "h", "/", HEADERS) as conn:
            await conn.aclose()
        assert trio.current_time() - start == pytest.approx(CLOSE_TIMEOUT)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("answer", "status", "message"),
    [
        (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 403, "refused the handshake"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: wrong\r\n\r\n",
            None,
            "wrong Sec-WebSocket-Accept",
        ),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", None, "bad HTTP response"),
        (b"", None, "closed during the handshake"),
    ],
    ids=["403", "wrong-accept", "not-http", "closed"],
)
async def test_handshake_failures_are_connect_failed(
    answer: bytes, status: int | None, message: str
) -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            reader = rfc6455.HandshakeReader()
            while reader.feed(bytes(await server.receive_some(65536))) is None:
                pass
            if answer:
                await server.send_all(answer)
            await server.aclose()

        nursery.start_soon(serve)
        with pytest.raises(ConnectFailed, match=message) as info:
            async with native_over(client, "h", "/", HEADERS):
                pass
        assert info.value.status == status


async def test_a_handshake_with_no_answer_times_out(autojump_clock: MockClock) -> None:
    client, _server = trio.testing.memory_stream_pair()
    with pytest.raises(ConnectFailed, match="timed out"):
        async with native_over(client, "h", "/", HEADERS, handshake_timeout=3):
            pass


class SendFails(trio.abc.Stream):
    """A stream whose sending side breaks on demand while its receiving side still works."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.broken = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.broken:
            raise trio.BrokenResourceError("reset")
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_failed_send_ends_the_connection_for_a_receiver_already_reading() -> None:
    """Found by the soak: a send failing while ``receive`` waited for data, which then
    arrived, fed the codec after the end of its stream (a LocalProtocolError)."""
    client, server = trio.testing.memory_stream_pair()
    flaky = SendFails(client)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept, server)
        async with native_over(flaky, "h", "/", HEADERS) as conn:
            errors: list[TransportClosed] = []

            async def read() -> None:
                with pytest.raises(TransportClosed) as info:
                    await conn.receive()
                errors.append(info.value)

            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            flaky.broken = True
            with pytest.raises(TransportClosed, match="sending failed"):
                await conn.send(b"x")
            await server.send_all(rfc6455.encode_frame(rfc6455.OP_BINARY, b"late"))
            await trio.testing.wait_all_tasks_blocked()
            assert [e.code for e in errors] == [1006]


# --- the direct write over a real TCP socket -----------------------------------------------


async def tcp_pair(sndbuf: int | None = None) -> tuple[trio.SocketStream, trio.SocketStream]:
    """A connected loopback TCP pair (client, server); ``sndbuf`` shrinks the client's
    send buffer, so that big writes are partial once the reader lags."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    listener = listeners[0]
    sock = trio.socket.socket()
    if sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    await sock.connect(listener.socket.getsockname())
    server = await listener.accept()
    await listener.aclose()
    return trio.SocketStream(sock), server


async def read_messages(stream: trio.abc.Stream, count: int) -> list[bytes]:
    """``count`` client messages, decoded by the codec's server half."""
    ws = rfc6455.WebSocket(rfc6455.Role.SERVER, max_message_size=1 << 24)
    out: list[bytes] = []
    while len(out) < count:
        data = await stream.receive_some(65536)
        assert data, "the client closed the stream"
        for event in ws.receive_data(bytes(data)):
            assert isinstance(event, rfc6455.Message)
            assert isinstance(event.data, bytes)
            out.append(event.data)
    return out


def fill_send_buffer(client: trio.SocketStream) -> int:
    """Fill the socket's buffers with junk bytes (the peer reads nothing yet); how many."""
    filler = 0
    while True:
        try:
            filler += os.write(client.socket.fileno(), b"\xff" * 4096)
        except BlockingIOError:
            return filler


async def read_after(server: trio.SocketStream, junk: int, count: int) -> list[bytes]:
    """Skip ``junk`` bytes of filler, then ``count`` client messages."""
    while junk:
        junk -= len(await server.receive_some(junk))
    return await read_messages(server, count)


def record_direct_writes(conn: NativeConnection) -> list[tuple[int, int]]:
    """(bytes written directly, bytes asked) for each direct write ``conn`` makes."""
    writes: list[tuple[int, int]] = []
    inner = conn._write_nowait
    assert inner is not None, "a plain TCP stream is written directly"

    def write(data: bytes | memoryview) -> int:
        written = inner(data)
        writes.append((written, len(data)))
        return written

    conn._write_nowait = write
    return writes


async def test_partial_direct_writes_and_a_full_buffer_send_every_byte_in_order() -> None:
    client, server = await tcp_pair(sndbuf=4096)
    conn = NativeConnection(client)
    writes = record_direct_writes(conn)
    sizes = [1, 125, 126, 70_000, 3, 200_000, 65_536, 17, 150_000, 5] * 2
    sent = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    async with client, server, trio.open_nursery() as nursery:
        received: list[bytes] = []

        async def reader() -> None:
            await trio.sleep(0.2)  # a late reader: the buffers fill, writes come up short
            received.extend(await read_messages(server, len(sent)))

        nursery.start_soon(reader)
        for message in sent:
            await conn.send(message)
    assert received == sent
    assert any(0 < written < asked for written, asked in writes), "some writes were partial"
    assert any(written == asked for written, asked in writes), "some went at once"


async def test_a_write_that_finds_the_buffer_full_waits_for_room_then_goes_whole() -> None:
    client, server = await tcp_pair(sndbuf=4096)
    conn = NativeConnection(client)
    writes = record_direct_writes(conn)
    filler = fill_send_buffer(client)
    async with client, server, trio.open_nursery() as nursery:
        received: list[bytes] = []

        async def reader() -> None:
            await trio.testing.wait_all_tasks_blocked()  # the send waits for room
            received.extend(await read_after(server, filler, 1))

        nursery.start_soon(reader)
        await conn.send(b"whole")
    assert writes == [(0, len(rfc6455.WebSocket(rfc6455.Role.CLIENT).send_message(b"whole")))]
    assert received == [b"whole"]


async def test_a_cancelled_send_writes_nothing_and_the_next_one_goes_whole() -> None:
    client, server = await tcp_pair()
    conn = NativeConnection(client)
    async with client, server:
        with trio.CancelScope() as scope:
            scope.cancel()
            await conn.send(b"never")
        assert scope.cancelled_caught
        await conn.send(b"after")
        assert await read_messages(server, 1) == [b"after"]


async def test_back_to_back_direct_writes_still_let_other_tasks_run() -> None:
    client, server = await tcp_pair()
    conn = NativeConnection(client)
    turns = 0

    async def other() -> None:
        nonlocal turns
        while True:
            turns += 1
            await trio.lowlevel.checkpoint()

    async with client, server, trio.open_nursery() as nursery:
        nursery.start_soon(other)
        await trio.lowlevel.checkpoint()  # ``other`` has started
        before = turns
        for _ in range(10 * DIRECT_WRITES_PER_YIELD):
            await conn.send(b"x" * 100)
        assert turns - before >= 9  # one turn at least every DIRECT_WRITES_PER_YIELD sends
        assert await read_messages(server, 10 * DIRECT_WRITES_PER_YIELD) == [b"x" * 100] * (
            10 * DIRECT_WRITES_PER_YIELD
        )
        nursery.cancel_scope.cancel()


async def test_a_direct_write_to_a_reset_connection_ends_it_with_1006() -> None:
    client, server = await tcp_pair()
    conn = NativeConnection(client)
    async with client:
        server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await server.aclose()  # an RST: the next writes fail

        async def send_until_it_fails() -> None:
            for _ in range(100):
                await conn.send(b"x")
                await trio.sleep(0.01)

        with pytest.raises(TransportClosed, match="sending failed") as info:
            await send_until_it_fails()
        assert info.value.code == 1006
        with pytest.raises(TransportClosed):  # and stays ended
            await conn.send(b"x")


async def test_a_send_on_a_closed_socket_is_1006_and_writes_to_no_other_descriptor() -> None:
    client, server = await tcp_pair()
    conn = NativeConnection(client)
    async with server:
        await client.aclose()
        other_client, other_server = await tcp_pair()  # may reuse the closed descriptor
        async with other_client, other_server:
            with pytest.raises(TransportClosed) as info:
                await conn.send(b"stray")
            assert info.value.code == 1006
            with trio.move_on_after(0.05):
                assert await other_server.receive_some(100) == b"", "nothing written there"


# --- send_nowait: one non-blocking write, the rest held for flush --------------------------


async def test_send_nowait_writes_whole_when_there_is_room() -> None:
    client, server = await tcp_pair()
    conn = NativeConnection(client)
    async with client, server:
        assert isinstance(conn, DirectConnection)
        assert conn.writes_directly
        assert conn.send_nowait(b"one") is True
        await conn.flush()  # nothing held: returns
        assert await read_messages(server, 1) == [b"one"]


async def test_send_nowait_holds_what_did_not_fit_and_flush_or_the_next_send_writes_it_first() -> (
    None
):
    client, server = await tcp_pair(sndbuf=4096)
    conn = NativeConnection(client)
    big = [bytes([i]) * 300_000 for i in range(3)]
    async with client, server, trio.open_nursery() as nursery:
        received: list[bytes] = []

        async def reader() -> None:
            received.extend(await read_messages(server, 3))

        assert conn.send_nowait(big[0]) is False  # the buffers take far less
        with pytest.raises(trio.WouldBlock):  # a rest is held: nothing more goes inline
            conn.send_nowait(b"x")
        nursery.start_soon(reader)
        await conn.flush()  # waits for room
        assert conn.send_nowait(big[1]) is False
        await conn.send(big[2])  # the rest of big[1] goes first
    assert received == big


async def test_send_nowait_on_a_full_socket_holds_the_whole_frame() -> None:
    client, server = await tcp_pair(sndbuf=4096)
    conn = NativeConnection(client)
    writes = record_direct_writes(conn)
    filler = fill_send_buffer(client)
    async with client, server, trio.open_nursery() as nursery:
        received: list[bytes] = []

        async def reader() -> None:
            received.extend(await read_after(server, filler, 1))

        assert conn.send_nowait(b"whole") is False
        assert writes == [(0, len(rfc6455.WebSocket(rfc6455.Role.CLIENT).send_message(b"whole")))]
        nursery.start_soon(reader)
        await conn.flush()
    assert received == [b"whole"]


async def test_send_nowait_refuses_without_a_direct_write_and_fails_like_send_when_closed() -> None:
    memory_client, _ = trio.testing.memory_stream_pair()
    in_memory = NativeConnection(memory_client)
    assert not in_memory.writes_directly
    with pytest.raises(trio.WouldBlock):
        in_memory.send_nowait(b"x")
    client, server = await tcp_pair()
    conn = NativeConnection(client)
    async with server:
        await client.aclose()
        with pytest.raises(TransportClosed) as info:
            conn.send_nowait(b"stray")
        assert info.value.code == 1006
        with pytest.raises(TransportClosed):  # and stays ended
            await conn.flush()
