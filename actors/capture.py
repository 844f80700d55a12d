"""The capture actor: reads a source and emits raw frames, then an ``EndOfStream``.

Audio sources: ``WavSource`` (16-, 24- or 32-bit integer or 32-bit float WAV, any rate and
channel count, read by ``runtime.audio.read_wav``),
``ArraySource`` (numpy), ``MicrophoneSource`` (sounddevice, an optional extra). Video
sources: ``ImageFilesSource``, ``FrameSource`` (numpy frames), ``CallableSource``.

File and array sources are paced in real time (``realtime=True``: one frame per frame
duration, on trio's clock) or as fast as possible; timestamps follow the media (start time
plus position). Unreadable input raises ``CaptureError`` naming it.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import trio
from PIL import Image, UnidentifiedImageError

from runtime import messages as m
from runtime.audio import WavAudio, WavError, read_wav
from runtime.clock import paced_sleep_until
from runtime.supervisor import ActorContext
from runtime.wiring import deliver


class CaptureError(ValueError):
    """A source that cannot be read; the message names it and says why."""


class AudioDeviceUnavailable(RuntimeError):
    """No audio device: sounddevice is not installed or PortAudio is missing."""


class Source(Protocol):
    name: str

    def frames(self) -> AsyncIterator[m.RawAudio | m.RawVideo]: ...


# --- audio sources ------------------------------------------------------------------------


async def _paced(
    name: str, audio: WavAudio, frame_ms: int, realtime: bool
) -> AsyncIterator[m.RawAudio]:
    width = {"s16": 2, "s32": 4, "f32": 4}[audio.sample_format] * audio.channels
    frame_samples = max(1, audio.sample_rate * frame_ms // 1000)
    start = trio.current_time()
    total = len(audio.data) // width
    for first in range(0, total, frame_samples):
        position = first / audio.sample_rate
        if realtime:
            await paced_sleep_until(start + position)
        else:
            await trio.lowlevel.checkpoint()
        yield m.RawAudio(
            data=audio.data[first * width : (first + frame_samples) * width],
            sample_rate=audio.sample_rate,
            channels=audio.channels,
            sample_format=audio.sample_format,
            timestamp=start + position,
            source=name,
        )


@dataclass
class WavSource:
    path: str | Path
    frame_ms: int = 20
    realtime: bool = True
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or Path(self.path).name

    async def frames(self) -> AsyncIterator[m.RawAudio]:
        try:
            audio = await trio.to_thread.run_sync(read_wav, self.path)
        except WavError as exc:
            raise CaptureError(str(exc)) from exc
        async for frame in _paced(self.name, audio, self.frame_ms, self.realtime):
            yield frame


@dataclass
class ArraySource:
    """Samples as a numpy array, shape (samples,) or (samples, channels): int16, int32,
    float32 or float64 (floats in [-1, 1])."""

    samples: np.ndarray
    sample_rate: int
    frame_ms: int = 20
    realtime: bool = True
    name: str = "array"

    async def frames(self) -> AsyncIterator[m.RawAudio]:
        array = self.samples if self.samples.ndim == 2 else self.samples.reshape(-1, 1)
        if array.ndim != 2 or array.shape[1] < 1:
            raise CaptureError(
                f"{self.name}: expected (samples,) or (samples, channels), got {self.samples.shape}"
            )
        if array.dtype == np.int16:
            audio = WavAudio(array.astype("<i2").tobytes(), self.sample_rate, array.shape[1], "s16")
        elif array.dtype == np.int32:
            audio = WavAudio(array.astype("<i4").tobytes(), self.sample_rate, array.shape[1], "s32")
        elif array.dtype in (np.float32, np.float64):
            audio = WavAudio(array.astype("<f4").tobytes(), self.sample_rate, array.shape[1], "f32")
        else:
            raise CaptureError(f"{self.name}: unsupported sample type {array.dtype}")
        async for frame in _paced(self.name, audio, self.frame_ms, self.realtime):
            yield frame


@dataclass
class MicrophoneSource:
    """The default input device through sounddevice (``pip install sounddevice``)."""

    sample_rate: int = 16000
    channels: int = 1
    frame_ms: int = 20
    name: str = "microphone"

    async def frames(self) -> AsyncIterator[m.RawAudio]:
        try:
            import sounddevice
        except (ImportError, OSError) as exc:
            raise AudioDeviceUnavailable(
                "the microphone needs sounddevice and PortAudio: pip install sounddevice "
                f"(and the system's libportaudio2); {exc}"
            ) from exc
        send, receive = trio.open_memory_channel[bytes](math.inf)
        token = trio.lowlevel.current_trio_token()

        def callback(data: object, frames: int, time: object, status: object) -> None:
            token.run_sync_soon(send.send_nowait, bytes(data))  # type: ignore[call-overload]

        try:
            stream = sounddevice.RawInputStream(
                samplerate=self.sample_rate,
                channels=self.channels,
                dtype="int16",
                blocksize=self.sample_rate * self.frame_ms // 1000,
                callback=callback,
            )
        except sounddevice.PortAudioError as exc:  # PortAudio is there, no device is
            raise AudioDeviceUnavailable(
                f"the microphone needs sounddevice and an input device: {exc}"
            ) from exc
        with stream:
            async for block in receive:
                yield m.RawAudio(
                    data=block,
                    sample_rate=self.sample_rate,
                    channels=self.channels,
                    sample_format="s16",
                    timestamp=trio.current_time(),
                    source=self.name,
                )


# --- video sources ------------------------------------------------------------------------


def _video_frame(array: np.ndarray, timestamp: float, name: str) -> m.RawVideo:
    if array.dtype != np.uint8:
        raise CaptureError(f"{name}: frames must be uint8, not {array.dtype}")
    if array.ndim == 2:
        return m.RawVideo(
            data=array.tobytes(),
            width=array.shape[1],
            height=array.shape[0],
            pixel_format="gray",
            timestamp=timestamp,
        )
    if array.ndim == 3 and array.shape[2] in (3, 4):
        fmt: m.PixelFormat = "rgb24" if array.shape[2] == 3 else "rgba"
        data = np.ascontiguousarray(array).tobytes()
        return m.RawVideo(
            data=data,
            width=array.shape[1],
            height=array.shape[0],
            pixel_format=fmt,
            timestamp=timestamp,
        )
    raise CaptureError(f"{name}: frames must be HxW, HxWx3 or HxWx4, not {array.shape}")


async def _paced_frames(
    frames: Iterable[np.ndarray], fps: float, name: str
) -> AsyncIterator[m.RawVideo]:
    if fps <= 0:
        raise CaptureError(f"{name}: fps must be positive")
    start = trio.current_time()
    for index, array in enumerate(frames):
        await paced_sleep_until(start + index / fps)
        yield _video_frame(array, start + index / fps, name)


def _load_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise CaptureError(f"{path} is not a readable image: {exc}") from exc


@dataclass
class ImageFilesSource:
    """Image files (a list, or every image in a folder, by name), shown at ``fps``."""

    paths: Sequence[str | Path] | str | Path
    fps: float = 1.0
    name: str = "images"

    def files(self) -> list[Path]:
        if isinstance(self.paths, str | Path):
            folder = Path(self.paths)
            if not folder.is_dir():
                raise CaptureError(f"{folder} is not a folder")
            suffixes = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
            return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)
        return [Path(p) for p in self.paths]

    async def frames(self) -> AsyncIterator[m.RawVideo]:
        async def images() -> AsyncIterator[np.ndarray]:
            for path in self.files():
                yield await trio.to_thread.run_sync(_load_image, path)

        start = trio.current_time()
        index = 0
        async for array in images():
            await paced_sleep_until(start + index / self.fps)
            yield _video_frame(array, start + index / self.fps, self.name)
            index += 1


@dataclass
class FrameSource:
    frames_: Iterable[np.ndarray]
    fps: float = 1.0
    name: str = "frames"

    def frames(self) -> AsyncIterator[m.RawVideo]:
        return _paced_frames(self.frames_, self.fps, self.name)


@dataclass
class CallableSource:
    """Calls ``grab()`` at ``fps``; a ``None`` ends the stream."""

    grab: Callable[[], np.ndarray | None]
    fps: float = 1.0
    name: str = "camera"

    def frames(self) -> AsyncIterator[m.RawVideo]:
        def grabbed() -> Iterable[np.ndarray]:
            while (array := self.grab()) is not None:
                yield array

        return _paced_frames(grabbed(), self.fps, self.name)


async def capture(
    ctx: ActorContext, *, source: Source, out: trio.MemorySendChannel[m.InternalMessage]
) -> None:
    """Send ``source``'s frames to ``out``, then ``EndOfStream``; closes ``out``.

    Raises ``CaptureError`` (or ``AudioDeviceUnavailable``) for a source that cannot be read.
    """
    async with out:
        ctx.ready()
        async for frame in source.frames():
            await deliver(out, frame)
        await deliver(out, m.EndOfStream(source=source.name, timestamp=trio.current_time()))
