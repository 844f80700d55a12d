"""Session load, our side: N sessions of the whole pipeline in one worker, with probes at
its edges (``session_load`` describes what is measured), measured and reported by
``peers/loadlib.py`` like every other variant.

``python -m benchmarks.session_ours --load N --url ws://...`` (the parent runs it; the
handshake is in ``peers/loadlib.py``; ``--transport trio-websocket`` for that transport).

The probes: a source paced like a microphone (by the shared clock, as the library's
array and file sources are) that notes each frame's due time; a
transport whose connection times each audio message written and notes each audio
message read; a wiring whose playout input times each audio message as the router
hands it over.
"""

from __future__ import annotations

import argparse
import collections
import gc
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import cast

import trio

import actors
from actors import endpoint as ep
from actors.pipeline import Pipeline
from actors.playout import NullSink
from actors.realtime import RealtimeModel
from actors.tools import ToolSet
from actors.transport import (
    Connection,
    NativeTransport,
    Transport,
    WebSocketTransport,
)
from benchmarks.harness import WatchedConnection
from peers import loadlib
from peers.loadlib import FRAME_SAMPLES, FRAME_SECONDS, Recorder, frame_at, offset_of
from protocol import wire
from runtime import messages as m
from runtime.clock import on_grid, paced_sleep_until
from runtime.wiring import Wiring, deliver, deliver_nowait

AUDIO_PREFIX = b'{"realtimeInput":{"audio"'
MODEL = "models/" + loadlib.MODEL
VARIANTS = {"native": "ours", "trio-websocket": "ours/trio-websocket"}


def variant_name(transport: str, tune_gc: bool) -> str:
    return VARIANTS[transport] + ("/gc" if tune_gc else "")


class StepCounter(trio.abc.Instrument):
    """Counts task steps and run-loop rounds while ``counting`` (the design's cost unit:
    each task step costs a scheduler round trip; independent of how busy the machine is
    as long as the sessions keep up)."""

    def __init__(self) -> None:
        self.counting = False
        self.steps = self.rounds = 0
        self.by_task: collections.Counter[str] = collections.Counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.counting:
            self.steps += 1
            self.by_task[_what_runs(task)] += 1

    def after_io_wait(self, timeout: float) -> None:
        if self.counting:
            self.rounds += 1


def _what_runs(task: trio.lowlevel.Task) -> str:
    """The task's function and what it awaits, outermost first, up to three deep, the
    supervisor's wrappers left out (so an actor is named by its function)."""
    names: list[str] = []
    awaited: object = task.coro
    while awaited is not None and len(names) < 8:
        code = getattr(awaited, "cr_code", None) or getattr(awaited, "ag_code", None)
        if code is not None and code.co_name not in ("_run_child", "_incarnation"):
            names.append(code.co_qualname)
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
    return " > ".join(names[:3])


