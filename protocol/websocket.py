"""RFC 6455, sans-IO, for both ends: the frame codec and the state of one connection
(the opening handshake is protocol/websocket_handshake.py, re-exported here).

Why not trio-websocket (wsproto) everywhere: measured under load (many sessions, one small
message every 20 ms each), a bare trio-websocket server costs about 136 µs of CPU per
received message, wsproto driven from one task about 65 µs, and this codec driven from one
task about 45 µs, against a 33 µs floor for trio reading the socket at all (see the
README's performance section). The emulator serves with it (emulator/wsserver.py), and
the client's ``NativeTransport`` (actors/transport.py) speaks it without a reader task.

The connection state machine
----------------------------
A WebSocket is closed by a handshake: each side sends one close frame, and after sending
its own a side sends nothing more. So a connection is in one of four states, whichever
end we are (this module does not care which role it plays, except for masking):

    OPEN            both directions carry data
    LOCAL_CLOSING   we sent our close; the peer's data still in flight is read until its
                    close arrives (or the wait for it times out, in the I/O layer)
    REMOTE_CLOSING  the peer's close arrived; nothing more is read; we owe it ours
    CLOSED          both closes went, or the stream ended, or the peer broke the protocol

Four things move it, listed in ``_TRANSITIONS`` (one table, as h11's ``_state.py``): we
send a close, the peer's close arrives, the peer breaks the protocol (we *fail* the
connection, RFC 6455 7.1.7: our close frame with the error's code is queued in
``data_to_send()``, and nothing more is read or sent), or the byte stream ends. A local
action the table does not allow (a second close) is a ``LocalProtocolError``; sending a
message once closing began raises ``ConnectionClosed`` (a race with the peer, not misuse).
Pings are answered only while OPEN, and only the latest unanswered one (RFC 6455 5.5.3
allows skipping earlier ones), so a ping flood queues one pong, not one per ping.

Input limits are in protocol/limits.py: message size, fragments per message, control
payloads, handshake heads. A violation closes with 1002 (protocol error), 1007 (invalid
UTF-8) or 1009 (too big), and is reported as the last event, ``ProtocolViolation``, so
that the messages before it are not lost.
"""

from __future__ import annotations

import enum
import os
import struct
from typing import Final

import msgspec
import numpy as np

from protocol import limits
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.websocket_handshake import (
    ClientHandshake,
    HandshakeError,
    HandshakeReader,
    UpgradeRequest,
    accept_key,
    accept_response,
    check_request,
    reject_response,
)

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "ClientHandshake",
    "Close",
    "ConnectionClosed",
    "ConnectionState",
    "Event",
    "FrameParser",
    "HandshakeError",
    "HandshakeReader",
    "Message",
    "Ping",
    "ProtocolViolation",
    "Role",
    "UpgradeRequest",
    "WebSocket",
    "WebSocketProtocolError",
    "accept_key",
    "accept_response",
    "check_request",
    "encode_close",
    "encode_frame",
    "reject_response",
    "sendable_close_code",
]

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
_MAX_REASON_BYTES: Final = limits.MAX_CONTROL_PAYLOAD - 2  # a close payload starts with its code
# A client's masks come from one os.urandom call per this many bytes (64 frames), not one
# system call per frame; small, as every connection holds one pool.
MASK_POOL_BYTES: Final = 256


# --- errors ------------------------------------------------------------------------------


