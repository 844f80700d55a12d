"""The client's limits on what a server may make it hold or do, in one place.

A Gemini Live endpoint is whatever URL the user typed: the client treats the server as
untrusted. Wire-level limits shared with the emulator (JSON depth, WebSocket sizes) are in
``protocol/limits.py``, the WebSocket client's own timeouts in ``actors/transport.py``;
this module holds the client's own: buffers, queues, transcript lengths, reconnect rates,
timeouts. Each is the default of an option (``LinkOptions``, ``PlayoutOptions``, ...) so an
application can move it, and each has a test at the limit and one past it. What happens
past each one is in the README's "Limits" section.
"""

from __future__ import annotations

from runtime.audio import INPUT_BYTES_PER_SECOND, OUTPUT_BYTES_PER_SECOND
from runtime.supervisor import Backoff

# --- buffers and queues -----------------------------------------------------------------

# Seconds of the user's audio the link holds while disconnected; past it the oldest goes.
OUTGOING_AUDIO_SECONDS = 10.0
OUTGOING_AUDIO_BYTES = int(OUTGOING_AUDIO_SECONDS * INPUT_BYTES_PER_SECOND)

# Seconds of model audio the jitter buffer holds; past it arriving audio is dropped.
PLAYOUT_BUFFER_SECONDS = 60.0
PLAYOUT_BUFFER_BYTES = int(PLAYOUT_BUFFER_SECONDS * OUTPUT_BYTES_PER_SECOND)

# Events waiting for the application (session.events()); past either bound the oldest
# low-value event (audio, interim transcripts, progress, metrics) is dropped and counted.
EVENT_QUEUE_EVENTS = 4096
EVENT_QUEUE_BYTES = 4 << 20  # payload bytes (audio and text) of the queued events

# What all reply streams (audio_stream, text_stream) of a session hold unread, together;
# past either bound the oldest reply's unread items go, then new items are refused.
RESPONSE_STREAMS_BYTES = 60 * OUTPUT_BYTES_PER_SECOND  # a minute of audio; text: characters
RESPONSE_STREAMS_ITEMS = 4096

# Bytes of client frames the link keeps after writing them, until the server says it
# consumed them (transparent resumption: Vertex); a resumed session gets them again. Past
# it the oldest are forgotten (reported as Dropped if the connection is lost).
UNCONSUMED_BYTES = 2 << 20

# --- transcripts ------------------------------------------------------------------------

# Characters of transcript (or text reply) kept per side of a turn; the rest is dropped.
TRANSCRIPT_CHARS = 65536
# Turns the transcriber keeps for chat_ctx_copy(); past it the oldest turn is forgotten.
TRANSCRIPT_TURNS = 1000
# Turns the link keeps to re-seed a session the server could not resume.
RESEED_TURNS = 50

# --- tool calls -------------------------------------------------------------------------

# Tool calls running at once; past it a new call is answered at once with an error.
RUNNING_TOOL_CALLS = 64
# Threads the session's sync tools may hold at once (their own limiter, not trio's
# default one, which sinks and token refreshes use); past it a sync call waits for one,
# within its timeout. A timed-out thread keeps its token until it really returns.
TOOL_THREADS = 16

# --- reconnecting -----------------------------------------------------------------------

# The wait before reconnect attempt n: 0.25 s doubling up to 8 s, give or take 20%.
RECONNECT_BACKOFF = Backoff(initial=0.25, maximum=8.0, multiplier=2.0, jitter=0.2)
# Failed connections in a row before the link gives up (ReconnectGaveUp); a connection
# that completed a turn or stayed up HEALTHY_AFTER seconds starts the count again.
RECONNECT_ATTEMPTS = 8
HEALTHY_AFTER = 30.0
# New connections per window, whatever the reason (failures, goAway, refused resumption):
# past it the next one waits until the window allows it.
CONNECTIONS_PER_WINDOW = 30
CONNECTION_WINDOW = 60.0

# --- timeouts ---------------------------------------------------------------------------

# Seconds from sending setup to setupComplete before the connection counts as failed.
SETUP_TIMEOUT = 30.0
# Seconds from starting a session to its first setupComplete, over every attempt; past
# it the session raises ConnectFailed (naming the host and the last attempt's cause).
CONNECT_DEADLINE = 30.0
# Seconds before a goAway deadline at which the link moves if no turn boundary came.
HANDOVER_MARGIN = 1.0
# Seconds the link waits, after a write failed, for the read side to say why it ended.
SEND_FAILURE_GRACE = 1.0

# --- reports ----------------------------------------------------------------------------

# A bound that keeps dropping reports it (one Dropped with the count) at most this often.
DROP_REPORT_INTERVAL = 1.0

__all__ = [
    "CONNECTIONS_PER_WINDOW",
    "CONNECTION_WINDOW",
    "CONNECT_DEADLINE",
    "DROP_REPORT_INTERVAL",
    "EVENT_QUEUE_BYTES",
    "EVENT_QUEUE_EVENTS",
    "HANDOVER_MARGIN",
    "HEALTHY_AFTER",
    "OUTGOING_AUDIO_BYTES",
    "OUTGOING_AUDIO_SECONDS",
    "PLAYOUT_BUFFER_BYTES",
    "PLAYOUT_BUFFER_SECONDS",
    "RECONNECT_ATTEMPTS",
    "RECONNECT_BACKOFF",
    "RESEED_TURNS",
    "RESPONSE_STREAMS_BYTES",
    "RESPONSE_STREAMS_ITEMS",
    "RUNNING_TOOL_CALLS",
    "SEND_FAILURE_GRACE",
    "SETUP_TIMEOUT",
    "TOOL_THREADS",
    "TRANSCRIPT_CHARS",
    "TRANSCRIPT_TURNS",
    "UNCONSUMED_BYTES",
]
