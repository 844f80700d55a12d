"""Energy-based voice activity detection over 16 kHz PCM16, sans-IO.

Audio is cut into 10 ms frames and each frame's RMS level is compared with a threshold set
by the start-of-speech sensitivity (HIGH hears quieter speech). Speech starts once frames
above the threshold add up to ``prefix_padding_ms``; it ends after ``silence_duration_ms``
of frames below the end threshold (END_SENSITIVITY_HIGH ends sooner: its threshold sits
above the start one). ``feed()`` returns the transitions it saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from protocol import wire

FRAME_MS = 10
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
        for offset in range(0, samples.size, _SAMPLES_PER_FRAME):
            frame = samples[offset : offset + _SAMPLES_PER_FRAME]
            power = float(np.dot(frame, frame))
            if not self.speaking:
                self._voiced_ms = self._voiced_ms + FRAME_MS if power >= self._start_power else 0
                if self._voiced_ms >= self.prefix_padding_ms:
                    self.speaking, self._silent_ms = True, 0
                    out.append("start")
            else:
                self._silent_ms = self._silent_ms + FRAME_MS if power < self._end_power else 0
                if self._silent_ms >= self.silence_duration_ms:
                    self.speaking, self._voiced_ms = False, 0
                    out.append("end")
        return out

    def force_end(self) -> bool:
        """End the utterance now (audioStreamEnd); True if one was in progress."""
        was = self.speaking
        self.speaking, self._voiced_ms, self._silent_ms = False, 0, 0
        self._pending.clear()
        return was
