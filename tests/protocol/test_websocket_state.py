"""The WebSocket connection state machine, sans-IO: a client and a server codec paired
through a fake network (plain bytes handed over by hand), plus hostile bytes fed to one
end. Every transition of the table, legal and illegal, and every limit at the limit and
one past it."""

from __future__ import annotations

import os

import pytest

from protocol import limits
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.websocket import (
    MASK_POOL_BYTES,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Close,
    ConnectionClosed,
    ConnectionState,
    Event,
    FrameParser,
    HandshakeError,
    Message,
    Ping,
    ProtocolViolation,
    Role,
    WebSocket,
    WebSocketProtocolError,
    encode_close,
)

OPEN, LOCAL_CLOSING, REMOTE_CLOSING, CLOSED = ConnectionState


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    masked: bool = False,
    rsv: int = 0,
    length: int | None = None,
) -> bytes:
    """Any frame, valid or not; ``length`` overrides the announced payload length."""
    first = (0x80 if fin else 0) | rsv | opcode
    size = len(payload) if length is None else length
    bit = 0x80 if masked else 0
    if size < 126:
        header = bytes((first, bit | size))
    elif size < 65536:
        header = bytes((first, bit | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((first, bit | 127)) + size.to_bytes(8, "big")
    if not masked:
        return header + payload
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def to_client(opcode: int, payload: bytes = b"", **kwargs: object) -> bytes:
    """A frame as a server writes it (unmasked)."""
    return frame(opcode, payload, **kwargs)  # type: ignore[arg-type]


def to_server(opcode: int, payload: bytes = b"", **kwargs: object) -> bytes:
    """A frame as a client writes it (masked)."""
    return frame(opcode, payload, masked=True, **kwargs)  # type: ignore[arg-type]


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def pair() -> tuple[WebSocket, WebSocket]:
    return WebSocket(Role.CLIENT), WebSocket(Role.SERVER)


def deliver(data: bytes, to: WebSocket) -> list[Event]:
    """The fake network: hand bytes over in awkward pieces, as TCP may."""
    events: list[Event] = []
    for start in range(0, len(data), 7):
        events += to.receive_data(data[start : start + 7])
    return events


def violation(events: list[Event]) -> ProtocolViolation:
    assert events, "expected a protocol violation"
    last = events[-1]
    assert isinstance(last, ProtocolViolation), events
    return last


# --- messages and the closing handshake between two codecs -------------------------------


def test_messages_both_ways_text_and_binary() -> None:
    client, server = pair()
    assert deliver(client.send_message(b"\x00bin"), server) == [Message(b"\x00bin")]
    assert deliver(client.send_message("héllo"), server) == [Message("héllo")]
    assert deliver(server.send_message(b"x" * 70000), client) == [Message(b"x" * 70000)]
    assert client.state is server.state is OPEN


def test_only_a_client_masks() -> None:
    client, server = pair()
    assert client.send_message(b"hi")[1] & 0x80
    assert server.send_message(b"hi") == b"\x82\x02hi"


def test_masks_are_fresh_per_frame_and_drawn_from_urandom_in_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    draws: list[int] = []
    real_urandom = os.urandom

    def urandom(size: int) -> bytes:
        draws.append(size)
        return real_urandom(size)

    monkeypatch.setattr(os, "urandom", urandom)
    client, server = pair()
    frames = MASK_POOL_BYTES // 4 + 1  # one past the first pool
    sent = [client.send_message(b"%d" % i) for i in range(frames - 1)]
    sent.append(client.close(1000))
    masks = [frame[2:6] for frame in sent]
    assert len(set(masks)) > frames * 0.99  # 32 random bits: a repeat is rare, never systematic
    assert draws == [MASK_POOL_BYTES, MASK_POOL_BYTES]
    received = deliver(b"".join(sent), server)
    assert received[:-1] == [Message(b"%d" % i) for i in range(frames - 1)]
    assert received[-1] == Close(1000, "")


def test_two_connections_draw_masks_of_their_own() -> None:
    one, two = pair()[0], pair()[0]
    masks = {w.send_message(b"x")[2:6] for w in (one, two) for _ in range(100)}
    assert len(masks) > 198  # not the same pool: a repeat of 32 random bits is rare


@pytest.mark.parametrize("closer", ["client", "server"])
def test_the_closing_handshake_from_either_side(closer: str) -> None:
    client, server = pair()
    first, second = (client, server) if closer == "client" else (server, client)
    sent = first.close(1001, "going away")
    assert first.state is LOCAL_CLOSING
    assert deliver(sent, second) == [Close(1001, "going away")]
    assert second.state is REMOTE_CLOSING
    answer = second.close()  # None: echo the peer's code
    assert second.state is CLOSED
    assert deliver(answer, first) == [Close(1001, "")]
    assert first.state is CLOSED
    for end in (first, second):
        assert (end.close_code, end.close_reason) == (1001, "going away")
        assert end.failure is None


def test_a_close_without_a_code_is_answered_with_1000() -> None:
    client, server = pair()
    assert deliver(to_server(OP_CLOSE), server) == [Close(1005, "")]
    assert deliver(server.close(), client) == [Close(1000, "")]


def test_simultaneous_closes_end_both() -> None:
    client, server = pair()
    from_client, from_server = client.close(1000), server.close(1001)
    assert client.state is server.state is LOCAL_CLOSING
    assert deliver(from_server, client) == [Close(1001, "")]
    assert deliver(from_client, server) == [Close(1000, "")]
    assert client.state is server.state is CLOSED
    assert client.close_code == 1000  # each reports the close it sent first
    assert server.close_code == 1001


def test_data_in_flight_when_we_close_is_still_read() -> None:
    client, server = pair()
    in_flight = server.send_message(b"late")
    client.close()
    events = deliver(in_flight + server.close(), client)
    assert events == [Message(b"late"), Close(1000, "")]
    assert client.state is CLOSED


def test_nothing_after_the_peers_close_is_read() -> None:
    server = WebSocket(Role.SERVER)
    data = to_server(OP_CLOSE, close_payload(1000)) + to_server(OP_BINARY, b"after")
    assert deliver(data, server) == [Close(1000, "")]
    assert server.receive_data(to_server(OP_BINARY, b"more")) == []
    assert server.state is REMOTE_CLOSING


def test_a_pong_answers_only_the_latest_ping_and_only_while_open() -> None:
    client, _server = pair()
    pings = b"".join(to_client(OP_PING, b"%d" % i) for i in range(1000))
    events = deliver(pings, client)
    assert len(events) == 1000
    assert all(isinstance(e, Ping) for e in events)
    owed = client.data_to_send()
    assert WebSocket(Role.SERVER).receive_data(owed) == []  # one pong, nothing else
    assert FrameParser(masked=True).feed(owed) == []  # a pong is not an event
    assert _server_view(owed) == [(OP_PONG, b"999")]
    assert client.data_to_send() == b""
    client.close()
    client.receive_data(to_client(OP_PING, b"late"))
    assert client.data_to_send() == b""


def _server_view(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, unmasked payload) of each masked frame in ``data``."""
    frames = []
    while data:
        length = data[1] & 0x7F
        mask, body = data[2:6], data[6 : 6 + length]
        frames.append((data[0] & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(body))))
        data = data[6 + length :]
    return frames


# --- every (state, input) pair of the table ------------------------------------------------


def in_state(state: ConnectionState) -> WebSocket:
    """A server codec brought to ``state`` through its public calls."""
    ws = WebSocket(Role.SERVER)
    if state is LOCAL_CLOSING:
        ws.close()
    elif state is REMOTE_CLOSING:
        ws.receive_data(to_server(OP_CLOSE, close_payload(1000)))
    elif state is CLOSED:
        ws.close()
        ws.receive_data(to_server(OP_CLOSE, close_payload(1000)))
    assert ws.state is state
    return ws


def send_close(ws: WebSocket) -> None:
    ws.close(1000)


def receive_close(ws: WebSocket) -> None:
    ws.receive_data(to_server(OP_CLOSE, close_payload(1001)))


def peer_violation(ws: WebSocket) -> None:
    ws.receive_data(to_server(OP_BINARY, b"x", rsv=0x40))


def stream_ended(ws: WebSocket) -> None:
    ws.receive_data(b"")


INPUTS = {
    "send-close": send_close,
    "receive-close": receive_close,
    "peer-violation": peer_violation,
    "stream-ended": stream_ended,
}
# What each input does in each state: the next state, LocalProtocolError, or "ignored"
# (bytes that arrive once nothing is read any more).
EXPECTED: dict[tuple[ConnectionState, str], ConnectionState | type[Exception] | str] = {
    (OPEN, "send-close"): LOCAL_CLOSING,
    (OPEN, "receive-close"): REMOTE_CLOSING,
    (OPEN, "peer-violation"): CLOSED,
    (OPEN, "stream-ended"): CLOSED,
    (LOCAL_CLOSING, "send-close"): LocalProtocolError,
    (LOCAL_CLOSING, "receive-close"): CLOSED,
    (LOCAL_CLOSING, "peer-violation"): CLOSED,
    (LOCAL_CLOSING, "stream-ended"): CLOSED,
    (REMOTE_CLOSING, "send-close"): CLOSED,
    (REMOTE_CLOSING, "receive-close"): "ignored",
    (REMOTE_CLOSING, "peer-violation"): "ignored",
    (REMOTE_CLOSING, "stream-ended"): CLOSED,
    (CLOSED, "send-close"): LocalProtocolError,
    (CLOSED, "receive-close"): "ignored",
    (CLOSED, "peer-violation"): "ignored",
    (CLOSED, "stream-ended"): CLOSED,
}


@pytest.mark.parametrize(
    ("state", "happening"), list(EXPECTED), ids=lambda x: getattr(x, "name", x)
)
def test_every_input_in_every_state(state: ConnectionState, happening: str) -> None:
    ws = in_state(state)
    expected = EXPECTED[state, happening]
    if expected is LocalProtocolError:
        with pytest.raises(LocalProtocolError, match="cannot happen in state"):
            INPUTS[happening](ws)
        assert ws.state is state  # nothing changed
    elif expected == "ignored":
        INPUTS[happening](ws)
        assert ws.state is state
        assert ws.data_to_send() == b""
    else:
        INPUTS[happening](ws)
        assert ws.state is expected


@pytest.mark.parametrize("state", [LOCAL_CLOSING, REMOTE_CLOSING, CLOSED], ids=lambda s: s.name)
def test_no_message_is_sent_once_closing_began(state: ConnectionState) -> None:
    ws = in_state(state)
    with pytest.raises(ConnectionClosed) as info:
        ws.send_message(b"late")
    assert info.value.code == 1000


def test_a_lost_stream_is_1006_unless_a_close_came_first() -> None:
    ws = WebSocket(Role.CLIENT)
    assert ws.receive_data(b"") == []
    assert (ws.state, ws.close_code) == (CLOSED, 1006)
    assert ws.receive_data(b"") == []  # again: no effect
    with pytest.raises(LocalProtocolError, match="after the end of the stream"):
        ws.receive_data(b"x")
    closing = in_state(LOCAL_CLOSING)
    closing.receive_data(b"")
    assert (closing.state, closing.close_code) == (CLOSED, 1000)


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_a_close_code_that_may_not_be_sent_is_our_error(code: int) -> None:
    ws = WebSocket(Role.SERVER)
    with pytest.raises(LocalProtocolError, match=f"close code {code}"):
        ws.close(code)
    assert ws.state is OPEN


@pytest.mark.parametrize("code", [1000, 1003, 1007, 1014, 3000, 4999])
def test_every_code_we_may_send_our_peer_accepts(code: int) -> None:
    events = WebSocket(Role.CLIENT).receive_data(WebSocket(Role.SERVER).close(code))
    assert events == [Close(code, "")]


# --- the peer breaks the protocol ----------------------------------------------------------


def test_a_violation_fails_the_connection_after_the_messages_before_it() -> None:
    client = WebSocket(Role.CLIENT)
    data = to_client(OP_PING, b"p") + to_client(OP_TEXT, b"ok") + to_client(OP_TEXT, b"\xff")
    events = client.receive_data(data)
    assert events[:2] == [Ping(b"p"), Message("ok")]
    error = violation(events).error
    assert isinstance(error, RemoteProtocolError)  # the peer's fault
    assert (error.code, client.state, client.close_code) == (1007, CLOSED, 1007)
    assert client.failure is error
    owed = client.data_to_send()
    assert _server_view(owed) == [
        (OP_CLOSE, close_payload(1007, b"text message is not valid UTF-8"))
    ]
    assert client.receive_data(to_client(OP_TEXT, b"more")) == []  # nothing more is read


def test_a_violation_while_closing_sends_no_second_close() -> None:
    ws = in_state(LOCAL_CLOSING)
    violation(ws.receive_data(to_server(OP_TEXT, b"\xff")))
    assert ws.state is CLOSED
    assert ws.data_to_send() == b""
    assert ws.close_code == 1000  # ours came first


CLIENT_SIDE = [  # what a hostile server can send a client
    (to_client(OP_TEXT, b"\xff\xfe"), 1007, "not valid UTF-8"),
    (to_client(OP_CLOSE, b"\x03"), 1002, "1-byte payload"),
    (to_client(OP_CLOSE, close_payload(1004)), 1002, "invalid close code 1004"),
    (to_client(OP_CLOSE, close_payload(1005)), 1002, "invalid close code 1005"),
    (to_client(OP_CLOSE, close_payload(2999)), 1002, "invalid close code 2999"),
    (to_client(OP_CLOSE, close_payload(1000, b"\xc3")), 1007, "close reason"),
    (to_client(OP_BINARY, length=1 << 62), 1009, "larger than"),
    (to_client(OP_BINARY, length=1 << 63), 1002, "top bit"),
    (to_client(OP_PING, b"x" * 126), 1002, "control frames"),
    (to_client(OP_PING, b"x", fin=False), 1002, "control frames"),
    (to_client(OP_BINARY, b"x", masked=True), 1002, "server frames are unmasked"),
    (to_client(OP_BINARY, b"x", rsv=0x40), 1002, "reserved bits"),
    (to_client(OP_BINARY, b"x", rsv=0x10), 1002, "reserved bits"),
    (to_client(0x3), 1002, "unknown opcode 3"),
    (to_client(0xB), 1002, "unknown opcode 11"),
    (to_client(OP_CONTINUATION, b"x"), 1002, "without a message"),
    (to_client(OP_TEXT, b"a", fin=False) + to_client(OP_BINARY, b"b"), 1002, "before the last"),
]


@pytest.mark.parametrize(
    ("data", "code", "says"),
    CLIENT_SIDE,
    ids=[
        "bad-utf8",
        "one-byte-close",
        "close-1004",
        "close-1005",
        "close-2999",
        "close-reason-utf8",
        "length-2^62",
        "length-top-bit",
        "long-ping",
        "fragmented-ping",
        "masked-by-server",
        "rsv1",
        "rsv3",
        "opcode-3",
        "opcode-11",
        "stray-continuation",
        "interleaved",
    ],
)
def test_what_a_hostile_server_can_send(data: bytes, code: int, says: str) -> None:
    client = WebSocket(Role.CLIENT)
    error = violation(deliver(data, client)).error
    assert (error.code, client.state) == (code, CLOSED)
    assert says in error.reason
    assert client.buffered_bytes == 0  # nothing kept


def test_a_server_requires_masked_frames() -> None:
    error = violation(WebSocket(Role.SERVER).receive_data(to_client(OP_BINARY, b"x"))).error
    assert (error.code, error.reason) == (1002, "client frames must be masked")


# --- limits, at the limit and one past it -----------------------------------------------------


def feed_in_reads(ws: WebSocket | FrameParser, data: bytes) -> list[Event]:
    events: list[Event] = []
    feed = ws.receive_data if isinstance(ws, WebSocket) else ws.feed
    for start in range(0, len(data), limits.READ_SIZE):
        events += feed(data[start : start + limits.READ_SIZE])
    return events


@pytest.mark.parametrize(
    ("role", "limit"),
    [
        (Role.CLIENT, limits.MAX_SERVER_MESSAGE_BYTES),
        (Role.SERVER, limits.MAX_CLIENT_MESSAGE_BYTES),
    ],
)
def test_message_size_at_the_limit_and_one_past(role: Role, limit: int) -> None:
    masked = role is Role.SERVER
    fragmented = frame(OP_BINARY, b"a" * (limit - 10), fin=False, masked=masked) + frame(
        OP_CONTINUATION, b"b" * 10, masked=masked
    )
    assert feed_in_reads(WebSocket(role), fragmented) == [Message(b"a" * (limit - 10) + b"b" * 10)]
    too_big = frame(OP_BINARY, b"a" * (limit - 10), fin=False, masked=masked) + frame(
        OP_CONTINUATION, b"b" * 11, masked=masked
    )
    ws = WebSocket(role)
    error = violation(feed_in_reads(ws, too_big)).error
    assert error.code == 1009
    # refused on the header: before the last frame's payload arrived
    assert ws.buffered_bytes == 0


def test_a_huge_announced_length_allocates_nothing() -> None:
    ws = WebSocket(Role.CLIENT)
    events = ws.receive_data(to_client(OP_BINARY, length=(1 << 62)))
    assert violation(events).code == 1009
    ws = WebSocket(Role.CLIENT)
    header = to_client(OP_BINARY, length=1_000_000)  # announces a megabyte, carries none
    assert ws.receive_data(header + b"x" * 100) == []
    assert ws.buffered_bytes == 100  # what arrived, not what was announced


@pytest.mark.parametrize("payload", [b"", b"y"], ids=["empty", "one-byte"])
def test_fragments_per_message_at_the_limit_and_one_past(payload: bytes) -> None:
    start = to_client(OP_TEXT, b"x", fin=False)
    middle = to_client(OP_CONTINUATION, payload, fin=False)
    end = to_client(OP_CONTINUATION, b"z")
    count = limits.MAX_FRAGMENTS
    at_limit = start + middle * (count - 2) + end
    assert feed_in_reads(WebSocket(Role.CLIENT), at_limit) == [
        Message("x" + payload.decode() * (count - 2) + "z")
    ]
    past = start + middle * (count - 1) + end
    error = violation(feed_in_reads(WebSocket(Role.CLIENT), past)).error
    assert (error.code, error.reason) == (1009, f"message in more than {count} frames")


def test_endless_empty_continuations_hold_nothing() -> None:
    ws = WebSocket(Role.CLIENT)
    ws.receive_data(to_client(OP_TEXT, b"{", fin=False))
    empty = to_client(OP_CONTINUATION, b"", fin=False)
    events = feed_in_reads(ws, empty * (limits.MAX_FRAGMENTS - 1))
    assert events == []
    assert ws.buffered_bytes == 1  # the one byte of payload: no per-frame objects
    assert violation(ws.receive_data(empty)).code == 1009


def test_a_partial_frame_holds_what_arrived_and_its_header_at_most() -> None:
    ws = WebSocket(Role.SERVER)
    data = to_server(OP_BINARY, b"p" * 300_000)
    events = feed_in_reads(ws, data[:-1])
    assert events == []
    assert ws.buffered_bytes == 300_000 - 1
    assert ws.receive_data(data[-1:]) == [Message(b"p" * 300_000)]
    assert ws.buffered_bytes == 0
    header_only = to_server(OP_BINARY, b"q" * 70000)[:13]  # the 14-byte header, less one
    assert ws.receive_data(header_only) == []
    assert ws.buffered_bytes == 13


@pytest.mark.parametrize("size", [limits.MAX_CONTROL_PAYLOAD, limits.MAX_CONTROL_PAYLOAD + 1])
def test_control_payload_at_the_limit_and_one_past(size: int) -> None:
    ws = WebSocket(Role.CLIENT)
    events = ws.receive_data(to_client(OP_PING, b"p" * size))
    if size <= limits.MAX_CONTROL_PAYLOAD:
        assert events == [Ping(b"p" * size)]
    else:
        assert violation(events).code == 1002


# --- close reasons -------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", range(4))
@pytest.mark.parametrize("char", ["é", "€", "😀"])
def test_a_long_close_reason_is_cut_on_a_character_boundary(prefix: int, char: str) -> None:
    reason = "a" * prefix + char * 100
    for data in (encode_close(1011, reason), WebSocket(Role.SERVER).close(1011, reason)):
        events = WebSocket(Role.CLIENT).receive_data(data)
        assert len(events) == 1
        close = events[0]
        assert isinstance(close, Close), close  # not a 1007 from our own parser
        assert close.code == 1011
        assert reason.startswith(close.reason)
        assert 123 - len(char.encode()) < len(close.reason.encode()) <= 123


def test_a_reason_of_exactly_123_bytes_is_kept() -> None:
    reason = "€" * 41  # 123 bytes
    events = WebSocket(Role.CLIENT).receive_data(encode_close(1000, reason))
    assert events == [Close(1000, reason)]


# --- the frame parser alone -------------------------------------------------------------------


def test_the_parser_yields_a_violation_as_its_last_event_and_then_nothing() -> None:
    parser = FrameParser(masked=False)
    events = parser.feed(to_client(OP_BINARY, b"a") + to_client(0x3) + to_client(OP_BINARY, b"b"))
    assert events[0] == Message(b"a")
    assert isinstance(events[1], ProtocolViolation)
    assert len(events) == 2
    assert parser.feed(to_client(OP_BINARY, b"c")) == []


def test_errors_say_whose_fault() -> None:
    assert issubclass(WebSocketProtocolError, RemoteProtocolError)
    assert issubclass(HandshakeError, RemoteProtocolError)
