"""The emulator's limits on what a client may make it hold or do, in one place.

The emulator is shared as a test server: one connection's input must never crash, stall
or balloon the process or another session. Wire-level limits shared with the client (JSON
depth, WebSocket sizes) are in ``protocol/limits.py``; this module holds the server's own
(connections, handshake and setup timeouts, buffers). Every limit has a test at the limit
and one past it. Input has no rate limit: a message is handled as it arrives (in the read
callback on the fast path; read on demand on the portable one), so a client sending faster
than real time costs CPU, never memory.
"""

from __future__ import annotations

from typing import Final

# --- connections ------------------------------------------------------------------------
MAX_CONNECTIONS: Final = 1_000  # TCP connections served at once; past it, HTTP 503 at upgrade
TLS_HANDSHAKE_TIMEOUT_S: Final = 10.0  # accept to a finished TLS handshake; then closed
SETUP_TIMEOUT_S: Final = 10.0  # upgrade to the setup message; then closed 1011 (a deadline)

# --- messages ---------------------------------------------------------------------------
MAX_SERVER_MESSAGE_BYTES: Final = 1 << 20  # one we send: the SDK refuses more (our bug: 1011)
MAX_TEXT_CHARS: Final = 32_768  # realtimeInput.text, or one clientContent turn; past: 1007
MAX_CONTENT_TURNS: Final = 1_000  # turns in one clientContent; past: 1007
MAX_FUNCTION_RESPONSES: Final = 128  # functionResponses in one toolResponse; past: 1007

# --- what a session holds ---------------------------------------------------------------
MAX_PENDING_USER_TURNS: Final = 4  # user turns awaiting a reply; more merge into the last
MAX_HISTORY_ENTRIES: Final = 100  # remembered turns of a conversation; older are forgotten
MAX_RESUMPTION_HANDLES: Final = 10_000  # handles honoured at once; the oldest goes first
RESUMPTION_HANDLE_LIFETIME_S: Final = 7_200.0  # as the service's: 2 hours; then 1008

# --- what the process holds -------------------------------------------------------------
MAX_LAG_SAMPLES: Final = 100_000  # pacing lags kept for --stats percentiles (a fair sample)
