"""Session load: N concurrent voice sessions through our whole pipeline, and through a
minimal client on google-genai's own ``AsyncSession`` (the layer LiveKit's and Pipecat's
Gemini integrations run on), against the emulator in a separate process.

Each level runs in a fresh worker process pinned to one core (the emulator is pinned to
the other), so CPU and memory are the client's alone. Every session streams 16 kHz audio
in real time, 20 ms per message, in a 4 s cycle of 1 s of speech and 3 s of silence, and
gets a spoken 24 kHz reply (paced in real time by the emulator) to each utterance.

- Ours: capture from memory (a source paced in real time, like a microphone), encoder,
  gemini-link over trio-websocket, router, tool executor, playout in real time into a null
  sink, transcriber and metrics on, the supervisor over them; events drained as an
  application would. This is ``Pipeline`` as ``RealtimeModel.session()`` builds it.
- google-genai: per session one task sending ``send_realtime_input(audio=Blob)`` on
  schedule and one iterating ``receive()`` and handing each audio part to a null sink.
  Its only change is the URL: the SDK builds ``wss://`` URLs with TLS, and the emulator
  here speaks plain ``ws://`` to both clients.

Measured in a window that starts one cycle after the last session connected:
- CPU seconds per session-second (the worker's user + system time over the window);
- memory per session (the worker's RSS growth from before the first session);
- send latency: from the moment a 20 ms frame was captured (its due time) to the moment
  its WebSocket message was written to the socket; a frame is *late* past 20 ms;
- receive latency: from the moment a server message with audio was read from the socket
  to the moment its audio reached the playout buffer (ours) or the sink (google-genai).
  Playout then holds audio for its jitter buffer by design (150 ms target); that wait is
  configuration, not cost, and is not counted. Playout underruns are reported instead.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import subprocess
import sys
import time
from array import array
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.emulator_load import CYCLE_SECONDS, FRAME_SECONDS, SCENARIO
from benchmarks.harness import can_pin, cpu_seconds, emulator_process, rss_bytes

MODEL = "models/gemini-2.5-flash-native-audio-preview-12-2025"
AUDIO_PREFIX = b'{"realtimeInput":{"audio"'
LATE_SECONDS = 0.02
FRAMES_PER_CYCLE = int(CYCLE_SECONDS / FRAME_SECONDS)
VOICED_FRAMES = int(1.0 / FRAME_SECONDS)


def _cycle_pcm() -> tuple[bytes, bytes]:
    """One 20 ms frame of a 220 Hz tone (speech to the emulator's VAD) and one of silence."""
    samples = int(16000 * FRAME_SECONDS)
    t = np.arange(samples) / 16000
    voiced = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()
    return voiced, bytes(2 * samples)


VOICED, SILENT = _cycle_pcm()


def frame_at(index: int, offset: int) -> bytes:
    return VOICED if (index + offset) % FRAMES_PER_CYCLE < VOICED_FRAMES else SILENT


@dataclass
class Recorder:
    """What one worker measures, across its sessions, while ``measuring`` is set."""

    measuring: bool = False
    sending: bool = True  # every session streams until the window has closed
    send_latency: array[float] = field(default_factory=lambda: array("d"))
    receive_latency: array[float] = field(default_factory=lambda: array("d"))
    audio_messages_read: int = 0
    audio_messages_delivered: int = 0
    turns_completed: int = 0
    playout_underruns: int = 0
    sessions_failed: int = 0  # never connected
    sessions_lost: int = 0  # ended with an error after connecting
    reconnects: int = 0  # while measuring (ours reconnects; the minimal SDK client cannot)

    def sent(self, latency: float) -> None:
        if self.measuring:
            self.send_latency.append(latency)

    def delivered(self, latency: float) -> None:
        self.audio_messages_delivered += 1
        if self.measuring:
            self.receive_latency.append(latency)


def _percentiles(values: array[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    ms = np.frombuffer(values, dtype=np.float64) * 1000.0
    return {
        "p50": round(float(np.percentile(ms, 50)), 3),
        "p99": round(float(np.percentile(ms, 99)), 3),
        "max": round(float(ms.max()), 3),
    }


@dataclass
class Window:
    """The measured window: CPU of this worker and of the emulator, wall time, memory."""

    emulator_pid: int
    t0: float = 0.0
    cpu0: float = 0.0
    emulator_cpu0: float = 0.0
    t1: float = 0.0
    cpu1: float = 0.0
    emulator_cpu1: float = 0.0
    rss1: int = 0

    def open(self) -> None:
        self.t0, self.cpu0 = time.monotonic(), cpu_seconds(os.getpid())
        self.emulator_cpu0 = cpu_seconds(self.emulator_pid)

    def close(self) -> None:
        self.t1, self.cpu1 = time.monotonic(), cpu_seconds(os.getpid())
        self.emulator_cpu1 = cpu_seconds(self.emulator_pid)
        self.rss1 = rss_bytes(os.getpid())


def _report(
    client: str, sessions: int, recorder: Recorder, window: Window, rss0: int
) -> dict[str, Any]:
    seconds = window.t1 - window.t0
    cpu = window.cpu1 - window.cpu0
    send = recorder.send_latency
    late = sum(1 for latency in send if latency > LATE_SECONDS)
    return {
        "client": client,
        "sessions": sessions,
        "window_seconds": round(seconds, 2),
        "sessions_failed": recorder.sessions_failed,
        "sessions_lost": recorder.sessions_lost,
        "reconnects": recorder.reconnects,
        "core_share": round(cpu / seconds, 3),
        "cpu_us_per_session_second": round(cpu / seconds / sessions * 1e6, 1),
        "rss_kib_per_session": round((window.rss1 - rss0) / 1024 / sessions, 1),
        "frames_sent": len(send),
        "frames_expected": int(sessions * seconds / FRAME_SECONDS),
        "frames_late_share": round(late / max(1, len(send)), 5),
        "send_latency_ms": _percentiles(send),
        "receive_latency_ms": _percentiles(recorder.receive_latency),
        "audio_messages_read": recorder.audio_messages_read,
        "audio_messages_delivered": recorder.audio_messages_delivered,
        "turns_completed": recorder.turns_completed,
        "playout_underruns": recorder.playout_underruns,
        "emulator_core_share": round((window.emulator_cpu1 - window.emulator_cpu0) / seconds, 3),
    }


OURS = "ours"
OURS_TRIO_WEBSOCKET = "ours/trio-websocket"
SDK = "google-genai"
CLIENTS = (OURS, OURS_TRIO_WEBSOCKET, SDK)


def client_name(native: bool) -> str:
    return OURS if native else OURS_TRIO_WEBSOCKET


# --- our pipeline --------------------------------------------------------------------------


def run_ours(
    url: str, sessions: int, duration: float, emulator_pid: int, *, native: bool = True
) -> dict[str, Any]:
    # Imported here: the google-genai worker must not load trio or our pipeline.
    from benchmarks.session_ours import measure_ours

    return measure_ours(url, sessions, duration, emulator_pid, native=native)


# --- google-genai --------------------------------------------------------------------------


def run_sdk(url: str, sessions: int, duration: float, emulator_pid: int) -> dict[str, Any]:
    from google import genai
    from google.genai import types

    recorder = Recorder()
    base = url.split("/ws/", 1)[0]
    client = genai.Client(
        api_key="load-test",
        http_options=types.HttpOptions(base_url=base.replace("ws://", "http://", 1)),
    )
    # The one change: the SDK only builds wss:// URLs (with TLS); the emulator speaks ws://.
    api_client: Any = client._api_client
    api_client._websocket_base_url = lambda http_options=None: base
    api_client._websocket_ssl_ctx = {}
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig(),
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(silence_duration_ms=300)
        ),
    )

    async def session(index: int, connected: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        read: collections.deque[float] = collections.deque()
        offset = (index * 37) % FRAMES_PER_CYCLE
        connection: AbstractAsyncContextManager[Any] = client.aio.live.connect(
            model=MODEL, config=config
        )
        try:
            live = await connection.__aenter__()
        except Exception:
            recorder.sessions_failed += 1
            connected.set()
            return
        connected.set()
        ws = live._ws
        ws_recv = ws.recv

        async def timed_recv(*args: Any, **kwargs: Any) -> Any:
            data = await ws_recv(*args, **kwargs)
            if isinstance(data, bytes) and b'"inlineData"' in data:
                recorder.audio_messages_read += 1
                read.append(loop.time())
            return data

        ws.recv = timed_recv

        async def send() -> None:
            start = loop.time()
            i = 0
            while recorder.sending:
                due = start + i * FRAME_SECONDS
                await asyncio.sleep(max(0.0, due - loop.time()))
                blob = types.Blob(data=frame_at(i, offset), mime_type="audio/pcm;rate=16000")
                await live.send_realtime_input(audio=blob)
                recorder.sent(loop.time() - due)
                i += 1

        async def receive() -> None:
            while True:
                async for message in live.receive():
                    content = message.server_content
                    if content is None:
                        continue
                    if content.model_turn is not None:
                        for part in content.model_turn.parts or ():
                            if part.inline_data is not None and part.inline_data.data:
                                null_sink(part.inline_data.data)
                                recorder.delivered(loop.time() - read.popleft())
                    if content.turn_complete and recorder.measuring:
                        recorder.turns_completed += 1

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(send())
                group.create_task(receive())
        except Exception:  # a closed connection (keepalive timeout, server close...)
            recorder.sessions_lost += 1
        finally:
            await connection.__aexit__(None, None, None)

    def null_sink(pcm: bytes) -> None:
        pass

    async def main() -> dict[str, Any]:
        window = Window(emulator_pid)
        rss0 = rss_bytes(os.getpid())
        tasks = []
        events = []
        for index in range(sessions):  # all connect at once, as ours do
            events.append(asyncio.Event())
            tasks.append(asyncio.create_task(session(index, events[-1])))
        for connected in events:
            await connected.wait()
        await asyncio.sleep(CYCLE_SECONDS)
        recorder.measuring = True
        window.open()
        await asyncio.sleep(duration)
        window.close()
        recorder.measuring = recorder.sending = False
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return _report(SDK, sessions, recorder, window, rss0)

    return asyncio.run(main())


# --- the parent: one emulator and one worker per level --------------------------------------


def run_level(client: str, sessions: int, duration: float) -> dict[str, Any]:
    """One level in fresh processes: the emulator on core 0, the worker on core 1."""
    with emulator_process(SCENARIO, core=0) as emulator:
        command = [sys.executable, "-m", "benchmarks.session_load", "--worker", client]
        command += ["--url", emulator.url, "--sessions", str(sessions)]
        command += ["--duration", str(duration), "--emulator-pid", str(emulator.pid)]
        worker = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        if can_pin():
            os.sched_setaffinity(worker.pid, {1})
        out, _ = worker.communicate(timeout=600)
        if worker.returncode != 0:
            raise RuntimeError(f"the {client} worker at {sessions} sessions failed")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


LEVELS = (10, 50, 100, 200, 300, 400)


TRIO_WEBSOCKET_LEVELS = (10, 50, 100, 200)  # past saturation it adds nothing


def run(*, quick: bool = False, levels: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Every client at every level (trio-websocket up to 200), each in fresh processes."""
    chosen = levels or ((10, 50) if quick else LEVELS)
    duration = 6.0 if quick else 8.0
    rows = []
    for sessions in chosen:
        for client in CLIENTS:
            if client == OURS_TRIO_WEBSOCKET and sessions not in TRIO_WEBSOCKET_LEVELS:
                continue
            rows.append(run_level(client, sessions, duration))
            print_row(rows[-1])
    return rows


HEADER = (
    f"{'client':>13} {'sessions':>8} {'core %':>7} {'µs CPU/sess-s':>14} {'KiB/sess':>9}"
    f" {'sent':>6} {'late':>7} {'send p50/p99 ms':>16} {'recv p50/p99 ms':>16} {'turns':>6}"
    f" {'lost':>5} {'emu core %':>10}"
)


def print_row(row: dict[str, Any]) -> None:
    send, receive = row["send_latency_ms"], row["receive_latency_ms"]
    print(
        f"{row['client']:>13} {row['sessions']:>8} {100 * row['core_share']:>6.1f}%"
        f" {row['cpu_us_per_session_second']:>14.1f} {row['rss_kib_per_session']:>9.1f}"
        f" {100 * row['frames_sent'] / max(1, row['frames_expected']):>5.0f}%"
        f" {100 * row['frames_late_share']:>6.2f}%"
        f" {send['p50']:>7.2f}/{send['p99']:>7.2f} {receive['p50']:>7.2f}/{receive['p99']:>7.2f}"
        f" {row['turns_completed']:>6} {row['sessions_failed'] + row['sessions_lost']:>5}"
        f" {100 * row['emulator_core_share']:>9.1f}%",
        flush=True,
    )


def print_ratios(rows: list[dict[str, Any]]) -> None:
    """Ours against google-genai at each level: CPU per session-second and memory."""
    by_level: dict[int, dict[str, dict[str, Any]]] = collections.defaultdict(dict)
    for row in rows:
        by_level[row["sessions"]][row["client"]] = row
    for sessions, pair in sorted(by_level.items()):
        if SDK in pair:
            sdk = pair[SDK]["cpu_us_per_session_second"]
            ratios = ", ".join(
                f"{name} {pair[name]['cpu_us_per_session_second'] / sdk:.2f}x"
                for name in (OURS, OURS_TRIO_WEBSOCKET)
                if name in pair
            )
            print(f"{sessions:>5} sessions: CPU per session against google-genai's: {ratios}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.session_load")
    parser.add_argument("--worker", choices=CLIENTS)
    parser.add_argument("--url")
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--emulator-pid", type=int, default=0)
    parser.add_argument("--levels", type=int, nargs="*")
    args = parser.parse_args()
    if args.worker is not None:
        if args.worker == SDK:
            result = run_sdk(args.url, args.sessions, args.duration, args.emulator_pid)
        else:
            native = args.worker == OURS
            result = run_ours(
                args.url, args.sessions, args.duration, args.emulator_pid, native=native
            )
        print(json.dumps(result))
        return 0
    print(HEADER)
    rows = run(levels=args.levels)
    print_ratios(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