class GcPauses:
    """The collector's pauses while ``counting``: how many per generation, the longest and
    the total (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.counting = False
        self.counts = [0, 0, 0]
        self.longest = self.total = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self.counting:
            pause = time.perf_counter() - self._started
            self.counts[info["generation"]] += 1
            self.longest = max(self.longest, pause)
            self.total += pause

    def report(self, seconds: float) -> dict[str, object]:
        return {
            "collections_per_second": [round(c / seconds, 2) for c in self.counts],
            "longest_ms": round(self.longest * 1000, 2),
            "ms_per_second": round(self.total * 1000 / seconds, 2),
        }


def measure_ours(
    url: str,
    sessions: int,
    transport: str = "native",
    tune_gc: bool = False,
    count_steps: bool = False,
) -> None:
    """Start ``sessions`` sessions, announce them, measure the window the parent gives,
    print the report and exit (the sessions are not closed: teardown is not measured).
    ``tune_gc``: call ``actors.tune_gc()`` once every session has started, as an
    application holding many sessions would. ``count_steps``: also report trio task steps
    and run-loop rounds per session-second (an instrument: it costs a little CPU), and the
    garbage collector's pauses."""
    recorder = Recorder()
    counter = StepCounter()
    pauses = GcPauses() if count_steps else None
    transport_type = NativeTransport if transport == "native" else WebSocketTransport
    setup = RealtimeModel(endpoint=url, silence_duration_ms=loadlib.SILENCE_DURATION_MS).setup(
        ToolSet()
    )

    async def main() -> None:
        window = loadlib.Window()
        async with trio.open_nursery() as nursery:
            async with trio.open_nursery() as starting:
                for index in range(sessions):
                    starting.start_soon(
                        nursery.start, one_session, url, setup, transport_type, recorder, index
                    )
            failed = recorder.sessions_failed
            if tune_gc:
                actors.tune_gc()
            loadlib.announce_connected(sessions - failed, failed)
            start, end = await trio.to_thread.run_sync(loadlib.read_window)
            await trio.sleep(max(0.0, start - time.time()))
            recorder.measuring = counter.counting = True
            if pauses is not None:
                pauses.counting = True
            window.open()
            await trio.sleep(max(0.0, end - time.time()))
            window.close()
            recorder.measuring = recorder.sending = counter.counting = False
            packages = ("gemini-live-trio", "trio", "trio-websocket", "msgspec")
            name = variant_name(transport, tune_gc)
            result = loadlib.report(name, sessions, recorder, window, packages)
            if count_steps:
                session_seconds = sessions * (window.t1 - window.t0)
                result["task_steps_per_session_second"] = round(counter.steps / session_seconds, 1)
                result["task_steps_by_task"] = {
                    name: round(count / session_seconds, 1)
                    for name, count in counter.by_task.most_common(12)
                }
                result["loop_rounds_per_second"] = round(
                    counter.rounds / (window.t1 - window.t0), 1
                )
                assert pauses is not None
                result["gc"] = pauses.report(window.t1 - window.t0)
            loadlib.print_report(result)
            os._exit(0)

    trio.run(main, instruments=[counter] if count_steps else [])


