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
MAX_JSON_CONTAINERS = 100_000  # arrays + objects in one frame (~7 MB of Python objects)
MAX_JSON_INT_DIGITS = 4_300  # Python's int_max_str_digits, which msgspec applies
# Floats must be finite: 1e309 and the NaN/Infinity literals are refused. A string is
# bounded by the WebSocket message size (below) alone.
MAX_DURATION_SECONDS = 315_576_000_000  # a protobuf Duration ("9.5s"): 10,000 years
MIN_AUDIO_RATE = 8_000  # Hz in an audio/pcm mimeType: lower would make a resampler to
MAX_AUDIO_RATE = 192_000  # 24 kHz triple each chunk; higher is no audio rate in use

# --- WebSocket frames and messages (protocol.websocket, both ends) ----------------------

__all__: list[str] = []
