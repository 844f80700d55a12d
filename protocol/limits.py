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

# A data message the client accepts (all its frames' payload); past it, close 1009.
MAX_SERVER_MESSAGE_BYTES: Final = 16 << 20
# A data message the emulator accepts from a client; past it, close 1009.
MAX_CLIENT_MESSAGE_BYTES: Final = 4 << 20
# Frames making one data message (the first and its continuations); past it, close 1009.
MAX_FRAGMENTS: Final = 4096
# A ping, pong or close payload (RFC 6455 5.5); past it, or fragmented, close 1002.
MAX_CONTROL_PAYLOAD: Final = 125
# Bytes read from a socket at once: the most unparsed input held (plus one frame header).
READ_SIZE: Final = 65536
# Received messages not yet taken by the emulator, counted as object sizes: at it, the
# emulator stops reading that socket until they are taken (TCP pushes back on the client).
MAX_QUEUED_BYTES: Final = 1 << 20
# The HTTP head of an upgrade request or response; past it, 431 (emulator), ConnectFailed.
MAX_HANDSHAKE_BYTES: Final = 16384
# Seconds the emulator waits for a whole upgrade request; then it closes TCP. (The client's
# bound is its connect timeout.)
HANDSHAKE_TIMEOUT: Final = 10.0
# Seconds the client waits for the server's close after sending its own; then closes TCP.
CLIENT_CLOSE_TIMEOUT: Final = 5.0
# Seconds the emulator waits for the client's close after sending its own; then closes TCP.
SERVER_CLOSE_TIMEOUT: Final = 2.0

__all__: list[str] = []
