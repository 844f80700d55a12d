"""Sources fed by a browser socket: the microphone's audio and the camera's frames.

Both are ``Source``s like ``WavSource`` or ``MicrophoneSource`` (``name`` and
``frames()``), so the capture actor reads them and the encoder resamples and encodes what
they give, exactly as for any other source. What differs is where the data comes from: the
connection that reads the socket calls ``feed`` with each decoded message
(``actors.browser_wire``) and ``end`` when the browser has gone.

``BrowserAudioSource.feed`` waits when ``INBOX_MESSAGES`` are queued (the reader stops
reading: backpressure on the browser's socket, no audio lost) and refuses audio running
more than ``MAX_AUDIO_AHEAD_SECONDS`` ahead of the wall clock. ``BrowserVideoSource.feed``
decodes the JPEG (Pillow, in a thread, its size checked from the header before decoding)
and keeps the latest frame: frames faster than ``MAX_VIDEO_FPS``, or arriving while one
waits, are dropped and counted (``dropped``).
"""

from __future__ import annotations

import io
from collections.abc import AsyncGenerator

import numpy as np
import trio
from PIL import Image, UnidentifiedImageError

from actors import browser_limits as limits
from actors.browser_wire import (
    INVALID_DATA,
    POLICY_VIOLATION,
    TOO_BIG,
    AudioIn,
    BrowserProtocolError,
    VideoIn,
)
from runtime import messages as m


class BrowserAudioSource:
    """The browser's microphone: mono PCM16 at the rate each message says."""

    def __init__(
        self, name: str = "browser-microphone", inbox: int = limits.INBOX_MESSAGES
    ) -> None:
        self.name = name
        self._send, self._receive = trio.open_memory_channel[m.RawAudio](inbox)
        self._first: float | None = None  # trio time of the first frame
        self.seconds_received = 0.0

    async def feed(self, audio: AudioIn) -> None:
        """Queue one message's audio; waits while the inbox is full. Raises
        ``BrowserProtocolError`` (1008) for audio too far ahead of the wall clock, and
        ``trio.ClosedResourceError`` after ``end()``."""
        now = trio.current_time()
        if self._first is None:
            self._first = now
        seconds = len(audio.pcm) / 2 / audio.sample_rate
        ahead = round(self.seconds_received + seconds - (now - self._first), 6)
        if ahead > limits.MAX_AUDIO_AHEAD_SECONDS:
            raise BrowserProtocolError(
                f"audio {ahead:.1f} s ahead of real time "
                f"(at most {limits.MAX_AUDIO_AHEAD_SECONDS:g} s)",
                POLICY_VIOLATION,
            )
        frame = m.RawAudio(
            data=audio.pcm,
            sample_rate=audio.sample_rate,
            channels=1,
            sample_format="s16",
            timestamp=now,
            source=self.name,
        )
        await self._send.send(frame)
        self.seconds_received += seconds

    def end(self) -> None:
        """No more audio: ``frames()`` ends once what is queued has been read."""
        self._send.close()

    async def frames(self) -> AsyncGenerator[m.RawAudio, None]:
        """Each message's audio as it comes; ends after ``end()``."""
        async for frame in self._receive:
            yield frame


class BrowserVideoSource:
    """The browser's camera: JPEG frames, decoded to RGB for the encoder."""

    def __init__(self, name: str = "browser-camera") -> None:
        self.name = name
        # Latest wins: one frame waits at most; the encoder's own policy thins them further.
        self._send, self._receive = trio.open_memory_channel[m.RawVideo](1)
        self._last: float | None = None
        self.dropped = 0

    async def feed(self, video: VideoIn) -> None:
        """Decode and queue one camera frame, or drop it (counted) when it comes faster
        than ``MAX_VIDEO_FPS`` or while one waits. Raises ``BrowserProtocolError`` for a
        frame that is not a JPEG (1007) or has more than ``MAX_VIDEO_PIXELS`` (1009)."""
        now = trio.current_time()
        if self._last is not None and now - self._last < 1 / limits.MAX_VIDEO_FPS:
            self.dropped += 1
            return
        self._last = now
        width, height, rgb = await trio.to_thread.run_sync(decode_jpeg, video.jpeg)
        frame = m.RawVideo(
            data=rgb, width=width, height=height, pixel_format="rgb24", timestamp=now
        )
        try:
            self._send.send_nowait(frame)
        except trio.WouldBlock:
            self.dropped += 1

    def end(self) -> None:
        self._send.close()

    async def frames(self) -> AsyncGenerator[m.RawVideo, None]:
        async for frame in self._receive:
            yield frame


def decode_jpeg(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, RGB bytes) of a JPEG; ``BrowserProtocolError`` when it is not
    one or is too large. Blocking: run it in a thread."""
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
            width, height = image.size  # from the header: nothing decoded yet
            if width * height > limits.MAX_VIDEO_PIXELS:
                raise BrowserProtocolError(
                    f"camera frame of {width}x{height} exceeds {limits.MAX_VIDEO_PIXELS} pixels",
                    TOO_BIG,
                )
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise BrowserProtocolError(
            f"camera frame is not a readable JPEG: {exc}", INVALID_DATA
        ) from exc
    return width, height, rgb.tobytes()
