"""Load mode of the session-load benchmark (``benchmarks/session_load.py``): what every
worker shares, whatever client it drives.

A worker holds N sessions with one emulator, each streaming 16 kHz audio in real time (a
4 s cycle of 1 s of a 220 Hz tone, which the emulator's VAD hears as speech, and 3 s of
silence), and drains the spoken replies into a null sink. It measures itself over a
window the parent gives it, and prints one JSON report.

Used by the asyncio workers (``peers/livekit/driver.py --load``, ``peers/pipecat/driver.py
--load``, each with its own venv's python, and ``benchmarks/session_sdk.py``) through
``main``, and by the trio worker (``benchmarks/session_ours.py``) for the recorder, the
window, the handshake and the report, so every variant is measured by the same code.
Stdlib and numpy only (every venv has numpy); google-genai is imported only by
``patch_genai``.

The handshake with the parent, one JSON line each way:
  worker -> stdout: ``{"event": "connected", "connected": N, "failed": K}`` once every
    session has connected or failed (its audio is already streaming);
  parent -> stdin:  ``{"start": EPOCH, "end": EPOCH}``, the window in ``time.time()``;
  worker -> stdout: the report (``{"event": "report", ...}``) right after the window; then
    it exits at once (``os._exit``: teardown is not measured, and some clients' is slow).

Send latency: from the due time of the microphone frame that completed a message's audio
(a client sending 50 ms chunks of 20 ms frames can send a chunk only once its third frame
is in) to the moment that WebSocket message was written. Receive latency: from the moment
a server message with audio was read from the socket to the moment its audio reached the
client's sink (or, ours, its playout buffer).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextvars
import json
import math
import os
import sys
import time
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RATE = 16000
FRAME_SECONDS = 0.02
FRAME_SAMPLES = int(RATE * FRAME_SECONDS)
CYCLE_SECONDS = 4.0
FRAMES_PER_CYCLE = int(CYCLE_SECONDS / FRAME_SECONDS)
VOICED_FRAMES = int(1.0 / FRAME_SECONDS)
LATE_SECONDS = 0.02
SILENCE_DURATION_MS = 300  # every client asks the emulator's VAD for the same end of speech
MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
# How google-genai (every version the peers use) writes an audio realtimeInput message.
GENAI_AUDIO_PREFIX = '{"realtime_input": {"audio": {"data": "'
ERRORS_KEPT = 5


def _cycle_pcm() -> tuple[bytes, bytes]:
    t = np.arange(FRAME_SAMPLES) / RATE
    voiced = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()
    return voiced, bytes(2 * FRAME_SAMPLES)


VOICED, SILENT = _cycle_pcm()


def offset_of(session: int) -> int:
    """Where in the speech/silence cycle a session starts: turns are not synchronised."""
    return (session * 37) % FRAMES_PER_CYCLE


def frame_at(index: int, offset: int) -> bytes:
    """The session's ``index``-th 20 ms frame: speech for 1 s of every 4."""
    return VOICED if (index + offset) % FRAMES_PER_CYCLE < VOICED_FRAMES else SILENT


# --- measurement --------------------------------------------------------------------------


@dataclass
class Recorder:
    """What one worker measures across its sessions; counts only while ``measuring``."""

    measuring: bool = False
    sending: bool = True  # every session streams until the window has closed
    send_latency: array[float] = field(default_factory=lambda: array("d"))
    receive_latency: array[float] = field(default_factory=lambda: array("d"))
    audio_samples_sent: int = 0
    messages_sent: int = 0  # every WebSocket message written, audio or not
    messages_received: int = 0
    audio_messages_read: int = 0
    audio_messages_delivered: int = 0
    turns_completed: int = 0  # turnComplete messages read
    playout_underruns: int = 0
    sessions_failed: int = 0  # never connected
    sessions_lost: int = 0  # ended with an error after connecting
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)

    def sent(self, latency: float, samples: int) -> None:
        if self.measuring:
            self.send_latency.append(latency)
            self.audio_samples_sent += samples
            self.messages_sent += 1

    def sent_other(self) -> None:
        if self.measuring:
            self.messages_sent += 1

    def received(self, data: bytes | str) -> bool:
        """Count one message read; True if it carries audio."""
        audio = isinstance(data, bytes) and b'"inlineData"' in data
        if self.measuring:
            self.messages_received += 1
            if isinstance(data, bytes) and b'"turnComplete"' in data:
                self.turns_completed += 1
            if audio:
                self.audio_messages_read += 1
        return audio

    def delivered(self, latency: float) -> None:
        if self.measuring:
            self.audio_messages_delivered += 1
            self.receive_latency.append(latency)

    def error(self, text: str) -> None:
        if len(self.errors) < ERRORS_KEPT:
            self.errors.append(text[:300])


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class Window:
    """This process over the measured window: wall time, CPU (all threads), memory."""

    rss0: int = field(default_factory=rss_bytes)  # before the first session
    t0: float = 0.0
    cpu0: float = 0.0
    t1: float = 0.0
    cpu1: float = 0.0
    rss1: int = 0

    def open(self) -> None:
        self.t0, self.cpu0 = time.monotonic(), time.process_time()

    def close(self) -> None:
        self.t1, self.cpu1 = time.monotonic(), time.process_time()
        self.rss1 = rss_bytes()


