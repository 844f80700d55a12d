"""Playout: the jitter buffer, flush latency on barge-in, progress and completion, sinks."""

from __future__ import annotations

import math
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import trio
import trio.testing
from trio.testing import MockClock

from actors.errors import SinkError
from actors.limits import PLAYOUT_BUFFER_BYTES
from actors.playout import CollectorSink, JitterBuffer, PlayoutOptions, WavSink, playout
from runtime import messages as m
from runtime.errors import unwrap
from runtime.supervisor import ActorContext
from runtime.wiring import Wiring, deliver

FRAME = 960  # bytes in 20 ms at 24 kHz


def audio(ms: int, value: int = 1000) -> bytes:
    return np.full(24 * ms, value, dtype="<i2").tobytes()


def test_a_turn_starts_at_the_target_and_rebuffers_to_the_low_water_mark() -> None:
    buffer = JitterBuffer(target_ms=100, low_water_ms=40)
    buffer.push(1, audio(80))
    assert buffer.next_frame() is None  # 80 ms < 100 ms target
    buffer.push(1, audio(40))
    frames = [buffer.next_frame() for _ in range(6)]
    assert [len(f[1]) for f in frames if f and f[1]] == [FRAME] * 6
    assert buffer.next_frame() is None  # dry mid-turn
    assert buffer.underruns == 1
    buffer.push(1, audio(20))
    assert buffer.next_frame() is None  # 20 ms < 40 ms low water
    buffer.push(1, audio(20))
    assert buffer.next_frame() == (1, audio(20))


def test_a_complete_turn_plays_out_whatever_is_left_then_says_so() -> None:
    buffer = JitterBuffer()
    buffer.push(1, audio(30))
    buffer.complete(1)
    assert buffer.next_frame() == (1, audio(20))
    assert buffer.next_frame() == (1, audio(10))
    assert buffer.next_frame() == (1, None)
    assert buffer.next_frame() is None
    assert buffer.underruns == 0


def test_turns_play_in_order_and_a_flush_drops_only_its_turn() -> None:
    buffer = JitterBuffer(target_ms=20)
    buffer.push(1, audio(40, 1))
    buffer.push(2, audio(40, 2))
    assert buffer.next_frame() == (1, audio(20, 1))
    flushed = buffer.flush(1)
    assert flushed is not None
    assert flushed.played == 480
    assert buffer.next_frame() == (2, audio(20, 2))


@dataclass
class Player:
    audio: trio.MemorySendChannel[m.InternalMessage]
    events: trio.MemoryReceiveChannel[m.InternalMessage]
    sink: CollectorSink

    def drain(self) -> list[m.InternalMessage]:
        out = []
        while True:
            try:
                out.append(self.events.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                return out


class TaskSink(CollectorSink):
    """A collector that can only be written to by waiting (as a device or a file): played
    by playout's task, not on the clock."""

    write_nowait = None  # type: ignore[assignment]

    async def write(self, pcm: bytes) -> None:
        self.chunks.append(pcm)
        self.times.append(trio.current_time())


@pytest.fixture(params=["clock", "task"])
def sink(request: pytest.FixtureRequest) -> CollectorSink:
    """Each actor test runs both ways: frames written by the clock's callbacks (a sink
    with ``write_nowait``) and by playout's own task (a sink without)."""
    return CollectorSink() if request.param == "clock" else TaskSink()


@asynccontextmanager
async def player(
    options: PlayoutOptions | None = None,
    sink: CollectorSink | None = None,
    stopping: trio.Event | None = None,
) -> AsyncIterator[Player]:
    options = options or PlayoutOptions()
    audio_send, audio_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    events_send, events_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    sink = sink if sink is not None else CollectorSink()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: playout(
                ActorContext(
                    "playout", 1, stopping if stopping is not None else trio.Event(), lambda: None
                ),
                audio=audio_receive,
                sink=sink,
                events=events_send,
                options=options,
            )
        )
        yield Player(audio_send, events_receive, sink)
        await audio_send.aclose()


def model_audio(turn: int, pcm: bytes, offset: int = 0) -> m.ModelAudio:
    return m.ModelAudio(turn_id=turn, data=pcm, offset=offset)