async def one_session(
    url: str,
    setup: wire.Setup,
    transport_type: type[NativeTransport | WebSocketTransport],
    recorder: Recorder,
    index: int,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """One pipeline, as ``RealtimeModel.session()`` builds it, its events drained as an
    application would."""
    captured: collections.deque[float] = collections.deque()
    read: collections.deque[float] = collections.deque()
    pipeline = Pipeline(
        endpoint=ep.custom(url, MODEL),
        setup=setup,
        sink=NullSink(),
        source=MemorySource(recorder, offset_of(index), captured),
        transport=ProbeTransport(recorder, captured, read, transport_type()),
        wiring=ProbeWiring(recorder, read),
        audio_events=False,  # the application plays nothing itself: the sink does
    )
    events_send, events_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(pipeline.supervisor(events_send).run)
        except Exception as exc:
            recorder.sessions_failed += 1
            recorder.error(f"{type(exc).__name__}: {exc}")
            task_status.started()
            return
        task_status.started()
        async for event in events_receive:
            if not recorder.measuring:
                continue
            if isinstance(event, m.PlayoutUnderrun):
                recorder.playout_underruns += 1
            elif isinstance(event, m.Reconnecting):
                recorder.reconnects += 1


class MemorySource:
    """Capture from memory: the cycle's frames, each due at its time. A ``PacedSource``,
    as the library's array and file sources are: capture hands each frame on from the
    shared clock's callback (``frames()`` is the same stream for a reader that sleeps)."""

    name = "load"

    def __init__(self, recorder: Recorder, offset: int, captured: collections.deque[float]) -> None:
        self.recorder, self.offset, self.captured = recorder, offset, captured

    async def frames(self) -> AsyncIterator[m.RawAudio]:
        for due, frame in self._due(trio.current_time()):
            await paced_sleep_until(due)  # as the library's own sources pace
            yield frame

    def paced_frames(self) -> AsyncIterator[Iterable[tuple[float, m.RawAudio]]]:
        return self._one_batch()

    async def _one_batch(self) -> AsyncIterator[Iterable[tuple[float, m.RawAudio]]]:
        yield self._due(on_grid(trio.current_time()))  # as the library's sources start

    def _due(self, start: float) -> Iterator[tuple[float, m.RawAudio]]:
        """The frames while sending, each with its due time (noted for the send probe,
        which pairs them with the audio messages written, in order)."""
        index = 0
        while self.recorder.sending:
            due = start + index * FRAME_SECONDS
            self.captured.append(due)
            yield (
                due,
                m.RawAudio(
                    data=frame_at(index, self.offset),
                    sample_rate=16000,
                    channels=1,
                    sample_format="s16",
                    timestamp=due,
                    source=self.name,
                ),
            )
            index += 1


class ProbeConnection(WatchedConnection):
    """The real connection, timing audio messages as they are written and read."""

    def __init__(
        self,
        recorder: Recorder,
        inner: Connection,
        captured: collections.deque[float],
        read: collections.deque[float],
    ) -> None:
        super().__init__(inner)
        self.recorder, self.captured, self.read = recorder, captured, read

    def written(self, frame: bytes, *, inline: bool) -> None:
        if frame.startswith(AUDIO_PREFIX):  # one 20 ms frame per message
            self.recorder.sent(trio.current_time() - self.captured.popleft(), FRAME_SAMPLES)
        else:
            self.recorder.sent_other()

    async def receive(self) -> bytes | str:
        frame = await self.inner.receive()
        if self.recorder.received(frame):
            self.read.append(trio.current_time())
        return frame


@dataclass
class ProbeTransport:
    recorder: Recorder
    captured: collections.deque[float]
    read: collections.deque[float]
    inner: Transport = field(default_factory=NativeTransport)

    @asynccontextmanager
    async def connect(
        self, url: str, headers: Sequence[tuple[str, str]]
    ) -> AsyncIterator[Connection]:
        async with self.inner.connect(url, headers) as conn:
            yield ProbeConnection(self.recorder, conn, self.captured, self.read)


class ProbeSender:
    """The router's end of the playout actor's input channel, timing each audio message as
    it is handed over (to playout's inline handler in the same task step, or queued for
    its task while it is busy: then the wait in the queue is not counted). Everything
    else is the real endpoint's, so the inline hand-off works through it."""

    def __init__(
        self,
        recorder: Recorder,
        inner: trio.MemorySendChannel[m.InternalMessage],
        read: collections.deque[float],
    ) -> None:
        self.recorder, self.inner, self.read = recorder, inner, read

    def send_nowait(self, message: m.InternalMessage) -> None:
        deliver_nowait(self.inner, message)
        self._seen(message)

    async def send(self, message: m.InternalMessage) -> None:
        await deliver(self.inner, message)
        self._seen(message)

    def _seen(self, message: m.InternalMessage) -> None:
        if isinstance(message, m.ModelAudio) and self.read:
            self.recorder.delivered(trio.current_time() - self.read.popleft())

    def __getattr__(self, name: str) -> object:  # statistics, close, aclose, clone...
        return getattr(self.inner, name)

    def __enter__(self) -> ProbeSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.close()

    async def __aenter__(self) -> ProbeSender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.inner.aclose()


class ProbeWiring(Wiring[m.InternalMessage]):
    def __init__(self, recorder: Recorder, read: collections.deque[float]) -> None:
        super().__init__()
        self.recorder, self.read = recorder, read

    def sender(self, name: str) -> trio.MemorySendChannel[m.InternalMessage]:
        inner = super().sender(name)
        if name != "playout":
            return inner
        probe = ProbeSender(self.recorder, inner, self.read)
        return cast("trio.MemorySendChannel[m.InternalMessage]", probe)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.session_ours")
    parser.add_argument("--load", type=int, required=True, metavar="N", help="sessions")
    parser.add_argument("--url", required=True, help="the emulator's ws:// URL")
    parser.add_argument("--transport", choices=sorted(VARIANTS), default="native")
    parser.add_argument("--tune-gc", action="store_true", help="actors.tune_gc() once started")
    parser.add_argument(
        "--count-steps",
        action="store_true",
        help="report task steps per session-second and the collector's pauses",
    )
    args = parser.parse_args()
    try:
        measure_ours(args.url, args.load, args.transport, args.tune_gc, args.count_steps)
    except BaseException as exc:
        print(f"load worker failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    os._exit(1)  # measure_ours exits 0 itself once its report is out


if __name__ == "__main__":
    main()
