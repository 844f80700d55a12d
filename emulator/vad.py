"""Energy-based voice activity detection over 16 kHz PCM16, sans-IO.

Audio is cut into 10 ms frames and each frame's RMS level is compared with a threshold set
by the start-of-speech sensitivity (HIGH hears quieter speech). Speech starts once frames
above the threshold add up to ``prefix_padding_ms``; it ends after ``silence_duration_ms``
of frames below the end threshold (END_SENSITIVITY_HIGH ends sooner: its threshold sits
above the start one). ``feed()`` returns the transitions it saw; ``offsets`` holds, for
the transitions of the last ``feed()``, where each happened in the audio stream.

``InputResampler`` brings audio of any rate to the detector's 16 kHz, one stream per
connection, as the service takes any ``audio/pcm;rate=N``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import soxr

from protocol import wire

FRAME_MS = 10
RATE = 16000
_SAMPLES_PER_FRAME = 16 * FRAME_MS
_START_THRESHOLD_DBFS = {"START_SENSITIVITY_HIGH": -50.0, "START_SENSITIVITY_LOW": -38.0}
_END_OFFSET_DB = {"END_SENSITIVITY_HIGH": 6.0, "END_SENSITIVITY_LOW": -6.0}

Transition = Literal["start", "end"]


@dataclass
class EnergyVad:
    start_threshold_dbfs: float = -50.0
    end_threshold_dbfs: float = -44.0
    prefix_padding_ms: int = 20
    silence_duration_ms: int = 500
    speaking: bool = False
    _pending: bytearray = field(default_factory=bytearray)
    _voiced_ms: int = 0
    _silent_ms: int = 0
    frames: int = 0  # 10 ms frames heard so far
    offsets: list[float] = field(default_factory=list)  # seconds: the last feed's transitions

    @classmethod
    def from_config(cls, config: wire.AutomaticActivityDetection | None) -> EnergyVad:
        config = config or wire.AutomaticActivityDetection()
        start = _START_THRESHOLD_DBFS.get(config.start_of_speech_sensitivity or "", -50.0)
        end = start + _END_OFFSET_DB.get(config.end_of_speech_sensitivity or "", 6.0)
        return cls(
            start_threshold_dbfs=start,
            end_threshold_dbfs=end,
            prefix_padding_ms=max(FRAME_MS, config.prefix_padding_ms or 20),
            silence_duration_ms=max(FRAME_MS, config.silence_duration_ms or 500),
        )

    def __post_init__(self) -> None:
        # Thresholds as sums of squared samples over one frame: no logarithm per frame.
        scale = _SAMPLES_PER_FRAME * 32768.0**2
        self._start_power = scale * 10 ** (self.start_threshold_dbfs / 10)
        self._end_power = scale * 10 ** (self.end_threshold_dbfs / 10)

    def feed(self, pcm: bytes) -> list[Transition]:
        """Consume PCM16 (any length) and return the speech transitions it completes."""
        frame_bytes = 2 * _SAMPLES_PER_FRAME
        if not self._pending and len(pcm) % frame_bytes == 0:
            whole = pcm  # the usual case, 20 ms chunks: no copy into the buffer
        else:
            self._pending += pcm
            usable = len(self._pending) // frame_bytes * frame_bytes
            whole = bytes(self._pending[:usable])
            del self._pending[:usable]
        if not whole:
            return []
        samples = np.frombuffer(whole, dtype="<i2").astype(np.float32)
        out: list[Transition] = []
        if self.offsets:
            self.offsets = []
        first_frame = self.frames
        for index, offset in enumerate(range(0, samples.size, _SAMPLES_PER_FRAME)):
            frame = samples[offset : offset + _SAMPLES_PER_FRAME]
            power = float(np.dot(frame, frame))
            if not self.speaking:
                self._voiced_ms = self._voiced_ms + FRAME_MS if power >= self._start_power else 0
                if self._voiced_ms >= self.prefix_padding_ms:
                    self.speaking, self._silent_ms = True, 0
                    out.append("start")
                    # Speech began where the voiced run did, not where it was confirmed.
                    started = first_frame + index + 1 - self._voiced_ms // FRAME_MS
                    self.offsets.append(started * FRAME_MS / 1000)
            else:
                self._silent_ms = self._silent_ms + FRAME_MS if power < self._end_power else 0
                if self._silent_ms >= self.silence_duration_ms:
                    self.speaking, self._voiced_ms = False, 0
                    out.append("end")
                    ended = first_frame + index + 1 - self._silent_ms // FRAME_MS
                    self.offsets.append(ended * FRAME_MS / 1000)
        self.frames += samples.size // _SAMPLES_PER_FRAME
        return out

    def force_end(self) -> bool:
        """End the utterance now (audioStreamEnd); True if one was in progress."""
        was = self.speaking
        self.speaking, self._voiced_ms, self._silent_ms = False, 0, 0
        self._pending.clear()
        return was


class InputResampler:
    """PCM16 at any rate in, PCM16 at 16 kHz out, keeping the resampler's state from one
    chunk to the next (soxr's streaming resampler; a new one when the rate changes). An
    odd trailing byte waits for the next chunk."""

    def __init__(self) -> None:
        self._rate = RATE
        self._stream: soxr.ResampleStream | None = None
        self._odd = b""

    def to_16k(self, pcm: bytes, rate: int) -> bytes:
        """``pcm`` (at ``rate``) as 16 kHz PCM16; what the filter holds back comes out
        with later chunks."""
        if rate == RATE and self._stream is None and not self._odd:
            return pcm  # the usual case: nothing to do
        if self._odd:
            pcm, self._odd = self._odd + pcm, b""
        if len(pcm) % 2:
            pcm, self._odd = pcm[:-1], pcm[-1:]
        out = b""
        if rate != self._rate:
            out = self._flush()
            self._rate = rate
        if rate == RATE:
            return out + pcm
        if self._stream is None:
            self._stream = soxr.ResampleStream(rate, RATE, 1, dtype="int16")
        samples = np.frombuffer(pcm, dtype="<i2")
        return out + bytes(self._stream.resample_chunk(samples).tobytes())

    def _flush(self) -> bytes:
        stream, self._stream = self._stream, None
        if stream is None:
            return b""
        tail = stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
        return bytes(tail.tobytes())
