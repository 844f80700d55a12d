"""The encoder: resampling accuracy, chunking, formats, JPEG, the video rate policy."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import trio
import trio.testing
from PIL import Image
from trio.testing import MockClock

from actors.encoder import AudioEncoder, EncoderError, VideoEncoder, encoder
from runtime import messages as m
from runtime.supervisor import ActorContext
from runtime.wiring import Wiring, deliver


def sine(rate: int, seconds: float, freq: float, amplitude: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    wave = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(wave[:, None], channels, axis=1)


def raw(
    samples: np.ndarray,
    rate: int,
    fmt: m.SampleFormat = "f32",
    source: str = "a",
    timestamp: float = 0.0,
) -> m.RawAudio:
    scale = {"s16": 32767, "s32": 2147483647, "f32": 1}[fmt]
    dtype = {"s16": "<i2", "s32": "<i4", "f32": "<f4"}[fmt]
    data = (
        (samples * scale).astype(dtype).tobytes()
        if fmt != "f32"
        else samples.astype(dtype).tobytes()
    )
    channels = samples.shape[1] if samples.ndim == 2 else 1
    return m.RawAudio(
        data=data,
        sample_rate=rate,
        channels=channels,
        sample_format=fmt,
        timestamp=timestamp,
        source=source,
    )


def pcm(chunks: list[m.AudioChunk]) -> np.ndarray:
    return np.frombuffer(b"".join(c.data for c in chunks), dtype="<i2").astype(np.float64) / 32768.0


def encode_all(
    encoder_: AudioEncoder,
    signal: np.ndarray,
    rate: int,
    frame_ms: int = 10,
    fmt: m.SampleFormat = "f32",
) -> list[m.AudioChunk]:
    step = rate * frame_ms // 1000
    out: list[m.AudioChunk] = []
    for i in range(0, len(signal), step):
        out += encoder_.feed(raw(signal[i : i + step], rate, fmt))
    return out + encoder_.end()


def test_48k_stereo_comes_out_16k_mono_at_the_right_frequency_and_level() -> None:
    signal = sine(48000, 1.0, 1000.0, 0.5, channels=2)
    samples = pcm(encode_all(AudioEncoder(), signal, 48000))
    assert abs(samples.size - 16000) <= 2
    steady = samples[800:-800]  # away from the filter's edges
    spectrum = np.abs(np.fft.rfft(steady * np.hanning(steady.size)))
    peak = np.argmax(spectrum) * 16000 / steady.size
    assert peak == pytest.approx(1000.0, abs=2.0)
    assert float(np.sqrt(np.mean(steady**2))) == pytest.approx(0.5 / math.sqrt(2), rel=0.01)


def test_chunks_are_fixed_size_with_timestamps_that_follow_the_audio() -> None:
    chunks = encode_all(AudioEncoder(chunk_ms=20), sine(16000, 1.0, 440, 0.3), 16000)
    assert [len(c.data) for c in chunks] == [640] * 50
    assert [c.sequence for c in chunks] == list(range(1, 51))
    assert [c.timestamp for c in chunks] == pytest.approx([0.02 * i for i in range(50)])


@pytest.mark.parametrize("fmt", ["s16", "s32", "f32"])
def test_every_sample_format_gives_the_same_audio(fmt: m.SampleFormat) -> None:
    signal = sine(24000, 0.5, 300, 0.4)
    reference = pcm(encode_all(AudioEncoder(), signal, 24000, fmt="f32"))
    assert np.abs(pcm(encode_all(AudioEncoder(), signal, 24000, fmt=fmt)) - reference).max() < 2e-4


def test_float_input_is_clipped_not_wrapped() -> None:
    loud = sine(16000, 0.1, 100, 1.5)
    samples = np.frombuffer(
        b"".join(c.data for c in encode_all(AudioEncoder(), loud, 16000)), dtype="<i2"
    )
    assert samples.max() == 32767
    assert samples.min() == -32767


def test_a_new_source_flushes_the_resampler_and_nothing_is_lost() -> None:
    enc = AudioEncoder()
    first = enc.feed(raw(sine(48000, 0.5, 200, 0.3), 48000, source="file"))
    switch = enc.feed(raw(sine(16000, 0.5, 200, 0.3), 16000, source="mic"))
    total = pcm(first + switch + enc.end()).size
    assert abs(total - 16000) <= 4


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        (
            m.RawAudio(data=b"", sample_rate=16000, channels=0, sample_format="s16", timestamp=0),
            "0 channels",
        ),
        (
            m.RawAudio(
                data=b"\x00" * 3, sample_rate=16000, channels=1, sample_format="s16", timestamp=0
            ),
            "whole number",
        ),
        (
            m.RawAudio(
                data=np.array([np.nan], "<f4").tobytes(),
                sample_rate=16000,
                channels=1,
                sample_format="f32",
                timestamp=0,
            ),
            "NaN",
        ),
        (
            m.RawAudio(
                data=b"\x00\x00", sample_rate=12, channels=1, sample_format="s16", timestamp=0
            ),
            "sample rate",
        ),
    ],
    ids=["no-channels", "misaligned", "nan", "rate"],
)
def test_bad_audio_is_a_typed_error(frame: m.RawAudio, words: str) -> None:
    with pytest.raises(EncoderError, match=words):
        AudioEncoder().feed(frame)


def frame(
    width: int, height: int, fmt: m.PixelFormat = "rgb24", timestamp: float = 0.0
) -> m.RawVideo:
    channels = {"rgb24": 3, "rgba": 4, "gray": 1}[fmt]
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, size=width * height * channels, dtype=np.uint8).tobytes()
    return m.RawVideo(data=data, width=width, height=height, pixel_format=fmt, timestamp=timestamp)


def test_jpeg_fits_the_box_keeps_the_aspect_and_honours_quality() -> None:
    big = frame(2000, 1000)
    encoded = VideoEncoder().encode(big)
    image = Image.open(io.BytesIO(encoded.data))
    assert image.format == "JPEG"
    assert (encoded.width, encoded.height) == image.size == (1024, 512)
    assert encoded.mime_type == "image/jpeg"
    low = VideoEncoder(quality=20).encode(big)
    assert len(low.data) < len(encoded.data)
    small = VideoEncoder(max_size=(320, 320)).encode(frame(640, 480, "rgba"))
    assert (small.width, small.height) == (320, 240)
    png = VideoEncoder(image_format="PNG").encode(frame(64, 32, "gray"))
    assert Image.open(io.BytesIO(png.data)).format == "PNG"
    assert png.mime_type == "image/png"


def test_a_frame_that_is_not_what_it_says_is_a_typed_error() -> None:
    bad = m.RawVideo(data=b"\x00" * 10, width=4, height=4, pixel_format="rgb24", timestamp=0)
    with pytest.raises(EncoderError, match="needs 48 bytes, got 10"):
        VideoEncoder().encode(bad)
    with pytest.raises(EncoderError, match="0x4"):
        VideoEncoder().offer(
            m.RawVideo(data=b"", width=0, height=4, pixel_format="rgb24", timestamp=0)
        )


@pytest.mark.parametrize(("speaking", "expected"), [(True, 3), (False, 1)])
def test_about_one_frame_a_second_while_speaking_fewer_otherwise_latest_wins(
    speaking: bool, expected: int
) -> None:
    video = VideoEncoder()
    sent = []
    for step in range(30):  # 10 fps for 3 s
        now = step * 0.1
        video.offer(frame(8, 8, timestamp=now))
        out = video.due(now, speaking=speaking)
        if out is not None:
            sent.append(out)
    assert len(sent) == expected
    assert video.dropped == 30 - expected - (1 if video._latest is not None else 0)


async def test_the_encoder_actor_with_fake_peers(autojump_clock: MockClock) -> None:
    raw_send, raw_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    out_send, out_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    reports_send, reports_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    ctx = ActorContext("encoder", 1, trio.Event(), lambda: None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: encoder(ctx, raw=raw_receive, out=out_send, reports=reports_send)
        )
        signal = sine(44100, 0.5, 500, 0.3, channels=2)
        for i in range(0, len(signal), 441):
            await raw_send.send(raw(signal[i : i + 441], 44100))
        await raw_send.send(
            m.RawAudio(
                data=b"\x00", sample_rate=16000, channels=1, sample_format="s16", timestamp=0
            )
        )
        await raw_send.send(frame(64, 64))
        await raw_send.send(m.EndOfStream(source="a", timestamp=0.5))
        await raw_send.aclose()
        got = [message async for message in out_receive]
        reports = [message async for message in reports_receive]
    chunks = [x for x in got if isinstance(x, m.AudioChunk)]
    assert abs(sum(len(c.data) for c in chunks) // 2 - 8000) <= 4
    assert any(isinstance(x, m.VideoFrame) for x in got)
    # The link gets only what the server takes, the end of the audio last.
    assert {type(x) for x in got} == {m.AudioChunk, m.VideoFrame, m.AudioStreamEnded}
    assert isinstance(got[-1], m.AudioStreamEnded)
    # The rest of the pipeline hears about the bad frame, the end of the speech (the tone
    # ran to the end) and of the stream.
    assert [type(x) for x in reports] == [
        m.Dropped,
        m.SpeechEnded,
        m.AudioStreamEnded,
        m.EndOfStream,
    ]
    assert isinstance(reports[1], m.SpeechEnded)
    assert reports[1].timestamp == pytest.approx(0.5, abs=0.01)
    dropped = reports[0]
    assert isinstance(dropped, m.Dropped)
    assert "whole number" in dropped.what


async def test_the_end_of_speech_is_reported_once_the_audio_went_quiet(
    autojump_clock: MockClock,
) -> None:
    raw_send, raw_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    out_send, out_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    reports_send, reports_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    ctx = ActorContext("encoder", 1, trio.Event(), lambda: None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: encoder(ctx, raw=raw_receive, out=out_send, reports=reports_send)
        )
        speech = sine(16000, 1.0, 300, 0.3)  # 1 s of tone, then 2 s of silence
        audio = np.concatenate([speech, np.zeros((32000, 1), dtype=np.float32)])
        for i in range(0, len(audio), 320):
            await raw_send.send(raw(audio[i : i + 320], 16000, timestamp=i / 16000))
        await raw_send.aclose()
        reports = [message async for message in reports_receive]
        _ = [message async for message in out_receive]
    assert [type(r) for r in reports] == [m.SpeechEnded]  # once
    assert isinstance(reports[0], m.SpeechEnded)
    assert reports[0].timestamp == pytest.approx(1.0, abs=0.021)  # where the tone stopped


async def run_through_encoder(
    inputs: list[m.InternalMessage], *, wired: bool
) -> tuple[list[m.InternalMessage], list[m.InternalMessage], int]:
    """Feed ``inputs`` to the encoder actor, each once it waits (as capture's paced frames
    come), over a ``Wiring`` (``wired``: its audio is encoded inline, in this task) or over
    plain channels; (out, reports, how many inputs were handled at once, without the
    actor's loop running)."""
    wiring: Wiring[m.InternalMessage] = Wiring()
    for name in ("raw", "out", "reports"):
        wiring.add(name)
    if wired:
        raw_send, raw_receive = wiring.sender("raw"), wiring.receiver("raw")
    else:
        raw_send, raw_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    out_receive, reports_receive = wiring.receiver("out"), wiring.receiver("reports")
    ctx = ActorContext("encoder", 1, trio.Event(), lambda: None)
    at_once = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: encoder(
                ctx, raw=raw_receive, out=wiring.sender("out"), reports=wiring.sender("reports")
            )
        )
        for message in inputs:
            await trio.testing.wait_all_tasks_blocked()
            await deliver(raw_send, message)
            at_once += raw_send.statistics().tasks_waiting_receive == 1  # the loop still waits
        await raw_send.aclose()
        wiring.close_senders()
        got = [message async for message in out_receive]
        reports = [message async for message in reports_receive]
    return got, reports, at_once


