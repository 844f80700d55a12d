"""Limits on what the network may send, for both ends (client and emulator).

Everything read from a socket is untrusted. Each limit below bounds one resource (size,
depth, count, rate or time) for the sans-IO codecs; each side's own limits (buffers,
queues, timeouts of its actors) live beside it: ``actors/limits.py`` for the client,
``emulator/limits.py`` for the emulator. Every limit has a test at the limit and one
past it, and the README's "Limits" section lists them all.
"""

from __future__ import annotations

# --- JSON messages (protocol.wire.decode_server, protocol.lenient.decode_client) ---------
# Checked on the frame's bytes before parsing, so a hostile frame costs one scan, never a
# deep recursion or a million Python objects. Past any of them: RemoteProtocolError.

MAX_JSON_DEPTH = 100  # arrays/objects nested in one frame; the top-level object is 1
MAX_JSON_CONTAINERS = 100_000  # arrays + objects in one frame (~30 MB of Python objects)
JSON_INT_MIN = -(2**63)  # integers anywhere (msgspec's range: int64 and uint64)
JSON_INT_MAX = 2**64 - 1
# Floats must be finite (1e999 and NaN are refused); a string's length is bounded only by
# the WebSocket message size (below).
MAX_DURATION_SECONDS = 315_576_000_000  # a protobuf Duration ("9.5s"): 10,000 years
MIN_AUDIO_RATE = 8_000  # the rate= of an audio/pcm mimeType, Hz: a lower rate would make
MAX_AUDIO_RATE = 192_000  # resampling to 16/24 kHz expand each chunk over 3x (or shrink it)

# --- WebSocket frames and messages (protocol.websocket, both ends) ----------------------

__all__: list[str] = []
