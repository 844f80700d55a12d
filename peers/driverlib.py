"""What the peer drivers share: arguments, the event log, a paced microphone, speech.

Imported by ``peers/livekit/driver.py`` and ``peers/pipecat/driver.py``, each run by its
own peer venv's python (stdlib and numpy only here: both venvs have numpy). Nothing in
this file knows a peer's API.

The drivers' other mode, ``--load N --url ws://...`` (the session-load benchmark's
worker), is in ``peers/loadlib.py``.

Output contract: one JSON object per line on stdout, ``{"event": KIND, "run": N, ...}``;
each run ends with ``{"event": "summary", "ok": ..., ...}``. The process exits 0 when
every run passed, else 1 with one stderr line ``driver failed: run N (MODE): REASON`` per
failed run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import ssl
import sys
import threading
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MODES = ("conversation", "barge-in", "goaway", "greeting", "slow-tool")

# What the simulated user says. Word lengths and pauses are speech-like: a short pause
# between words and a longer one between the two phrases (0.25 s, well inside one
# utterance for any end-of-speech silence of 0.5 s).
QUESTION = ("what is the weather", "like in paris today")
THANKS = ("thank you", "that is all")
BARGE_IN = ("stop please",)
TOOL_NAME = "get_weather"
TOOL_RESULT = {"city": "Paris", "temperature_c": 21, "sky": "sunny"}
SLOW_TOOL_S = 2.0  # how long the tool takes in mode slow-tool (real seconds)


class DriverError(Exception):
    """The conversation did not go as the mode requires; the message says why."""


@dataclass(frozen=True)
class RunSpec:
    """One conversation: where, how, with which model and microphone rate."""

    base_url: str
    ca_file: str
    mode: str
    model: str
    rate: int


@dataclass(frozen=True)
class Options:
    runs: tuple[RunSpec, ...]
    speed: float
    timeout: float


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description="Drive a peer's Gemini Live client headless against a Gemini Live server.",
        epilog="--run may be repeated (and replaces the positional arguments): the runs "
        "share one process and go on concurrently, each with its own session.",
    )
    parser.add_argument("base_url", nargs="?", help="the server's https:// base URL")
    parser.add_argument("ca_file", nargs="?", help="PEM file of the CA that signed its cert")
    parser.add_argument("mode", nargs="?", choices=MODES)
    parser.add_argument("model", nargs="?", help="model name, without models/")
    parser.add_argument("rate", nargs="?", type=int, help="microphone sample rate, Hz")
    parser.add_argument(
        "--run",
        nargs=5,
        action="append",
        default=[],
        metavar=("BASE_URL", "CA_FILE", "MODE", "MODEL", "RATE"),
        help="one more conversation",
    )
    parser.add_argument(
        "--speed", type=float, default=1.0, help="microphone pace: 4 plays 4x real time"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="give up after this (s)")
    args = parser.parse_args(argv)
    raw = list(args.run)
    positional = [args.base_url, args.ca_file, args.mode, args.model, args.rate]
    if any(value is not None for value in positional):
        if any(value is None for value in positional):
            parser.error("give all five of BASE_URL CA_FILE MODE MODEL RATE, or --run")
        raw.insert(0, positional)
    if not raw:
        parser.error("nothing to run: give BASE_URL CA_FILE MODE MODEL RATE or --run")
    runs = []
    for base_url, ca_file, mode, model, rate in raw:
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        runs.append(RunSpec(base_url, ca_file, mode, model, int(rate)))
    return Options(tuple(runs), args.speed, args.timeout)


def ssl_context(ca_file: str) -> ssl.SSLContext:
    """A client context that trusts the emulator's throwaway CA (and nothing else)."""
    return ssl.create_default_context(cafile=ca_file)


class EventLog:
    """Prints one run's events as JSON lines and keeps what its summary needs."""

    def __init__(self, index: int, spec: RunSpec) -> None:
        self.index = index
        self.start = time.monotonic()
        self.summary: dict[str, Any] = {
            "mode": spec.mode,
            "model": spec.model,
            "rate": spec.rate,
            "user_transcripts": [],
            "agent_transcripts": [],
            "tool_calls": [],
            "tool_results": [],
            "replies_audio_bytes": [],
            "interrupted": 0,
            "connections": 0,
            "resumed": 0,
            "errors": [],
        }

    def emit(self, event: str, **fields: Any) -> None:
        record = {
            "event": event,
            "run": self.index,
            "t": round(time.monotonic() - self.start, 3),
            **fields,
        }
        print(json.dumps(record), flush=True)

    def user(self, text: str) -> None:
        self.summary["user_transcripts"].append(text)
        self.emit("user_transcript", text=text)

    def agent(self, text: str) -> None:
        self.summary["agent_transcripts"].append(text)
        self.emit("agent_transcript", text=text)

    def tool_call(self, call_id: str, name: str, args: Any) -> None:
        self.summary["tool_calls"].append({"id": call_id, "name": name, "args": args})
        self.emit("tool_call", id=call_id, name=name, args=args)

    def tool_result(self, call_id: str, output: Any) -> None:
        self.summary["tool_results"].append({"id": call_id, "output": output})
        self.emit("tool_result_sent", id=call_id, output=output)

    def reply_started(self) -> None:
        self.emit("audio_start")

    def reply_audio(self, nbytes: int, chunks: int) -> None:
        self.summary["replies_audio_bytes"].append(nbytes)
        self.emit("audio", bytes=nbytes, chunks=chunks)

    def interrupted(self) -> None:
        self.summary["interrupted"] += 1
        self.emit("interrupted")

    def connected(self, *, resumed: bool) -> None:
        self.summary["connections"] += 1
        self.summary["resumed"] += int(resumed)
        self.emit("connected", index=self.summary["connections"], resumed=resumed)

    def error(self, text: str) -> None:
        self.summary["errors"].append(text)
        self.emit("error", text=text)

    def finish(self, reason: str | None) -> bool:
        """Print the summary line (and the reason on stderr on failure); True if it passed."""
        self.summary["elapsed_s"] = round(time.monotonic() - self.start, 3)
        self.emit("summary", ok=reason is None, reason=reason, **self.summary)
        if reason is not None:
            mode = self.summary["mode"]
            print(f"driver failed: run {self.index} ({mode}): {reason}", file=sys.stderr)
        return reason is None


