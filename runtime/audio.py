"""Audio facts both sides share: Gemini Live's rates, and reading WAV files.

Gemini Live takes 16 kHz mono PCM16 in and speaks 24 kHz mono PCM16 out; the client's
actors and the emulator both need those numbers and both read WAV files (the client as a
source, the emulator for scripted replies), so they live here, below both.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from runtime.messages import SampleFormat

INPUT_RATE = 16000  # what realtimeInput.audio carries
OUTPUT_RATE = 24000  # what the model speaks
INPUT_BYTES_PER_SECOND = 2 * INPUT_RATE  # mono PCM16
OUTPUT_BYTES_PER_SECOND = 2 * OUTPUT_RATE
INPUT_MIME = f"audio/pcm;rate={INPUT_RATE}"
# numpy dtype and full scale of each sample format
SAMPLE_DTYPES = {"s16": ("<i2", 32768.0), "s32": ("<i4", 2147483648.0), "f32": ("<f4", 1.0)}


class WavError(ValueError):
    """A WAV file that cannot be read; the message names the file and says why."""


@dataclass(frozen=True)
class WavAudio:
    data: bytes  # interleaved, in ``sample_format``
    sample_rate: int
    channels: int
    sample_format: SampleFormat

    def mono_pcm16(self, rate: int) -> bytes:
        """Mixed down to mono, resampled to ``rate`` (soxr), as little-endian PCM16."""
        dtype, scale = SAMPLE_DTYPES[self.sample_format]
        samples = np.frombuffer(self.data, dtype=dtype).astype(np.float32) / np.float32(scale)
        mono = samples.reshape(-1, self.channels).mean(axis=1, dtype=np.float32)
        if self.sample_rate != rate:
            mono = soxr.resample(mono, self.sample_rate, rate)
        pcm: bytes = (np.clip(mono, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        return pcm


_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


def read_wav(path: str | Path) -> WavAudio:
    """Read a WAV file: 16-, 24- or 32-bit integer PCM or 32-bit float, plain or
    extensible (the stdlib ``wave`` module reads neither float nor extensible files), any
    rate and channel count; 24-bit samples become 32-bit. Raises ``WavError``."""
    file = Path(path)
    try:
        blob = file.read_bytes()
    except OSError as exc:
        raise WavError(f"cannot read {file}: {exc.strerror}") from exc
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise WavError(f"{file} is not a WAV file")
    fmt, data = _chunks(file, blob)
    tag, channels, rate, bits = fmt
    if channels < 1 or rate < 1:
        raise WavError(f"{file}: {channels} channels at {rate} Hz")
    if tag == _PCM and bits == 16:
        return WavAudio(_whole(data, 2 * channels), rate, channels, "s16")
    if tag == _PCM and bits == 32:
        return WavAudio(_whole(data, 4 * channels), rate, channels, "s32")
    if tag == _PCM and bits == 24:
        raw = np.frombuffer(_whole(data, 3 * channels), dtype=np.uint8).reshape(-1, 3)
        widened = np.zeros((raw.shape[0], 4), dtype=np.uint8)
        widened[:, 1:] = raw  # little-endian: the 24 bits become the top of an int32
        return WavAudio(widened.tobytes(), rate, channels, "s32")
    if tag == _FLOAT and bits == 32:
        return WavAudio(_whole(data, 4 * channels), rate, channels, "f32")
    raise WavError(
        f"{file}: unsupported WAV encoding (format {tag}, {bits} bits): use 16-bit, 24-bit "
        "or 32-bit PCM, or 32-bit float"
    )


def _chunks(file: Path, blob: bytes) -> tuple[tuple[int, int, int, int], bytes]:
    """The fmt chunk's (format tag, channels, rate, bits) and the data chunk."""
    fmt: tuple[int, int, int, int] | None = None
    data: bytes | None = None
    offset = 12
    while offset + 8 <= len(blob):
        chunk_id, size = blob[offset : offset + 4], struct.unpack_from("<I", blob, offset + 4)[0]
        body = blob[offset + 8 : offset + 8 + size]
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise WavError(f"{file}: the fmt chunk is too short")
            tag, channels, rate = struct.unpack_from("<HHI", body)
            bits = struct.unpack_from("<H", body, 14)[0]
            if tag == _EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack_from("<H", body, 24)[0]  # the sub-format GUID starts with it
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            data = body
        offset += 8 + size + (size & 1)
    if fmt is None or data is None:
        raise WavError(f"{file}: no {'fmt' if fmt is None else 'data'} chunk")
    return fmt, data


def _whole(data: bytes, frame_bytes: int) -> bytes:
    return data[: len(data) // frame_bytes * frame_bytes]
