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
from trio.testing import MockClock

from actors.limits import PLAYOUT_BUFFER_BYTES
from actors.playout import CollectorSink, JitterBuffer, PlayoutOptions, WavSink, playout
from runtime import messages as m
from runtime.supervisor import ActorContext

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


@asynccontextmanager
async def player(options: PlayoutOptions | None = None) -> AsyncIterator[Player]:
    options = options or PlayoutOptions()
    audio_send, audio_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    events_send, events_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    sink = CollectorSink()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: playout(
                ActorContext("playout", 1, trio.Event(), lambda: None),
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


async def test_jittered_arrivals_within_the_target_play_smoothly(autojump_clock: MockClock) -> None:
    # 40 ms chunks, each arriving up to 100 ms after its nominal time, in bursts as the
    # delays bunch up: a 150 ms target absorbs all of it.
    delays = np.random.default_rng(7).uniform(0, 0.1, size=50)
    arrivals = sorted((0.04 * i + float(delay), i) for i, delay in enumerate(delays))
    async with player(PlayoutOptions(target_ms=150)) as p:
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


async def test_slower_than_real_time_input_underruns_and_says_so(autojump_clock: MockClock) -> None:
    async with player(PlayoutOptions(target_ms=40, low_water_ms=40)) as p:
        for _ in range(5):  # 40 ms of audio every 100 ms
            await p.audio.send(model_audio(1, audio(40)))
            await trio.sleep(0.1)
        await p.audio.send(m.TurnCompleted(turn_id=1))
    underruns = [x for x in p.drain() if isinstance(x, m.PlayoutUnderrun)]
    assert len(underruns) == 5  # dry after each chunk, the last before TurnCompleted came
    assert underruns[-1].total_underruns == 5


async def test_interruption_flushes_within_one_frame(autojump_clock: MockClock) -> None:
    async with player() as p:
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


async def test_progress_is_reported_per_turn(autojump_clock: MockClock) -> None:
    async with player(PlayoutOptions(progress_every_ms=100)) as p:
        await p.audio.send(model_audio(1, audio(500)))
        await p.audio.send(m.GenerationCompleted(turn_id=1))
        await trio.sleep(1)
    progress = [x.samples_played for x in p.drain() if isinstance(x, m.PlayoutProgress)]
    assert progress == [480, 2400, 4800, 7200, 9600, 12000]  # the first frame, then every 100 ms


async def test_audio_at_another_rate_is_reported_not_played(autojump_clock: MockClock) -> None:
    async with player() as p:
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
    autojump_clock: MockClock,
) -> None:
    # Five minutes of audio in three seconds: the buffer keeps what it may hold (two
    # minutes), drops the rest, and says so a few times, not once per chunk.
    chunk = audio(40)
    chunks = 5 * 60 * 25
    async with player() as p:
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
