"""The playout actor: 24 kHz model audio through a jitter buffer into a sink.

Model audio arrives in bursts, sometimes slower than real time. The jitter buffer starts a
turn once ``target_ms`` is buffered (or the turn's audio is complete), plays it frame by
frame in real time, and when it runs dry mid-turn (an underrun, counted and reported)
waits for ``low_water_ms`` before resuming. On ``TurnInterrupted`` it drops the turn's
audio at once: at most the frame being written still plays (one frame, 20 ms by default).
It reports ``PlayoutProgress`` (samples played in the turn) and ``PlayoutFinished``
(played fully, or interrupted at sample N).

The jitter buffer holds at most ``buffer_seconds`` of audio (``actors.limits``): a server
sending faster than that can be played loses what does not fit, counted and reported as
``Dropped`` (at most once a second, and at each turn's end).

Frames are paced on the run's shared clock (``runtime.clock``). A sink that can write
without waiting (``write_nowait``: ``NullSink``, ``CollectorSink``) is written to from the
clock's timer itself, each frame a callback at its time (no task wakes per frame); other
sinks (a file, a device, a browser) are written to by a task of playout's that sleeps
until each frame's time. Both play the same frames at the same times, with the same
reports in the same order. Model audio is taken in the sender's task while playout waits
for it (the inline hand-off of ``runtime.wiring``).

Sinks: ``NullSink`` (plays nothing, at the pace of a speaker: the session's default),
``WavSink`` (a 16-bit mono WAV file), ``CollectorSink`` (keeps everything in memory, for
tests), ``SpeakerSink`` (sounddevice, an optional extra).

The sink belongs to whoever runs the pipeline (a session owns the sink it is given), not
to the actor: the owner opens it (``open_sink``: a file is created, a device started, and
an error says so before the conversation starts) and closes it (``aclose``) after playout
has stopped for good. A restarted playout gets the same sink back, open and intact.
"""

from __future__ import annotations

import collections
import math
import threading
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import trio

from actors import limits
from actors.capture import audio_device_error, sounddevice_module
from actors.errors import SinkError
from runtime import messages as m
from runtime.audio import OUTPUT_RATE
from runtime.clock import Timer, on_grid, paced_sleep_until, shared_pacer
from runtime.drops import DropCounter
from runtime.errors import unwrapping
from runtime.supervisor import ActorContext
from runtime.wiring import deliver, deliver_nowait, messages


class Sink(Protocol):
    """Where model audio goes. A sink may also have ``async def open()`` (create the
    file, start the device): its owner calls it, through ``open_sink``, before the first
    write, and ``aclose`` once at the end."""

    async def write(self, pcm: bytes) -> None:
        """Play (or store) mono PCM16 at 24 kHz."""

    async def aclose(self) -> None: ...


class NowaitSink(Sink, Protocol):
    """A sink that can also take a frame without waiting (memory, nothing): playout then
    writes each frame from the shared clock's timer (``Pacer.call_at``), at no task step
    of its own. ``write_nowait`` must not block; it raises what ``write`` would."""

    def write_nowait(self, pcm: bytes) -> None: ...


async def open_sink(sink: Sink) -> None:
    """Open ``sink`` if it has an ``open()``; its errors are the sink's (``SinkError``,
    ``AudioDeviceUnavailable``)."""
    opener = getattr(sink, "open", None)
    if opener is not None:
        await opener()


class NullSink:
    """Plays nothing, keeps nothing: the default when the application takes the reply's
    audio from its ``audio_stream`` (playout still paces it, for barge-in truncation)."""

    async def write(self, pcm: bytes) -> None:
        pass

    def write_nowait(self, pcm: bytes) -> None:
        pass

    async def aclose(self) -> None:
        pass


