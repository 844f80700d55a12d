"""The client's limits on what a server may make it hold or do, in one place.

A Gemini Live endpoint is whatever URL the user typed: the client treats the server as
untrusted. Wire-level limits shared with the emulator (JSON depth, WebSocket sizes) are in
``protocol/limits.py``; this module holds the client's own (buffers, queues, transcript
lengths, reconnect rates, timeouts). Every limit has a test at the limit and one past it.
"""

from __future__ import annotations

__all__: list[str] = []
