"""Emulator load: N concurrent real-time audio sessions against one emulator process.

The emulator runs as ``python -m emulator`` pinned to one core; the load generator (this
process, trio + trio-websocket) is pinned to the other. Every session streams 16 kHz
audio in real time, 20 ms per message, in a 4 s cycle of 1 s of speech and 3 s of
silence, so each cycle is a user turn that gets a spoken reply paced in real time.

The generator writes real WebSocket frames (masked, after a real handshake) but
pre-encoded, and counts replies by scanning bytes: through trio-websocket clients it
would itself be the bottleneck long before the emulator. Its own send lateness is
reported, so a run where the generator fell behind is visible as such.

Measured per N: the emulator's CPU (share of its one core, and µs per session-second),
its memory per session, its pacing lag (how late its paced reply chunks went out), how
late the generator's own sends were, and turns completed against turns expected. The
emulator keeps up while its pacing lag stays near zero and its core is not saturated.
"""

from __future__ import annotations

import base64
import heapq
import os
import socket
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import trio

from benchmarks.harness import can_pin, cpu_seconds, emulator_process, rss_bytes
from emulator.reactor import ReadReactor
from protocol import encode
from protocol import wire as w

PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
FRAME_SECONDS = 0.02
CYCLE_SECONDS = 4.0
SCENARIO = {
    "turns": [],
    "default_reply": {"say": "Sure, here is a short spoken answer."},
    "behaviour": {"pace": "realtime", "first_audio_delay_ms": 150, "connection_lifetime_s": 3600},
}
SETUP = encode(
    w.Setup(
        model="models/gemini-2.5-flash-native-audio-preview-12-2025",
        realtime_input_config=w.RealtimeInputConfig(
            automatic_activity_detection=w.AutomaticActivityDetection(silence_duration_ms=300)
        ),
    )
)


def masked_frame(payload: bytes) -> bytes:
    """A final binary frame as a client must write it: masked (with a fixed random key,
    since the generator replays the same frames; the emulator unmasks every one anyway)."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = bytes((0x82, 0x80 | length))
    elif length < 65536:
        header = bytes((0x82, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x82, 0x80 | 127)) + length.to_bytes(8, "big")
    key = int.from_bytes((mask * (length // 4 + 1))[:length], "little")
    body = (int.from_bytes(payload, "little") ^ key).to_bytes(length, "little")
    return header + mask + body


def _cycle_frames() -> list[bytes]:
    """Masked realtimeInput frames for one cycle: 1 s of a 220 Hz tone, then silence."""
    samples = int(16000 * FRAME_SECONDS)
    t = np.arange(samples) / 16000
    voiced = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()
    silent = bytes(2 * samples)
    frames_per_cycle = int(CYCLE_SECONDS / FRAME_SECONDS)
    voiced_frames = int(1.0 / FRAME_SECONDS)
    blob = "audio/pcm;rate=16000"
    speech = masked_frame(encode(w.RealtimeInput(audio=w.Blob(mime_type=blob, data=voiced))))
    quiet = masked_frame(encode(w.RealtimeInput(audio=w.Blob(mime_type=blob, data=silent))))
    return [speech if i < voiced_frames else quiet for i in range(frames_per_cycle)]


@dataclass
class LoadStats:
    send_lateness: list[float] = field(default_factory=list)
    audio_frames_received: int = 0
    turns_completed: int = 0
    sessions_failed: int = 0


async def _open(url: str) -> tuple[trio.SocketStream, bytes]:
    """A raw WebSocket handshake; returns the stream and any bytes read past it."""
    host, _, port = url.removeprefix("ws://").partition(":")
    stream = await trio.open_tcp_stream(host, int(port))
    key = base64.b64encode(os.urandom(16))
    await stream.send_all(
        b"GET " + PATH.encode() + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\n\r\n"
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise OSError("closed during the handshake")
        response += chunk
    head, _, rest = response.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise OSError(f"handshake refused: {head[:40]!r}")
    return stream, rest


@dataclass
class _GeneratedSession:
    """One generated session's socket and schedule (driven by ``_drive``)."""

    stream: trio.SocketStream
    sock: socket.socket
    offset: int  # where in the speech/silence cycle this session starts
    due: float = 0.0
    index: int = 0
    unsent: bytes = b""
    tail: bytes = b""
    failed: bool = False


