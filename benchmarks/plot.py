"""The session-load plot: CPU per session-second and p99 send latency against sessions,
every variant, medians over repetitions with min-max bars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLOT = Path(__file__).resolve().parent.parent / "docs" / "session_load.png"
STYLES = {
    "ours": ("tab:blue", "o", "-"),
    "ours/trio-websocket": ("tab:cyan", "s", "--"),
    "google-genai": ("tab:red", "^", "-"),
    "livekit": ("tab:green", "D", "-"),
    "pipecat": ("tab:purple", "v", "-"),
}


def _bars(entries: list[dict[str, Any]], metric: str, scale: float) -> tuple[list[float], ...]:
    median = [e[metric]["median"] * scale for e in entries]
    low = [m - e[metric]["min"] * scale for m, e in zip(median, entries, strict=True)]
    high = [e[metric]["max"] * scale - m for m, e in zip(median, entries, strict=True)]
    return median, low, high


def draw(result: dict[str, Any], path: Path = PLOT) -> Path:
    """Two panels from a session_load result's summary; writes ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (cpu, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
    summary = result["summary"]
    for variant, (color, marker, line) in STYLES.items():
        mine = sorted((e for e in summary if e["variant"] == variant), key=lambda e: e["sessions"])
        if not mine:
            continue
        # Saturated, CPU per session is only the core divided by N: left out unless most
        # repetitions kept up.
        kept = [e for e in mine if 2 * e["saturated_reps"] < e["reps"]]
        if kept:
            median, low, high = _bars(kept, "cpu_us_per_session_second", 1e-3)
            cpu.errorbar(
                [e["sessions"] for e in kept],
                median,
                yerr=[low, high],
                marker=marker,
                linestyle=line,
                color=color,
                label=variant,
                capsize=3,
            )
        median, low, high = _bars(mine, "send_p99_ms", 1.0)
        latency.errorbar(
            [e["sessions"] for e in mine],
            median,
            yerr=[low, high],
            marker=marker,
            linestyle=line,
            color=color,
            label=variant,
            capsize=3,
        )
    cpu.set_title("CPU per session (ms per session-second; kept up)")
    cpu.set_xlabel("concurrent sessions")
    cpu.set_ylim(bottom=0)
    cpu.set_xlim(0, max(e["sessions"] for e in summary) * 1.05)
    latency.set_title("p99 send latency (ms; 20 ms = late)")
    latency.set_xlabel("concurrent sessions")
    latency.set_yscale("log")
    latency.axhline(5, color="gray", linewidth=0.8, linestyle=":")
    latency.axhline(20, color="gray", linewidth=0.8, linestyle="--")
    for axes in (cpu, latency):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(
        "make bench, session load: 16 kHz up, 24 kHz down in real time; medians, min-max bars"
    )
    figure.tight_layout()
    path.parent.mkdir(exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


if __name__ == "__main__":  # redraw from benchmarks/results.json
    import json

    stored = json.loads(Path(__file__).with_name("results.json").read_text())
    print(draw(stored["session_load"]))
