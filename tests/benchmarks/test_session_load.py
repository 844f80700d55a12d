"""The session-load benchmark's machinery works for every variant: workers start, connect,
take the window, measure and report, and the summary and targets are built from that.

It measures nothing (timing belongs to `make bench`): two sessions per variant, all at
once, for a few seconds, and checks that each report is complete and that audio went both
ways through each client. The peers' venvs come from `make peers` (`make test` builds them).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from benchmarks import session_load, session_report
from benchmarks.harness import can_pin
from benchmarks.session_load import DEFAULT_VARIANTS, Costs, plan_level

REPORT_FIELDS = {
    "variant",
    "sessions",
    "core_share",
    "cpu_us_per_session_second",
    "rss_kib_per_session",
    "audio_sent_share",
    "late_share",
    "send_latency_ms",
    "receive_latency_ms",
    "audio_ms_per_message",
    "messages_sent_per_session_second",
    "messages_received_per_session_second",
    "emulator_core_share",
    "cores",
}


@pytest.fixture(scope="module")
def tiny_run() -> dict[str, Any]:
    return session_load.run(
        variants=DEFAULT_VARIANTS,
        levels=[2],
        reps=1,
        window=3.0,
        warmup=1.5,
        mode="together",
        quiet_wait=0.0,
        echo=False,
    )


def test_every_variant_streams_and_drains_two_sessions(tiny_run: dict[str, Any]) -> None:
    runs = tiny_run["runs"]
    names = {session_load.VARIANTS[key].name for key in DEFAULT_VARIANTS}
    assert {row["variant"] for row in runs} == names
    for row in runs:
        assert row.keys() >= REPORT_FIELDS, row["variant"]
        assert row["errors"] == [], row["variant"]
        assert row["sessions_failed"] == row["sessions_lost"] == 0, row["variant"]
        assert row["connected"] == 2
        assert row["audio_messages_sent"] > 0, row["variant"]
        assert row["audio_messages_read"] > 0, row["variant"]
        assert row["audio_messages_delivered"] > 0, row["variant"]
        assert row["mode"] == "together"
        assert len(row["group"]) == len(DEFAULT_VARIANTS)


def test_each_client_sends_its_own_message_pattern(tiny_run: dict[str, Any]) -> None:
    sizes = {row["variant"]: row["audio_ms_per_message"] for row in tiny_run["runs"]}
    assert sizes == {"ours": 20.0, "google-genai": 20.0, "livekit": 50.0, "pipecat": 20.0}


def test_the_summary_has_a_ratio_per_peer_and_every_target(tiny_run: dict[str, Any]) -> None:
    assert len(tiny_run["summary"]) == len(DEFAULT_VARIANTS)
    measured = {(r["variant"], r["against"]) for r in tiny_run["ratios"]}
    assert ("ours", "google-genai") in measured or any(
        e["saturated_reps"] for e in tiny_run["summary"]
    )
    assert len(tiny_run["targets"]) == 4
    assert "| target | measured | met |" in session_report.markdown(tiny_run)


def test_small_levels_run_together_larger_ones_in_groups_then_in_turns() -> None:
    if not can_pin():
        pytest.skip("one CPU: everything runs in turns")
    costs = Costs()
    for kind, us in (("ours", 20e3), ("sdk", 20e3), ("livekit", 20e3), ("pipecat", 40e3)):
        costs.note(kind, 10, us)
    costs.note("emulator", 10, 5e3)
    small = plan_level(DEFAULT_VARIANTS, 4, costs)
    assert small.mode == "together"
    assert small.groups == [list(DEFAULT_VARIANTS)]
    assert {p.client_core for p in small.placement.values()} == {0, 1}  # packed on both
    busy = plan_level(DEFAULT_VARIANTS, 4, costs, others=1.6)  # the rest of the machine
    assert busy.mode == "turns"
    middle = plan_level(DEFAULT_VARIANTS, 15, costs)
    assert middle.mode == "groups"
    assert middle.groups[0][:2] == ["ours", "sdk"]  # the comparison that matters first
    large = plan_level(DEFAULT_VARIANTS, 300, costs, rep=1)
    assert large.mode == "turns"
    assert "ours" not in large.skipped  # the subject always runs
    assert set(large.skipped) == {"sdk", "livekit", "pipecat"}
    assert large.groups == [["ours"]]
    assert large.placement["ours"].client_core == 1
    assert large.placement["ours"].emulator_core == 0


def test_measured_costs_replace_the_priors_for_planning() -> None:
    costs = Costs()
    costs.note("pipecat", 50, 10000.0)
    assert costs.predict("pipecat", 100) == pytest.approx(1.0)
    assert costs.predict("pipecat", 10) == pytest.approx(0.1)  # the lowest level above
    plan = plan_level(["pipecat"], 100, costs)
    assert plan.skipped == {}


def test_the_gc_variant_is_ours_with_the_collector_tuned() -> None:
    result = session_load.run(
        variants=["ours-gc"],
        levels=[2],
        reps=1,
        window=2.0,
        warmup=1.0,
        mode="together",
        quiet_wait=0.0,
        echo=False,
    )
    (row,) = result["runs"]
    assert row["variant"] == "ours/gc"
    assert row["errors"] == []
    assert row["sessions_failed"] == 0
    assert row["audio_messages_sent"] > 0
    assert row["audio_messages_delivered"] > 0


def test_a_baseline_checkout_runs_as_a_variant_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "baseline"  # a checkout of its own: the code, not the tests or peers
    shutil.copytree(
        session_load.ROOT,
        tree,
        ignore=shutil.ignore_patterns(".*", "peers", "docs", "tests", "__pycache__", "*.egg-info"),
    )
    (tree / "peers").mkdir()
    shutil.copy(session_load.ROOT / "peers" / "loadlib.py", tree / "peers" / "loadlib.py")
    variant = session_load.baseline_variant(tree)
    monkeypatch.setitem(session_load.VARIANTS, "baseline", variant)
    result = session_load.run(
        variants=["baseline"],
        levels=[2],
        reps=1,
        window=2.0,
        warmup=1.0,
        mode="together",
        quiet_wait=0.0,
        echo=False,
    )
    (row,) = result["runs"]
    assert row["variant"] == "ours@baseline"  # named by the parent, not by its own script
    assert row["errors"] == []
    assert row["sessions_failed"] == 0
    assert row["audio_messages_sent"] > 0
    assert dict(variant.environment) == {"PYTHONPATH": str(tree.resolve())}
