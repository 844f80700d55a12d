"""Capture: WAV in every format, arrays, video sources, pacing; and capture -> encoder."""

from __future__ import annotations

import io
import math
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import trio
import trio.testing
from PIL import Image
from trio.testing import MockClock

from actors.capture import (
    ArraySource,
    AudioDeviceUnavailable,
    CallableSource,
    CaptureError,
    FrameSource,
    ImageFilesSource,
    MicrophoneSource,
    PacedSource,
    WavSource,
    capture,
)
from actors.encoder import encoder
from runtime import messages as m
from runtime.supervisor import ActorContext
from runtime.wiring import Wiring, messages
from tests.runtime.test_audio import as_float, tone, write_wav


async def collect(source: object) -> list[m.InternalMessage]:
    send, receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    await capture(ActorContext("capture", 1, trio.Event(), lambda: None), source=source, out=send)  # type: ignore[arg-type]
    return [message async for message in receive]


async def test_wav_source_paced_in_real_time_with_media_timestamps(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    path = write_wav(tmp_path / "a.wav", tone(48000, 1.0, channels=2), 48000, "s24")
    start = trio.current_time()
    got = await collect(WavSource(path, frame_ms=20))
    frames = [x for x in got if isinstance(x, m.RawAudio)]
    assert len(frames) == 50
    assert [f.timestamp - start for f in frames] == pytest.approx([0.02 * i for i in range(50)])
    assert trio.current_time() - start == pytest.approx(0.98)
    assert all(len(f.data) == 960 * 2 * 4 for f in frames)
    assert got[-1] == m.EndOfStream(source="a.wav", timestamp=trio.current_time())


async def test_fast_sources_do_not_wait(autojump_clock: MockClock) -> None:
    start = trio.current_time()
    got = await collect(ArraySource(tone(16000, 2.0).astype(np.float32), 16000, realtime=False))
    assert trio.current_time() == start
    assert sum(len(x.data) for x in got if isinstance(x, m.RawAudio)) == 32000 * 4


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32, np.float64])
async def test_array_sources_of_every_sample_type(autojump_clock: MockClock, dtype: type) -> None:
    samples = tone(8000, 0.1)
    scaled = samples * (32767 if dtype is np.int16 else 2147483647 if dtype is np.int32 else 1)
    got = await collect(ArraySource(scaled.astype(dtype), 8000, realtime=False))
    frames = [x for x in got if isinstance(x, m.RawAudio)]
    decoded = np.concatenate([as_float(f.data, f.sample_format) for f in frames])
    assert np.abs(decoded - samples[:, 0]).max() < 1e-4


async def test_bad_arrays_and_missing_devices_are_clear_errors(autojump_clock: MockClock) -> None:
    with pytest.raises(CaptureError, match="unsupported sample type"):
        await collect(ArraySource(np.zeros(10, dtype=np.uint8), 8000))
    # Which line depends on the machine (no PortAudio; no device): one line either way.
    with pytest.raises(AudioDeviceUnavailable, match=r"^(the microphone needs|no microphone)"):
        await collect(MicrophoneSource(device="no such device"))


