"""The emulator's RFC 6455 server codec, sans-IO: handshake and frames, valid and not."""

from __future__ import annotations

import base64
import os

import pytest
import trio
import trio_websocket
from trio.testing import MockClock

from emulator import open_emulator
from protocol.websocket import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Close,
    FrameParser,
    HandshakeError,
    HandshakeReader,
    Message,
    Ping,
    ProtocolViolation,
    WebSocketProtocolError,
    accept_key,
    encode_close,
    encode_frame,
)
from tests.emulator.client import GEMINI_PATH

KEY = base64.b64encode(b"0123456789abcdef")


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0
) -> bytes:
    """A frame as a client writes it: masked with a random key."""
    first = (0x80 if fin else 0) | rsv | opcode
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 65536:
        header = bytes((first, mask_bit | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((first, mask_bit | 127)) + length.to_bytes(8, "big")
    if not masked:
        return header + payload
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def upgrade(method: str = "GET", **headers: str) -> bytes:
    fields = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "keep-alive, Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": KEY.decode(),
    }
    fields.update({k.replace("_", "-"): v for k, v in headers.items()})
    lines = "".join(f"{k}: {v}\r\n" for k, v in fields.items() if v)
    return f"{method} /ws/path?key=x HTTP/1.1\r\n{lines}\r\n".encode()


# --- handshake ----------------------------------------------------------------------------


def test_accept_key_matches_the_rfc_example() -> None:
    assert accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_a_valid_upgrade_in_pieces_keeps_what_follows_it() -> None:
    reader = HandshakeReader()
    data = upgrade() + b"early frame bytes"
    assert reader.feed(data[:20]) is None
    request = reader.feed(data[20:])
    assert request is not None
    assert request.target == "/ws/path?key=x"
    assert request.key == KEY
    assert reader.trailing_data == b"early frame bytes"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (upgrade(method="POST"), 405),
        (upgrade(Upgrade=""), 426),
        (upgrade(Connection="keep-alive"), 426),
        (upgrade(Sec_WebSocket_Version="8"), 426),
        (upgrade(Sec_WebSocket_Key=""), 400),
        (upgrade(Sec_WebSocket_Key="c2hvcnQ="), 400),
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"", 400),
    ],
    ids=[
        "post",
        "no-upgrade",
        "no-connection-upgrade",
        "version",
        "no-key",
        "short-key",
        "garbage",
        "eof",
    ],
)
def test_bad_upgrades_get_an_http_status(data: bytes, status: int) -> None:
    with pytest.raises(HandshakeError) as info:
        HandshakeReader().feed(data)
    assert info.value.status == status


# --- frames -------------------------------------------------------------------------------


def test_text_and_binary_messages_of_every_length_encoding() -> None:
    parser = FrameParser(max_message_size=1 << 20)
    payloads = [b"x" * 5, b"y" * 300, b"z" * 70000]
    data = client_frame(OP_TEXT, "héllo".encode()) + b"".join(
        client_frame(OP_BINARY, p) for p in payloads
    )
    assert parser.feed(data) == [Message("héllo"), *(Message(p) for p in payloads)]


def test_frames_fed_one_byte_at_a_time() -> None:
    parser = FrameParser(max_message_size=1024)
    data = client_frame(OP_BINARY, b"abc" * 50) + client_frame(OP_PING, b"p")
    events = [event for byte in data for event in parser.feed(bytes([byte]))]
    assert events == [Message(b"abc" * 50), Ping(b"p")]


def test_fragmented_messages_with_a_control_frame_between() -> None:
    parser = FrameParser(max_message_size=1024)
    data = (
        client_frame(OP_TEXT, b"he", fin=False)
        + client_frame(OP_PING, b"!")
        + client_frame(OP_CONTINUATION, b"ll", fin=False)
        + client_frame(OP_PONG, b"")
        + client_frame(OP_CONTINUATION, b"o")
    )
    assert parser.feed(data) == [Ping(b"!"), Message("hello")]