async def test_audio_encoded_inline_in_the_senders_task_is_what_the_actor_makes() -> None:
    signal = sine(44100, 0.5, 500, 0.3, channels=2)
    inputs: list[m.InternalMessage] = [
        raw(signal[i : i + 441], 44100) for i in range(0, len(signal), 441)
    ]
    bad = m.RawAudio(data=b"\x00", sample_rate=16000, channels=1, sample_format="s16", timestamp=0)
    inputs[10:10] = [bad]
    inputs.append(m.EndOfStream(source="a", timestamp=0.5))
    inline = await run_through_encoder(inputs, wired=True)
    queued = await run_through_encoder(inputs, wired=False)
    assert inline[:2] == queued[:2]  # the same chunks, reports and drops, in the same order
    assert queued[2] == 0  # over plain channels, only the actor makes output
    assert inline[2] == len(inputs) - 1  # over the wiring, all but the end, inline
    assert [type(x) for x in inline[1]] == [
        m.Dropped,
        m.SpeechEnded,
        m.AudioStreamEnded,
        m.EndOfStream,
    ]


async def test_once_video_was_seen_audio_goes_through_the_actor_again() -> None:
    signal = sine(16000, 0.2, 500, 0.3)
    audio: list[m.InternalMessage] = [
        raw(signal[i : i + 320], 16000) for i in range(0, len(signal), 320)
    ]
    inputs = [*audio[:3], frame(64, 64), *audio[3:]]
    got, _, at_once = await run_through_encoder(inputs, wired=True)
    assert at_once == 3  # the audio before the picture, inline; none after it
    assert sum(isinstance(x, m.AudioChunk) for x in got) == len(audio)