def _percentiles(values: array[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    ms = np.frombuffer(values, dtype=np.float64) * 1000.0
    return {
        "p50": round(float(np.percentile(ms, 50)), 3),
        "p99": round(float(np.percentile(ms, 99)), 3),
        "max": round(float(ms.max()), 3),
    }


def versions(*packages: str) -> dict[str, str]:
    """The installed versions of ``packages`` (as the report names the client measured)."""
    from importlib import metadata

    found = {}
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def report(
    variant: str,
    sessions: int,
    recorder: Recorder,
    window: Window,
    packages: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The worker's report: the same fields, computed the same way, for every variant."""
    seconds = window.t1 - window.t0
    cpu = window.cpu1 - window.cpu0
    send = np.frombuffer(recorder.send_latency, dtype=np.float64)
    audio_messages = len(send)
    session_seconds = sessions * seconds
    return {
        "event": "report",
        "variant": variant,
        "sessions": sessions,
        "window_seconds": round(seconds, 3),
        "sessions_failed": recorder.sessions_failed,
        "sessions_lost": recorder.sessions_lost,
        "reconnects": recorder.reconnects,
        "core_share": round(cpu / seconds, 4),
        "cpu_us_per_session_second": round(cpu / session_seconds * 1e6, 1),
        "rss_kib_per_session": round((window.rss1 - window.rss0) / 1024 / sessions, 1),
        "rss_mib": round(window.rss1 / 2**20, 1),
        "audio_messages_sent": audio_messages,
        # Audio written over audio due: 1.0 when every session kept up in real time.
        "audio_sent_share": round(recorder.audio_samples_sent / (session_seconds * RATE), 4),
        "audio_ms_per_message": round(
            1000 * recorder.audio_samples_sent / RATE / max(1, audio_messages), 1
        ),
        "messages_sent_per_session_second": round(recorder.messages_sent / session_seconds, 2),
        "messages_received_per_session_second": round(
            recorder.messages_received / session_seconds, 2
        ),
        "late_share": round(float((send > LATE_SECONDS).sum()) / max(1, audio_messages), 5),
        "send_latency_ms": _percentiles(recorder.send_latency),
        "receive_latency_ms": _percentiles(recorder.receive_latency),
        "audio_messages_read": recorder.audio_messages_read,
        "audio_messages_delivered": recorder.audio_messages_delivered,
        "turns_completed": recorder.turns_completed,
        "playout_underruns": recorder.playout_underruns,
        "errors": recorder.errors,
        "versions": versions(*packages),
        "python": sys.version.split()[0],
    }


# --- the handshake with the parent --------------------------------------------------------


def announce_connected(connected: int, failed: int) -> None:
    print(json.dumps({"event": "connected", "connected": connected, "failed": failed}), flush=True)


def read_window() -> tuple[float, float]:
    """Block until the parent sends the window; returns (start, end) in ``time.time()``."""
    line = sys.stdin.readline()
    if not line:
        raise SystemExit("load worker: stdin closed before the window was given")
    window = json.loads(line)
    return float(window["start"]), float(window["end"])


def print_report(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)
    sys.stderr.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Load mode: N real-time sessions against one emulator, measured over a "
        "window the parent gives on stdin (see peers/loadlib.py)."
    )
    parser.add_argument("--load", type=int, required=True, metavar="N", help="sessions")
    parser.add_argument("--url", required=True, help="the emulator's ws:// URL")
    parser.add_argument("--model", default=MODEL, help="model name, without models/")
    parser.add_argument(
        "--connect-timeout", type=float, default=60.0, help="seconds for every session to connect"
    )
    return parser.parse_args(argv)


# --- the asyncio side: google-genai's WebSocket, probed -------------------------------------

PROBE: contextvars.ContextVar[SessionProbe | None] = contextvars.ContextVar(
    "load_probe", default=None
)


class SessionProbe:
    """One session's microphone schedule and its WebSocket, timed.

    ``patch_genai`` binds the probe in the connecting task's context (``PROBE``) to the
    connection google-genai opens, and wraps that connection's ``send`` and ``recv``.
    """

    def __init__(self, recorder: Recorder, index: int) -> None:
        self.recorder = recorder
        self.offset = offset_of(index)
        self.start = 0.0  # due time of frame 0 (time.monotonic(), as asyncio's loop time)
        self.samples_sent = 0
        self.read: collections.deque[float] = collections.deque()
        self.connected = asyncio.Event()
        self.connections = 0

    def attach(self, ws: Any) -> None:
        send, recv = ws.send, ws.recv

        async def probed_send(message: Any, *args: Any, **kwargs: Any) -> None:
            await send(message, *args, **kwargs)
            self.on_sent(message)

        async def probed_recv(*args: Any, **kwargs: Any) -> Any:
            data = await recv(*args, **kwargs)
            if self.recorder.received(data):
                self.read.append(time.monotonic())
            return data

        ws.send, ws.recv = probed_send, probed_recv
        self.connections += 1
        if self.connections > 1 and self.recorder.measuring:
            self.recorder.reconnects += 1
        self.connected.set()

    def on_sent(self, message: Any) -> None:
        if not (isinstance(message, str) and message.startswith(GENAI_AUDIO_PREFIX)):
            self.recorder.sent_other()
            return
        begin = len(GENAI_AUDIO_PREFIX)
        end = message.find('"', begin)
        padding = (message[end - 1] == "=") + (message[end - 2] == "=")
        samples = ((end - begin) * 3 // 4 - padding) // 2
        self.samples_sent += samples
        frame = math.ceil(self.samples_sent / FRAME_SAMPLES) - 1  # the frame that completed it
        due = self.start + frame * FRAME_SECONDS
        self.recorder.sent(time.monotonic() - due, samples)

    def delivered(self) -> None:
        """One audio message reached the sink (call once per audio message read)."""
        if self.read:
            self.recorder.delivered(time.monotonic() - self.read.popleft())

    async def microphone(self) -> AsyncIterator[bytes]:
        """20 ms frames, each yielded at its due time, as a microphone delivers them."""
        loop = asyncio.get_running_loop()
        self.start = loop.time()
        index = 0
        while self.recorder.sending:
            due = self.start + index * FRAME_SECONDS
            await asyncio.sleep(max(0.0, due - loop.time()))
            yield frame_at(index, self.offset)
            index += 1


def patch_genai() -> None:
    """Point google-genai's Live connections at a plain ws:// emulator and probe them.

    The one change to the clients: google-genai always dials ``wss://`` with TLS; the
    emulator here speaks plain ``ws://`` to every variant (ours included), so the URL's
    scheme is rewritten and the SSL argument dropped. Everything else is the client's own.
    """
    from google.genai import live

    original: Any = getattr(live, "ws_connect")  # noqa: B009 (not exported by the module)

    class ProbedConnect:
        def __init__(self, uri: str, **kwargs: Any) -> None:
            kwargs.pop("ssl", None)
            self.inner = original(uri.replace("wss://", "ws://", 1), **kwargs)
            self.probe = PROBE.get()

        async def __aenter__(self) -> Any:
            ws = await self.inner.__aenter__()
            if self.probe is not None:
                self.probe.attach(ws)
            return ws

        async def __aexit__(self, *exc: Any) -> Any:
            return await self.inner.__aexit__(*exc)

    setattr(live, "ws_connect", ProbedConnect)  # noqa: B010 (google-genai's own name)


OpenSession = Callable[[SessionProbe, argparse.Namespace], Awaitable[None]]


def main(
    variant: str,
    open_session: OpenSession,
    argv: list[str] | None = None,
    prepare: Callable[[], None] | None = None,
    packages: tuple[str, ...] = ("google-genai", "websockets"),
) -> None:
    """Run the load mode of an asyncio client and exit. ``open_session(probe, args)``
    connects one session through the client, streams ``probe.microphone()`` into it and
    drains its replies (calling ``probe.delivered()`` per audio message) until cancelled.
    ``prepare`` does the client's one-time work (lazy imports, native libraries) before
    the memory baseline is taken."""
    args = parse_args(argv)
    patch_genai()
    if prepare is not None:
        prepare()
    recorder = Recorder()
    try:
        asyncio.run(_run(variant, open_session, args, recorder, packages))
    except BaseException as exc:
        print(f"load worker failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    os._exit(1)  # _run exits 0 itself once its report is out


async def _run(
    variant: str,
    open_session: OpenSession,
    args: argparse.Namespace,
    recorder: Recorder,
    packages: tuple[str, ...],
) -> None:
    loop = asyncio.get_running_loop()
    window = Window()
    probes = [SessionProbe(recorder, index) for index in range(args.load)]

    async def one(probe: SessionProbe) -> None:
        PROBE.set(probe)  # this task's context: the client's tasks inherit it
        try:
            await open_session(probe, args)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            recorder.error(f"{type(exc).__name__}: {exc}")
            if probe.connected.is_set():
                recorder.sessions_lost += 1

    sessions = [asyncio.create_task(one(probe)) for probe in probes]  # the loop holds weakly
    waits = [asyncio.ensure_future(probe.connected.wait()) for probe in probes]
    await asyncio.wait(waits, timeout=args.connect_timeout)
    for wait in waits:
        wait.cancel()
    connected = sum(probe.connected.is_set() for probe in probes)
    recorder.sessions_failed = args.load - connected
    announce_connected(connected, args.load - connected)
    start, end = await loop.run_in_executor(None, read_window)
    await asyncio.sleep(max(0.0, start - time.time()))
    recorder.measuring = True
    window.open()
    await asyncio.sleep(max(0.0, end - time.time()))
    window.close()
    recorder.measuring = recorder.sending = False
    result = report(variant, args.load, recorder, window, packages)
    result["sessions_running"] = sum(not task.done() for task in sessions)
    print_report(result)
    os._exit(0)  # the sessions are not closed: teardown is not measured, and can be slow
