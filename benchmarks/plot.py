"""The session-load plot: CPU per session-second and p99 added latency against sessions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLOT = Path(__file__).resolve().parent.parent / "docs" / "session_load.png"
SATURATED = 0.97
STYLES = {
    "ours": ("tab:blue", "o", "-"),
    "ours/trio-websocket": ("tab:cyan", "s", "--"),
    "google-genai": ("tab:red", "^", "-"),
}


def draw(rows: list[dict[str, Any]], path: Path = PLOT) -> Path:
    """Two panels from session_load rows; writes ``path`` (PNG) and returns it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (cpu, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
    for client, (color, marker, line) in STYLES.items():
        mine = sorted((r for r in rows if r["client"] == client), key=lambda r: r["sessions"])
        if not mine:
            continue
        sessions = [r["sessions"] for r in mine]
        # On a saturated core CPU per session is only the core divided by N: left out.
        unsaturated = [r for r in mine if r["core_share"] < SATURATED]
        cpu.plot(
            [r["sessions"] for r in unsaturated],
            [r["cpu_us_per_session_second"] / 1000 for r in unsaturated],
            marker=marker,
            linestyle=line,
            color=color,
            label=client,
        )
        worst = [max(r["send_latency_ms"]["p99"], r["receive_latency_ms"]["p99"]) for r in mine]
        latency.plot(sessions, worst, marker=marker, linestyle=line, color=color, label=client)
    cpu.set_title("CPU per session (ms per session-second; core not saturated)")
    cpu.set_xlabel("concurrent sessions (one core)")
    cpu.set_ylim(bottom=0)
    latency.set_title("p99 added latency, worse of send and receive (ms)")
    latency.set_xlabel("concurrent sessions (one core)")
    latency.set_yscale("log")
    latency.axhline(5, color="gray", linewidth=0.8, linestyle=":")
    for axes in (cpu, latency):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle("make bench: 16 kHz up, 24 kHz down, 20 ms frames, emulator on the other core")
    figure.tight_layout()
    path.parent.mkdir(exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


if __name__ == "__main__":  # redraw from benchmarks/results.json
    import json

    stored = json.loads(Path(__file__).with_name("results.json").read_text())
    print(draw(stored["session_load"]))
