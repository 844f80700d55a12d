"""Session load, the numbers: one line per run as it ends, then medians over repetitions
with their spread (min-max), CPU ratios against google-genai, each client's message
pattern, and the targets of issue 17, met or not.

``python -m benchmarks.session_report [results.json]`` prints the README's tables (as
Markdown) from a recorded run.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

BASELINE = "google-genai"
SUBJECT = "ours"
ORDER = ("ours", "ours/gc", "ours/trio-websocket", "google-genai", "livekit", "pipecat")

Row = dict[str, Any]
METRICS: dict[str, Callable[[Row], float]] = {
    "core_share": lambda r: r["core_share"],
    "cpu_us_per_session_second": lambda r: r["cpu_us_per_session_second"],
    "rss_kib_per_session": lambda r: r["rss_kib_per_session"],
    "audio_sent_share": lambda r: r["audio_sent_share"],
    "late_share": lambda r: r["late_share"],
    "send_p50_ms": lambda r: r["send_latency_ms"]["p50"],
    "send_p99_ms": lambda r: r["send_latency_ms"]["p99"],
    "receive_p50_ms": lambda r: r["receive_latency_ms"]["p50"],
    "receive_p99_ms": lambda r: r["receive_latency_ms"]["p99"],
    "audio_ms_per_message": lambda r: r["audio_ms_per_message"],
    "messages_sent_per_session_second": lambda r: r["messages_sent_per_session_second"],
    "messages_received_per_session_second": lambda r: r["messages_received_per_session_second"],
    "emulator_core_share": lambda r: r["emulator_core_share"],
    "emulator_pacing_lag_p99_ms": lambda r: r["emulator_pacing_lag_p99_ms"],
    "machine_busy_cores": lambda r: r["cores"]["machine_busy"],
    "others_cores": lambda r: r["cores"]["others"],
}
COUNTS = ("sessions_failed", "sessions_lost", "reconnects")


def saturated(row: Row) -> bool:
    """The client did not keep up: its CPU per session is then the core divided by N."""
    return bool(row["core_share"] >= 0.9 or row["audio_sent_share"] < 0.98)


def contended(row: Row) -> bool:
    """The machine was full during the window: every process on it waited for a core."""
    return bool(row["cores"]["machine_busy"] >= 0.95 * row["cores"]["of"])


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def _order(name: str) -> int:
    return ORDER.index(name) if name in ORDER else len(ORDER)


def summarize(runs: list[Row]) -> dict[str, Any]:
    """Per level and variant: every metric's median and min-max over repetitions; CPU
    ratios against google-genai (per repetition, then their median and min-max); the
    targets."""
    grouped: dict[tuple[int, str], list[Row]] = defaultdict(list)
    for row in runs:
        grouped[(row["sessions"], row["variant"])].append(row)
    levels = []
    ordered = sorted(grouped.items(), key=lambda item: (item[0][0], _order(item[0][1])))
    for (sessions, variant), rows in ordered:
        entry: dict[str, Any] = {
            "sessions": sessions,
            "variant": variant,
            "reps": len(rows),
            "modes": sorted({r["mode"] for r in rows}),
            "saturated_reps": sum(saturated(r) for r in rows),
            "contended_reps": sum(contended(r) for r in rows),
        }
        for metric, read in METRICS.items():
            entry[metric] = _spread([read(r) for r in rows])
        for count in COUNTS:
            entry[count] = sum(r[count] for r in rows)
        levels.append(entry)
    ratios = _ratios(runs)
    machine = {}
    if runs:
        machine = {
            "others_cores": _spread([r["cores"]["others"] for r in runs]),
            "load_average": _spread([r["load_average"][0] for r in runs]),
            "contended_runs": sum(contended(r) for r in runs),
            "runs": len(runs),
        }
    return {
        "summary": levels,
        "ratios": ratios,
        "targets": targets(levels, ratios),
        "machine": machine,
    }


def _ratios(runs: list[Row]) -> list[dict[str, Any]]:
    """CPU per session-second of each variant over google-genai's (and ours over each
    peer's), per repetition at each level where neither was saturated."""
    by_rep: dict[tuple[int, int], dict[str, Row]] = defaultdict(dict)
    for row in runs:
        by_rep[(row["sessions"], row["rep"])][row["variant"]] = row
    pairs: dict[tuple[int, str, str], list[float]] = defaultdict(list)
    for (sessions, _rep), rows in by_rep.items():
        for name, row in rows.items():
            for against in {BASELINE, *(rows if name == SUBJECT else ())} - {name}:
                other = rows.get(against)
                if other is None or saturated(row) or saturated(other):
                    continue
                ratio = row["cpu_us_per_session_second"] / other["cpu_us_per_session_second"]
                pairs[(sessions, name, against)].append(ratio)
    return [
        {"sessions": s, "variant": v, "against": a, "reps": len(values), **_spread(values)}
        for (s, v, a), values in sorted(pairs.items(), key=lambda i: (i[0][0], _order(i[0][1])))
    ]


