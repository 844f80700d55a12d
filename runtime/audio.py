"""Audio facts both sides share: Gemini Live's rates, and reading WAV files.

Gemini Live takes 16 kHz mono PCM16 in and speaks 24 kHz mono PCM16 out; the client's
actors and the emulator both need those numbers and both read WAV files (the client as a
source, the emulator for scripted replies), so they live here, below both.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soxr

from protocol.wire import INPUT_RATE as INPUT_RATE  # the rates, re-exported for the actors
from protocol.wire import OUTPUT_RATE as OUTPUT_RATE
from runtime.messages import SampleFormat

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
    """Read a whole WAV file: 16-, 24- or 32-bit integer PCM or 32-bit float, plain or
    extensible (the stdlib ``wave`` module reads neither float nor extensible files), any
    rate and channel count; 24-bit samples become 32-bit. Raises ``WavError``. For long
    files, ``open_wav`` reads block by block."""
    with open_wav(path) as reader:
        return WavAudio(
            reader.read(reader.frames), reader.sample_rate, reader.channels, reader.sample_format
        )


class WavReader:
    """An open WAV file, read ``read(frames)`` at a time (what ``read_wav`` takes), so a
    long file is never held whole. Blocking: call it from a thread in async code."""

    def __init__(
        self, path: Path, file: BinaryIO, fmt: tuple[int, int, int, int], data: tuple[int, int]
    ) -> None:
        tag, channels, rate, bits = fmt
        self.path, self._file = path, file
        self.sample_rate, self.channels = rate, channels
        self._in_width = bits // 8 * channels  # bytes per frame in the file
        self.sample_format: SampleFormat = (
            "s16" if bits == 16 else "f32" if tag == _FLOAT else "s32"
        )
        self._widen = bits == 24
        self._offset, size = data
        self.frames = size // self._in_width
        self.position = 0  # frames read so far

    def read(self, frames: int) -> bytes:
        """Up to ``frames`` frames in ``sample_format`` (fewer at the end, b"" after it)."""
        frames = max(0, min(frames, self.frames - self.position))
        if not frames:
            return b""
        self._file.seek(self._offset + self.position * self._in_width)
        data = self._file.read(frames * self._in_width)
        data = data[: len(data) // self._in_width * self._in_width]
        self.position += len(data) // self._in_width
        if not self._widen:
            return data
        raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3)
        widened = np.zeros((raw.shape[0], 4), dtype=np.uint8)
        widened[:, 1:] = raw  # little-endian: the 24 bits become the top of an int32
        return widened.tobytes()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> WavReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_wav(path: str | Path) -> WavReader:
    """Open a WAV file (the formats ``read_wav`` reads) and read its header; the samples
    are read by ``WavReader.read``. Raises ``WavError`` naming the file."""
    file = Path(path)
    try:
        handle = file.open("rb")
    except OSError as exc:
        raise WavError(f"cannot read {file}: {exc.strerror}") from exc
    try:
        fmt, data = _header(file, handle)
        tag, channels, rate, bits = fmt
        if channels < 1 or rate < 1:
            raise WavError(f"{file}: {channels} channels at {rate} Hz")
        if not ((tag == _PCM and bits in (16, 24, 32)) or (tag == _FLOAT and bits == 32)):
            raise WavError(
                f"{file}: unsupported WAV encoding (format {tag}, {bits} bits): use 16-bit, "
                "24-bit or 32-bit PCM, or 32-bit float"
            )
        return WavReader(file, handle, fmt, data)
    except BaseException:
        handle.close()
        raise


def _header(file: Path, handle: BinaryIO) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """The fmt chunk's (format tag, channels, rate, bits) and the data chunk's (offset,
    size), reading chunk headers only (the data is skipped, not read)."""
    try:
        riff = handle.read(12)
        if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            raise WavError(f"{file} is not a WAV file")
        end = handle.seek(0, 2)
        fmt: tuple[int, int, int, int] | None = None
        data: tuple[int, int] | None = None
        offset = 12
        while offset + 8 <= end and (fmt is None or data is None):
            handle.seek(offset)
            chunk_id, size = struct.unpack("<4sI", handle.read(8))
            size = min(size, end - offset - 8)  # a streamed file may not say its size
            if chunk_id == b"fmt ":
                body = handle.read(size)
                if len(body) < 16:
                    raise WavError(f"{file}: the fmt chunk is too short")
                tag, channels, rate = struct.unpack_from("<HHI", body)
                bits = struct.unpack_from("<H", body, 14)[0]
                if tag == _EXTENSIBLE and len(body) >= 26:
                    tag = struct.unpack_from("<H", body, 24)[0]  # the sub-format GUID's start
                fmt = (tag, channels, rate, bits)
            elif chunk_id == b"data":
                data = (offset + 8, size)
            offset += 8 + size + (size & 1)
    except OSError as exc:
        raise WavError(f"cannot read {file}: {exc.strerror}") from exc
    if fmt is None or data is None:
        raise WavError(f"{file}: no {'fmt' if fmt is None else 'data'} chunk")
    return fmt, data
