"""The capture actor: reads a source and emits raw frames, then an ``EndOfStream``.

Audio sources: ``WavSource`` (16-, 24- or 32-bit integer or 32-bit float WAV, any rate and
channel count, read block by block by ``runtime.audio.open_wav``: an hour of audio is
never held whole),
``ArraySource`` (numpy), ``MicrophoneSource`` (sounddevice, an optional extra). Video
sources: ``ImageFilesSource``, ``FrameSource`` (numpy frames), ``CallableSource``.

File and array sources are paced in real time (``realtime=True``: one frame per frame
duration, on trio's clock) or as fast as possible; timestamps follow the media (start time
plus position). Unreadable input raises ``CaptureError`` naming it; a missing microphone,
sounddevice or PortAudio raises ``AudioDeviceUnavailable`` saying which.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import trio
from PIL import Image, UnidentifiedImageError

from runtime import messages as m
from runtime.audio import WavAudio, WavError, WavReader, open_wav
from runtime.clock import paced_sleep_until
from runtime.errors import GeminiLiveError, unwrapping
from runtime.supervisor import ActorContext
from runtime.wiring import deliver


class CaptureError(GeminiLiveError, ValueError):
    """A source that cannot be read; the message names it and says why."""


class AudioDeviceUnavailable(GeminiLiveError, RuntimeError):
    """No audio device: sounddevice or PortAudio is missing, or there is no such device."""


def sounddevice_module(what: str) -> Any:
    """The sounddevice module; ``AudioDeviceUnavailable`` (naming ``what`` needs it) when
    it or the system's PortAudio is missing."""
    try:
        import sounddevice
    except ImportError as exc:
        raise AudioDeviceUnavailable(
            f"the {what} needs sounddevice: install the audio extra "
            "(pip install 'gemini-live-trio[audio]'; make console does it)"
        ) from exc
    except OSError as exc:  # sounddevice raises OSError when libportaudio is missing
        raise AudioDeviceUnavailable(
            f"the {what} needs PortAudio: install the system's libportaudio2 ({exc})"
        ) from exc
    return sounddevice


def audio_device_error(what: str, exc: BaseException) -> AudioDeviceUnavailable:
    """``AudioDeviceUnavailable`` for a device PortAudio could not open, in one line."""
    detail = " ".join(str(exc).split())
    if "querying device -1" in detail:  # PortAudio's way of saying there is no default
        detail = "there is no default device (no sound card, or no sound server running)"
    return AudioDeviceUnavailable(f"no {what} device could be opened: {detail}")


class Source(Protocol):
    name: str

    def frames(self) -> AsyncIterator[m.RawAudio | m.RawVideo]: ...


# --- audio sources ------------------------------------------------------------------------


async def _paced(
    name: str, blocks: AsyncIterator[WavAudio], frame_ms: int, realtime: bool
) -> AsyncIterator[m.RawAudio]:
    """Frames of ``frame_ms`` from consecutive blocks of audio (each a whole number of
    frames but the last), timestamped by their position in the stream."""
    start = trio.current_time()
    before = 0  # frames in the blocks already sent
    async for audio in blocks:
        width = {"s16": 2, "s32": 4, "f32": 4}[audio.sample_format] * audio.channels
        frame_samples = max(1, audio.sample_rate * frame_ms // 1000)
        total = len(audio.data) // width
        for first in range(0, total, frame_samples):
            position = (before + first) / audio.sample_rate
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
        before += total


async def _one_block(audio: WavAudio) -> AsyncIterator[WavAudio]:
    yield audio


WAV_BLOCK_SECONDS = 1.0  # read from the file this much at a time (one thread hop each)


async def _file_blocks(reader: WavReader, frame_ms: int) -> AsyncIterator[WavAudio]:
    frame_samples = max(1, reader.sample_rate * frame_ms // 1000)
    frames = max(1, int(reader.sample_rate * WAV_BLOCK_SECONDS) // frame_samples) * frame_samples
    while data := await trio.to_thread.run_sync(reader.read, frames):
        yield WavAudio(data, reader.sample_rate, reader.channels, reader.sample_format)


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
            reader = await trio.to_thread.run_sync(open_wav, self.path)
        except WavError as exc:
            raise CaptureError(str(exc)) from exc
        try:
            blocks = _file_blocks(reader, self.frame_ms)
            async for frame in _paced(self.name, blocks, self.frame_ms, self.realtime):
                yield frame
        except WavError as exc:
            raise CaptureError(str(exc)) from exc
        finally:
            reader.close()


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
        async for frame in _paced(self.name, _one_block(audio), self.frame_ms, self.realtime):
            yield frame


@dataclass
class MicrophoneSource:
    """An input device through sounddevice (the ``audio`` extra and the system's
    PortAudio): ``device`` is a sounddevice device name or index, None for the default.
    Raises ``AudioDeviceUnavailable`` (one line: what is missing) when sounddevice,
    PortAudio or the device is."""

    sample_rate: int = 16000
    channels: int = 1
    frame_ms: int = 20
    name: str = "microphone"
    device: str | int | None = None

    def __post_init__(self) -> None:
        sounddevice_module("microphone")  # missing sounddevice or PortAudio: say so now

    async def frames(self) -> AsyncIterator[m.RawAudio]:
        sd = sounddevice_module("microphone")
        send, receive = trio.open_memory_channel[bytes](math.inf)
        token = trio.lowlevel.current_trio_token()

        def callback(data: object, frames: int, time: object, status: object) -> None:
            # PortAudio's thread: hand the block to trio (nothing once the run is over).
            with suppress(trio.RunFinishedError):
                token.run_sync_soon(send.send_nowait, bytes(data))  # type: ignore[call-overload]

        try:
            stream = sd.RawInputStream(
                samplerate=self.sample_rate,
                channels=self.channels,
                dtype="int16",
                blocksize=self.sample_rate * self.frame_ms // 1000,
                callback=callback,
                device=self.device,
            )
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise audio_device_error("microphone", exc) from exc
        try:
            async for block in receive:
                yield m.RawAudio(
                    data=block,
                    sample_rate=self.sample_rate,
                    channels=self.channels,
                    sample_format="s16",
                    timestamp=trio.current_time(),
                    source=self.name,
                )
        finally:
            stream.stop()
            stream.close()


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

    def __post_init__(self) -> None:
        """Raises ``CaptureError`` at once for a folder that is not there (not later, once
        the session has started)."""
        if isinstance(self.paths, str | Path) and not Path(self.paths).is_dir():
            raise CaptureError(f"{self.paths} is not a folder")

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
    """Send ``source``'s frames to ``out``, then ``EndOfStream``; closes ``out``. When
    ``ctx.stopping`` is set it stops reading at once (no ``EndOfStream``: the stream did
    not end, the session did).

    Raises ``CaptureError`` (or ``AudioDeviceUnavailable``) for a source that cannot be read.
    """
    async with out:
        ctx.ready()
        with trio.CancelScope() as reading, unwrapping():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ctx.cancel_when_stopping, reading)
                frames = source.frames()
                try:
                    async for frame in frames:
                        await deliver(out, frame)
                finally:
                    aclose = getattr(frames, "aclose", None)
                    if aclose is not None:  # a generator: its device or file closes now
                        with trio.CancelScope(shield=True):
                            await aclose()
                await deliver(out, m.EndOfStream(source=source.name, timestamp=trio.current_time()))
                nursery.cancel_scope.cancel()