def _find(levels: list[dict[str, Any]], sessions: int, variant: str = SUBJECT) -> dict[str, Any]:
    for entry in levels:
        if entry["sessions"] == sessions and entry["variant"] == variant:
            return entry
    return {}


def _range(spread: dict[str, float], scale: float = 1.0, digits: int = 2) -> str:
    median, low, high = (spread[k] * scale for k in ("median", "min", "max"))
    return f"{median:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def targets(levels: list[dict[str, Any]], ratios: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 17's targets against the medians measured, met or not (or not measured)."""
    rows = []
    against_sdk = [r for r in ratios if r["variant"] == SUBJECT and r["against"] == BASELINE]
    against_peers = [r for r in ratios if r["variant"] == SUBJECT and r["against"] != BASELINE]
    measured = "; ".join(f"{_range(r)}x at {r['sessions']}" for r in against_sdk)
    peers = "; ".join(
        f"{r['against']} {r['median']:.2f}x at {r['sessions']}" for r in against_peers
    )
    met: bool | None = None
    if against_sdk:
        met = all(r["median"] <= 0.40 for r in against_sdk) and all(
            r["median"] < 1.0 for r in against_peers
        )
    rows.append(
        {
            "target": "CPU per session-second <= 0.40x google-genai's, and below every peer's",
            "measured": (measured or "not measured") + (f"; ours over {peers}" if peers else ""),
            "met": met,
        }
    )
    at300 = _find(levels, 300)
    kept = [
        e["sessions"]
        for e in levels
        if e["variant"] == SUBJECT
        and e["late_share"]["median"] < 0.01
        and e["audio_sent_share"]["median"] >= 0.99
    ]
    best = f"; < 1% late up to {max(kept)} sessions" if kept else ""
    rows.append(
        {
            "target": ">= 300 sessions per core with < 1% of frames > 20 ms late",
            "measured": (
                f"{100 * at300['late_share']['median']:.1f}% late at 300"
                f" ({100 * at300['audio_sent_share']['median']:.0f}% of audio sent){best}"
                if at300
                else "not measured" + best
            ),
            "met": (
                at300["late_share"]["median"] < 0.01 and at300["audio_sent_share"]["median"] >= 0.99
            )
            if at300
            else None,
        }
    )
    at100 = _find(levels, 100)
    rows.append(
        {
            "target": "p99 added send latency < 5 ms at 100 sessions",
            "measured": f"{_range(at100['send_p99_ms'], digits=1)} ms" if at100 else "not measured",
            "met": at100["send_p99_ms"]["median"] < 5.0 if at100 else None,
        }
    )
    at200 = _find(levels, 200)
    rows.append(
        {
            "target": "<= 200 KiB per session at 200 sessions",
            "measured": (
                f"{_range(at200['rss_kib_per_session'], digits=0)} KiB" if at200 else "not measured"
            ),
            "met": at200["rss_kib_per_session"]["median"] <= 200 if at200 else None,
        }
    )
    return rows