async def _connect(url: str, offset: int, stats: LoadStats) -> _GeneratedSession | None:
    try:
        stream, seen = await _open(url)
        await stream.send_all(masked_frame(SETUP))
        while b"setupComplete" not in seen:
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise OSError("closed before setupComplete")
            seen += chunk
    except (OSError, trio.BrokenResourceError):
        stats.sessions_failed += 1
        return None
    sock: socket.socket = stream.socket._sock  # type: ignore[attr-defined]
    return _GeneratedSession(stream, sock, offset)


def _on_reply(session: _GeneratedSession, stats: LoadStats, reactor: ReadReactor) -> None:
    """Count replies by scanning bytes: the generator must stay far cheaper than the emulator."""
    try:
        data = session.sock.recv(65536)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if not data:
        session.failed = True
        reactor.remove(session.sock)
        return
    window = session.tail + data  # a marker may straddle two reads
    session.tail = data[-16:]
    stats.audio_frames_received += window.count(b"inlineData") - session.tail.count(b"inlineData")
    stats.turns_completed += window.count(b'"turnComplete"') - session.tail.count(b'"turnComplete"')


async def _drive(
    sessions: list[_GeneratedSession], frames: list[bytes], frame_count: int, stats: LoadStats
) -> None:
    """Send every session's frames on schedule from one task, with direct non-blocking sends.

    A task and a trio sleep per frame per session would make the generator the bottleneck;
    here one wakeup per millisecond sends every frame that is due. Lateness is recorded
    against each frame's exact due time.
    """
    heap = [(s.due, i) for i, s in enumerate(sessions)]
    heapq.heapify(heap)
    while heap:
        now = trio.current_time()
        while heap and heap[0][0] <= now:
            due, i = heapq.heappop(heap)
            session = sessions[i]
            if session.failed:
                continue
            if session.unsent:  # the kernel buffer was full last time: finish that first
                session.unsent = session.unsent[_send_some(session, session.unsent) :]
                if session.unsent:
                    heapq.heappush(heap, (now + 0.001, i))
                    continue
            stats.send_lateness.append(now - due)
            frame = frames[(session.index + session.offset) % len(frames)]
            session.unsent = frame[_send_some(session, frame) :]
            session.index += 1
            session.due = due + FRAME_SECONDS
            if session.index < frame_count:
                heapq.heappush(heap, (session.due, i))
        if heap:
            await trio.sleep_until(max(heap[0][0], now + 0.001))


def _send_some(session: _GeneratedSession, data: bytes) -> int:
    try:
        return session.sock.send(data)
    except BlockingIOError:
        return 0
    except OSError:
        session.failed = True
        return len(data)


def _expected_turns(offset: int, frame_count: int, frames_per_cycle: int) -> int:
    """Utterances whose end (speech, then the 300 ms of silence that ends it) was sent."""
    voiced = int(1.0 / FRAME_SECONDS)
    return sum(
        1 for end in range(1, frame_count - 15) if (end + offset) % frames_per_cycle == voiced
    )


