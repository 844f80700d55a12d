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
# Checked on the frame's bytes before parsing, so a hostile frame costs one scan, never a
# deep recursion or a million Python objects. Past any of them: RemoteProtocolError.

MAX_JSON_DEPTH = 100  # arrays/objects nested in one frame; the top-level object is 1
MAX_JSON_CONTAINERS = 100_000  # arrays + objects in one frame (~7 MB of Python objects)
MAX_JSON_INT_DIGITS = 4_300  # Python's int_max_str_digits, which msgspec applies
# Floats must be finite: 1e309 and the NaN/Infinity literals are refused. A string is
# bounded by the WebSocket message size (below) alone.
MAX_DURATION_SECONDS = 315_576_000_000  # a protobuf Duration ("9.5s"): 10,000 years
MIN_AUDIO_RATE = 8_000  # Hz in an audio/pcm mimeType: lower would make a resampler to
MAX_AUDIO_RATE = 192_000  # 24 kHz triple each chunk; higher is no audio rate in use

# --- the client's session state (protocol.session.LiveSession) ---------------------------
# Function calls whose arguments stream in pieces (Vertex: functionCall.partialArgs with
# willContinue): what they may hold until their last piece. Past any: RemoteProtocolError.

MAX_STREAMING_CALLS: Final = 64  # calls with arguments still streaming at once
MAX_STREAMED_ARGS_CHARS: Final = 1 << 20  # characters of string values in one call's pieces
MAX_JSON_PATH_SEGMENTS: Final = 32  # keys and indexes in one partialArgs jsonPath
MAX_JSON_PATH_INDEX: Final = 1024  # an array index in a jsonPath ("$.items[1024]")

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
