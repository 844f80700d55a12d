"""Audio for the emulator: a voice-like synthetic signal, WAV loading, levels.

All PCM here is mono little-endian int16.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from runtime import audio
from runtime.audio import INPUT_RATE, OUTPUT_RATE

__all__ = [
    "INPUT_RATE",
    "OUTPUT_RATE",
    "AudioFileError",
    "level_dbfs",
    "read_wav",
    "synthesize_speech",
    "to_pcm16",
]


class AudioFileError(ValueError):
    """A WAV file named in a scenario is missing or unreadable."""


def synthesize_speech(
    text: str, *, rate: int = OUTPUT_RATE, seconds_per_word: float = 0.28
) -> bytes:
    """A voice-like signal whose length follows ``text``: one syllable-like burst per word.

    Each burst is a harmonic tone around 120-220 Hz under a smooth envelope, with a short
    gap between words, so it has the energy pattern of speech without pretending to be it.
    """
    words = text.split() or ["..."]
    word_samples = int(seconds_per_word * rate)
    gap = int(0.06 * rate)
    t = np.arange(word_samples - gap, dtype=np.float64) / rate
    envelope = np.sin(np.pi * np.linspace(0.0, 1.0, t.size)) ** 0.6
    pieces: list[np.ndarray] = []
    for index, word in enumerate(words):
        pitch = 120.0 + 100.0 * ((zlib.crc32(word.encode()) & 0xFF) / 255.0) + 10.0 * (index % 3)
        glide = 1.0 + 0.08 * np.sin(2 * np.pi * 3.0 * t)
        phase = 2 * np.pi * pitch * np.cumsum(glide) / rate
        voice = sum(np.sin(k * phase) / k for k in range(1, 6))
        pieces.append(0.25 * envelope * voice)
        pieces.append(np.zeros(gap))
    signal = np.concatenate(pieces)
    return to_pcm16(signal)


def to_pcm16(signal: np.ndarray) -> bytes:
    clipped = np.clip(signal, -1.0, 1.0)
    pcm: bytes = (clipped * 32767.0).astype("<i2").tobytes()
    return pcm


def read_wav(path: Path, *, rate: int = OUTPUT_RATE) -> bytes:
    """Mono PCM16 at ``rate`` from a WAV file of any rate and channel count, in the
    formats the client reads (``runtime.audio.read_wav``: 16/24/32-bit PCM, 32-bit float).

    Raises ``AudioFileError`` naming the file when it is missing, not a WAV file or in
    another encoding.
    """
    try:
        return audio.read_wav(path).mono_pcm16(rate)
    except audio.WavError as exc:
        raise AudioFileError(f"cannot read WAV file {path}: {exc}") from exc


def level_dbfs(pcm: bytes) -> float:
    """RMS level of PCM16 in dB relative to full scale (-120 for silence)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(samples * samples))) / 32768.0
    return max(-120.0, 20.0 * float(np.log10(rms))) if rms > 0 else -120.0
