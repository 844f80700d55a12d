"""Shared by the load benchmarks: an emulator process pinned to a core, /proc readings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from actors.transport import Connection, DirectConnection


@dataclass(frozen=True)
class EmulatorProcess:
    pid: int
    url: str
    stats_file: Path

    def stats(self) -> dict[str, Any]:
        """The emulator's --stats file; complete only after the process has exited."""
        result: dict[str, Any] = json.loads(self.stats_file.read_text())
        return result


def child_environment() -> dict[str, str]:
    """The environment for benchmark processes: bytecode cached (outside the work tree) even
    where PYTHONDONTWRITEBYTECODE is set, so a run does not spend seconds of CPU compiling
    every import of every worker (LiveKit's take about 10 s uncached, 5 s cached)."""
    environment = dict(os.environ)
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    environment.setdefault(
        "PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "gemini-live-trio-bench-pycache")
    )
    return environment


def can_pin() -> bool:
    return len(os.sched_getaffinity(0)) >= 2


@contextmanager
def emulator_process(scenario: dict[str, Any], core: int | None = 0) -> Iterator[EmulatorProcess]:
    """``python -m emulator`` with ``scenario``, pinned to ``core`` when there are two or
    more CPUs (``None``: not pinned). Waits for its ``ready`` line; on exit sends SIGINT
    and waits for it."""
    workdir = Path(tempfile.mkdtemp(prefix="emulator-bench-"))
    scenario_file = workdir / "scenario.json"
    scenario_file.write_text(json.dumps(scenario))
    stats_file = workdir / "stats.json"
    command = [sys.executable, "-m", "emulator", "--scenario", str(scenario_file)]
    command += ["--stats", str(stats_file)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=child_environment())
    try:
        if can_pin() and core is not None:
            os.sched_setaffinity(server.pid, {core})
        assert server.stdout is not None
        url = server.stdout.readline().split()[1]
        yield EmulatorProcess(server.pid, url, stats_file)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
        if server.stdout is not None:
            server.stdout.close()


def pin_process(pid: int, core: int) -> None:
    """Pin every thread of ``pid`` to ``core`` (``sched_setaffinity`` of a pid pins only its
    main thread; threads started later inherit their creator's affinity)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), {core})
        except ProcessLookupError:
            continue  # the thread has ended


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of every CPU so far, from /proc/stat."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def load_average() -> float:
    """The 1-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


class WatchedConnection:
    """A benchmark's probe around the real connection: ``written(frame, inline=...)`` is
    called for each message once it is written whole (by ``send``, by ``send_nowait``,
    inline, or by the ``flush`` of a rest it held). A ``DirectConnection`` exactly when
    the inner connection is one, so the link's inline send runs through the probe."""

    def __init__(self, inner: Connection) -> None:
        self.inner = inner
        self.held: bytes | None = None  # a frame ``send_nowait`` wrote in part
        # (isinstance on a Protocol is slow: once, not per frame)
        self.direct = inner if isinstance(inner, DirectConnection) else None

    def written(self, frame: bytes, *, inline: bool) -> None:
        """``frame`` was written whole (``inline``: by ``send_nowait``); for subclasses."""

    @property
    def writes_directly(self) -> bool:
        return self.direct is not None and self.direct.writes_directly

    async def send(self, frame: bytes) -> None:
        await self.inner.send(frame)
        self.written(frame, inline=False)

    def send_nowait(self, frame: bytes) -> bool:
        if self.direct is None:
            raise trio.WouldBlock
        whole = self.direct.send_nowait(frame)
        if whole:
            self.written(frame, inline=True)
        else:
            self.held = frame  # written once flushed
        return whole

    async def flush(self) -> None:
        assert self.direct is not None
        await self.direct.flush()
        if self.held is not None:
            held, self.held = self.held, None
            self.written(held, inline=False)

    async def receive(self) -> bytes | str:
        return await self.inner.receive()

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        await self.inner.aclose(code, reason)