@dataclass
class CollectorSink:
    """Keeps everything played, and when (trio's clock): for tests. Unbounded: a long
    session grows it by 48 KB per second of reply."""

    chunks: list[bytes] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    closed: bool = False

    async def write(self, pcm: bytes) -> None:
        self.write_nowait(pcm)

    def write_nowait(self, pcm: bytes) -> None:
        self.chunks.append(pcm)
        self.times.append(trio.current_time())

    async def aclose(self) -> None:
        self.closed = True

    @property
    def pcm(self) -> bytes:
        return b"".join(self.chunks)


class WavSink:
    """Writes what is played to a 16-bit mono 24 kHz WAV file, created by ``open()`` (or
    the first write); ``aclose()`` finishes it (a session that played nothing leaves an
    empty but valid file). Raises ``SinkError`` naming the path when it cannot be written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._raw: BinaryIO | None = None
        self._file: wave.Wave_write | None = None
        self._closed = False

    async def open(self) -> None:
        if self._file is None:
            await trio.to_thread.run_sync(self._open)

    async def write(self, pcm: bytes) -> None:
        if self._file is None:
            await self.open()
        assert self._file is not None
        try:
            self._file.writeframes(pcm)
        except OSError as exc:
            raise SinkError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def _open(self) -> None:
        # The file is opened here, not by ``wave``: a path that cannot be opened raises
        # once, instead of also leaving a half-made Wave_write whose __del__ complains.
        try:
            raw = open(self.path, "wb")  # noqa: SIM115  # closed in aclose()
        except OSError as exc:
            raise SinkError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        file = wave.open(raw, "wb")  # noqa: SIM115  # closed in aclose()
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(OUTPUT_RATE)
        self._raw, self._file = raw, file

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._file is None:
            await self.open()  # an empty but valid file
        await trio.to_thread.run_sync(self._close)

    def _close(self) -> None:
        assert self._file is not None
        assert self._raw is not None
        try:
            self._file.close()
        finally:
            self._raw.close()


class SpeakerSink:
    """An output device through sounddevice (the ``audio`` extra and the system's
    PortAudio): ``device`` is a sounddevice device name or index, None for the default.
    Raises ``AudioDeviceUnavailable`` (one line: what is missing) when sounddevice or
    PortAudio is missing (at once) or there is no such device (when opened).

    The device pulls audio in its own thread (a callback): what playout wrote, else
    silence, so the device never runs dry between replies (ALSA would complain of
    underruns). ``write`` queues at most ``max_queued`` seconds (playout paces in real
    time, so a frame or two), then waits."""

    def __init__(self, device: str | int | None = None, max_queued: float = 0.5) -> None:
        self._sounddevice = sounddevice_module("speaker")
        self.device = device
        self._max_queued = int(max_queued * OUTPUT_RATE) * 2
        self._queued = bytearray()
        self._lock = threading.Lock()
        self._stream: Any = None

    async def open(self) -> None:
        if self._stream is not None:
            return
        sd = self._sounddevice
        try:
            stream = sd.RawOutputStream(
                samplerate=OUTPUT_RATE,
                channels=1,
                dtype="int16",
                device=self.device,
                callback=self._pull,
            )
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise audio_device_error("speaker", exc) from exc
        self._stream = stream

    def _pull(self, out: Any, frames: int, time: object, status: object) -> None:
        # PortAudio's thread: what is queued, then silence.
        size = len(out)
        with self._lock:
            chunk = bytes(self._queued[:size])
            del self._queued[:size]
        out[: len(chunk)] = chunk
        out[len(chunk) :] = bytes(size - len(chunk))

    async def write(self, pcm: bytes) -> None:
        if self._stream is None:
            await self.open()
        while len(self._queued) > self._max_queued:  # noqa: ASYNC110  # the device drains it
            await trio.sleep(0.01)
        with self._lock:
            self._queued += pcm

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await trio.to_thread.run_sync(_stop, stream)


def _stop(stream: Any) -> None:
    stream.stop()
    stream.close()


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

    def __init__(
        self,
        *,
        frame_ms: int = 20,
        target_ms: int = 150,
        low_water_ms: int = 60,
        max_bytes: int = limits.PLAYOUT_BUFFER_BYTES,
    ) -> None:
        self.frame_bytes = 2 * OUTPUT_RATE * frame_ms // 1000
        self._target = 2 * OUTPUT_RATE * target_ms // 1000
        self._low_water = 2 * OUTPUT_RATE * low_water_ms // 1000
        self.max_bytes = max_bytes
        self.buffered = 0  # bytes, all turns
        self._turns: collections.OrderedDict[int, _Turn] = collections.OrderedDict()
        self._threshold = self._target
        self._flushed: set[int] = set()
        self.underruns = 0

    def push(self, turn_id: int, pcm: bytes) -> bool:
        """Queue ``pcm`` for ``turn_id``; False when it was dropped because the buffer
        would hold more than ``max_bytes``."""
        if turn_id in self._flushed:
            return True  # audio still arriving for an interrupted turn: never played
        if self.buffered + len(pcm) > self.max_bytes:
            return False
        turn = self._turns.setdefault(turn_id, _Turn(turn_id))
        if pcm:
            turn.data.append(pcm)
            turn.buffered += len(pcm)
            self.buffered += len(pcm)
        return True

    def complete(self, turn_id: int) -> None:
        """No more audio will come for ``turn_id``."""
        if turn_id not in self._flushed:
            self._turns.setdefault(turn_id, _Turn(turn_id)).complete = True

    def flush(self, turn_id: int) -> _Turn | None:
        """Drop ``turn_id``'s audio now, and any that still comes for it; the turn as it
        stood (for its played count)."""
        self._flushed.add(turn_id)
        turn = self._turns.pop(turn_id, None)
        if turn is not None:
            self.buffered -= turn.buffered
        return turn

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
        self.buffered -= size
        return bytes(out)


@dataclass(frozen=True)
class PlayoutOptions:
    frame_ms: int = 20
    target_ms: int = 150
    low_water_ms: int = 60
    realtime: bool = True  # False: write as fast as the sink takes it (files, tests)
    progress_every_ms: int = 100
    buffer_seconds: float = limits.PLAYOUT_BUFFER_SECONDS  # past it, arriving audio is dropped


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
    everything queued has played, or at once when ``ctx.stopping`` is set (what is still
    buffered is not played: the session is over). Closes ``audio`` and ``events`` on exit;
    never opens or closes the sink (its owner does: see the module docstring). A sink's
    error is raised as itself (from the clock's callback too)."""
    player = _Player(sink, events, options, ctx.stopping)
    async with audio, events:
        ctx.ready()
        with unwrapping():  # a failing sink is raised as itself
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ctx.cancel_when_stopping, nursery.cancel_scope)
                if player.on_clock:
                    await player.run_on_clock(audio)
                else:
                    nursery.start_soon(player.receive, audio)
                    await player.play()
                nursery.cancel_scope.cancel()


