"""`make bench`: run every benchmark, print its table, write benchmarks/results.json."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import barge_in, codec, emulator_load, plot, session_load

RESULTS = Path(__file__).with_name("results.json")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    args = parser.parse_args()

    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    print("== codec: ours vs google-genai, per message (median over rounds, p10-p90) ==")
    codec_results = codec.run(quick=args.quick)
    codec.print_table(codec_results)
    results["codec"] = codec_results
    print()
    print("== barge-in: from `interrupted` arriving to the last audio handed to the sink ==")
    barge = barge_in.run(quick=args.quick)
    barge_in.print_table(barge)
    results["barge_in"] = barge
    print()
    print("== emulator load: N real-time audio sessions, emulator pinned to one core ==")
    load_results = emulator_load.run(quick=args.quick)
    emulator_load.print_table(load_results)
    results["emulator_load"] = load_results
    print()
    print("== session load: N real-time sessions on one core, ours vs google-genai ==")
    print(session_load.HEADER)
    sessions = session_load.run(quick=args.quick)
    session_load.print_ratios(sessions)
    results["session_load"] = sessions
    print(f"plot: {plot.draw(sessions)}")
    results["environment"] = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
        "command": "make bench",
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
