"""The emulator's limits on what a client may make it hold or do, in one place.

The emulator is shared as a test server: one connection's input must never crash, stall
or balloon the process or another session. Wire-level limits shared with the client (JSON
depth, WebSocket sizes) are in ``protocol/limits.py``; this module holds the server's own
(connections, handshake and setup timeouts, buffers). Every limit has a test at the limit
and one past it.
"""

from __future__ import annotations

__all__: list[str] = []
