"""Limits on what the network may send, for both ends (client and emulator).

Everything read from a socket is untrusted. Each limit below bounds one resource (size,
depth, count, rate or time) for the sans-IO codecs; each side's own limits (buffers,
queues, timeouts of its actors) live beside it: ``actors/limits.py`` for the client,
``emulator/limits.py`` for the emulator. Every limit has a test at the limit and one
past it, and the README's "Limits" section lists them all.
"""

from __future__ import annotations

from typing import Final

# --- JSON messages (protocol.wire.decode_server, protocol.lenient.decode_client) ---------

# --- WebSocket frames and messages (protocol.websocket, both ends) ----------------------
# Memory follows the bytes received, never a length the peer declares: a header announcing
# 2^62 bytes allocates nothing. A connection holds at most one message being assembled,
# one read of unparsed input, its queue of received messages and one owed pong; a
# server's total is its connection cap times that.

MAX_SERVER_MESSAGE_BYTES: Final = 16 << 20  # a message the client accepts; past it, 1009
MAX_CLIENT_MESSAGE_BYTES: Final = 4 << 20  # a message the emulator accepts; past it, 1009
MAX_FRAGMENTS: Final = 4096  # frames in one message (first + continuations); past it, 1009
MAX_CONTROL_PAYLOAD: Final = 125  # ping/pong/close payload (RFC 6455 5.5); past it, 1002
READ_SIZE: Final = 65536  # bytes read at once: the most unparsed input held, plus a header
MAX_QUEUED_BYTES: Final = 1 << 20  # messages the emulator holds untaken; at it, stops reading
MAX_HANDSHAKE_BYTES: Final = 16384  # HTTP head of an upgrade; past it, 431 / ConnectFailed
HANDSHAKE_TIMEOUT: Final = 10.0  # s the emulator waits for an upgrade request; then drops it
CLIENT_CLOSE_TIMEOUT: Final = 5.0  # s the client waits for the server's close; then closes TCP
SERVER_CLOSE_TIMEOUT: Final = 2.0  # s the emulator waits for the client's close; then closes TCP

__all__: list[str] = []
