"""RFC 6455, sans-IO: both opening handshakes and the frame codec, for both ends.

Why not trio-websocket (wsproto) everywhere: measured under load (many sessions, one small
message every 20 ms each), a bare trio-websocket server costs about 136 µs of CPU per
received message, wsproto driven from one task about 65 µs, and this codec driven from one
task about 45 µs, against a 33 µs floor for trio reading the socket at all (see the
README's performance section). The emulator serves with it (emulator/wsserver.py), and
the client's ``NativeTransport`` (actors/transport.py) speaks it without a reader task.

``FrameParser.feed(data)`` returns complete events; protocol violations raise
``WebSocketProtocolError`` carrying the close code to send (1002 protocol error, 1007
invalid UTF-8, 1009 too big). A server's parser (the default) requires masked frames, a
client's (``masked=False``) refuses them.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Final

import h11

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
_DATA_OPS: Final = (OP_TEXT, OP_BINARY)
_CONTROL_OPS: Final = (OP_CLOSE, OP_PING, OP_PONG)
_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WebSocketProtocolError(Exception):
    """The peer broke RFC 6455; ``code`` is the close code to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class HandshakeError(Exception):
    """The upgrade request is not a valid WebSocket handshake; answer with ``status``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Message:
    """A complete data message (text arrives as ``str``)."""

    data: bytes | str


@dataclass(frozen=True)
class Ping:
    payload: bytes


@dataclass(frozen=True)
class Close:
    code: int
    reason: str


Event = Message | Ping | Close


@dataclass(frozen=True)
class UpgradeRequest:
    target: str
    headers: list[tuple[bytes, bytes]]
    key: bytes


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


class HandshakeReader:
    """Reads one HTTP/1.1 upgrade request with h11; keeps what follows it."""

    def __init__(self, max_size: int = 16384) -> None:
        self._http = h11.Connection(h11.SERVER, max_incomplete_event_size=max_size)

    def feed(self, data: bytes) -> UpgradeRequest | None:
        """Feed bytes; the request once complete. Raises ``HandshakeError`` when invalid."""
        self._http.receive_data(data)
        try:
            event = self._http.next_event()
        except h11.RemoteProtocolError as exc:
            raise HandshakeError(400, f"bad HTTP request: {exc}") from exc
        if event is h11.NEED_DATA:
            if not data:
                raise HandshakeError(400, "connection closed during the handshake")
            return None
        if not isinstance(event, h11.Request):
            raise HandshakeError(400, "expected an HTTP request")
        headers = [(name.lower(), value) for name, value in event.headers]
        found = dict(headers)
        if event.method != b"GET":
            raise HandshakeError(405, "a WebSocket handshake is a GET")
        if (
            found.get(b"upgrade", b"").lower() != b"websocket"
            or b"upgrade" not in found.get(b"connection", b"").lower()
        ):
            raise HandshakeError(426, "expected Upgrade: websocket")
        if found.get(b"sec-websocket-version") != b"13":
            raise HandshakeError(426, "unsupported Sec-WebSocket-Version (13 is required)")
        key = found.get(b"sec-websocket-key", b"")
        if len(base64.b64decode(key, validate=False) if key else b"") != 16:
            raise HandshakeError(400, "missing or malformed Sec-WebSocket-Key")
        return UpgradeRequest(event.target.decode("latin-1"), headers, key)

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the request (the client's first frames, if it was quick)."""
        data, _closed = self._http.trailing_data
        return bytes(data)


def accept_response(request: UpgradeRequest) -> bytes:
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(request.key) + b"\r\n\r\n"
    )


class ClientHandshake:
    """A client's opening handshake with h11: ``request`` to write, then ``feed`` the
    server's answer; keeps what follows it. ``key`` is 16 random bytes, base64-encoded."""

    def __init__(
        self,
        host: str,
        resource: str,
        headers: list[tuple[bytes, bytes]],
        key: bytes,
        max_size: int = 65536,
    ) -> None:
        self._key = key
        self._http = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_size)
        request = h11.Request(
            method="GET",
            target=resource.encode(),
            headers=[
                (b"Host", host.encode()),
                (b"Upgrade", b"websocket"),
                (b"Connection", b"Upgrade"),
                (b"Sec-WebSocket-Version", b"13"),
                (b"Sec-WebSocket-Key", key),
                *headers,
            ],
        )
        self.request: bytes = self._http.send(request) or b""

    def feed(self, data: bytes) -> bool:
        """Feed bytes (``b""`` at EOF); True once the upgrade is accepted. Raises
        ``HandshakeError`` (``status`` 0 when the server did not answer with HTTP)."""
        if not data:
            raise HandshakeError(0, "connection closed during the handshake")
        self._http.receive_data(data)
        try:
            event = self._http.next_event()
        except h11.RemoteProtocolError as exc:
            raise HandshakeError(0, f"bad HTTP response: {exc}") from exc
        if event is h11.NEED_DATA:
            return False
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            found = {name.lower(): value for name, value in event.headers}
            if found.get(b"upgrade", b"").lower() != b"websocket":
                raise HandshakeError(101, "the server did not upgrade to websocket")
            if found.get(b"sec-websocket-accept") != accept_key(self._key):
                raise HandshakeError(101, "wrong Sec-WebSocket-Accept")
            return True
        if isinstance(event, h11.Response | h11.InformationalResponse):
            raise HandshakeError(event.status_code, f"the server answered HTTP {event.status_code}")
        raise HandshakeError(0, "connection closed during the handshake")

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the response (the server's first frames, if it was quick)."""
        data, _closed = self._http.trailing_data
        return bytes(data)


def reject_response(status: int, body: bytes) -> bytes:
    reason = {
        400: b"Bad Request",
        404: b"Not Found",
        405: b"Method Not Allowed",
        426: b"Upgrade Required",
    }
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n" % (status, reason.get(status, b"Error"), len(body)) + body
    )


