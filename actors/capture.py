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

Paced sources whose frames are ready before they are due (``PacedSource``: arrays, WAV
files read a block ahead) are driven by the run's shared clock: each frame is handed on
from a ``Pacer.call_at`` callback at its due time, through the encoder's and the link's
inline hand-offs, with no task step of their own (issue 17). Other sources (a
microphone, video) are read by the capture task as they come.
"""

from __future__ import annotations

import collections
import math
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import trio
from PIL import Image, UnidentifiedImageError

from runtime import messages as m
from runtime.audio import WavAudio, WavError, WavReader, open_wav
from runtime.clock import Pacer, Timer, on_grid, paced_sleep_until, shared_pacer
from runtime.errors import GeminiLiveError, unwrapping
from runtime.supervisor import ActorContext
from runtime.wiring import deliver, deliver_nowait


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


Frame = m.RawAudio | m.RawVideo
Due = tuple[float, Frame]  # a frame and when it is due (trio's clock)


class Source(Protocol):
    name: str

    def frames(self) -> AsyncIterator[m.RawAudio | m.RawVideo]: ...


@runtime_checkable
class PacedSource(Source, Protocol):
    """A source that knows when each frame is due and has it ready before then (memory,
    a file read a block ahead). The capture actor hands each frame on from the shared
    clock's callback at its due time (``Pacer.call_at``: no task step per frame) instead
    of iterating ``frames()`` with a sleep per frame."""

    def paced_frames(self) -> AsyncIterator[Iterable[Due]] | None:
        """Batches of (due time on trio's clock, frame), due times in order across
        batches; None when this source is not paced in real time (capture then reads
        ``frames()``). Getting the next batch may wait (a file read in a thread): capture
        asks for it while the batch before is still playing. Iterating a batch must not
        wait or block (it runs in the clock's callbacks, in no task); it may raise
        ``CaptureError``, which fails the capture actor as ``frames()`` raising would.
        Each call starts the stream again (a restarted capture calls it again)."""


# --- audio sources ------------------------------------------------------------------------

_SAMPLE_WIDTH = {"s16": 2, "s32": 4, "f32": 4}


def _timed(name: str, audio: WavAudio, start: float, before: int, frame_ms: int) -> Iterator[Due]:
    """``audio`` cut into frames of ``frame_ms`` (the last may be short), each due at
    ``start`` plus its position in the stream (``before`` samples came earlier)."""
    width = _SAMPLE_WIDTH[audio.sample_format] * audio.channels
    frame_samples = max(1, audio.sample_rate * frame_ms // 1000)
    total = len(audio.data) // width
    for first in range(0, total, frame_samples):
        due = start + (before + first) / audio.sample_rate
        yield (
            due,
            m.RawAudio(
                data=audio.data[first * width : (first + frame_samples) * width],
                sample_rate=audio.sample_rate,
                channels=audio.channels,
                sample_format=audio.sample_format,
                timestamp=due,
                source=name,
            ),
        )


def _samples(audio: WavAudio) -> int:
    return len(audio.data) // (_SAMPLE_WIDTH[audio.sample_format] * audio.channels)


async def _batches(
    name: str, blocks: AsyncIterator[WavAudio], frame_ms: int
) -> AsyncIterator[Iterator[Due]]:
    """Consecutive blocks of audio (each a whole number of frames but the last) as
    batches of timed frames, timestamped by their position in the stream from the clock's
    next grid point (``on_grid``: streams on the grid share the clock's ticks)."""
    start = on_grid(trio.current_time())
    before = 0  # samples in the blocks before
    async for audio in blocks:
        yield _timed(name, audio, start, before, frame_ms)
        before += _samples(audio)


async def _paced(
    name: str, blocks: AsyncIterator[WavAudio], frame_ms: int, realtime: bool
) -> AsyncIterator[m.RawAudio]:
    """Frames of ``frame_ms`` from consecutive blocks of audio, each yielded at its due
    time (``realtime``) or at once, timestamped by their position in the stream."""
    async for batch in _batches(name, blocks, frame_ms):
        for due, frame in batch:
            if realtime:
                await paced_sleep_until(due)
            else:
                await trio.lowlevel.checkpoint()
            assert isinstance(frame, m.RawAudio)
            yield frame


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
        reader = await self._open()
        try:
            blocks = _file_blocks(reader, self.frame_ms)
            async for frame in _paced(self.name, blocks, self.frame_ms, self.realtime):
                yield frame
        except WavError as exc:
            raise CaptureError(str(exc)) from exc
        finally:
            reader.close()

    def paced_frames(self) -> AsyncIterator[Iterable[Due]] | None:
        """Blocks of ``WAV_BLOCK_SECONDS`` read in a thread, one ahead of the one playing
        (``PacedSource``); None when not ``realtime``."""
        return self._paced_blocks() if self.realtime else None

    async def _paced_blocks(self) -> AsyncIterator[Iterable[Due]]:
        reader = await self._open()
        try:
            async for batch in _batches(
                self.name, _file_blocks(reader, self.frame_ms), self.frame_ms
            ):
                yield batch
        except WavError as exc:
            raise CaptureError(str(exc)) from exc
        finally:
            reader.close()

    async def _open(self) -> WavReader:
        try:
            return await trio.to_thread.run_sync(open_wav, self.path)
        except WavError as exc:
            raise CaptureError(str(exc)) from exc


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
        audio = self._audio()
        async for frame in _paced(self.name, _one_block(audio), self.frame_ms, self.realtime):
            yield frame

    def paced_frames(self) -> AsyncIterator[Iterable[Due]] | None:
        """The samples as one batch (``PacedSource``); None when not ``realtime``."""
        return self._one_batch() if self.realtime else None

    async def _one_batch(self) -> AsyncIterator[Iterable[Due]]:
        audio = self._audio()  # bad input raises here, in the capture task
        async for batch in _batches(self.name, _one_block(audio), self.frame_ms):
            yield batch

    def _audio(self) -> WavAudio:
        """The samples as PCM; ``CaptureError`` for a shape or type that is not audio."""
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
        return audio


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
    not end, the session did; no frame is handed on after that).

    A ``PacedSource`` is driven by the shared clock (each frame handed on from a clock
    callback at its due time, ``deliver_nowait``) when ``out`` is unbounded (a callback
    cannot wait for room), every wiring channel is; any other source through
    ``frames()``, in this task.

    Raises ``CaptureError`` (or ``AudioDeviceUnavailable``) for a source that cannot be read.
    """
    async with out:
        ctx.ready()
        with trio.CancelScope() as reading, unwrapping():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ctx.cancel_when_stopping, reading)
                batches = None
                if isinstance(source, PacedSource) and _unbounded(out):
                    batches = source.paced_frames()
                if batches is None:
                    await _read(source, out)
                else:
                    await _clocked(batches, out, shared_pacer())
                await deliver(out, m.EndOfStream(source=source.name, timestamp=trio.current_time()))
                nursery.cancel_scope.cancel()


def _unbounded(channel: trio.MemorySendChannel[m.InternalMessage]) -> bool:
    return channel.statistics().max_buffer_size == math.inf


async def _read(source: Source, out: trio.MemorySendChannel[m.InternalMessage]) -> None:
    """Hand on ``source.frames()`` as they come, in this task."""
    frames = source.frames()
    try:
        async for frame in frames:
            await deliver(out, frame)
    finally:
        aclose = getattr(frames, "aclose", None)
        if aclose is not None:  # a generator: its device or file closes now
            with trio.CancelScope(shield=True):
                await aclose()


async def _clocked(
    batches: AsyncIterator[Iterable[Due]],
    out: trio.MemorySendChannel[m.InternalMessage],
    pacer: Pacer,
) -> None:
    """Hand on the batches' frames from ``pacer``'s callbacks, each at its due time;
    return once the last is handed on. This task only fetches batches, one ahead of the
    one playing. Raises what a batch or a hand-off raised (in a callback). Cancelled,
    the pending callback is cancelled: nothing more is handed on."""
    clock = _ClockedFrames(out, pacer)
    try:
        async for batch in batches:
            clock.add(batch)
            while len(clock.batches) > 1:  # one playing and one read ahead: enough
                await clock.changed()
        while not clock.done:
            await clock.changed()
    finally:
        clock.cancel()
        aclose = getattr(batches, "aclose", None)
        if aclose is not None:  # a generator: its file closes now
            with trio.CancelScope(shield=True):
                await aclose()


class _ClockedFrames:
    """The frames of a ``PacedSource``'s batches, handed on one ``Pacer.call_at`` after
    another: the callback hands its frame on (``deliver_nowait``: the encoder's inline
    handler runs there), then schedules the next. The capture task is woken only when a
    batch has played out (to fetch one more), at the end, and on a failure."""

    def __init__(self, out: trio.MemorySendChannel[m.InternalMessage], pacer: Pacer) -> None:
        self.out, self.pacer = out, pacer
        self.batches: collections.deque[Iterator[Due]] = collections.deque()
        self.timer: Timer | None = None  # the next frame's call, while one is scheduled
        self.frame: Frame | None = None  # the frame it hands on
        self.error: BaseException | None = None  # what a callback raised
        self._changed = trio.Event()

    @property
    def done(self) -> bool:
        """Every frame of every batch added is handed on."""
        return self.timer is None and not self.batches

    def add(self, batch: Iterable[Due]) -> None:
        """Play ``batch`` after those added before. Raises a callback's failure."""
        self._raise_failure()
        self.batches.append(iter(batch))
        if self.timer is None:
            self._schedule_next()
            self._raise_failure()

    async def changed(self) -> None:
        """Wait until a batch has played out or a callback failed (raising its error)."""
        await self._changed.wait()
        self._changed = trio.Event()
        self._raise_failure()

    def cancel(self) -> None:
        """Hand nothing more on."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.batches.clear()

    def _schedule_next(self) -> None:
        # (Runs with no call scheduled: in ``add``, or in the callback that just ran.)
        try:
            while self.batches:
                try:
                    due, self.frame = next(self.batches[0])
                except StopIteration:
                    self.batches.popleft()
                    self._changed.set()  # room for one more batch
                    continue
                self.timer = self.pacer.call_at(due, self._hand_on, self._failed)
                return
        except Exception as exc:
            self._failed(exc)
            return
        self._changed.set()  # all played

    def _hand_on(self) -> None:
        """The clock's callback at the frame's due time."""
        self.timer = None
        frame, self.frame = self.frame, None
        assert frame is not None
        deliver_nowait(self.out, frame)
        self._schedule_next()

    def _failed(self, error: BaseException) -> None:
        self.timer = None
        self.batches.clear()
        self.error = error
        self._changed.set()

    def _raise_failure(self) -> None:
        if self.error is not None:
            raise self.error
