"""What a browser (or any client of the browser socket) may make the server hold or do.

The browser socket is network input like any other: every message has a size, the
connection a message rate, the microphone a pace, the session a length. Past a limit the
connection is closed with a close code and a reason naming the limit
(``actors.browser_wire``); other connections go on. Each limit is tested at the limit and
one past it (tests/web/test_browser_wire.py, tests/web/test_server.py).
"""

from __future__ import annotations

# --- sizes --------------------------------------------------------------------------------

# One binary audio message: 16 KiB of PCM16 is 170 ms at 48 kHz (the page sends 20 ms).
MAX_AUDIO_MESSAGE_BYTES = 16 * 1024
# One camera frame (JPEG): a 1280x720 frame at quality 0.7 is about 100 KiB.
MAX_VIDEO_MESSAGE_BYTES = 512 * 1024
# Pixels of a decoded camera frame (checked from the JPEG header, before decoding).
MAX_VIDEO_PIXELS = 1920 * 1080
# One JSON control message, and the text of a typed turn in it.
MAX_CONTROL_BYTES = 8 * 1024
MAX_TEXT_CHARS = 2000

# --- rates --------------------------------------------------------------------------------

# Sample rates the page may send (browsers capture at 44.1 or 48 kHz; others resample).
INPUT_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
# Messages of any kind per connection per RATE_WINDOW seconds (the page sends 50 audio
# messages a second and a camera frame or two).
MAX_MESSAGES_PER_WINDOW = 400
RATE_WINDOW = 2.0
# Seconds the microphone's audio may run ahead of the wall clock since the first frame
# (a client streaming a file as fast as it can would flood the model).
MAX_AUDIO_AHEAD_SECONDS = 2.0
# Camera frames per second passed on; faster frames are dropped and counted (the encoder
# sends at most one a second anyway).
MAX_VIDEO_FPS = 5.0

# --- queues and times ---------------------------------------------------------------------

# Messages received but not yet taken by the capture actor; past it the reader waits
# (backpressure on the client's socket), it never drops audio.
INBOX_MESSAGES = 64
# Messages waiting to be sent to the browser (audio frames and events).
OUTBOX_MESSAGES = 256
# Seconds a browser may take to take one message we send before it is dropped as stuck.
SEND_TIMEOUT = 10.0
# Seconds the last messages (a closing error, the final events) may take to go out once
# the session is over, before the socket is closed anyway.
DRAIN_SECONDS = 2.0
# Seconds one browser session may last (Gemini Live's own audio session limit).
MAX_SESSION_SECONDS = 15 * 60.0