def encode_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final frame: unmasked as a server writes it, or masked with the 4-byte ``mask``
    as a client must (a fresh random one per frame: ``os.urandom(4)``)."""
    length = len(payload)
    bit = 0x80 if mask is not None else 0
    if length < 126:
        header = bytes((0x80 | opcode, bit | length))
    elif length < 65536:
        header = bytes((0x80 | opcode, bit | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, bit | 127)) + length.to_bytes(8, "big")
    if mask is None:
        return header + payload
    return header + mask + _unmask(payload, mask)  # masking is the same XOR


def encode_close(code: int, reason: str = "", mask: bytes | None = None) -> bytes:
    payload = code.to_bytes(2, "big") + reason.encode()[:123]
    return encode_frame(OP_CLOSE, payload, mask)


def _unmask(payload: bytes, mask: bytes) -> bytes:
    # XOR as one big integer: far faster in CPython than a per-byte loop.
    length = len(payload)
    if not length:
        return b""
    key = int.from_bytes((mask * (length // 4 + 1))[:length], "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes(length, "little")


class FrameParser:
    """Frames in, events out. Enforces masking (client frames are masked, server frames
    never), sizes, fragmentation and UTF-8."""

    def __init__(self, max_message_size: int, *, masked: bool = True) -> None:
        self.max_message_size = max_message_size
        self.masked = masked
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_size = 0
        self._fragment_opcode: int | None = None

    def feed(self, data: bytes) -> list[Event]:
        self._buffer += data
        events: list[Event] = []
        while self._next_frame(events):
            pass
        return events

    def _next_frame(self, events: list[Event]) -> bool:
        """Consume one whole frame if buffered, appending its event if it completes one."""
        buffer = self._buffer
        if len(buffer) < 2:
            return False
        first, second = buffer[0], buffer[1]
        fin, opcode, length = first & 0x80, first & 0x0F, second & 0x7F
        if first & 0x70:
            raise WebSocketProtocolError(1002, "reserved bits set without an extension")
        if bool(second & 0x80) != self.masked:
            raise WebSocketProtocolError(
                1002,
                "client frames must be masked" if self.masked else "server frames are unmasked",
            )
        offset = 2
        if length == 126:
            if len(buffer) < 4:
                return False
            length, offset = int.from_bytes(buffer[2:4], "big"), 4
        elif length == 127:
            if len(buffer) < 10:
                return False
            length, offset = int.from_bytes(buffer[2:10], "big"), 10
        if opcode in _CONTROL_OPS and (length > 125 or not fin):
            raise WebSocketProtocolError(1002, "control frames are short and not fragmented")
        if length + self._fragment_size > self.max_message_size:
            raise WebSocketProtocolError(1009, f"message larger than {self.max_message_size} bytes")
        if self.masked:
            end = offset + 4 + length
            if len(buffer) < end:
                return False
            payload = _unmask(bytes(buffer[offset + 4 : end]), bytes(buffer[offset : offset + 4]))
        else:
            end = offset + length
            if len(buffer) < end:
                return False
            payload = bytes(buffer[offset:end])
        del buffer[:end]
        event = self._frame(opcode, bool(fin), payload)
        if event is not None:
            events.append(event)
        return True

    def _frame(self, opcode: int, fin: bool, payload: bytes) -> Event | None:
        if opcode == OP_PING:
            return Ping(payload)
        if opcode == OP_PONG:
            return None
        if opcode == OP_CLOSE:
            return _close_event(payload)
        if opcode in _DATA_OPS:
            if self._fragment_opcode is not None:
                raise WebSocketProtocolError(1002, "new message before the last one finished")
            if fin:
                return Message(_decode(opcode, payload))
            self._fragment_opcode = opcode
        elif opcode == OP_CONTINUATION:
            if self._fragment_opcode is None:
                raise WebSocketProtocolError(1002, "continuation frame without a message")
        else:
            raise WebSocketProtocolError(1002, f"unknown opcode {opcode}")
        self._fragments.append(payload)
        self._fragment_size += len(payload)
        if not fin:
            return None
        whole, message_opcode = b"".join(self._fragments), self._fragment_opcode
        self._fragments, self._fragment_size, self._fragment_opcode = [], 0, None
        assert message_opcode is not None
        return Message(_decode(message_opcode, whole))


def _decode(opcode: int, payload: bytes) -> bytes | str:
    if opcode == OP_BINARY:
        return payload
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebSocketProtocolError(1007, "text message is not valid UTF-8") from exc


def _close_event(payload: bytes) -> Close:
    if not payload:
        return Close(1005, "")
    if len(payload) == 1:
        raise WebSocketProtocolError(1002, "close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if code < 1000 or code in (1004, 1005, 1006, 1015) or 1016 <= code < 3000 or code >= 5000:
        raise WebSocketProtocolError(1002, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebSocketProtocolError(1007, "close reason is not valid UTF-8") from exc
    return Close(code, reason)