async def test_jittered_arrivals_within_the_target_play_smoothly(
    sink: CollectorSink, autojump_clock: MockClock
) -> None:
    # 40 ms chunks, each arriving up to 100 ms after its nominal time, in bursts as the
    # delays bunch up: a 150 ms target absorbs all of it.
    delays = np.random.default_rng(7).uniform(0, 0.1, size=50)
    arrivals = sorted((0.04 * i + float(delay), i) for i, delay in enumerate(delays))
    async with player(PlayoutOptions(target_ms=150), sink=sink) as p:
        start = trio.current_time()
        chunks: dict[int, bytes] = {}
        next_index = 0
        for at, index in arrivals:
            await trio.sleep_until(start + at)
            chunks[index] = audio(40, index)
            while next_index in chunks:  # the server sends in order: hold back early ones
                await p.audio.send(model_audio(1, chunks.pop(next_index)))
                next_index += 1
        await p.audio.send(m.GenerationCompleted(turn_id=1))
        await trio.sleep(1)
    assert len(p.sink.pcm) == 2 * 24 * 2000
    assert np.diff(p.sink.times).max() == pytest.approx(0.02)  # one frame every 20 ms, no stall
    events = p.drain()
    assert not any(isinstance(x, m.PlayoutUnderrun) for x in events)
    assert m.PlayoutFinished(turn_id=1, samples_played=48000, interrupted=False) in events


async def test_slower_than_real_time_input_underruns_and_says_so(
    sink: CollectorSink, autojump_clock: MockClock
) -> None:
    async with player(PlayoutOptions(target_ms=40, low_water_ms=40), sink=sink) as p:
        for _ in range(5):  # 40 ms of audio every 100 ms
            await p.audio.send(model_audio(1, audio(40)))
            await trio.sleep(0.1)
        await p.audio.send(m.TurnCompleted(turn_id=1))
    underruns = [x for x in p.drain() if isinstance(x, m.PlayoutUnderrun)]
    assert len(underruns) == 5  # dry after each chunk, the last before TurnCompleted came
    assert underruns[-1].total_underruns == 5


async def test_interruption_flushes_within_one_frame(
    sink: CollectorSink, autojump_clock: MockClock
) -> None:
    async with player(sink=sink) as p:
        await p.audio.send(model_audio(1, audio(3000)))
        await trio.sleep(0.5)
        interrupted_at = trio.current_time()
        await p.audio.send(m.TurnInterrupted(turn_id=1))
        await trio.sleep(1)
    after = [t for t in p.sink.times if t > interrupted_at]
    assert after == []  # the frame is taken after the wait: an interruption gets there first
    finished = next(x for x in p.drain() if isinstance(x, m.PlayoutFinished))
    assert finished.interrupted
    assert finished.samples_played == pytest.approx(24000 * 0.5, abs=480)


async def test_progress_is_reported_per_turn(
    sink: CollectorSink, autojump_clock: MockClock
) -> None:
    async with player(PlayoutOptions(progress_every_ms=100), sink=sink) as p:
        await p.audio.send(model_audio(1, audio(500)))
        await p.audio.send(m.GenerationCompleted(turn_id=1))
        await trio.sleep(1)
    progress = [x.samples_played for x in p.drain() if isinstance(x, m.PlayoutProgress)]
    assert progress == [480, 2400, 4800, 7200, 9600, 12000]  # the first frame, then every 100 ms


async def test_audio_at_another_rate_is_reported_not_played(
    sink: CollectorSink, autojump_clock: MockClock
) -> None:
    async with player(sink=sink) as p:
        await p.audio.send(m.ModelAudio(turn_id=1, data=audio(100), offset=0, sample_rate=16000))
        await trio.sleep(0.5)
    assert p.sink.pcm == b""
    assert any(isinstance(x, m.Dropped) and "16000" in x.what for x in p.drain())