class WebSocketProtocolError(RemoteProtocolError):
    """The peer broke RFC 6455; ``code`` is the close code we answer with (1002, 1007, 1009)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class ConnectionClosed(Exception):
    """The WebSocket is closing or closed: ``code`` and ``reason`` are the first close
    (the peer's, or ours when we closed first), 1006 when the stream ended without one."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}".strip())
        self.code = code
        self.reason = reason


# --- events ------------------------------------------------------------------------------
# Frozen msgspec Structs, not dataclasses: one is made per message received, and a frozen
# dataclass's __init__ costs about five times as much.


class Message(msgspec.Struct, frozen=True):
    """A complete data message (text arrives as ``str``)."""

    data: bytes | str


class Ping(msgspec.Struct, frozen=True):
    payload: bytes


class Close(msgspec.Struct, frozen=True):
    """The peer's close frame (1005 when it carried no code)."""

    code: int
    reason: str


class ProtocolViolation(msgspec.Struct, frozen=True):
    """The peer broke the protocol; always the last event. Nothing after it is parsed."""

    error: WebSocketProtocolError

    @property
    def code(self) -> int:
        return self.error.code

    @property
    def reason(self) -> str:
        return self.error.reason


Event = Message | Ping | Close | ProtocolViolation


# --- frames out ----------------------------------------------------------------------------


def encode_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final frame: unmasked as a server writes it, or masked with the 4-byte ``mask``
    as a client must (a fresh random one per frame, from a strong source: ``os.urandom``)."""
    if mask is None:
        return _header(0x80 | opcode, 0, len(payload)) + payload
    return _header(0x80 | opcode, 0x80, len(payload)) + mask + _unmask(payload, mask)


_PACK_SHORT: Final = struct.Struct("!BB").pack
_PACK_16: Final = struct.Struct("!BBH").pack
_PACK_64: Final = struct.Struct("!BBQ").pack


def _header(first: int, mask_bit: int, length: int) -> bytes:
    if length < 126:
        return _PACK_SHORT(first, mask_bit | length)
    if length < 65536:
        return _PACK_16(first, mask_bit | 126, length)
    return _PACK_64(first, mask_bit | 127, length)


def encode_close(code: int, reason: str = "", mask: bytes | None = None) -> bytes:
    """A close frame; the reason is cut to fit (123 bytes) on a character boundary, so
    the frame stays valid UTF-8."""
    return encode_frame(OP_CLOSE, _close_payload(code, reason), mask)


def sendable_close_code(code: int) -> bool:
    """Whether ``code`` may go in a close frame, the same rule both ends apply to the
    frames they receive (RFC 6455 7.4: 1005, 1006 and 1015 only report what happened
    locally; 1004 and 1016-2999 are reserved; below 1000 and from 5000 are not codes)."""
    return 1000 <= code < 5000 and code not in (1004, 1005, 1006, 1015) and not 1016 <= code < 3000


# From this many bytes numpy XORs faster than one big integer does (a video frame, not an
# audio chunk). In a tight loop numpy wins from ~500 bytes, but measured between other work
# (its code no longer in the CPU's caches) a ~1 KB chunk costs it about twice the integer's.
_NUMPY_MASK_BYTES: Final = 8192
_BYTE: Final = np.dtype(np.uint8)
_frombuffer: Final = np.frombuffer


def _unmask(payload: bytes, mask: bytes) -> bytes:
    """``payload`` XOR the 4-byte ``mask`` repeated (masking and unmasking are the same)."""
    length = len(payload)
    key = mask * ((length >> 2) + 1)
    if length >= _NUMPY_MASK_BYTES:
        xored: bytes = (_frombuffer(payload, _BYTE) ^ _frombuffer(key, _BYTE, length)).tobytes()
        return xored
    if not length:
        return b""
    # XOR as one big integer: far faster in CPython than a per-byte loop.
    xored_int = int.from_bytes(payload, "little") ^ int.from_bytes(key[:length], "little")
    return xored_int.to_bytes(length, "little")


# --- frames in -----------------------------------------------------------------------------


class FrameParser:
    """Frames in, events out: masking (client frames are masked, server frames never),
    sizes, fragmentation, control frames and UTF-8.

    Memory follows what arrived, not what a header announces: a frame's payload moves into
    the message being assembled as it comes, so at most one frame header and one read stay
    unparsed, and a fragmented message is one growing buffer, not a list of pieces (empty
    continuation frames hold nothing). A violation is the last event; then, as after the
    peer's close, the parser ignores everything it is fed.
    """

    def __init__(
        self,
        max_message_size: int = limits.MAX_SERVER_MESSAGE_BYTES,
        *,
        masked: bool = True,
        max_fragments: int = limits.MAX_FRAGMENTS,
    ) -> None:
        self.max_message_size = max_message_size
        self.max_fragments = max_fragments
        self.masked = masked
        self._buffer = bytearray()  # unparsed input: at most a frame header and one read
        self._done = False  # after a close or a violation: input is ignored
        # The data frame being read, once its header is parsed (-1: none).
        self._frame_opcode = -1
        self._frame_fin = False
        self._frame_mask = b""
        self._frame_read = 0
        self._frame_remaining = 0
        # The data message being assembled (-1: none).
        self._message_opcode = -1
        self._message = bytearray()
        self._fragments = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for an incomplete frame or message: what the peer makes us keep."""
        return len(self._buffer) + len(self._message)

    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data``; the complete events, in order (a violation last)."""
        events: list[Event] = []
        if self._done:
            return events
        try:
            if self._buffer or self._message_opcode >= 0:
                self._buffer += data
            else:
                rest = self._whole_messages(data, events)
                if not rest:
                    return events
                self._buffer += rest
            while self._buffer and self._next_frame(events):
                pass
        except WebSocketProtocolError as exc:
            self._stop()
            events.append(ProtocolViolation(exc))
        return events

    def _whole_messages(self, data: bytes, events: list[Event]) -> bytes:
        """The common case, read straight from ``data`` between frames: whole unfragmented
        text or binary messages under 64 KiB and within the size limit. Returns what is
        left from the first frame that is anything else (incomplete, a control frame,
        fragmented, larger, or invalid) for ``_next_frame``, which then sees exactly the
        input it would have seen without this path."""
        size = len(data)
        masked = self.masked
        mask_bit = 0x80 if masked else 0
        max_size = self.max_message_size
        position = 0
        while size - position >= 2:
            first = data[position]
            second = data[position + 1]
            if (first != 0x82 and first != 0x81) or (second & 0x80) != mask_bit:
                break
            length = second & 0x7F
            offset = position + 2
            if length == 126:
                length = (data[offset] << 8) | data[offset + 1] if size >= offset + 2 else -1
                offset += 2
            elif length == 127:
                break
            if length < 0 or length > max_size:
                break
            if masked:
                end = offset + 4 + length
                if end > size:
                    break
                payload = _unmask(data[offset + 4 : end], data[offset : offset + 4])
            else:
                end = offset + length
                if end > size:
                    break
                payload = data[offset:end]
            position = end
            events.append(Message(payload if first == 0x82 else _decode(OP_TEXT, payload)))
        return data[position:] if position else data

    def _stop(self) -> None:
        self._done = True
        self._buffer = bytearray()
        self._message = bytearray()

    def _next_frame(self, events: list[Event]) -> bool:
        """Make progress on one frame; False when more input is needed."""
        if self._frame_opcode >= 0:
            return self._continue_payload(events)
        buffer = self._buffer
        size = len(buffer)
        if size < 2:
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
            if size < 4:
                return False
            length, offset = int.from_bytes(buffer[2:4], "big"), 4
        elif length == 127:
            if size < 10:
                return False
            length, offset = int.from_bytes(buffer[2:10], "big"), 10
            if length >> 63:
                raise WebSocketProtocolError(1002, "frame length with its top bit set")
        mask = b""
        if self.masked:
            if size < offset + 4:
                return False
            mask = bytes(buffer[offset : offset + 4])
            offset += 4
        if opcode >= 0x8:
            return self._control_frame(opcode, bool(fin), length, offset, mask, events)
        self._check_data_frame(opcode, length)
        end = offset + length
        if fin and self._message_opcode < 0 and size >= end:
            # The common case: a whole unfragmented message in the buffer.
            payload = bytes(buffer[offset:end])
            del buffer[:end]
            events.append(Message(_decode(opcode, _unmask(payload, mask) if mask else payload)))
            return True
        del buffer[:offset]
        if self._message_opcode < 0:
            self._message_opcode = opcode
        self._fragments += 1
        self._frame_opcode, self._frame_fin, self._frame_mask = opcode, bool(fin), mask
        self._frame_read, self._frame_remaining = 0, length
        return self._continue_payload(events)

    def _check_data_frame(self, opcode: int, length: int) -> None:
        if opcode == OP_CONTINUATION:
            if self._message_opcode < 0:
                raise WebSocketProtocolError(1002, "continuation frame without a message")
            if self._fragments >= self.max_fragments:
                raise WebSocketProtocolError(
                    1009, f"message in more than {self.max_fragments} frames"
                )
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._message_opcode >= 0:
                raise WebSocketProtocolError(1002, "new message before the last one finished")
        else:
            raise WebSocketProtocolError(1002, f"unknown opcode {opcode}")
        if len(self._message) + length > self.max_message_size:
            raise WebSocketProtocolError(1009, f"message larger than {self.max_message_size} bytes")

    def _continue_payload(self, events: list[Event]) -> bool:
        """Move what arrived of the current data frame into the message being assembled."""
        buffer = self._buffer
        take = min(self._frame_remaining, len(buffer))
        if take:
            chunk = bytes(buffer[:take])
            del buffer[:take]
            if self._frame_mask:
                rotate = self._frame_read % 4
                chunk = _unmask(chunk, self._frame_mask[rotate:] + self._frame_mask[:rotate])
            self._message += chunk
            self._frame_read += take
            self._frame_remaining -= take
        if self._frame_remaining:
            return False
        self._frame_opcode = -1
        if self._frame_fin:
            whole, opcode = bytes(self._message), self._message_opcode
            self._message = bytearray()
            self._message_opcode, self._fragments = -1, 0
            events.append(Message(_decode(opcode, whole)))
        return True

    def _control_frame(
        self, opcode: int, fin: bool, length: int, offset: int, mask: bytes, events: list[Event]
    ) -> bool:
        if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
            raise WebSocketProtocolError(1002, f"unknown opcode {opcode}")
        if length > limits.MAX_CONTROL_PAYLOAD or not fin:
            raise WebSocketProtocolError(1002, "control frames are short and not fragmented")
        end = offset + length
        if len(self._buffer) < end:
            return False  # short: parsed again, whole, when the rest arrives
        payload = bytes(self._buffer[offset:end])
        del self._buffer[:end]
        if mask:
            payload = _unmask(payload, mask)
        if opcode == OP_PING:
            events.append(Ping(payload))
        elif opcode == OP_CLOSE:
            events.append(_close_event(payload))
            self._stop()  # a peer sends nothing after its close
        return True


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
    if not sendable_close_code(code):
        raise WebSocketProtocolError(1002, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebSocketProtocolError(1007, "close reason is not valid UTF-8") from exc
    return Close(code, reason)


# --- the connection ------------------------------------------------------------------------


class Role(enum.Enum):
    CLIENT = "client"  # masks what it sends, refuses masked frames
    SERVER = "server"  # sends unmasked, requires masked frames


class ConnectionState(enum.Enum):
    OPEN = "open"
    LOCAL_CLOSING = "local closing"
    REMOTE_CLOSING = "remote closing"
    CLOSED = "closed"


class _Input(enum.Enum):
    SEND_CLOSE = "we send our close"
    RECEIVE_CLOSE = "the peer's close arrives"
    PEER_VIOLATION = "the peer breaks the protocol"
    STREAM_ENDED = "the byte stream ends"


_OPEN, _LOCAL, _REMOTE, _CLOSED = ConnectionState
# Every legal move. A local input missing here is a LocalProtocolError; remote ones cannot
# happen elsewhere (nothing is parsed in REMOTE_CLOSING or CLOSED).
_TRANSITIONS: Final[dict[tuple[ConnectionState, _Input], ConnectionState]] = {
    (_OPEN, _Input.SEND_CLOSE): _LOCAL,
    (_OPEN, _Input.RECEIVE_CLOSE): _REMOTE,
    (_OPEN, _Input.PEER_VIOLATION): _CLOSED,
    (_OPEN, _Input.STREAM_ENDED): _CLOSED,
    (_LOCAL, _Input.RECEIVE_CLOSE): _CLOSED,
    (_LOCAL, _Input.PEER_VIOLATION): _CLOSED,
    (_LOCAL, _Input.STREAM_ENDED): _CLOSED,
    (_REMOTE, _Input.SEND_CLOSE): _CLOSED,
    (_REMOTE, _Input.STREAM_ENDED): _CLOSED,
    (_CLOSED, _Input.STREAM_ENDED): _CLOSED,
}
# Besides the moves: messages and pongs are sent only in OPEN; frames are read in OPEN and
# LOCAL_CLOSING (data in flight when we closed still comes). Checked by identity in the
# per-message paths below.


class WebSocket:
    """One WebSocket connection after the opening handshake, either end, no I/O.

    Bytes in: ``receive_data(data)`` (``b""`` when the stream ended) returns events.
    Bytes out: ``send_message``/``close`` return the bytes to write, and after each
    ``receive_data`` the caller writes ``data_to_send()`` (a pong, or the close that fails
    the connection after a violation). ``state`` follows the module's table.
    """

    def __init__(
        self,
        role: Role,
        *,
        max_message_size: int | None = None,
        max_fragments: int = limits.MAX_FRAGMENTS,
    ) -> None:
        self.role = role
        client = role is Role.CLIENT
        if max_message_size is None:
            max_message_size = (
                limits.MAX_SERVER_MESSAGE_BYTES if client else limits.MAX_CLIENT_MESSAGE_BYTES
            )
        self._parser = FrameParser(max_message_size, masked=not client, max_fragments=max_fragments)
        self._masked = client
        self.state = ConnectionState.OPEN
        self.close_code: int | None = None
        self.close_reason = ""
        self.failure: WebSocketProtocolError | None = None
        self._peer_close: Close | None = None
        self._pong: bytes | None = None
        self._owed_close = b""
        self._stream_ended = False
        self._masks = b""  # unused random bytes, 4 per frame (a client's)
        self._mask_at = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for an incomplete frame or message."""
        return self._parser.buffered_bytes

    # --- input ---

    def receive_data(self, data: bytes) -> list[Event]:
        """Bytes from the peer, ``b""`` once the stream ended (again: no effect); the events
        they complete. Ignored unless OPEN or LOCAL_CLOSING."""
        if not data:
            if not self._stream_ended:
                self._stream_ended = True
                self._move(_Input.STREAM_ENDED)
                self._first_close(1006, "")
            return []
        if self._stream_ended:
            raise LocalProtocolError("data fed after the end of the stream")
        state = self.state
        if state is not _OPEN and state is not _LOCAL:
            return []
        events = self._parser.feed(data)
        for event in events:
            if type(event) is not Message:
                self._on_control(event)
        return events

    def _on_control(self, event: Event) -> None:
        if isinstance(event, Ping):
            if self.state is _OPEN:
                self._pong = event.payload  # the latest ping wins
        elif isinstance(event, Close):
            self._peer_close = event
            self._move(_Input.RECEIVE_CLOSE)
            self._first_close(event.code, event.reason)
        elif isinstance(event, ProtocolViolation):
            error = event.error
            self.failure = error
            if self.state is _OPEN:
                self._owed_close = self._frame(OP_CLOSE, _close_payload(error.code, error.reason))
            self._pong = None
            self._move(_Input.PEER_VIOLATION)
            self._first_close(error.code, error.reason)

    def data_to_send(self) -> bytes:
        """Frames owed to the peer: a pong for the latest ping (while OPEN), or the close
        that fails the connection after a violation. Empty when nothing is owed."""
        data = self._owed_close
        if self._pong is not None:
            if self.state is _OPEN:
                data = self._frame(OP_PONG, self._pong) + data
            self._pong = None
        self._owed_close = b""
        return data

    # --- output ---

    def send_message(self, data: bytes | str) -> bytes:
        """The frame for one message (``str`` as text). Raises ``ConnectionClosed`` once
        closing has begun."""
        if self.state is not _OPEN:
            raise ConnectionClosed(self.close_code or 1006, self.close_reason)
        if isinstance(data, str):
            first, data = 0x80 | OP_TEXT, data.encode()
        else:
            first = 0x80 | OP_BINARY
        if not self._masked:
            return _header(first, 0, len(data)) + data
        # _next_mask and encode_frame, inline: this runs for every message a client sends.
        at = self._mask_at
        if at + 4 > len(self._masks):
            self._masks, at = os.urandom(MASK_POOL_BYTES), 0
        self._mask_at = at + 4
        mask = self._masks[at : at + 4]
        return _header(first, 0x80, len(data)) + mask + _unmask(data, mask)

    def close(self, code: int | None = None, reason: str = "") -> bytes:
        """Our close frame: starts the closing handshake (OPEN) or answers the peer's
        (REMOTE_CLOSING; ``code`` None echoes the peer's). The reason is cut to 123 bytes on
        a character boundary. Raises ``LocalProtocolError`` if our close was already sent
        or ``code`` may not be sent."""
        if code is None:
            peer = self._peer_close
            code = peer.code if peer is not None and peer.code != 1005 else 1000
        if not sendable_close_code(code):
            raise LocalProtocolError(f"close code {code} may not be sent")
        self._move(_Input.SEND_CLOSE)
        self._first_close(code, reason)
        self._pong = None
        return self._frame(OP_CLOSE, _close_payload(code, reason))

    # --- internals ---

    def _move(self, happened: _Input) -> None:
        try:
            self.state = _TRANSITIONS[self.state, happened]
        except KeyError:
            raise LocalProtocolError(
                f"cannot happen in state {self.state.name}: {happened.value}"
            ) from None

    def _first_close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason

    def _frame(self, opcode: int, payload: bytes) -> bytes:
        return encode_frame(opcode, payload, self._next_mask() if self._masked else None)

    def _next_mask(self) -> bytes:
        """A fresh random mask (RFC 6455 5.3: unpredictable, from a strong source): the next
        4 bytes of a pool of ``os.urandom`` bytes, never reused."""
        at = self._mask_at
        if at + 4 > len(self._masks):
            self._masks, at = os.urandom(MASK_POOL_BYTES), 0
        self._mask_at = at + 4
        return self._masks[at : at + 4]


def _close_payload(code: int, reason: str) -> bytes:
    encoded = reason.encode()
    if len(encoded) > _MAX_REASON_BYTES:
        encoded = encoded[:_MAX_REASON_BYTES].decode("utf-8", "ignore").encode()
    return code.to_bytes(2, "big") + encoded
