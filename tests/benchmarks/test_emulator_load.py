"""The emulator load benchmark's machinery works: sessions run, turns complete, stats read.

It measures nothing here (timing belongs to `make bench`); it checks that a small run
delivers its load and reports every field.
"""

from __future__ import annotations

import os

from benchmarks import emulator_load


def test_a_small_load_level_runs_every_turn_and_restores_affinity() -> None:
    affinity = os.sched_getaffinity(0)
    row = emulator_load.run_level(8, 6.0)
    assert os.sched_getaffinity(0) == affinity
    assert row["sessions_failed"] == 0
    assert row["turns_expected"] > 0
    assert row["turns_completed"] >= row["turns_expected"]
    assert row["emulator_core_share"] > 0
    assert row["emulator_pacing_lag_ms"].keys() == {"p50", "p99", "max"}
    assert row["emulator_rss_kib_per_session"] != 0 or row["sessions"] == 0
