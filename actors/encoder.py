"""The encoder actor: raw capture in, what Gemini Live takes out.

Audio: any rate, channel count and sample format becomes 16 kHz mono PCM16 in fixed
chunks (20 ms by default). Resampling is soxr's streaming resampler, flushed when the
source changes (its name, rate or channel count) and at the end of a stream; float input
is clipped to [-1, 1]. Video: JPEG (or PNG) through Pillow, fitted into 1024x1024 at
quality 75 by default, at about 1 frame per second while the user speaks and about 0.3
otherwise; the latest frame wins, and frames dropped by that policy are counted.

``AudioEncoder`` and ``VideoEncoder`` are plain classes (no I/O); ``encoder`` is the actor.
Bad input raises ``EncoderError`` naming the problem; the actor reports it as ``Dropped``
(aggregated, at most once a second per kind) and goes on, so one bad frame does not end a
session. A level gate on the encoded audio says when the user stops speaking
(``SpeechEnded``, for time to first audio) and steers the video rate.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import soxr
import trio
from PIL import Image

from actors.limits import DROP_REPORT_INTERVAL
from runtime import messages as m
from runtime.audio import INPUT_RATE, SAMPLE_DTYPES
from runtime.drops import DropCounter
from runtime.errors import GeminiLiveError
from runtime.supervisor import ActorContext
from runtime.wiring import deliver, deliver_nowait, messages

TARGET_RATE = INPUT_RATE
_CHANNELS = {"rgb24": ("RGB", 3), "rgba": ("RGBA", 4), "gray": ("L", 1)}


class EncoderError(GeminiLiveError, ValueError):
    """Input that cannot be encoded; the message names the problem."""


class AudioEncoder:
    """Raw audio in, 16 kHz mono PCM16 chunks of ``chunk_ms`` out."""

    def __init__(self, chunk_ms: int = 20) -> None:
        if not 10 <= chunk_ms <= 1000:
            raise ValueError("chunk_ms must be between 10 and 1000")
        self.chunk_bytes = 2 * TARGET_RATE * chunk_ms // 1000
        self._chunk_seconds = chunk_ms / 1000
        self._resampler: soxr.ResampleStream | None = None
        self._format: tuple[str, int, int] | None = None
        self._pending = bytearray()
        self._sequence = 0
        self._first_timestamp: float | None = None
        self._samples_out = 0

    def feed(self, frame: m.RawAudio) -> list[m.AudioChunk]:
        """Encode one frame; the whole chunks it completes. Raises ``EncoderError``."""
        fmt = (frame.source, frame.sample_rate, frame.channels)
        if (
            fmt == self._format
            and self._resampler is None
            and frame.sample_format == "s16"
            and frame.channels == 1
            and not len(frame.data) % 2
        ):
            # Already 16 kHz mono PCM16 (a microphone opened at 16 kHz): the bytes as they
            # are, bit-exact, with no float round trip.
            self._pending += frame.data
            return self._chunks()
        samples = _to_mono_float(frame)
        out: list[m.AudioChunk] = []
        if self._format is not None and fmt != self._format:
            out += self._drain(last=True)  # a new source: finish the old stream first
        if self._format != fmt:
            self._format = fmt
            self._resampler = (
                None
                if frame.sample_rate == TARGET_RATE
                else soxr.ResampleStream(frame.sample_rate, TARGET_RATE, 1, dtype="float32")
            )
        if self._first_timestamp is None:
            self._first_timestamp = frame.timestamp
        resampled = samples if self._resampler is None else self._resampler.resample_chunk(samples)
        self._append(resampled)
        return out + self._chunks()

    def end(self) -> list[m.AudioChunk]:
        """End of stream: flush the resampler; the last (possibly short) chunk."""
        out = self._drain(last=True)
        if self._pending:
            out.append(self._chunk(bytes(self._pending)))
            self._pending.clear()
        self._format = None
        self._resampler = None
        return out

    def clear(self) -> None:
        """Forget the audio not yet cut into chunks; the next frame starts a new stream."""
        self._pending.clear()
        self._format = None
        self._resampler = None
        self._first_timestamp = None
        self._samples_out = 0

    def _drain(self, *, last: bool) -> list[m.AudioChunk]:
        if self._resampler is not None and last:
            self._append(self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        return self._chunks()

    def _append(self, samples: np.ndarray) -> None:
        clipped = np.clip(samples, -1.0, 1.0)
        self._pending += (clipped * 32767.0).round().astype("<i2").tobytes()

    def _chunks(self) -> list[m.AudioChunk]:
        out = []
        while len(self._pending) >= self.chunk_bytes:
            out.append(self._chunk(bytes(self._pending[: self.chunk_bytes])))
            del self._pending[: self.chunk_bytes]
        return out

    def _chunk(self, data: bytes) -> m.AudioChunk:
        # Timestamps follow the audio itself: where this chunk starts in the stream.
        start = (self._first_timestamp or 0.0) + self._samples_out / TARGET_RATE
        self._samples_out += len(data) // 2
        self._sequence += 1
        return m.AudioChunk(data=data, timestamp=start, sequence=self._sequence)


def _to_mono_float(frame: m.RawAudio) -> np.ndarray:
    if frame.channels < 1:
        raise EncoderError(f"audio from {frame.source or 'a source'} has {frame.channels} channels")
    if frame.sample_rate < 1000 or frame.sample_rate > 384000:
        raise EncoderError(f"unsupported sample rate {frame.sample_rate} Hz")
    dtype, scale = SAMPLE_DTYPES[frame.sample_format]
    width = np.dtype(dtype).itemsize * frame.channels
    if len(frame.data) % width:
        raise EncoderError(
            f"{len(frame.data)} bytes is not a whole number of {frame.channels}-channel "
            f"{frame.sample_format} frames"
        )
    samples = np.frombuffer(frame.data, dtype=dtype).astype(np.float32) / np.float32(scale)
    if frame.sample_format == "f32" and not np.isfinite(samples).all():
        raise EncoderError("audio contains NaN or infinite samples")
    mono: np.ndarray = samples.reshape(-1, frame.channels).mean(axis=1, dtype=np.float32)
    return mono


@dataclass
class VideoEncoder:
    """Raw frames in, JPEG (or PNG) stills out, at a rate that depends on speech."""

    max_size: tuple[int, int] = (1024, 1024)
    quality: int = 75
    image_format: Literal["JPEG", "PNG"] = "JPEG"
    speaking_fps: float = 1.0
    idle_fps: float = 0.3
    dropped: int = 0
    _latest: m.RawVideo | None = field(default=None, repr=False)
    _last_sent: float | None = field(default=None, repr=False)

    def offer(self, frame: m.RawVideo) -> None:
        """Keep ``frame`` as the latest; a frame it replaces unsent is counted as dropped."""
        _check_frame(frame)
        if self._latest is not None:
            self.dropped += 1
        self._latest = frame

    def due(self, now: float, *, speaking: bool) -> m.VideoFrame | None:
        """The latest frame, encoded, if the rate policy allows one now."""
        if self._latest is None:
            return None
        interval = 1.0 / (self.speaking_fps if speaking else self.idle_fps)
        if self._last_sent is not None and now - self._last_sent < interval:
            return None
        frame, self._latest = self._latest, None
        self._last_sent = now
        return self.encode(frame)

    def encode(self, frame: m.RawVideo) -> m.VideoFrame:
        _check_frame(frame)
        mode, _ = _CHANNELS[frame.pixel_format]
        image = Image.frombytes(mode, (frame.width, frame.height), frame.data)
        if image.mode != "RGB" and self.image_format == "JPEG":
            image = image.convert("RGB")
        image.thumbnail(self.max_size)  # fits inside, keeping the aspect ratio
        buffer = io.BytesIO()
        if self.image_format == "JPEG":
            image.save(buffer, "JPEG", quality=self.quality)
        else:
            image.save(buffer, "PNG")
        return m.VideoFrame(
            data=buffer.getvalue(),
            mime_type=f"image/{self.image_format.lower()}",
            width=image.width,
            height=image.height,
            timestamp=frame.timestamp,
        )


def _check_frame(frame: m.RawVideo) -> None:
    if frame.width < 1 or frame.height < 1:
        raise EncoderError(f"video frame of {frame.width}x{frame.height} pixels")
    _, channels = _CHANNELS[frame.pixel_format]
    expected = frame.width * frame.height * channels
    if len(frame.data) != expected:
        raise EncoderError(
            f"a {frame.width}x{frame.height} {frame.pixel_format} frame needs {expected} bytes, "
            f"got {len(frame.data)}"
        )


@dataclass
class _Speech:
    """A simple local level gate: is the user speaking (for the video rate policy), and
    when did they stop (``SpeechEnded``, for time to first audio)?"""

    threshold: float = 10 ** (-45 / 20)  # -45 dBFS RMS
    hold: float = 0.5
    until: float = 0.0
    voiced_end: float | None = None  # where the last loud chunk ended, not yet reported

    def update(self, chunk: m.AudioChunk) -> m.SpeechEnded | None:
        """Feed one chunk; a ``SpeechEnded`` once the audio has been quiet ``hold`` s."""
        count = len(chunk.data) // 2
        end = chunk.timestamp + count / TARGET_RATE
        if count:
            # float64 sums these squares exactly (each < 2**30, a chunk of at most 16000
            # samples: far below 2**53), and faster than int64 (no BLAS for integers).
            samples = np.frombuffer(chunk.data, dtype="<i2", count=count).astype(np.float64)
            if math.sqrt(int(samples @ samples) / count) > self.level:
                self.until, self.voiced_end = end + self.hold, end
                return None
        if self.voiced_end is not None and chunk.timestamp >= self.until:
            return self.end()
        return None

    def end(self) -> m.SpeechEnded | None:
        """The stream ended: a ``SpeechEnded`` if speech was not yet reported as over."""
        ended = None if self.voiced_end is None else m.SpeechEnded(timestamp=self.voiced_end)
        self.voiced_end = None
        return ended

    @property
    def level(self) -> float:
        return self.threshold * 32768.0

    def active(self, now: float) -> bool:
        return now < self.until


async def encoder(
    ctx: ActorContext,
    *,
    raw: trio.MemoryReceiveChannel[m.InternalMessage],
    out: trio.MemorySendChannel[m.InternalMessage],
    reports: trio.MemorySendChannel[m.InternalMessage],
    chunk_ms: int = 20,
    video: VideoEncoder | None = None,
    video_sources: frozenset[str] = frozenset(),
) -> None:
    """Encode ``raw`` (``RawAudio``, ``RawVideo``, ``EndOfStream``) until ``raw`` ends.
    Closes its endpoints on exit.

    ``out`` (to the link) gets what the server takes: audio chunks, video frames, and
    ``AudioStreamEnded`` when a source not named in ``video_sources`` ends; anything else
    on ``raw`` passes through to it (``AudioCleared`` after dropping the partial chunk).
    ``reports`` (to the rest of the pipeline) gets the
    ``EndOfStream``, a copy of each ``AudioStreamEnded``, a ``SpeechEnded`` when the
    user's audio goes quiet, and ``Dropped`` reports (aggregated: at most one a second per
    kind) for bad or superseded frames."""
    encoding = _Encoding(out, reports, AudioEncoder(chunk_ms), video or VideoEncoder())
    async with raw, out, reports:
        ctx.ready()
        # Audio is encoded in capture's task while this loop waits (one task step less per
        # frame); everything else, and audio while messages are queued, comes through here.
        async for message in messages(raw, inline=encoding.audio_now):
            try:
                if isinstance(message, m.RawAudio):
                    await encoding.audio(message)
                elif isinstance(message, m.RawVideo):
                    await encoding.video(message)
                elif isinstance(message, m.AudioCleared):
                    encoding.sound.clear()  # the partial chunk is cleared too
                    await deliver(out, message)
                elif isinstance(message, m.EndOfStream):
                    await encoding.end(message, message.source not in video_sources)
                else:
                    await deliver(out, message)
            except EncoderError as exc:
                await encoding.dropped(f"input: {exc}")
            await encoding.video_due()
        await encoding.flush_drops()


@dataclass
class _Encoding:
    """One encoder incarnation's work, a method per kind of input."""

    out: trio.MemorySendChannel[m.InternalMessage]
    reports: trio.MemorySendChannel[m.InternalMessage]
    sound: AudioEncoder
    pictures: VideoEncoder
    speech: _Speech = field(default_factory=_Speech)
    seen_video: bool = False
    drops: dict[str, DropCounter] = field(default_factory=dict)
    unbounded: bool = False  # both outputs: a channel's bound never changes

    def __post_init__(self) -> None:
        self.unbounded = (
            self.out.statistics().max_buffer_size == math.inf
            and self.reports.statistics().max_buffer_size == math.inf
        )

    async def audio(self, message: m.RawAudio) -> None:
        for chunk in self.sound.feed(message):
            await self._send_chunk(chunk)

    def audio_now(self, message: m.InternalMessage) -> bool:
        """The actor's loop body for a ``RawAudio`` (encode, send the chunks, report a bad
        frame), synchronously, for ``messages(..., inline=...)``: run by the sender while
        the actor waits. Declines (False, nothing done) anything else, and everything once
        video was seen (encoding a picture is not work for capture's task) or when a
        channel it writes to is bounded (it could not wait for room there)."""
        if type(message) is not m.RawAudio or self.seen_video or not self.unbounded:
            return False
        try:
            chunks = self.sound.feed(message)
        except EncoderError as exc:
            report = self._count_drop(f"input: {exc}")
            if report is not None:
                deliver_nowait(self.reports, report)
            return True
        for chunk in chunks:
            ended = self.speech.update(chunk)
            deliver_nowait(self.out, chunk)  # the link's inline handler may write it now
            if ended is not None:
                deliver_nowait(self.reports, ended)
        return True

    async def _send_chunk(self, chunk: m.AudioChunk) -> None:
        ended = self.speech.update(chunk)
        await deliver(self.out, chunk)
        if ended is not None:
            await deliver(self.reports, ended)

    async def video(self, message: m.RawVideo) -> None:
        self.seen_video = True
        before = self.pictures.dropped
        self.pictures.offer(message)
        if self.pictures.dropped > before:
            await self.dropped("video frame (the latest wins)")

    async def end(self, message: m.EndOfStream, audio: bool) -> None:
        for chunk in self.sound.end():
            await self._send_chunk(chunk)
        if audio:
            ended = self.speech.end()
            if ended is not None:
                await deliver(self.reports, ended)
            stream_ended = m.AudioStreamEnded(timestamp=message.timestamp)
            await deliver(self.out, stream_ended)  # the end of the user's audio
            await deliver(self.reports, stream_ended)
        await self.flush_drops()
        await deliver(self.reports, message)

    async def video_due(self) -> None:
        if self.seen_video:
            now = trio.current_time()
            frame = self.pictures.due(now, speaking=self.speech.active(now))
            if frame is not None:
                await deliver(self.out, frame)

    async def dropped(self, what: str) -> None:
        report = self._count_drop(what)
        if report is not None:
            await deliver(self.reports, report)

    def _count_drop(self, what: str) -> m.Dropped | None:
        """Count one drop of ``what``; the report due now, if any."""
        counter = self.drops.get(what)
        if counter is None:
            if len(self.drops) >= _DROP_KINDS:  # errors name their input: keep the kinds few
                what = "input that could not be encoded (other kinds)"
                counter = self.drops.get(what)
            if counter is None:
                counter = self.drops[what] = DropCounter(what, DROP_REPORT_INTERVAL)
        counter.add()
        return counter.due(trio.current_time())

    async def flush_drops(self) -> None:
        for counter in self.drops.values():
            report = counter.flush()
            if report is not None:
                await deliver(self.reports, report)


_DROP_KINDS = 16
