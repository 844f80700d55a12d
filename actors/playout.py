"""The playout actor: 24 kHz model audio through a jitter buffer into a sink.

Model audio arrives in bursts, sometimes slower than real time. The jitter buffer starts a
turn once ``target_ms`` is buffered (or the turn's audio is complete), plays it frame by
frame in real time, and when it runs dry mid-turn (an underrun, counted and reported)
waits for ``low_water_ms`` before resuming. On ``TurnInterrupted`` it drops the turn's
audio at once: at most the frame being written still plays (one frame, 20 ms by default).
It reports ``PlayoutProgress`` (samples played in the turn) and ``PlayoutFinished``
(played fully, or interrupted at sample N).

Sinks: ``WavSink`` (a 16-bit mono WAV file), ``CollectorSink`` (in memory, for tests and
embedding), ``SpeakerSink`` (sounddevice, an optional extra).
"""

from __future__ import annotations

import collections
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import trio

from actors.capture import AudioDeviceUnavailable
from runtime import messages as m
from runtime.clock import paced_sleep_until
from runtime.supervisor import ActorContext
from runtime.wiring import deliver, messages

OUTPUT_RATE = 24000


class Sink(Protocol):
    async def write(self, pcm: bytes) -> None:
        """Play (or store) mono PCM16 at 24 kHz."""

    async def aclose(self) -> None: ...


@dataclass
class CollectorSink:
    """Keeps what was played, and when (trio's clock)."""

    chunks: list[bytes] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    closed: bool = False

    async def write(self, pcm: bytes) -> None:
        self.chunks.append(pcm)
        self.times.append(trio.current_time())

    async def aclose(self) -> None:
        self.closed = True

    @property
    def pcm(self) -> bytes:
        return b"".join(self.chunks)