# --- printing -------------------------------------------------------------------------------


def print_run(row: Row) -> None:
    """One run as it ends: the client's numbers, its emulator, where the cores went."""
    send, receive, cores = row["send_latency_ms"], row["receive_latency_ms"], row["cores"]
    lost = row["sessions_failed"] + row["sessions_lost"]
    print(
        f"   {row['variant']:>19} {row['sessions']:>4} {row['mode']:>8}"
        f" core {100 * row['core_share']:5.1f}% {row['cpu_us_per_session_second']:8.0f} µs/sess-s"
        f" {row['rss_kib_per_session']:7.0f} KiB/sess sent {100 * row['audio_sent_share']:3.0f}%"
        f" late {100 * row['late_share']:6.2f}%"
        f" send {send['p50']:6.1f}/{send['p99']:7.1f}"
        f" recv {receive['p50']:5.1f}/{receive['p99']:6.1f} ms"
        f" lost {lost}"
        f" | emulator {100 * row['emulator_core_share']:4.1f}% lag p99"
        f" {row['emulator_pacing_lag_p99_ms']:.1f} ms"
        f" | cores: clients {cores['clients']:.2f} emulators {cores['emulators']:.2f}"
        f" others {cores['others']:.2f} (busy {cores['machine_busy']:.2f}/{cores['of']})"
        f" load {row['load_average'][0]:.1f}",
        flush=True,
    )
    if "task_steps_per_session_second" in row:  # the ours-steps variant
        by_task = ", ".join(f"{v} {k}" for k, v in row.get("task_steps_by_task", {}).items())
        print(
            f"      task steps per session-second {row['task_steps_per_session_second']}"
            f" (run-loop rounds {row.get('loop_rounds_per_second')} a second): {by_task}",
            flush=True,
        )
    for error in row.get("errors", ())[:2]:
        print(f"      error: {error}", flush=True)


def print_summary(result: dict[str, Any]) -> None:
    print()
    print(
        "session load: medians over repetitions, (min-max); * = the client saturated (behind"
        " or > 90% of its core) in a repetition, ! = the machine was full (others' load) in one"
    )
    print(
        f"{'sessions':>8} {'variant':>19} {'mode':>8} {'reps':>4} {'core %':>6}"
        f" {'µs CPU/sess-s (min-max)':>25} {'KiB/sess':>9} {'sent':>5} {'late':>7}"
        f" {'send p50/p99 ms':>16} {'recv p50/p99 ms':>16} {'lost':>5} {'emu %':>6}"
        f" {'others':>6}"
    )
    for e in result["summary"]:
        cpu = e["cpu_us_per_session_second"]
        star = ("*" if e["saturated_reps"] else " ") + ("!" if e["contended_reps"] else " ")
        lost = e["sessions_failed"] + e["sessions_lost"]
        print(
            f"{e['sessions']:>8} {e['variant']:>19} {'/'.join(e['modes']):>8} {e['reps']:>4}"
            f" {100 * e['core_share']['median']:>5.0f}%"
            f" {cpu['median']:>8.0f} ({cpu['min']:>6.0f}-{cpu['max']:>6.0f}){star}"
            f" {e['rss_kib_per_session']['median']:>9.0f}"
            f" {100 * e['audio_sent_share']['median']:>4.0f}%"
            f" {100 * e['late_share']['median']:>6.2f}%"
            f" {e['send_p50_ms']['median']:>7.1f}/{e['send_p99_ms']['median']:>7.1f}"
            f" {e['receive_p50_ms']['median']:>7.1f}/{e['receive_p99_ms']['median']:>7.1f}"
            f" {lost:>5} {100 * e['emulator_core_share']['median']:>5.0f}%"
            f" {e['others_cores']['median']:>6.2f}"
        )
    print()
    print("CPU per session-second against google-genai, and ours against each peer (median of")
    print("per-repetition ratios, min-max; only repetitions where neither side was saturated):")
    for r in result["ratios"]:
        print(
            f"{r['sessions']:>8} {r['variant']:>19} / {r['against']:<13}"
            f" {_range(r)}x over {r['reps']} rep(s)"
        )
    print()
    print("message patterns (measured: audio per message, WebSocket messages per session-second):")
    patterns = result.get("patterns", {})
    for variant in sorted({e["variant"] for e in result["summary"]}, key=_order):
        rows = [e for e in result["summary"] if e["variant"] == variant]
        e = rows[0]
        print(
            f"{variant:>19}: {e['audio_ms_per_message']['median']:.0f} ms of audio per message,"
            f" {e['messages_sent_per_session_second']['median']:.1f} up /"
            f" {e['messages_received_per_session_second']['median']:.1f} down per session-second"
            f" (at {e['sessions']}); {patterns.get(variant, '')}"
        )
    machine = result.get("machine")
    if machine:
        print(
            f"the rest of the machine during the windows: {_range(machine['others_cores'])} cores"
            f" of 2; 1-minute load average {_range(machine['load_average'], digits=1)};"
            f" full (>= 95% busy) in {machine['contended_runs']} of {machine['runs']} runs"
        )
    for failure in result.get("failures", ()):
        where = f"rep {failure['rep'] + 1}, {failure['sessions']} sessions"
        print(f"FAILED run: {where}: {failure['error']}")
    print()
    print_targets(result["targets"])