async def test_video_sources(autojump_clock: MockClock, tmp_path: Path) -> None:
    for index, color in enumerate(["red", "green", "blue"]):
        Image.new("RGB", (40, 30), color).save(tmp_path / f"{index}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    start = trio.current_time()
    images = [
        x for x in await collect(ImageFilesSource(tmp_path, fps=2.0)) if isinstance(x, m.RawVideo)
    ]
    assert [(f.width, f.height, f.pixel_format) for f in images] == [(40, 30, "rgb24")] * 3
    assert [f.timestamp - start for f in images] == pytest.approx([0.0, 0.5, 1.0])
    assert images[0].data[:3] == bytes([255, 0, 0])
    frames = [np.zeros((4, 6, 4), np.uint8), np.zeros((4, 6), np.uint8)]
    got = [x for x in await collect(FrameSource(frames, fps=10)) if isinstance(x, m.RawVideo)]
    assert [f.pixel_format for f in got] == ["rgba", "gray"]
    grabs = iter([np.zeros((2, 2, 3), np.uint8), None])
    got = [
        x for x in await collect(CallableSource(lambda: next(grabs))) if isinstance(x, m.RawVideo)
    ]
    assert len(got) == 1


async def test_unreadable_images_are_named(autojump_clock: MockClock, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    with pytest.raises(CaptureError, match=r"bad\.png is not a readable image"):
        await collect(ImageFilesSource([bad]))
    with pytest.raises(CaptureError, match="uint8"):
        await collect(FrameSource([np.zeros((2, 2, 3), np.float32)]))


async def test_capture_then_encoder_with_a_real_wav_file(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    path = write_wav(
        tmp_path / "speech.wav", tone(48000, 1.0, channels=2, freq=1000.0), 48000, "s24"
    )
    raw_send, raw_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    out_send, out_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: capture(
                ActorContext("capture", 1, trio.Event(), lambda: None),
                source=WavSource(path),
                out=raw_send,
            )
        )
        nursery.start_soon(
            lambda: encoder(
                ActorContext("encoder", 1, trio.Event(), lambda: None),
                raw=raw_receive,
                out=out_send,
                reports=out_send.clone(),
            )
        )
        got = [message async for message in out_receive]
    chunks = [x for x in got if isinstance(x, m.AudioChunk)]
    samples = np.frombuffer(b"".join(c.data for c in chunks), dtype="<i2") / 32768.0
    assert abs(samples.size - 16000) <= 2
    steady = samples[800:-800]
    peak = np.argmax(np.abs(np.fft.rfft(steady))) * 16000 / steady.size
    assert peak == pytest.approx(1000.0, abs=2.0)
    assert float(np.sqrt(np.mean(steady**2))) == pytest.approx(0.5 / math.sqrt(2), rel=0.01)
    assert isinstance(got[-1], m.EndOfStream)


async def test_capture_then_encoder_with_real_images(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    photo = np.zeros((1200, 1600, 3), dtype=np.uint8)
    photo[:, :800] = (200, 30, 30)  # a red left half, a black right half
    Image.fromarray(photo).save(tmp_path / "photo.png")
    raw_send, raw_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    out_send, out_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: capture(
                ActorContext("c", 1, trio.Event(), lambda: None),
                source=ImageFilesSource(tmp_path),
                out=raw_send,
            )
        )
        nursery.start_soon(
            lambda: encoder(
                ActorContext("e", 1, trio.Event(), lambda: None),
                raw=raw_receive,
                out=out_send,
                reports=out_send.clone(),
            )
        )
        got = [message async for message in out_receive]
    frames = [x for x in got if isinstance(x, m.VideoFrame)]
    assert len(frames) == 1
    assert (frames[0].width, frames[0].height, frames[0].mime_type) == (1024, 768, "image/jpeg")
    decoded = np.asarray(Image.open(io.BytesIO(frames[0].data)))
    assert decoded.shape == (768, 1024, 3)
    assert abs(int(decoded[384, 200, 0]) - 200) < 10  # still red on the left
    assert int(decoded[384, 900].max()) < 10  # still black on the right


async def test_a_long_wav_is_read_a_block_at_a_time(
    autojump_clock: MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 14: an hour of audio was read whole (300 MB at its peak) before the first frame.
    from runtime import audio

    samples = tone(16000, 10.0)
    path = write_wav(tmp_path / "long.wav", samples, 16000, "s16")
    reads: list[int] = []
    real_read = audio.WavReader.read

    def read(self: audio.WavReader, frames: int) -> bytes:
        reads.append(frames)
        return real_read(self, frames)

    monkeypatch.setattr(audio.WavReader, "read", read)
    got = await collect(WavSource(path, realtime=False))
    frames = [x for x in got if isinstance(x, m.RawAudio)]
    assert sum(len(f.data) for f in frames) == 2 * 160000  # every sample, once
    assert max(reads) <= 16000  # a second at a time at most
    assert len(reads) >= 10
    stamps = [f.timestamp - frames[0].timestamp for f in frames]
    assert stamps == pytest.approx([i * 0.02 for i in range(len(frames))])  # across blocks


# --- paced sources driven by the shared clock's callbacks ----------------------------------


class TaskSteps(trio.abc.Instrument):
    """How many steps each task (by name) took."""

    def __init__(self) -> None:
        self.steps: dict[str, int] = {}

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[task.name] = self.steps.get(task.name, 0) + 1


class InlineReceiver:
    """The encoder's side of ``raw``: an inline handler noting when each frame reached it
    (in the sender's callback), and a loop taking whatever the handler declines."""

    def __init__(self, wiring: Wiring[m.InternalMessage]) -> None:
        self.channel = wiring.receiver("raw")
        self.inline: list[tuple[float, m.RawAudio]] = []
        self.looped: list[m.InternalMessage] = []

    def note(self, message: m.InternalMessage) -> bool:
        if not isinstance(message, m.RawAudio):
            return False
        self.inline.append((trio.current_time(), message))
        return True

    async def run(self) -> None:
        async for message in messages(self.channel, inline=self.note):
            self.looped.append(message)


def capture_ctx(stopping: trio.Event | None = None) -> ActorContext:
    return ActorContext("capture", 1, trio.Event() if stopping is None else stopping, lambda: None)


async def run_capture(
    source: object, ctx: ActorContext | None = None, *, until: float = math.inf
) -> tuple[InlineReceiver, dict[str, int]]:
    """Capture ``source`` into a wiring's ``raw`` channel whose receiver offers an inline
    handler (as the encoder does), for at most ``until`` seconds; the receiver and the
    steps the capture task took."""
    wiring: Wiring[m.InternalMessage] = Wiring()
    wiring.add("raw")
    receiver = InlineReceiver(wiring)
    steps = TaskSteps()
    trio.lowlevel.add_instrument(steps)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiver.run)
            await trio.testing.wait_all_tasks_blocked()  # the receiver waits: inline it is
            out = wiring.sender("raw")
            with trio.move_on_after(until):
                await capture(ctx or capture_ctx(), source=source, out=out)  # type: ignore[arg-type]
            wiring.close()
    finally:
        trio.lowlevel.remove_instrument(steps)
    return receiver, steps.steps


async def test_a_paced_source_is_handed_on_from_the_clock_at_each_due_time(
    autojump_clock: MockClock,
) -> None:
    source = ArraySource(tone(16000, 1.0).astype(np.float32), 16000, frame_ms=20)
    assert isinstance(source, PacedSource)
    start = trio.current_time()
    receiver, steps = await run_capture(source)
    assert [frame.timestamp - start for _, frame in receiver.inline] == pytest.approx(
        [0.02 * i for i in range(50)]
    )
    for handed_on, frame in receiver.inline:  # none early, at most one quantum late
        assert frame.timestamp <= handed_on <= frame.timestamp + 0.001 + 1e-9
    assert receiver.looped == [m.EndOfStream(source="array", timestamp=start + 0.98)]
    # No step of its own per frame: the clock's callbacks hand them on.
    assert steps[capture_task_name()] < 10


def capture_task_name() -> str:
    return trio.lowlevel.current_task().name  # run_capture awaits capture in this task


async def test_a_wav_file_is_read_a_block_ahead_and_every_frame_is_on_time(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    path = write_wav(tmp_path / "a.wav", tone(16000, 3.5), 16000, "s16")
    start = trio.current_time()
    receiver, _ = await run_capture(WavSource(path, frame_ms=20))
    frames = [frame for _, frame in receiver.inline]
    assert [f.timestamp - start for f in frames] == pytest.approx([0.02 * i for i in range(175)])
    assert all(f.timestamp <= at <= f.timestamp + 0.001 + 1e-9 for at, f in receiver.inline)
    assert sum(len(f.data) for f in frames) == 2 * 56000
    assert receiver.looped == [m.EndOfStream(source="a.wav", timestamp=start + 3.48)]


@pytest.mark.parametrize("how", ["stopping", "cancelled"])
async def test_a_clocked_capture_stops_at_once_and_hands_nothing_on_after(
    autojump_clock: MockClock, how: str
) -> None:
    source = ArraySource(tone(16000, 10.0).astype(np.float32), 16000)
    stopping = trio.Event()
    start = trio.current_time()

    async def stop_later() -> None:
        await trio.sleep(0.51)
        stopping.set()

    async with trio.open_nursery() as nursery:
        if how == "stopping":
            nursery.start_soon(stop_later)
            receiver, _ = await run_capture(source, capture_ctx(stopping))
        else:
            receiver, _ = await run_capture(source, until=0.51)
        assert trio.current_time() - start == pytest.approx(0.51)
        count = len(receiver.inline)
        assert count == 26  # those due by then (0.00 ... 0.50)
        await trio.sleep(1.0)  # the timer was cancelled: nothing more comes
    assert len(receiver.inline) == count
    assert receiver.looped == []  # no EndOfStream: the session ended, not the stream


@dataclass
class FailingSource:
    """A paced source whose frames fail after ``good`` frames."""

    good: int
    name: str = "failing"

    def frames(self) -> AsyncIterator[m.RawAudio]:
        raise AssertionError("a paced source is read through paced_frames")

    def paced_frames(self) -> AsyncIterator[Iterable[tuple[float, m.RawAudio]]]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[Iterable[tuple[float, m.RawAudio]]]:
        yield self._frames(trio.current_time())

    def _frames(self, start: float) -> Iterator[tuple[float, m.RawAudio]]:
        for index in range(self.good):
            due = start + 0.02 * index
            yield due, m.RawAudio(b"\0\0" * 320, 16000, 1, "s16", due, self.name)
        raise CaptureError(f"{self.name}: the device went away")


async def test_a_source_failing_in_a_clock_callback_fails_capture_with_its_error(
    autojump_clock: MockClock,
) -> None:
    wiring: Wiring[m.InternalMessage] = Wiring()
    wiring.add("raw")
    receiver = InlineReceiver(wiring)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver.run)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(CaptureError, match="the device went away"):
            await capture(capture_ctx(), source=FailingSource(good=3), out=wiring.sender("raw"))
        wiring.close()
    assert len(receiver.inline) == 3  # the frames before it were handed on
    assert receiver.looped == []  # and no EndOfStream


async def test_a_restarted_clocked_capture_plays_its_source_again_from_the_start(
    autojump_clock: MockClock,
) -> None:
    source = ArraySource(tone(16000, 0.2).astype(np.float32), 16000)
    first, _ = await run_capture(source, until=0.05)  # cut: the incarnation crashed
    await trio.sleep(1.0)
    start = trio.current_time()
    second, _ = await run_capture(source)
    assert len(first.inline) == 3
    assert first.looped == []
    assert [f.timestamp - start for _, f in second.inline] == pytest.approx(
        [0.02 * i for i in range(10)]
    )
    assert [f.data for _, f in second.inline][:3] == [f.data for _, f in first.inline]
    assert isinstance(second.looped[-1], m.EndOfStream)