class WavSink:
    """Writes what is played to a 16-bit mono 24 kHz WAV file (created on first write)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: wave.Wave_write | None = None

    async def write(self, pcm: bytes) -> None:
        if self._file is None:
            self._file = await trio.to_thread.run_sync(self._open)
        self._file.writeframes(pcm)

    def _open(self) -> wave.Wave_write:
        file = wave.open(str(self.path), "wb")  # noqa: SIM115  # closed in aclose()
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(OUTPUT_RATE)
        return file

    async def aclose(self) -> None:
        if self._file is None:
            self._file = await trio.to_thread.run_sync(self._open)  # an empty but valid file
        await trio.to_thread.run_sync(self._file.close)


class SpeakerSink:
    """The default output device through sounddevice (``pip install sounddevice``)."""

    def __init__(self) -> None:
        try:
            import sounddevice
        except (ImportError, OSError) as exc:
            raise AudioDeviceUnavailable(
                "the speaker needs sounddevice and PortAudio: pip install sounddevice "
                f"(and the system's libportaudio2); {exc}"
            ) from exc
        self._stream = sounddevice.RawOutputStream(
            samplerate=OUTPUT_RATE, channels=1, dtype="int16"
        )
        self._stream.start()

    async def write(self, pcm: bytes) -> None:
        await trio.to_thread.run_sync(self._stream.write, pcm)

    async def aclose(self) -> None:
        self._stream.stop()
        self._stream.close()


@dataclass
class _Turn:
    turn_id: int
    data: collections.deque[bytes] = field(default_factory=collections.deque)
    buffered: int = 0  # bytes
    complete: bool = False
    played: int = 0  # samples
    playing: bool = False


class JitterBuffer:
    """Per-turn audio queues; ``next_frame`` decides what plays now. No I/O."""

    def __init__(self, *, frame_ms: int = 20, target_ms: int = 150, low_water_ms: int = 60) -> None:
        self.frame_bytes = 2 * OUTPUT_RATE * frame_ms // 1000
        self._target = 2 * OUTPUT_RATE * target_ms // 1000
        self._low_water = 2 * OUTPUT_RATE * low_water_ms // 1000
        self._turns: collections.OrderedDict[int, _Turn] = collections.OrderedDict()
        self._threshold = self._target
        self._flushed: set[int] = set()
        self.underruns = 0

    def push(self, turn_id: int, pcm: bytes) -> None:
        if turn_id in self._flushed:
            return  # audio still arriving for an interrupted turn: never played
        turn = self._turns.setdefault(turn_id, _Turn(turn_id))
        if pcm:
            turn.data.append(pcm)
            turn.buffered += len(pcm)

    def complete(self, turn_id: int) -> None:
        """No more audio will come for ``turn_id``."""
        if turn_id not in self._flushed:
            self._turns.setdefault(turn_id, _Turn(turn_id)).complete = True

    def flush(self, turn_id: int) -> _Turn | None:
        """Drop ``turn_id``'s audio now, and any that still comes for it; the turn as it
        stood (for its played count)."""
        self._flushed.add(turn_id)
        return self._turns.pop(turn_id, None)

    def next_frame(self) -> tuple[int, bytes] | tuple[int, None] | None:
        """What to play now: (turn, frame); (turn, None) when that turn has finished;
        None when there is nothing to play (idle, buffering, or an underrun)."""
        if not self._turns:
            return None
        turn = next(iter(self._turns.values()))
        if not turn.playing:
            if turn.buffered < self._threshold and not turn.complete:
                return None
            turn.playing, self._threshold = True, self._target
        if turn.buffered >= self.frame_bytes or (turn.complete and turn.buffered):
            frame = self._take(turn, min(self.frame_bytes, turn.buffered))
            turn.played += len(frame) // 2
            return turn.turn_id, frame
        if turn.complete:
            del self._turns[turn.turn_id]
            return turn.turn_id, None
        self.underruns += 1  # ran dry mid-turn: rebuffer to the low-water mark
        turn.playing, self._threshold = False, self._low_water
        return None

    @property
    def current_turn(self) -> int | None:
        """The turn playing or next to play; None when nothing is queued."""
        return next(iter(self._turns), None)

    def played(self, turn_id: int) -> int:
        turn = self._turns.get(turn_id)
        return turn.played if turn is not None else 0

    def _take(self, turn: _Turn, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            head = turn.data[0]
            need = size - len(out)
            if len(head) <= need:
                out += turn.data.popleft()
            else:
                out += head[:need]
                turn.data[0] = head[need:]
        turn.buffered -= size
        return bytes(out)


@dataclass(frozen=True)
class PlayoutOptions:
    frame_ms: int = 20
    target_ms: int = 150
    low_water_ms: int = 60
    realtime: bool = True  # False: write as fast as the sink takes it (files, tests)
    progress_every_ms: int = 100


async def playout(
    ctx: ActorContext,
    *,
    audio: trio.MemoryReceiveChannel[m.InternalMessage],
    sink: Sink,
    events: trio.MemorySendChannel[m.InternalMessage],
    options: PlayoutOptions = PlayoutOptions(),
) -> None:
    """Play ``ModelAudio`` from ``audio`` (``GenerationCompleted`` / ``TurnCompleted`` end a
    turn's audio, ``TurnInterrupted`` flushes it) into ``sink`` until ``audio`` ends and
    everything queued has played. Closes ``audio``, ``events`` and the sink on exit."""
    buffer = JitterBuffer(
        frame_ms=options.frame_ms, target_ms=options.target_ms, low_water_ms=options.low_water_ms
    )
    wakeup = trio.Event()
    ended = False
    async with audio, events:
        ctx.ready()

        async def receive() -> None:
            nonlocal wakeup, ended
            async for message in messages(audio):
                if isinstance(message, m.ModelAudio):
                    if message.sample_rate != OUTPUT_RATE:
                        await deliver(
                            events,
                            m.Dropped(what=f"model audio at {message.sample_rate} Hz", count=1),
                        )
                        continue
                    buffer.push(message.turn_id, message.data)
                elif isinstance(message, m.GenerationCompleted | m.TurnCompleted):
                    buffer.complete(message.turn_id)
                elif isinstance(message, m.TurnInterrupted):
                    turn = buffer.flush(message.turn_id)
                    played = turn.played if turn is not None else 0
                    await deliver(
                        events,
                        m.PlayoutFinished(
                            turn_id=message.turn_id, samples_played=played, interrupted=True
                        ),
                    )
                wakeup.set()
                wakeup = trio.Event()
            ended = True
            wakeup.set()

        async def play() -> None:
            frame_seconds = options.frame_ms / 1000
            next_at = trio.current_time()
            last_progress: dict[int, int] = {}
            progress_samples = OUTPUT_RATE * options.progress_every_ms // 1000
            underruns = 0
            while True:
                if options.realtime:
                    # Wait first, take the frame after: an interruption that comes during
                    # the wait flushes the frame before it is taken, not after it is written.
                    await paced_sleep_until(next_at)
                item = buffer.next_frame()
                if buffer.underruns > underruns:
                    underruns = buffer.underruns
                    turn_id = buffer.current_turn or 0
                    await deliver(
                        events, m.PlayoutUnderrun(turn_id=turn_id, total_underruns=underruns)
                    )
                if item is None:
                    if ended and buffer.current_turn is None:
                        return
                    await wakeup.wait()
                    next_at = max(next_at, trio.current_time())
                    continue
                turn_id, frame = item
                if frame is None:
                    await deliver(
                        events,
                        m.PlayoutFinished(
                            turn_id=turn_id,
                            samples_played=last_progress.pop(turn_id, 0),
                            interrupted=False,
                        ),
                    )
                    continue
                if options.realtime:
                    next_at += frame_seconds
                else:
                    await trio.lowlevel.checkpoint()
                await sink.write(frame)
                played = buffer.played(turn_id) or last_progress.get(turn_id, 0) + len(frame) // 2
                previous = last_progress.get(turn_id, 0)
                last_progress[turn_id] = played
                # The first frame of a turn too: time-to-first-audio is measured from it.
                if previous == 0 or played // progress_samples > previous // progress_samples:
                    await deliver(events, m.PlayoutProgress(turn_id=turn_id, samples_played=played))

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                await play()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await sink.aclose()
