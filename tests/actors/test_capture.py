"""Capture: WAV in every format, arrays, video sources, pacing; and capture -> encoder."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import trio
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
    WavSource,
    capture,
)
from actors.encoder import encoder
from runtime import messages as m
from runtime.supervisor import ActorContext
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
