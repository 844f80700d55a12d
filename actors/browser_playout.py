"""A sink that plays the agent's voice in a browser: each frame as a binary message.

``BrowserSink`` is a ``Sink`` like ``WavSink`` or ``SpeakerSink``: the playout actor
writes 24 kHz PCM16 frames to it at the pace of a speaker (20 ms each, after its jitter
buffer), and it sends each as one audio message of the browser socket
(``actors.browser_wire.encode_audio``) through ``send``, any coroutine function that
sends a binary WebSocket message. The page plays them through its own small jitter buffer
(network jitter only) and flushes it when the session says ``interrupted``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from actors.browser_wire import encode_audio
from actors.errors import SinkError


class BrowserSink:
    """Sends what playout writes to a browser. ``write`` waits for ``send`` (bounded by
    whoever owns the socket); after ``aclose()`` a write raises ``SinkError``."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        self._send = send
        self.sequence = 0
        self.samples_sent = 0
        self.closed = False

    async def write(self, pcm: bytes) -> None:
        if self.closed:
            raise SinkError("the browser sink is closed")
        await self._send(encode_audio(pcm, self.sequence))
        self.sequence += 1
        self.samples_sent += len(pcm) // 2

    async def aclose(self) -> None:
        self.closed = True