def run_level(
    sessions: int, duration: float, *, server_core: int = 0, client_core: int = 1
) -> dict[str, Any]:
    """One load level against a fresh emulator process; returns its measurements.

    The emulator is pinned to ``server_core`` and this process to ``client_core`` for the
    run (this process's own affinity is restored afterwards); with fewer than two CPUs
    nothing is pinned and the numbers mix both sides.
    """
    own_affinity = os.sched_getaffinity(0)
    try:
        with emulator_process(SCENARIO, server_core) as server:
            if can_pin():
                os.sched_setaffinity(0, {client_core})
            idle_rss = rss_bytes(server.pid)
            stats = LoadStats()
            frames = _cycle_frames()
            measured: dict[str, float] = {}

            frame_count = int(duration / FRAME_SECONDS)
            frames_per_cycle = len(frames)
            offsets = [(i * 37) % frames_per_cycle for i in range(sessions)]  # unsynchronised turns
            expected = sum(_expected_turns(o, frame_count, frames_per_cycle) for o in offsets)

            async def main() -> None:
                reactor = ReadReactor()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(reactor.run)
                    connected: list[_GeneratedSession | None] = [None] * sessions

                    async def connect(i: int) -> None:
                        connected[i] = await _connect(server.url, offsets[i], stats)

                    async with trio.open_nursery() as connecting:
                        for i in range(sessions):
                            connecting.start_soon(connect, i)
                    live = [s for s in connected if s is not None]
                    origin = trio.current_time() + 0.1
                    for i, session in enumerate(live):
                        session.due = origin + FRAME_SECONDS * i / max(1, len(live))
                        reactor.add(
                            session.sock,
                            partial(_on_reply, session, stats, reactor),
                            lambda exc: None,
                        )
                    nursery.start_soon(_drive, live, frames, frame_count, stats)
                    # The window: after the first cycle, until just before sending stops.
                    await trio.sleep_until(origin + CYCLE_SECONDS)
                    measured["cpu0"], measured["t0"] = cpu_seconds(server.pid), trio.current_time()
                    measured["own0"] = cpu_seconds(os.getpid())
                    await trio.sleep_until(origin + duration - 0.5)
                    measured["cpu1"], measured["t1"] = cpu_seconds(server.pid), trio.current_time()
                    measured["own1"] = cpu_seconds(os.getpid())
                    measured["rss"] = rss_bytes(server.pid)
                    await trio.sleep_until(origin + duration + 3.0)  # the last replies finish
                    for session in live:
                        reactor.remove(session.sock)
                        session.sock.close()
                    nursery.cancel_scope.cancel()

            trio.run(main)
    finally:
        os.sched_setaffinity(0, own_affinity)
    server_stats = server.stats()  # written when the emulator exited
    window = measured["t1"] - measured["t0"]
    cpu = measured["cpu1"] - measured["cpu0"]
    lateness = np.asarray(stats.send_lateness) * 1000.0
    return {
        "sessions": sessions,
        "seconds": duration,
        "sessions_failed": stats.sessions_failed,
        "emulator_core_share": round(cpu / window, 3),
        "emulator_cpu_us_per_session_second": round(cpu / window / sessions * 1e6, 1),
        "emulator_rss_kib_per_session": round((measured["rss"] - idle_rss) / 1024 / sessions, 1),
        "emulator_pacing_lag_ms": server_stats["pacing_lag_ms"],
        "emulator_chunks_late_over_20ms_share": round(
            server_stats["chunks_late_over_20ms"] / max(1, server_stats["paced_chunks"]), 5
        ),
        "generator_send_late_ms_p99": round(float(np.percentile(lateness, 99)), 3),
        "generator_core_share": round((measured["own1"] - measured["own0"]) / window, 3),
        "turns_completed": stats.turns_completed,
        "turns_expected": expected,
    }


def run(*, quick: bool = False) -> list[dict[str, Any]]:
    levels = [50, 200] if quick else [100, 200, 250, 300]
    duration = 8.0 if quick else 15.0
    return [run_level(n, duration) for n in levels]


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'sessions':>8} {'core %':>7} {'µs CPU/sess-s':>14} {'KiB/sess':>9}"
        f" {'lag p50/p99/max ms':>20} {'late>20ms':>10} {'turns':>11} {'failed':>7}"
        f" {'gen core %':>10} {'gen late p99':>12}"
    )
    for row in rows:
        lag = row["emulator_pacing_lag_ms"]
        print(
            f"{row['sessions']:>8} {100 * row['emulator_core_share']:>6.1f}%"
            f" {row['emulator_cpu_us_per_session_second']:>14.1f}"
            f" {row['emulator_rss_kib_per_session']:>9.1f}"
            f" {lag['p50']:>6.2f}/{lag['p99']:>6.2f}/{lag['max']:>6.1f}"
            f" {100 * row['emulator_chunks_late_over_20ms_share']:>9.2f}%"
            f" {row['turns_completed']:>5}/{row['turns_expected']:<5} {row['sessions_failed']:>7}"
            f" {100 * row['generator_core_share']:>9.1f}%"
            f" {row['generator_send_late_ms_p99']:>9.2f} ms"
        )
