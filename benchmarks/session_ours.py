"""Session load, our side: N sessions of the whole pipeline in one worker, with probes at
its edges (``session_load`` describes what is measured). Imported only by the worker that
measures our pipeline, so the google-genai worker loads neither trio nor the pipeline.

The probes: a source paced like a microphone that notes each frame's due time; a
transport whose connection times each audio message written and notes each audio
message read; a wiring whose playout input times each message's arrival there.
"""

from __future__ import annotations

import collections
import math
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import trio

from actors import endpoint as ep
from actors.pipeline import Pipeline
from actors.playout import NullSink
from actors.realtime import RealtimeModel
from actors.tools import ToolSet
from actors.transport import Connection, NativeTransport, Transport, WebSocketTransport
from benchmarks.emulator_load import CYCLE_SECONDS, FRAME_SECONDS
from benchmarks.harness import rss_bytes
from benchmarks.session_load import (
    AUDIO_PREFIX,
    FRAMES_PER_CYCLE,
    MODEL,
    Recorder,
    Window,
    _report,
    client_name,
    frame_at,
)
from protocol import wire
from runtime import messages as m
from runtime.clock import paced_sleep_until
from runtime.wiring import Wiring


def measure_ours(
    url: str, sessions: int, duration: float, emulator_pid: int, *, native: bool = True
) -> dict[str, Any]:
    """Run ``sessions`` sessions one cycle, then measure them for ``duration`` seconds."""
    recorder = Recorder()
    transport_type = NativeTransport if native else WebSocketTransport
    setup = RealtimeModel(endpoint=url, silence_duration_ms=300).setup(ToolSet())

    async def main() -> dict[str, Any]:
        window = Window(emulator_pid)
        rss0 = rss_bytes(os.getpid())
        async with trio.open_nursery() as nursery:
            async with trio.open_nursery() as starting:
                for index in range(sessions):
                    starting.start_soon(
                        nursery.start, one_session, url, setup, transport_type, recorder, index
                    )
            await trio.sleep(CYCLE_SECONDS)
            recorder.measuring = True
            window.open()
            await trio.sleep(duration)
            window.close()
            recorder.measuring = recorder.sending = False
            nursery.cancel_scope.cancel()
        return _report(client_name(native), sessions, recorder, window, rss0)

    return trio.run(main)


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
        source=MemorySource(recorder, (index * 37) % FRAMES_PER_CYCLE, captured),
        transport=ProbeTransport(recorder, captured, read, transport_type()),
        wiring=ProbeWiring(recorder, read),
    )
    events_send, events_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(pipeline.supervisor(events_send).run)
        except Exception:
            recorder.sessions_failed += 1
            task_status.started()
            return
        task_status.started()
        async for event in events_receive:
            if not recorder.measuring:
                continue
            if isinstance(event, m.TurnCompleted):
                recorder.turns_completed += 1
            elif isinstance(event, m.PlayoutUnderrun):
                recorder.playout_underruns += 1
            elif isinstance(event, m.Reconnecting):
                recorder.reconnects += 1


class MemorySource:
    """Capture from memory: the cycle's frames, each yielded at its due time."""

    name = "load"

    def __init__(self, recorder: Recorder, offset: int, captured: collections.deque[float]) -> None:
        self.recorder, self.offset, self.captured = recorder, offset, captured

    async def frames(self) -> AsyncIterator[m.RawAudio]:
        start = trio.current_time()
        index = 0
        while self.recorder.sending:
            due = start + index * FRAME_SECONDS
            await paced_sleep_until(due)  # as the library's own sources pace
            self.captured.append(due)
            yield m.RawAudio(
                data=frame_at(index, self.offset),
                sample_rate=16000,
                channels=1,
                sample_format="s16",
                timestamp=due,
                source=self.name,
            )
            index += 1


class ProbeConnection:
    """The real connection, timing audio messages as they are written and read."""

    def __init__(
        self,
        recorder: Recorder,
        inner: Connection,
        captured: collections.deque[float],
        read: collections.deque[float],
    ) -> None:
        self.recorder, self.inner, self.captured, self.read = recorder, inner, captured, read

    async def send(self, frame: bytes) -> None:
        await self.inner.send(frame)
        if frame.startswith(AUDIO_PREFIX):
            self.recorder.sent(trio.current_time() - self.captured.popleft())

    async def receive(self) -> bytes | str:
        frame = await self.inner.receive()
        if isinstance(frame, bytes) and b'"inlineData"' in frame:
            self.recorder.audio_messages_read += 1
            self.read.append(trio.current_time())
        return frame

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        await self.inner.aclose(code, reason)


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


class ProbeReceiver:
    """The playout actor's input channel, timing each audio message's arrival."""

    def __init__(
        self,
        recorder: Recorder,
        inner: trio.MemoryReceiveChannel[m.InternalMessage],
        read: collections.deque[float],
    ) -> None:
        self.recorder, self.inner, self.read = recorder, inner, read

    async def __aenter__(self) -> ProbeReceiver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.inner.aclose()

    def receive_nowait(self) -> m.InternalMessage:
        return self._seen(self.inner.receive_nowait())

    async def receive(self) -> m.InternalMessage:
        return self._seen(await self.inner.receive())

    def _seen(self, message: m.InternalMessage) -> m.InternalMessage:
        if isinstance(message, m.ModelAudio) and self.read:
            self.recorder.delivered(trio.current_time() - self.read.popleft())
        return message


class ProbeWiring(Wiring[m.InternalMessage]):
    def __init__(self, recorder: Recorder, read: collections.deque[float]) -> None:
        super().__init__()
        self.recorder, self.read = recorder, read

    def receiver(self, name: str) -> trio.MemoryReceiveChannel[m.InternalMessage]:
        inner = super().receiver(name)
        if name != "playout":
            return inner
        probe = ProbeReceiver(self.recorder, inner, self.read)
        return cast("trio.MemoryReceiveChannel[m.InternalMessage]", probe)
