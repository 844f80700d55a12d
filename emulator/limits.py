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
# (A toolResponse's scheduling and willContinue are bounded by these and by the queue of
# replies about results below.)

# --- what a session holds ---------------------------------------------------------------
MAX_PENDING_USER_TURNS: Final = 4  # user turns awaiting a reply; more merge into the last
MAX_PENDING_VOICE_ACTIVITY: Final = 32  # voiceActivity notices not sent yet; oldest dropped
MAX_HISTORY_ENTRIES: Final = 100  # remembered turns of a conversation; older are forgotten
MAX_RESUMPTION_HANDLES: Final = 10_000  # handles honoured at once; the oldest goes first
RESUMPTION_HANDLE_LIFETIME_S: Final = 7_200.0  # as the service's: 2 hours; then 1008
MAX_RUNNING_CALL_GROUPS: Final = 64  # NON_BLOCKING call groups awaiting results; oldest forgotten
MAX_QUEUED_RESULT_REPLIES: Final = 8  # replies about results waiting; more are taken silently

# --- ephemeral tokens (POST /v1alpha/auth_tokens over HTTP/1.1) ---------------------------
MAX_TOKEN_REQUEST_BYTES: Final = 1 << 20  # a request's body; past it, HTTP 413
TOKEN_REQUEST_TIMEOUT_S: Final = 10.0  # the whole request (head and body); then dropped
MAX_TOKENS: Final = 10_000  # tokens honoured at once; the oldest is forgotten first
MAX_TOKEN_LIFETIME_S: Final = 20 * 3600.0  # expireTime / newSessionExpireTime; past: 400
MAX_TOKEN_USES: Final = 2**31 - 1  # uses (0 is unlimited); past it (or negative): 400
MAX_FIELD_MASK_PATHS: Final = 256  # paths in a token's fieldMask; past it: 400

# --- what the process holds -------------------------------------------------------------
MAX_LAG_SAMPLES: Final = 100_000  # pacing lags kept for --stats percentiles (a fair sample)
# Bytes of partly received client messages (and unparsed input) over every connection; a
# connection that would go past it is closed with 1013 (try again later). Without it, the
# worst case is MAX_CONNECTIONS x MAX_CLIENT_MESSAGE_BYTES (4 GiB).
MAX_PARTIAL_MESSAGE_BYTES_TOTAL: Final = 256 << 20
