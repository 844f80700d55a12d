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


@dataclass(frozen=True)
class EmulatorProcess:
    pid: int
    url: str
    stats_file: Path

    def stats(self) -> dict[str, Any]:
        """The emulator's --stats file; complete only after the process has exited."""
        result: dict[str, Any] = json.loads(self.stats_file.read_text())
        return result


def can_pin() -> bool:
    return len(os.sched_getaffinity(0)) >= 2


@contextmanager
def emulator_process(scenario: dict[str, Any], core: int = 0) -> Iterator[EmulatorProcess]:
    """``python -m emulator`` with ``scenario``, pinned to ``core`` when there are two or
    more CPUs. Waits for its ``ready`` line; on exit sends SIGINT and waits for it."""
    workdir = Path(tempfile.mkdtemp(prefix="emulator-bench-"))
    scenario_file = workdir / "scenario.json"
    scenario_file.write_text(json.dumps(scenario))
    stats_file = workdir / "stats.json"
    command = [sys.executable, "-m", "emulator", "--scenario", str(scenario_file)]
    command += ["--stats", str(stats_file)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        if can_pin():
            os.sched_setaffinity(server.pid, {core})
        assert server.stdout is not None
        url = server.stdout.readline().split()[1]
        yield EmulatorProcess(server.pid, url, stats_file)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
        if server.stdout is not None:
            server.stdout.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
