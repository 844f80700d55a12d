"""`make bench`: run every benchmark, print its table, write benchmarks/results.json.

``make bench ARGS="--only session_load --variants ours,sdk --levels 50,100"`` runs a part
(results.json keeps the other parts' recorded results).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import barge_in, codec, emulator_load, plot, session_load, session_report

RESULTS = Path(__file__).with_name("results.json")
PARTS = ("codec", "barge_in", "emulator_load", "session_load")
# The parts that run with --quick alone and print one table: heading, run, print.
SIMPLE_PARTS: dict[str, tuple[str, Callable[..., Any], Callable[[Any], None]]] = {
    "codec": (
        "codec: ours vs google-genai, per message (median over rounds, p10-p90)",
        codec.run,
        codec.print_table,
    ),
    "barge_in": (
        "barge-in: from `interrupted` arriving to the last audio handed to the sink",
        barge_in.run,
        barge_in.print_table,
    ),
    "emulator_load": (
        "emulator load: N real-time audio sessions, emulator pinned to one core",
        emulator_load.run,
        emulator_load.print_table,
    ),
}


def _commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=RESULTS.parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], check=False, cwd=RESULTS.parent)
    return done.stdout.strip() + ("+uncommitted changes" if dirty.returncode else "")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    parser.add_argument(
        "--only", choices=PARTS, action="append", help="run only this part (repeatable)"
    )
    parser.add_argument(
        "--no-save", action="store_true", help="print only: leave results.json and the plot"
    )
    session_load.add_arguments(parser)
    args = parser.parse_args()
    parts = args.only or PARTS
    started = time.monotonic()
    environment = _environment(args)  # before this run writes results.json and the plot

    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for part, (heading, run, print_table) in SIMPLE_PARTS.items():
        if part in parts:
            print(f"== {heading} ==")
            measured = run(quick=args.quick)
            print_table(measured)
            results[part] = measured
            print()
    if "session_load" in parts:
        print("== session load: N real-time sessions per client, every client measured alike ==")
        sessions = session_load.run(**session_load.options(args, quick=args.quick))
        session_report.print_summary(sessions)
        sessions["environment"] = environment
        results["session_load"] = sessions
        if not args.no_save:
            print(f"plot: {plot.draw(sessions)}")
    results["environment"] = environment
    environment["load_average_after"] = os.getloadavg()
    environment["elapsed_seconds"] = round(time.monotonic() - started, 1)
    if not args.no_save:
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {RESULTS}")
    return 0


def _environment(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "commit": _commit(),
        "command": "make bench" + (f' ARGS="{" ".join(sys.argv[1:])}"' if sys.argv[1:] else ""),
        "load_average": os.getloadavg(),
    }


if __name__ == "__main__":
    sys.exit(main())