class _Player:
    """One playout incarnation: ``receive`` fills the jitter buffer as audio comes (or
    ``take_now``, inline in the sender's task), and a frame is written per frame time
    with progress reported: by ``play`` (a task sleeping until each frame's time) or by
    ``_tick`` (the shared clock calling it at each frame's time: ``run_on_clock``)."""

    def __init__(
        self,
        sink: Sink,
        events: trio.MemorySendChannel[m.InternalMessage],
        options: PlayoutOptions,
        stopping: trio.Event | None = None,
    ) -> None:
        self.sink, self.events, self.options = sink, events, options
        self.buffer = JitterBuffer(
            frame_ms=options.frame_ms,
            target_ms=options.target_ms,
            low_water_ms=options.low_water_ms,
            max_bytes=int(options.buffer_seconds * 2 * OUTPUT_RATE),
        )
        self.dropped = DropCounter("model audio (jitter buffer full)", limits.DROP_REPORT_INTERVAL)
        self.wrong_rates: dict[int, DropCounter] = {}  # model audio at a rate not played
        self.wakeup = trio.Event()
        self.ended = False
        self.progress: dict[int, int] = {}  # samples played per turn, as last reported
        self.underruns = 0
        # Work done outside this actor's tasks (inline, on the clock) cannot wait for room
        # in a bounded ``events``; a channel's bound never changes.
        self.unbounded = events.statistics().max_buffer_size == math.inf
        self.write_nowait = getattr(sink, "write_nowait", None)
        self.on_clock = options.realtime and self.unbounded and self.write_nowait is not None
        self.stopping = stopping if stopping is not None else trio.Event()
        # On the clock: the next frame's time, the call that plays it (None while idle:
        # nothing to play until more audio comes), and how the clock's work ends.
        self.next_at = 0.0
        self.timer: Timer | None = None
        self.idle = True
        self.done = trio.Event()  # everything played after the input ended
        self.failure: BaseException | None = None  # a tick failed (the sink's error)
        self.scope: trio.CancelScope | None = None  # cancelled when a tick fails

    # --- input -----------------------------------------------------------------------------

    async def receive(self, audio: trio.MemoryReceiveChannel[m.InternalMessage]) -> None:
        """Take ``audio`` until it ends (senders run ``take_now`` while it waits)."""
        async for message in messages(audio, inline=self.take_now):
            for report in self._take(message):
                await deliver(self.events, report)
            self._wake()
        self.ended = True
        self._wake()

    def take_now(self, message: m.InternalMessage) -> bool:
        """``receive``'s loop body without waiting, for a sender to run inline; declines
        (False, nothing done) when ``events`` is bounded."""
        if not self.unbounded:
            return False
        for report in self._take(message):
            deliver_nowait(self.events, report)
        self._wake()
        return True

    def _take(self, message: m.InternalMessage) -> list[m.InternalMessage]:
        """Apply one input message to the buffer; the reports it causes, in order."""
        if isinstance(message, m.ModelAudio):
            return self._push(message)
        if isinstance(message, m.GenerationCompleted | m.TurnCompleted):
            self.buffer.complete(message.turn_id)
        elif isinstance(message, m.TurnInterrupted):
            turn = self.buffer.flush(message.turn_id)
            played = turn.played if turn is not None else 0
            return self._finished(
                m.PlayoutFinished(turn_id=message.turn_id, samples_played=played, interrupted=True)
            )
        return []

    def _push(self, message: m.ModelAudio) -> list[m.InternalMessage]:
        counter = None
        if message.sample_rate != OUTPUT_RATE:
            counter = self.wrong_rates.get(message.sample_rate)
            if counter is None:
                what = f"model audio at {message.sample_rate} Hz (plays {OUTPUT_RATE} Hz)"
                counter = DropCounter(what, limits.DROP_REPORT_INTERVAL)
                self.wrong_rates[message.sample_rate] = counter
        elif not self.buffer.push(message.turn_id, message.data):
            counter = self.dropped
        if counter is not None:
            counter.add()
            report = counter.due(trio.current_time())
            if report is not None:
                return [report]
        return []

    def _wake(self) -> None:
        """Something came (or the input ended): whatever waits to play looks again."""
        if self.on_clock:
            if self.idle and self.scope is not None:
                self.idle = False
                self.next_at = max(self.next_at, on_grid(trio.current_time()))
                self.timer = shared_pacer().call_at(self.next_at, self._tick, self._failed)
            return
        self.wakeup.set()
        self.wakeup = trio.Event()

    # --- output in a task --------------------------------------------------------------------

    async def play(self) -> None:
        frame_seconds = self.options.frame_ms / 1000
        next_at = trio.current_time()
        while True:
            if self.options.realtime:
                # Wait first, take the frame after: an interruption that comes during the
                # wait flushes the frame before it is taken, not after it is written.
                await paced_sleep_until(next_at)
            item = self.buffer.next_frame()
            for report in self._underrun():
                await deliver(self.events, report)
            if item is None:
                if self.ended and self.buffer.current_turn is None:
                    return
                await self.wakeup.wait()
                next_at = max(next_at, trio.current_time())
                continue
            turn_id, frame = item
            if frame is None:
                for report in self._turn_played(turn_id):
                    await deliver(self.events, report)
                continue
            if self.options.realtime:
                next_at += frame_seconds
            else:
                await trio.lowlevel.checkpoint()
            await self.sink.write(frame)
            for report in self._played(turn_id, frame):
                await deliver(self.events, report)

    # --- output on the clock -----------------------------------------------------------------

    async def run_on_clock(self, audio: trio.MemoryReceiveChannel[m.InternalMessage]) -> None:
        """Take ``audio`` until it ends while the clock plays each frame at its time
        (``_tick``), then wait until everything buffered has played. Raises what a tick
        raised (the sink's error). Cancelled, no frame is written after it returns."""
        self.next_at = trio.current_time()
        try:
            with trio.CancelScope() as self.scope:
                await self.receive(audio)
                await self.done.wait()
        finally:
            self.scope = None  # no tick is scheduled any more
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
        if self.failure is not None:
            raise self.failure

    def _tick(self) -> None:
        """``play``'s loop from one frame time to the next, called by the clock: write the
        frame due now (and report), then ask to be called at the next frame's time; or
        go idle (until ``_wake``) when there is nothing to play."""
        self.timer = None
        if self.scope is None or self.stopping.is_set():
            return  # the actor is ending: not one more frame
        assert self.write_nowait is not None
        while True:
            item = self.buffer.next_frame()
            for report in self._underrun():
                deliver_nowait(self.events, report)
            if item is None:
                if self.ended and self.buffer.current_turn is None:
                    self.done.set()
                self.idle = True
                return
            turn_id, frame = item
            if frame is None:
                for report in self._turn_played(turn_id):
                    deliver_nowait(self.events, report)
                continue  # its frame time has come already: on to the next turn now
            self.next_at += self.options.frame_ms / 1000
            self.write_nowait(frame)
            for report in self._played(turn_id, frame):
                deliver_nowait(self.events, report)
            self.timer = shared_pacer().call_at(self.next_at, self._tick, self._failed)
            return

    def _failed(self, error: BaseException) -> None:
        """A tick raised: the actor raises it (it stops playing)."""
        self.failure = error
        if self.scope is not None:
            self.scope.cancel()

    # --- reports -----------------------------------------------------------------------------

    def _played(self, turn_id: int, frame: bytes) -> list[m.InternalMessage]:
        """Progress every ``progress_every_ms``, and on a turn's first frame (time to
        first audio is measured from it)."""
        played = self.buffer.played(turn_id) or self.progress.get(turn_id, 0) + len(frame) // 2
        previous = self.progress.get(turn_id, 0)
        self.progress[turn_id] = played
        step = OUTPUT_RATE * self.options.progress_every_ms // 1000
        if previous == 0 or played // step > previous // step:
            return [m.PlayoutProgress(turn_id=turn_id, samples_played=played)]
        return []

    def _underrun(self) -> list[m.InternalMessage]:
        if self.buffer.underruns > self.underruns:
            self.underruns = self.buffer.underruns
            turn_id = self.buffer.current_turn or 0
            return [m.PlayoutUnderrun(turn_id=turn_id, total_underruns=self.underruns)]
        return []

    def _turn_played(self, turn_id: int) -> list[m.InternalMessage]:
        samples = self.progress.pop(turn_id, 0)
        return self._finished(
            m.PlayoutFinished(turn_id=turn_id, samples_played=samples, interrupted=False)
        )

    def _finished(self, finished: m.PlayoutFinished) -> list[m.InternalMessage]:
        """A turn's end, with what its bounds dropped (if anything) just before."""
        out: list[m.InternalMessage] = []
        for counter in (self.dropped, *self.wrong_rates.values()):
            dropped = counter.flush()
            if dropped is not None:
                out.append(dropped)
        out.append(finished)
        return out