def test_close_frames() -> None:
    parser = FrameParser(max_message_size=1024)
    assert parser.feed(client_frame(OP_CLOSE, (1000).to_bytes(2, "big") + b"bye")) == [
        Close(1000, "bye")
    ]
    assert FrameParser(1024).feed(client_frame(OP_CLOSE, b"")) == [Close(1005, "")]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (client_frame(OP_BINARY, b"x", masked=False), 1002),
        (client_frame(OP_BINARY, b"x", rsv=0x40), 1002),
        (client_frame(0x3, b"x"), 1002),
        (client_frame(OP_CONTINUATION, b"x"), 1002),
        (client_frame(OP_TEXT, b"a", fin=False) + client_frame(OP_TEXT, b"b"), 1002),
        (client_frame(OP_PING, b"x" * 126), 1002),
        (client_frame(OP_PING, b"x", fin=False), 1002),
        (client_frame(OP_TEXT, b"\xff\xfe"), 1007),
        (client_frame(OP_BINARY, b"x" * 2000), 1009),
        (
            client_frame(OP_TEXT, b"x" * 600, fin=False)
            + client_frame(OP_CONTINUATION, b"x" * 600),
            1009,
        ),
        (client_frame(OP_CLOSE, b"\x03"), 1002),
        (client_frame(OP_CLOSE, (999).to_bytes(2, "big")), 1002),
        (client_frame(OP_CLOSE, (1005).to_bytes(2, "big")), 1002),
        (client_frame(OP_CLOSE, (1000).to_bytes(2, "big") + b"\xff"), 1007),
    ],
    ids=[
        "unmasked",
        "reserved-bits",
        "unknown-opcode",
        "stray-continuation",
        "interleaved-messages",
        "long-control",
        "fragmented-control",
        "bad-utf8",
        "too-big",
        "too-big-fragmented",
        "one-byte-close",
        "close-code-999",
        "close-code-1005",
        "close-reason-utf8",
    ],
)
def test_protocol_violations_carry_their_close_code(data: bytes, code: int) -> None:
    events = FrameParser(max_message_size=1024).feed(data)
    assert len(events) == 1
    violation = events[0]
    assert isinstance(violation, ProtocolViolation)
    assert isinstance(violation.error, WebSocketProtocolError)
    assert violation.code == code


def test_server_frames_are_unmasked_and_final() -> None:
    assert encode_frame(OP_BINARY, b"hi") == b"\x82\x02hi"
    assert encode_frame(OP_BINARY, b"x" * 300)[:4] == b"\x82\x7e\x01\x2c"
    assert encode_frame(OP_BINARY, b"x" * 70000)[:10] == b"\x82\x7f" + (70000).to_bytes(8, "big")
    assert encode_close(1011, "oops") == b"\x88\x06\x03\xf3oops"


# --- the server over real sockets -----------------------------------------------------------


async def test_pings_are_answered(virtual_clock: MockClock) -> None:
    async with (
        open_emulator() as emu,
        trio_websocket.open_websocket_url(emu.url + GEMINI_PATH) as ws,
    ):
        with trio.fail_after(5):
            await ws.ping(b"are you there")  # returns when the matching pong arrives
        await ws.send_message(b'{"setup": {"model": "models/gemini-3.8-live"}}')
        assert b"setupComplete" in await ws.get_message()


async def test_an_unmasked_frame_closes_with_1002(virtual_clock: MockClock) -> None:
    async with open_emulator() as emu:
        stream = await trio.open_tcp_stream("127.0.0.1", emu.port)
        async with stream:
            await stream.send_all(upgrade().replace(b"/ws/path?key=x", GEMINI_PATH.encode()))
            response = await stream.receive_some(4096)
            assert response.startswith(b"HTTP/1.1 101")
            await stream.send_all(client_frame(OP_BINARY, b"{}", masked=False))
            reply = b""
            with trio.fail_after(5):
                while len(reply) < 4:
                    reply += await stream.receive_some(4096)
    assert reply[0] == 0x88  # a final close frame
    assert int.from_bytes(reply[2:4], "big") == 1002
    assert b"masked" in reply[4:]  # its reason says why


async def test_a_handshake_that_never_finishes_is_dropped(virtual_clock: MockClock) -> None:
    async with open_emulator() as emu:
        stream = await trio.open_tcp_stream("127.0.0.1", emu.port)
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and then nothing
            with trio.fail_after(30):
                assert await stream.receive_some(4096) == b""  # closed after the handshake timeout
