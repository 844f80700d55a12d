"""`make soak`: many voice sessions for minutes against one emulator, with faults at random.

Sessions run through the public facade (``RealtimeModel.session``) over real loopback
sockets, ``concurrency`` at a time, one after another until the time is up. Each session
streams audio (quiet, numbered chunks: the VAD stays silent, and every chunk on the wire
says which one it is) and asks ``turns`` typed questions, each answered after a tool call.

Faults, all at random (seeded):
- server faults, injected into the running emulator's fault plan at random moments; the
  next connection that reaches the trigger gets them: 1011 closes mid-reply and with a
  tool call pending, TCP drops, goAway at a turn end, malformed frames, slow replies. At
  most ``max_pending_faults`` wait to fire at once: unbounded, they queued up and fired
  back to back on one session's successive connections, a server that cuts every
  reconnect before a turn can finish, which the client rightly gives up on
  (``ReconnectGaveUp`` after 8 in a row) and which is not what the soak is about;
- tool timeouts: a call hangs past its tool's timeout (the model must get an error);
- actor crashes: the sink fails (the playout actor crashes and is restarted) or the link
  crashes on a receive (the link actor is restarted and resumes the session).

Invariants, checked on every session (a broken one is a violation):
- no queued audio lost: every chunk pushed is written to a socket once, in order;
- every tool call answered exactly once, and run exactly once;
- every turn completed (a turn lost with its connection is asked again), the history in
  turn order;
and for the whole run: no leaked tasks or sockets, no connection left open, flat memory.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import trio
import trio.lowlevel

from actors.events import ResponseContent
from actors.realtime import RealtimeModel
from actors.tools import tool
from actors.transport import Connection, NativeTransport, Transport
from benchmarks.harness import WatchedConnection, rss_bytes
from emulator import Behaviour, Emulator, Reply, Scenario, ToolCallSpec, Turn, open_emulator
from emulator.faults import Fault, parse_fault
from protocol import decode_client
from protocol import wire as w
from runtime import messages as m
from runtime.clock import shared_pacer

AUDIO_PREFIX = b'{"realtimeInput":{"audio"'
TOOL_PREFIX = b'{"toolResponse"'
TOOL_TIMEOUT = 1.0
SERVER_FAULTS = {
    "1011 mid-reply": "close:code=1011,at=mid-reply",
    "1011 tool pending": "close:code=1011,at=tool-pending",
    "TCP drop": "drop:at=mid-reply",
    "goAway": "goaway:at=turn-end,time_left=2",
    "malformed frame": "malformed:at=mid-reply",
    "slow replies": "slow:factor=3",
}
TURN_TIMEOUT = 90.0


@dataclass(frozen=True)
class SoakConfig:
    seconds: float = 180.0
    concurrency: int = 16
    turns: int = 4
    fault_interval: float = 1.0  # mean seconds between server faults
    crash_probability: float = 0.3  # per session: one actor crash (playout or link)
    tool_timeout_probability: float = 0.1  # per tool call
    max_pending_faults: int = 0  # server faults waiting to fire at once; 0: concurrency / 4
    seed: int = 1
    check_process: bool = True  # sockets and memory (off on a virtual clock in memory)


@dataclass
class SoakReport:
    sessions: int = 0
    turns: int = 0
    tool_calls: int = 0
    audio_chunks: int = 0
    audio_inline: int = 0  # of those, written by the link's inline send (no task step)
    faults_injected: Counter[str] = field(default_factory=Counter)
    faults_fired: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    actor_restarts: int = 0
    sessions_hit: int = 0  # sessions that met at least one fault or crash
    recovered: int = 0  # of those, sessions that still kept every invariant
    crashes: Counter[str] = field(default_factory=Counter)  # actor: error, injected or not
    violations: list[str] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    tasks: tuple[int, int] = (0, 0)  # before, after
    sockets: tuple[int, int] = (0, 0)
    wall_seconds: float = 0.0


# --- instrumented edges: the transport and the sink ------------------------------------------


@dataclass
class Wire:
    """What one session wrote: the audio chunk numbers in order, and tool answers."""

    audio: list[int] = field(default_factory=list)
    answered: Counter[str] = field(default_factory=Counter)
    inline: int = 0  # audio chunks written whole by ``send_nowait``
    receives: int = 0
    crash_at_receive: int | None = None  # the link actor crashes on this receive, once


def _chunk_number(frame: bytes) -> int:
    start = frame.index(b'"data":"') + 8
    first = base64.b64decode(frame[start : start + 4])
    return int.from_bytes(first[:2], "little", signed=True)


class RecordingConnection(WatchedConnection):
    """The real connection, recording what was written whole; like it, a
    ``DirectConnection`` when it writes to a plain socket (the link's inline send path
    then runs under the soak's faults too)."""

    def __init__(self, inner: Connection, wire: Wire) -> None:
        super().__init__(inner)
        self.wire = wire

    def written(self, frame: bytes, *, inline: bool) -> None:
        if frame.startswith(AUDIO_PREFIX):
            self.wire.audio.append(_chunk_number(frame))
            self.wire.inline += inline
        elif frame.startswith(TOOL_PREFIX):
            message = decode_client(frame)
            assert isinstance(message, w.ToolResponse)
            for response in message.function_responses or ():
                self.wire.answered[response.id or ""] += 1

    async def receive(self) -> bytes | str:
        self.wire.receives += 1
        if self.wire.receives == self.wire.crash_at_receive:
            raise RuntimeError("injected crash of the link actor")
        return await self.inner.receive()


@dataclass
class RecordingTransport:
    inner: Transport
    wire: Wire

    @asynccontextmanager
    async def connect(
        self, url: str, headers: Sequence[tuple[str, str]]
    ) -> AsyncIterator[Connection]:
        async with self.inner.connect(url, headers) as conn:
            yield RecordingConnection(conn, self.wire)


@dataclass
class FlakySink:
    """A null sink that fails once, like an audio device that goes away."""

    fail_at_write: int | None = None
    writes: int = 0

    async def write(self, pcm: bytes) -> None:
        self.writes += 1
        if self.writes == self.fail_at_write:
            raise OSError("injected: the audio device went away")

    async def aclose(self) -> None:
        pass


# --- one session ---------------------------------------------------------------------------


def scenario(turns: int, speed: float = 2.0) -> Scenario:
    """Typed questions, each answered after a ``lookup`` tool call, with room for
    ``turns`` asked three times over."""
    return Scenario(
        turns=tuple(
            Turn(
                user=f"question {i}",
                replies=(
                    Reply(tool_calls=(ToolCallSpec(name="lookup", args={"key": f"k{i}"}),)),
                    Reply(say=f"Here is answer number {i}, spoken."),
                ),
            )
            for i in range(turns * 3)  # room for turns asked again
        ),
        behaviour=Behaviour(pace="realtime", speed=speed, first_audio_delay_ms=100),
    )


async def one_session(
    index: int,
    url: str,
    transport: Transport,
    config: SoakConfig,
    report: SoakReport,
) -> None:
    rng = random.Random(config.seed * 1_000_003 + index)
    wire = Wire()
    sink = FlakySink()
    hit: list[str] = []
    if rng.random() < config.crash_probability:
        if rng.random() < 0.5:
            sink.fail_at_write = rng.randint(5, 80)
            hit.append("playout crash")
        else:
            wire.crash_at_receive = rng.randint(5, 60)
            hit.append("link crash")
    runs = 0

    @tool(timeout=TOOL_TIMEOUT)
    async def lookup(key: str) -> str:
        """Look a key up."""
        nonlocal runs
        runs += 1
        if rng.random() < config.tool_timeout_probability:
            hit.append("tool timeout")
            await trio.sleep(3 * TOOL_TIMEOUT)
        await trio.sleep(0.05)
        return f"value of {key}"

    problems: list[str] = []
    model = RealtimeModel(endpoint=url, transport=RecordingTransport(transport, wire))
    pushed = 0
    async with model.session(tools=[lookup], sink=sink) as live, trio.open_nursery() as nursery:
        streaming = True

        async def stream_audio() -> None:
            nonlocal pushed
            next_at = trio.current_time()
            while streaming:
                # Quiet (the VAD stays silent), and each chunk carries its number.
                live.push_audio(np.full(320, pushed % 100, dtype=np.int16))
                pushed += 1
                next_at += 0.02
                await trio.sleep_until(next_at)

        nursery.start_soon(stream_audio)
        seen: list[m.InternalMessage | ResponseContent] = []
        completed = attempts = 0
        # A turn lost with its connection is asked again. Dense fault storms (the short
        # soak's) can cut ten tries in a row now that a malformed frame ends its
        # connection (the server's fault: closed and resumed) instead of being skipped.
        while completed < config.turns and attempts < 8 * config.turns + 8:
            attempts += 1
            live.send_text(f"question {completed} of session {index}")
            with trio.move_on_after(TURN_TIMEOUT) as waited:
                async for event in live.events():
                    seen.append(event)
                    if (
                        isinstance(event, m.TranscriptCompleted)
                        and event.role == "agent"
                        and not event.interrupted  # a cut reply is not an answer
                    ):
                        completed += 1
                        break
                    if isinstance(event, m.TurnCompleted) and event.reason == "CONNECTION_LOST":
                        break
            if waited.cancelled_caught:
                quiet = (
                    m.PlayoutProgress | m.ModelAudio | m.TranscriptFragment | m.TranscriptUpdated
                )
                tail = ", ".join(type(e).__name__ for e in seen[-40:] if not isinstance(e, quiet))
                problems.append(
                    f"a turn did not finish in {TURN_TIMEOUT:g} s (faults {hit}; last: {tail})"
                )
                break
        streaming = False
        with trio.move_on_after(15) as flushing:  # every pushed chunk reaches the socket
            while len(wire.audio) < pushed:  # noqa: ASYNC110  # a count the transport moves
                await trio.sleep(0.05)
        if flushing.cancelled_caught:
            problems.append(f"audio: {len(wire.audio)} of {pushed} chunks written")
        history = live.chat_ctx_copy()

    problems += session_problems(seen, wire, runs, completed, config.turns, pushed, history)
    record(report, index, seen, wire, completed, hit, problems)


def session_problems(
    seen: list[m.InternalMessage | ResponseContent],
    wire: Wire,
    runs: int,
    completed: int,
    turns: int,
    pushed: int,
    history: Sequence[m.ChatTurn],
) -> list[str]:
    """The per-session invariants a finished session broke (none: an empty list)."""
    problems: list[str] = []
    calls = [e.call_id for e in seen if isinstance(e, m.ToolCallRequested)]
    cancelled = {c for e in seen if isinstance(e, m.ToolCallsCancelled) for c in e.call_ids}
    wrong = {c: wire.answered[c] for c in calls if wire.answered[c] != (c not in cancelled)}
    if wrong:
        problems.append(f"tool answers not exactly once: {wrong}")
    if runs != len(calls):
        problems.append(f"{len(calls)} tool calls, {runs} runs")
    if completed != turns:
        problems.append(f"{completed} of {turns} turns completed")
    expected = [i % 100 for i in range(pushed)]
    if wire.audio != expected[: len(wire.audio)] or len(wire.audio) != pushed:
        gaps = sum(
            1 for a, b in zip(wire.audio, wire.audio[1:], strict=False) if b != (a + 1) % 100
        )
        problems.append(f"audio: {len(wire.audio)} of {pushed} chunks, {gaps} out of order")
    dropped = [e for e in seen if isinstance(e, m.Dropped) and e.what.startswith("audio")]
    if dropped:
        problems.append(f"audio dropped: {dropped}")
    order = [(int(h.item_id.split("-")[1]), h.role != "user") for h in history]
    if order != sorted(order) or len(order) != len(set(order)):
        problems.append(f"history out of order: {order}")

    return problems


def record(
    report: SoakReport,
    index: int,
    seen: list[m.InternalMessage | ResponseContent],
    wire: Wire,
    completed: int,
    hit: list[str],
    problems: list[str],
) -> None:
    """Add one finished session (its faults, recoveries and violations) to ``report``."""
    calls = [e.call_id for e in seen if isinstance(e, m.ToolCallRequested)]
    reconnects = sum(isinstance(e, m.Reconnected) for e in seen)
    restarts = sum(isinstance(e, m.ActorRestarting) for e in seen)
    report.sessions += 1
    report.turns += completed
    report.tool_calls += len(calls)
    report.audio_chunks += len(wire.audio)
    report.audio_inline += wire.inline
    report.reconnects += reconnects
    report.actor_restarts += restarts
    for event in seen:
        if isinstance(event, m.ActorCrashed):
            report.crashes[f"{event.actor}: {event.error_type}: {event.error[:70]}"] += 1
    if hit or reconnects or restarts:
        report.sessions_hit += 1
        report.recovered += not problems
    for kind in hit:
        report.faults_fired[kind] += 1
        report.faults_injected[kind] += 1
    report.violations += [f"session {index}: {problem}" for problem in problems]


# --- the run ------------------------------------------------------------------------------


def count_tasks() -> int:
    root = trio.lowlevel.current_root_task()
    assert root is not None
    stack = [root]
    count = 0
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


def count_sockets() -> int:
    count = 0
    for entry in os.scandir("/proc/self/fd"):
        with suppress(OSError):
            count += os.readlink(entry.path).startswith("socket:")
    return count


async def run_soak(
    config: SoakConfig,
    transport_for: Callable[[Emulator, trio.Nursery], Transport] | None = None,
    progress: Callable[[SoakReport], None] | None = None,
) -> SoakReport:
    """Run the soak; returns the report (``violations`` empty when all is well)."""
    report = SoakReport()
    rng = random.Random(config.seed)
    started = time.monotonic()
    shared_pacer()  # started before the task count is taken
    async with (
        open_emulator(scenario=scenario(config.turns)) as emu,
        trio.open_nursery() as background,
    ):
        transport = transport_for(emu, background) if transport_for else NativeTransport()

        injected: list[tuple[str, Fault]] = []

        pending_at_most = config.max_pending_faults or max(1, config.concurrency // 4)

        async def inject() -> None:
            while True:
                await trio.sleep(rng.expovariate(1 / config.fault_interval))
                if sum(not fault.fired for _, fault in injected) >= pending_at_most:
                    continue  # no storm: wait until one has fired
                kind = rng.choice(sorted(SERVER_FAULTS))
                spec = SERVER_FAULTS[kind]
                if kind == "slow replies":
                    spec += f",connection={emu.connections + 1}"
                fault = parse_fault(spec)
                emu.faults.faults.append(fault)
                injected.append((kind, fault))
                report.faults_injected[kind] += 1

        await trio.lowlevel.checkpoint()
        gc.collect()
        tasks_before, sockets_before = count_tasks(), count_sockets()
        background.start_soon(inject)
        deadline = trio.current_time() + config.seconds
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while trio.current_time() < deadline:
                index, next_index = next_index, next_index + 1
                await one_session(index, emu.url, transport, config, report)
                if config.check_process and report.sessions % config.concurrency == 0:
                    gc.collect()
                    report.rss_mib.append(round(rss_bytes(os.getpid()) / 2**20, 1))
                if progress is not None:
                    progress(report)

        async with trio.open_nursery() as workers:
            for _ in range(config.concurrency):
                workers.start_soon(worker)
        background.cancel_scope.cancel()
        with trio.move_on_after(10) as idle:
            await emu.wait_until_idle()
        if idle.cancelled_caught:
            report.violations.append(f"{emu.active_connections} connections left open")
        for kind, fault in injected:
            if fault.fired:
                report.faults_fired[kind] += 1
    await trio.lowlevel.checkpoint()
    gc.collect()
    report.tasks = (tasks_before, count_tasks())
    if report.tasks[1] > report.tasks[0]:
        report.violations.append(f"tasks: {report.tasks[0]} before, {report.tasks[1]} after")
    if config.check_process:
        report.sockets = (sockets_before, count_sockets())
        if report.sockets[1] > report.sockets[0] - 1:  # the emulator's listener is gone too
            report.violations.append(
                f"sockets: {report.sockets[0]} before, {report.sockets[1]} after"
            )
        growth = _memory_growth(report.rss_mib)
        if growth is not None and growth > 16.0:
            report.violations.append(f"memory grew {growth:.1f} MiB after warming up")
    report.wall_seconds = round(time.monotonic() - started, 1)
    return report


def _memory_growth(samples: list[float]) -> float | None:
    """MiB from the second quarter of the run to the last (the first is warm-up)."""
    if len(samples) < 8:
        return None
    quarter = len(samples) // 4
    return statistics.median(samples[-quarter:]) - statistics.median(samples[quarter : 2 * quarter])


def print_report(report: SoakReport) -> None:
    print(f"sessions run        {report.sessions} ({report.wall_seconds:g} s)")
    print(f"turns completed     {report.turns}")
    print(f"tool calls          {report.tool_calls}")
    print(f"audio chunks        {report.audio_chunks} ({report.audio_inline} written inline)")
    print("faults              injected  fired")
    for kind in sorted(set(report.faults_injected) | set(report.faults_fired)):
        print(f"  {kind:<18}{report.faults_injected[kind]:>8} {report.faults_fired[kind]:>6}")
    print(f"reconnects          {report.reconnects}")
    print(f"actor restarts      {report.actor_restarts}")
    print(f"sessions hit        {report.sessions_hit}, recovered {report.recovered}")
    print("actor crashes")
    for crash, count in report.crashes.most_common():
        print(f"  {count:>5}  {crash}")
    print(f"tasks before/after  {report.tasks[0]}/{report.tasks[1]}")
    if report.sockets != (0, 0):
        print(f"sockets before/after {report.sockets[0]}/{report.sockets[1]}")
    if report.rss_mib:
        growth = _memory_growth(report.rss_mib)
        print(
            f"memory (MiB)        first {report.rss_mib[0]}, last {report.rss_mib[-1]}, "
            f"growth after warm-up {'n/a' if growth is None else f'{growth:.1f}'}"
        )
    print(f"violations          {len(report.violations)}")
    for violation in report.violations[:20]:
        print(f"  {violation}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak")
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    args = parser.parse_args()
    config = SoakConfig(
        seconds=args.minutes * 60, concurrency=args.concurrency, turns=args.turns, seed=args.seed
    )
    print(
        f"soak: {args.minutes:g} min, {config.concurrency} sessions at a time, "
        f"{config.turns} turns each, seed {config.seed}",
        flush=True,
    )

    def progress(report: SoakReport) -> None:
        if report.sessions % 20 == 0:
            print(
                f"  {report.sessions} sessions, {report.reconnects} reconnects, "
                f"{report.actor_restarts} restarts, {len(report.violations)} violations",
                flush=True,
            )

    report = trio.run(run_soak, config, None, progress)
    print_report(report)
    results = Path(__file__).with_name("results.json")
    stored: dict[str, Any] = json.loads(results.read_text()) if results.exists() else {}
    summary = asdict(report)
    summary["faults_injected"] = dict(report.faults_injected)  # asdict garbles Counters
    summary["faults_fired"] = dict(report.faults_fired)
    summary["crashes"] = dict(report.crashes)
    summary["violations"] = report.violations[:50]
    summary["config"] = asdict(config)
    summary["command"] = "make soak"
    stored["soak"] = summary
    results.write_text(json.dumps(stored, indent=2) + "\n")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