def print_targets(rows: list[dict[str, Any]]) -> None:
    print("targets of issue 17 (medians over repetitions; min-max in brackets):")
    for row in rows:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[row["met"]]
        print(f"  [{verdict:>12}] {row['target']}: {row['measured']}")


def markdown(result: dict[str, Any]) -> str:
    """The README's session-load tables."""
    columns = (
        "sessions",
        "client",
        "run",
        "core",
        "CPU µs per session-second (min-max)",
        "ratio to google-genai (min-max)",
        "KiB per session",
        "audio sent / due",
        "messages >20 ms late",
        "send p50 / p99 ms",
        "receive p50 / p99 ms",
    )
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    ratio = {(r["sessions"], r["variant"]): r for r in result["ratios"] if r["against"] == BASELINE}
    for e in result["summary"]:
        cpu = e["cpu_us_per_session_second"]
        r = ratio.get((e["sessions"], e["variant"]))
        shown = _range(r) + "x" if r else ("1" if e["variant"] == BASELINE else "-")
        star = (
            " (saturated)"
            if e["saturated_reps"] == e["reps"]
            else (" (saturated in some)" if e["saturated_reps"] else "")
        )
        lines.append(
            f"| {e['sessions']} | {e['variant']} | {'/'.join(e['modes'])} |"
            f" {100 * e['core_share']['median']:.0f}% |"
            f" {cpu['median']:.0f} ({cpu['min']:.0f}-{cpu['max']:.0f}){star} | {shown} |"
            f" {e['rss_kib_per_session']['median']:.0f} |"
            f" {100 * e['audio_sent_share']['median']:.0f}% |"
            f" {100 * e['late_share']['median']:.2f}% |"
            f" {e['send_p50_ms']['median']:.1f} / {e['send_p99_ms']['median']:.1f} |"
            f" {e['receive_p50_ms']['median']:.2f} / {e['receive_p99_ms']['median']:.2f} |"
        )
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for row in result["targets"]:
        verdict = {True: "yes", False: "**no**", None: "not measured"}[row["met"]]
        lines.append(f"| {row['target']} | {row['measured']} | {verdict} |")
    return "\n".join(lines)


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("results.json")
    stored = json.loads(path.read_text())
    print(markdown(stored.get("session_load", stored)))
