"""WAV files in every encoding, read once for both sides (runtime.audio)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from runtime.audio import WavError, read_wav


def write_wav(path: Path, samples: np.ndarray, rate: int, kind: str) -> Path:
    """Write float samples (frames x channels) as 16/24/32-bit PCM, float, or extensible."""
    channels = samples.shape[1]
    if kind == "s16":
        tag, bits, data = 1, 16, (samples * 32767).astype("<i2").tobytes()
    elif kind == "s24":
        ints = (samples * 8388607).astype("<i4").reshape(-1)
        tag, bits, data = 1, 24, b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints)
    elif kind == "s32":
        tag, bits, data = 1, 32, (samples * 2147483647).astype("<i4").tobytes()
    else:
        tag, bits, data = 3, 32, samples.astype("<f4").tobytes()
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    if kind == "extensible":
        fmt = struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * block, block, bits)
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", 3) + bytes(14)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def tone(rate: int, seconds: float, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.repeat((0.5 * np.sin(2 * np.pi * freq * t))[:, None], channels, axis=1)


def as_float(audio_data: bytes, fmt: str) -> np.ndarray:
    dtype, scale = {"s16": ("<i2", 32768.0), "s32": ("<i4", 2147483648.0), "f32": ("<f4", 1.0)}[fmt]
    return np.frombuffer(audio_data, dtype=dtype) / scale


@pytest.mark.parametrize("kind", ["s16", "s24", "s32", "f32", "extensible"])
def test_every_wav_encoding_reads_back(tmp_path: Path, kind: str) -> None:
    samples = tone(22050, 0.2, channels=2)
    audio = read_wav(write_wav(tmp_path / "a.wav", samples, 22050, kind))
    assert (audio.sample_rate, audio.channels) == (22050, 2)
    expected_format = {"s16": "s16", "s24": "s32", "s32": "s32", "f32": "f32", "extensible": "f32"}[
        kind
    ]
    assert audio.sample_format == expected_format
    decoded = as_float(audio.data, audio.sample_format).reshape(-1, 2)
    assert np.abs(decoded - samples).max() < 1e-4


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "cannot read"),
        (b"not a wav at all", "not a WAV file"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no fmt chunk"),
    ],
    ids=["missing", "garbage", "no-fmt"],
)
def test_unreadable_wavs_are_typed_errors(
    tmp_path: Path, content: bytes | None, words: str
) -> None:
    path = tmp_path / "bad.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(WavError, match=words):
        read_wav(path)


def test_an_unsupported_encoding_is_named(tmp_path: Path) -> None:
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 8000, 1, 8)  # 8-bit PCM
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", 2)
        + b"\x80\x80"
    )
    path = tmp_path / "8bit.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(WavError, match="format 1, 8 bits"):
        read_wav(path)


def test_mono_pcm16_mixes_down_and_resamples(tmp_path: Path) -> None:
    stereo = tone(48000, 1.0, channels=2)
    pcm = read_wav(write_wav(tmp_path / "a.wav", stereo, 48000, "s16")).mono_pcm16(24000)
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768
    assert abs(samples.size - 24000) <= 2
    spectrum = np.abs(np.fft.rfft(samples))
    assert abs(np.argmax(spectrum) * 24000 / samples.size - 440) < 2


def test_an_unsupported_encoding_says_which_are_supported(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "a.wav", tone(8000, 0.01), 8000, "s16")
    blob = bytearray(path.read_bytes())
    blob[34:36] = struct.pack("<H", 12)  # bits per sample
    path.write_bytes(bytes(blob))
    with pytest.raises(WavError, match="use 16-bit"):
        read_wav(path)