def speech(phrases: tuple[str, ...], rate: int) -> bytes:
    """A voice-like PCM16 signal at ``rate``: one harmonic burst per word (120-220 Hz under a
    smooth envelope), 0.08 s between words and 0.25 s between phrases. An energy detector
    hears speech; nothing pretends to be words."""
    pieces: list[np.ndarray] = []
    for p, phrase in enumerate(phrases):
        if p:
            pieces.append(np.zeros(int(0.25 * rate)))
        for w, word in enumerate(phrase.split()):
            if w:
                pieces.append(np.zeros(int(0.08 * rate)))
            t = np.arange(int(0.26 * rate)) / rate
            envelope = np.sin(np.pi * np.linspace(0.0, 1.0, t.size)) ** 0.6
            pitch = 120.0 + 100.0 * ((zlib.crc32(word.encode()) & 0xFF) / 255.0)
            phase = 2 * np.pi * pitch * np.cumsum(1.0 + 0.08 * np.sin(2 * np.pi * 3.0 * t)) / rate
            voice = sum(np.sin(k * phase) / k for k in range(1, 6))
            pieces.append(0.25 * envelope * voice)
    signal = np.clip(np.concatenate(pieces), -1.0, 1.0)
    return bytes((signal * 32767.0).astype("<i2").tobytes())


@dataclass
class Microphone:
    """A live microphone: ``frame_ms`` PCM16 frames at ``rate``, forever, paced at ``speed``
    times real time; silence unless an utterance was queued with ``say``."""

    rate: int
    speed: float = 1.0
    frame_ms: int = 20
    _queue: collections.deque[bytes] = field(default_factory=collections.deque)
    _done: dict[int, asyncio.Event] = field(default_factory=dict)
    _said: int = 0
    _spoken: int = 0

    def say(self, pcm: bytes) -> asyncio.Event:
        """Queue an utterance; the event is set once its last frame has been played."""
        frame_bytes = 2 * self.rate * self.frame_ms // 1000
        pad = (-len(pcm)) % frame_bytes
        pcm += bytes(pad)
        for i in range(0, len(pcm), frame_bytes):
            self._queue.append(pcm[i : i + frame_bytes])
        self._said += len(pcm) // frame_bytes
        done = asyncio.Event()
        self._done[self._said] = done
        return done

    async def frames(self) -> AsyncIterator[bytes]:
        silence = bytes(2 * self.rate * self.frame_ms // 1000)
        period = self.frame_ms / 1000 / self.speed
        start = time.monotonic()
        n = 0
        while True:
            if self._queue:
                frame = self._queue.popleft()
                self._spoken += 1
                if (event := self._done.pop(self._spoken, None)) is not None:
                    event.set()
            else:
                frame = silence
            yield frame
            n += 1
            delay = start + n * period - time.monotonic()
            await asyncio.sleep(max(0.0, delay))


Conversation = Callable[[RunSpec, EventLog, float], Awaitable[str | None]]


def run_all(conversation: Conversation, options: Options) -> None:
    """Run every conversation concurrently under the global timeout, print each summary and
    exit: 0 if all passed, 1 if any failed. ``conversation`` returns a failure reason or
    None. A watchdog thread ends the process if even shutdown hangs."""

    def watchdog() -> None:
        time.sleep(options.timeout + 10)
        print("driver failed: hung past the global timeout", file=sys.stderr, flush=True)
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    logs = [EventLog(i, spec) for i, spec in enumerate(options.runs)]

    async def one(spec: RunSpec, log: EventLog) -> bool:
        try:
            reason = await asyncio.wait_for(conversation(spec, log, options.speed), options.timeout)
        except TimeoutError:
            reason = f"timed out after {options.timeout:g} s"
        except DriverError as exc:
            reason = str(exc)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
        return log.finish(reason)

    async def everything() -> list[bool]:
        return await asyncio.gather(
            *(one(s, log) for s, log in zip(options.runs, logs, strict=True))
        )

    try:
        passed = all(asyncio.run(everything()))
    except Exception as exc:
        print(f"driver failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        passed = False
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if passed else 1)  # no lingering client threads or loops keep it alive
