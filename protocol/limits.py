"""Limits on what the network may send, for both ends (client and emulator).

Everything read from a socket is untrusted. Each limit below bounds one resource (size,
depth, count, rate or time) for the sans-IO codecs; each side's own limits (buffers,
queues, timeouts of its actors) live beside it: ``actors/limits.py`` for the client,
``emulator/limits.py`` for the emulator. Every limit has a test at the limit and one
past it, and the README's "Limits" section lists them all.
"""

from __future__ import annotations

# --- JSON messages (protocol.wire.decode_server, protocol.lenient.decode_client) ---------

# --- WebSocket frames and messages (protocol.websocket, both ends) ----------------------

__all__: list[str] = []