async def test_model_audio_into_a_wav_file(tmp_path: Path) -> None:
    # The chain with real audio: the emulator's synthesized speech, as model audio, played
    # into a WAV file as fast as it goes.
    from emulator.audio import synthesize_speech

    speech = synthesize_speech("Hello there, this is a test.")
    path = tmp_path / "out.wav"
    audio_send, audio_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    events_send, events_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    sink = WavSink(path)  # its owner (here, the test) opens and closes it, not the actor
    await sink.open()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: playout(
                ActorContext("playout", 1, trio.Event(), lambda: None),
                audio=audio_receive,
                sink=sink,
                events=events_send,
                options=PlayoutOptions(realtime=False),
            )
        )
        for offset in range(0, len(speech), 1920):
            await audio_send.send(model_audio(1, speech[offset : offset + 1920], offset // 2))
        await audio_send.send(m.TurnCompleted(turn_id=1))
        await audio_send.aclose()
    await sink.aclose()
    with wave.open(str(path), "rb") as written:
        assert (written.getframerate(), written.getnchannels(), written.getsampwidth()) == (
            24000,
            1,
            2,
        )
        assert written.readframes(written.getnframes()) == speech
    finished = [x async for x in events_receive if isinstance(x, m.PlayoutFinished)]
    assert finished == [
        m.PlayoutFinished(turn_id=1, samples_played=len(speech) // 2, interrupted=False)
    ]


def test_audio_arriving_after_a_flush_is_not_played() -> None:
    buffer = JitterBuffer(target_ms=20)
    buffer.push(1, audio(40))
    buffer.flush(1)
    buffer.push(1, audio(40))  # the server did not know: it goes on sending
    buffer.complete(1)
    assert buffer.next_frame() is None


@pytest.mark.parametrize("extra", [0, 1])
def test_the_jitter_buffer_holds_its_bound_and_drops_what_comes_past_it(extra: int) -> None:
    buffer = JitterBuffer()
    assert buffer.max_bytes == PLAYOUT_BUFFER_BYTES
    assert buffer.push(1, bytes(PLAYOUT_BUFFER_BYTES - 2))
    assert buffer.push(2, bytes(2 + extra)) is (extra == 0)
    assert buffer.buffered == PLAYOUT_BUFFER_BYTES - (2 if extra else 0)
    buffer.next_frame()
    assert buffer.push(2, bytes(FRAME))  # a frame played: a frame's room again


async def test_audio_at_a_hundred_times_real_time_is_bounded_and_reported(
    sink: CollectorSink,
    autojump_clock: MockClock,
) -> None:
    # Five minutes of audio in three seconds: the buffer keeps what it may hold (two
    # minutes), drops the rest, and says so a few times, not once per chunk.
    chunk = audio(40)
    chunks = 5 * 60 * 25
    async with player(sink=sink) as p:
        for n in range(chunks):
            await p.audio.send(model_audio(1, chunk, offset=n * 960))
            if n % 100 == 0:
                await trio.sleep(0.04)  # 100 chunks (4 s of audio) per 40 ms
        flooded = trio.current_time()
        await p.audio.send(m.TurnInterrupted(turn_id=1))  # the rest is reported at the end
        await trio.sleep(1)
        reports = [x for x in p.drain() if isinstance(x, m.Dropped)]
    assert 1 < len(reports) < 10
    assert {r.what for r in reports} == {"model audio (jitter buffer full)"}
    played = int((flooded - 0.15) / 0.04) + 1  # chunks played while it came (after the target)
    kept = PLAYOUT_BUFFER_BYTES // len(chunk)
    assert abs(sum(r.count for r in reports) - (chunks - kept - played)) <= 2


# --- on the clock: the same playing, no task of playout's per frame ------------------------


async def script(p: Player) -> None:
    """A conversation's playout: a turn that runs dry once, a turn interrupted midway, a
    turn played to its end."""
    await p.audio.send(model_audio(1, audio(200, 1)))
    await trio.sleep(0.3)  # played, then dry: an underrun
    await p.audio.send(model_audio(1, audio(100, 1), offset=4800))
    await p.audio.send(m.TurnCompleted(turn_id=1))
    await trio.sleep(0.05)
    await p.audio.send(model_audio(2, audio(1000, 2)))
    await trio.sleep(0.5)
    await p.audio.send(m.TurnInterrupted(turn_id=2))
    await p.audio.send(model_audio(3, audio(300, 3)))
    await p.audio.send(m.GenerationCompleted(turn_id=3))
    await trio.sleep(1)


async def test_the_clock_and_the_task_play_the_same_frames_at_the_same_times(
    autojump_clock: MockClock,
) -> None:
    played: dict[str, tuple[list[bytes], list[float], list[m.InternalMessage]]] = {}
    for name, sink in (("clock", CollectorSink()), ("task", TaskSink())):
        async with player(PlayoutOptions(target_ms=100, low_water_ms=40), sink=sink) as p:
            start = trio.current_time()
            await script(p)
        played[name] = (sink.chunks, [t - start for t in sink.times], p.drain())
    assert played["clock"][0] == played["task"][0]
    assert played["clock"][1] == pytest.approx(played["task"][1])
    assert played["clock"][2] == played["task"][2]
    chunks, times, events = played["clock"]
    kinds = [type(x).__name__ for x in events if not isinstance(x, m.PlayoutProgress)]
    assert kinds == ["PlayoutUnderrun", "PlayoutFinished", "PlayoutFinished", "PlayoutFinished"]
    assert [x for x in events if isinstance(x, m.PlayoutFinished)] == [
        m.PlayoutFinished(turn_id=1, samples_played=7200, interrupted=False),
        m.PlayoutFinished(turn_id=2, samples_played=23 * 480, interrupted=True),
        m.PlayoutFinished(turn_id=3, samples_played=7200, interrupted=False),
    ]
    assert chunks.count(audio(20, 2)) == 23  # from 100 ms buffered to 560 ms: flushed
    assert times[:11] == pytest.approx([0.02 * i for i in range(10)] + [0.3])  # dry at 200 ms


async def test_on_the_clock_each_frame_is_a_callback_of_the_shared_timer(
    autojump_clock: MockClock,
) -> None:
    writers: list[str] = []

    class Noting(CollectorSink):
        def write_nowait(self, pcm: bytes) -> None:
            writers.append(trio.lowlevel.current_task().name)
            super().write_nowait(pcm)

    sink = Noting()
    async with player(sink=sink) as p:
        await p.audio.send(model_audio(1, audio(400)))
        await p.audio.send(m.TurnCompleted(turn_id=1))
        await trio.sleep(1)
    assert set(writers) == {"shared pacer"}  # no task of playout's wakes per frame
    assert len(sink.chunks) == 20
    assert np.diff(sink.times) == pytest.approx([0.02] * 19)


async def test_stopping_plays_no_more_frames(
    sink: CollectorSink, autojump_clock: MockClock
) -> None:
    stopping = trio.Event()
    async with player(sink=sink, stopping=stopping) as p:
        await p.audio.send(model_audio(1, audio(2000)))
        await trio.sleep(0.5)
        stopped_at = trio.current_time()
        stopping.set()
        await trio.sleep(0.5)
        assert [t for t in sink.times if t > stopped_at] == []


async def test_a_failing_write_on_the_clock_fails_the_actor_with_the_sinks_error(
    autojump_clock: MockClock,
) -> None:
    class Failing(CollectorSink):
        def write_nowait(self, pcm: bytes) -> None:
            if len(self.chunks) == 3:
                raise SinkError("the device went away")
            super().write_nowait(pcm)

    sink = Failing()

    async def play() -> None:
        async with player(sink=sink) as p:
            await p.audio.send(model_audio(1, audio(400)))
            await trio.sleep(1)

    with pytest.raises(BaseExceptionGroup) as raised:  # the test's nursery's group
        await play()
    error = unwrap(raised.value)
    assert isinstance(error, SinkError)
    assert str(error) == "the device went away"
    assert len(sink.chunks) == 3


async def test_a_message_is_taken_in_the_senders_task_while_playout_waits(
    autojump_clock: MockClock,
) -> None:
    wiring: Wiring[m.InternalMessage] = Wiring()
    wiring.add("playout")
    events_send, events_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    sink = CollectorSink()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: playout(
                ActorContext("playout", 1, trio.Event(), lambda: None),
                audio=wiring.receiver("playout"),
                sink=sink,
                events=events_send,
            )
        )
        await trio.testing.wait_all_tasks_blocked()
        async with wiring.sender("playout") as router:
            await deliver(router, model_audio(1, audio(400)))
            await trio.sleep(0.21)
            await deliver(router, m.TurnInterrupted(turn_id=1))
            # Handled in this task, at once: the interruption is already reported.
            finished = events_receive.receive_nowait()
            while not isinstance(finished, m.PlayoutFinished):
                finished = events_receive.receive_nowait()
            assert finished.interrupted
            assert finished.samples_played == 480 * 11  # a frame every 20 ms from 0 to 200 ms
        wiring.close()
