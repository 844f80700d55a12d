"""Session load: N concurrent real-time voice sessions through each client, measured the
same way, started together where the machine allows it.

Variants (``--variants``), each a worker process of its own with an emulator process of
its own, the same scenario for all:

- ``ours``: the whole pipeline as ``RealtimeModel.session()`` builds it (capture from
  memory paced like a microphone, encoder, gemini-link, router, tool executor, playout in
  real time into a null sink, transcriber and metrics, under the supervisor; events
  drained as an application would): ``benchmarks/session_ours.py``.
- ``sdk``: a minimal client on google-genai's ``AsyncSession``: ``benchmarks/session_sdk.py``.
- ``livekit``: LiveKit's Google realtime plugin, headless, in its own locked venv:
  ``peers/livekit/driver.py --load``.
- ``pipecat``: Pipecat's Gemini Live service in a pipeline, in its own locked venv:
  ``peers/pipecat/driver.py --load``.
- ``ours-tws``: ours on trio-websocket instead of our WebSocket client (not by default).
- ``ours-gc``: ours with ``actors.tune_gc()`` called once its sessions have started (not
  by default): ``--variants ours,ours-gc,sdk`` measures what the collector costs the tail.
- ``ours-steps``: ours counting trio task steps per session-second by task, run-loop
  rounds and the collector's pauses (not by default; ``--variants ours-steps``).

Every session streams 16 kHz audio in real time, 20 ms per frame (the client's own
chunking on the wire), a 4 s cycle of 1 s of speech and 3 s of silence, and gets a spoken
24 kHz reply paced in real time by the emulator; replies are drained into a null sink.
Every client speaks plain ws:// to the emulator (google-genai's URL is rewritten; see
``peers/loadlib.py``, which also defines every measurement).

Scheduling, on a machine with 2 cores: at each level the CPU each process will need is
predicted (from what was measured at lower levels in this run, else from ``PRIOR_US``),
and the rest of the machine's load is sampled. Variants run *together* (started at once,
measured over the same window, so load drift hits them equally; clients and emulators
packed onto the two cores) as far as they fit with room to spare: no core above
``TOGETHER_MAX_CORE``, the rest of the machine's load included. What does not fit runs
in further groups, down to *in turns*: one client alone on core 1, its emulator on core
0, because running them together would measure only their contention. A variant
predicted to need more than ``SKIP_ABOVE_CORES`` cores is not run at that level
(``--run-saturated`` runs it anyway; ``ours`` always runs): past saturation its CPU per
session is the core divided by N and its latency is the backlog. Each run first waits
(up to ``QUIET_WAIT_SECONDS``) for the rest of the machine to use less than
``QUIET_CORES``. Repetitions are interleaved: every level once, then again, the order of
the groups rotated.

``python -m benchmarks.session_load --variants ours,sdk --levels 100 --reps 3`` runs one
comparison quickly (prints only; ``make bench`` records results.json). ``--baseline DIR``
adds ours as another checkout has it (``git archive main | tar -x -C DIR``), measured in
the same run: a change against what it changed.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from benchmarks.emulator_load import SCENARIO
from benchmarks.harness import (
    EmulatorProcess,
    can_pin,
    child_environment,
    cpu_seconds,
    emulator_process,
    load_average,
    machine_jiffies,
    pin_process,
)
from peers import loadlib

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "peers"


@dataclass(frozen=True)
class Variant:
    key: str  # as given to --variants
    name: str  # as reported
    command: tuple[str, ...]
    pattern: str  # what the client does per frame and per reply, from its source
    environment: tuple[tuple[str, str], ...] = ()  # set for its worker only


def baseline_variant(tree: Path) -> Variant:
    """``ours`` as another checkout of this repository has it (``--baseline DIR``, e.g.
    ``git archive COMMIT | tar -x -C DIR``): its own ``benchmarks/session_ours.py`` on its
    own code, so a change is measured against what it changed, in the same run."""
    tree = tree.resolve()
    script = tree / "benchmarks" / "session_ours.py"
    return Variant(
        "baseline",
        f"ours@{tree.name}",
        (sys.executable, str(script)),
        f"ours as {tree} has it",
        (("PYTHONPATH", str(tree)),),
    )


def _peer(key: str, pattern: str) -> Variant:
    python = PEERS / key / ".venv" / "bin" / "python"
    return Variant(key, key, (str(python), str(PEERS / key / "driver.py")), pattern)


VARIANTS: dict[str, Variant] = {
    "ours": Variant(
        "ours",
        "ours",
        (sys.executable, "-m", "benchmarks.session_ours"),
        "one realtimeInput message per 20 ms frame (capture -> encoder -> the link's sender "
        "task); a reply message goes link -> router -> playout buffer (and transcriber)",
    ),
    "sdk": Variant(
        "sdk",
        "google-genai",
        (sys.executable, "-m", "benchmarks.session_sdk"),
        "one send_realtime_input per 20 ms frame, awaited by the sending task; receive() "
        "parses every server message into pydantic types, the audio part to the sink",
    ),
    "livekit": _peer(
        "livekit",
        "push_audio of 20 ms rtc.AudioFrames; the plugin cuts 50 ms chunks and a send task "
        "sends one message per 50 ms; reply audio as rtc.AudioFrames on per-generation "
        "streams",
    ),
    "pipecat": _peer(
        "pipecat",
        "a 20 ms InputAudioRawFrame queued into the pipeline per frame, one message each; "
        "reply audio as TTSAudioRawFrames through the pipeline's queues to its end",
    ),
    "ours-gc": Variant(
        "ours-gc",
        "ours/gc",
        (sys.executable, "-m", "benchmarks.session_ours", "--tune-gc"),
        "as ours, with actors.tune_gc() called once every session has started",
    ),
    "ours-steps": Variant(
        "ours-steps",
        "ours/steps",
        (sys.executable, "-m", "benchmarks.session_ours", "--count-steps"),
        "as ours, counting trio task steps per session-second, by task (an instrument: it "
        "costs a little CPU), run-loop rounds and the collector's pauses",
    ),
    "ours-tws": Variant(
        "ours-tws",
        "ours/trio-websocket",
        (sys.executable, "-m", "benchmarks.session_ours", "--transport", "trio-websocket"),
        "as ours, on trio-websocket",
    ),
}
DEFAULT_VARIANTS = ("ours", "sdk", "livekit", "pipecat")
BASELINE = "sdk"
SUBJECT = "ours"
LEVELS = (10, 50, 100, 200, 300)
QUICK_LEVELS = (10, 50)
REPS = 3
WINDOW_SECONDS = 8.0  # two speech/silence cycles: the same load in every window
QUICK_WINDOW_SECONDS = 3.0
WARMUP_SECONDS = loadlib.CYCLE_SECONDS  # after the last session connected
QUICK_WARMUP_SECONDS = 2.0
QUICK_QUIET_WAIT_SECONDS = 3.0
# Planning: µs of CPU per session-second before anything was measured in this run
# (medians at 10 sessions, 2026-12-02, busy machine; only used for a run's first level).
PRIOR_US = {
    "ours": 26700.0,
    "ours-tws": 26700.0,
    "ours-gc": 26700.0,
    "ours-steps": 26700.0,
    "baseline": 26700.0,
    "sdk": 26000.0,
    "livekit": 24000.0,
    "pipecat": 56000.0,
    "emulator": 13000.0,
}
TOGETHER_MAX_CORE = 0.8  # per core, the rest of the machine's load included: room for bursts
SKIP_ABOVE_CORES = 1.5
QUIET_CORES = 0.5  # the machine's other load below which a run starts without waiting
QUIET_WAIT_SECONDS = 5.0  # the longest a run waits for that, then starts anyway
CONNECT_SECONDS = 60.0  # plus 0.2 s per session: imports and every session connected
REPORT_SECONDS = 60.0


# --- planning ------------------------------------------------------------------------------


@dataclass
class Costs:
    """µs of CPU per session-second measured so far, per process kind and level."""

    measured: dict[str, dict[int, float]] = field(default_factory=dict)

    def note(self, kind: str, sessions: int, us: float) -> None:
        self.measured.setdefault(kind, {})[sessions] = us

    def predict(self, kind: str, sessions: int) -> float:
        """Cores needed at ``sessions``, from the highest level measured at or below it (cost
        per session falls as N grows, so this errs high), else the lowest above it."""
        levels = self.measured.get(kind, {})
        below = [n for n in levels if n <= sessions]
        if below:
            us = levels[max(below)]
        elif levels:
            us = levels[min(levels)]
        else:
            us = PRIOR_US.get(kind, PRIOR_US["pipecat"])
        return us * sessions / 1e6


@dataclass
class Placement:
    client_core: int | None
    emulator_core: int | None


@dataclass
class Plan:
    sessions: int
    mode: str  # "together", "groups" or "turns"
    groups: list[list[str]]
    placement: dict[str, Placement]
    demand: dict[str, float]  # predicted cores: each client, and "emulators" in total
    skipped: dict[str, str]
    why: str


def _pack(demands: list[tuple[str, float]]) -> tuple[dict[str, int], list[float]]:
    """Greedy: the largest first, each onto the less loaded of the two cores."""
    load = [0.0, 0.0]
    where: dict[str, int] = {}
    for name, demand in sorted(demands, key=lambda item: -item[1]):
        core = 0 if load[0] <= load[1] else 1
        where[name] = core
        load[core] += demand
    return where, load


def plan_level(
    variants: Sequence[str],
    sessions: int,
    costs: Costs,
    *,
    mode: str = "auto",
    rep: int = 0,
    run_saturated: bool = False,
    others: float = 0.0,
) -> Plan:
    """Which variants run at this level, in which groups (a group's variants run at once),
    and on which cores. ``others``: cores the rest of the machine is using now (counted
    against both cores). Auto: variants join the current group, in the order given, while
    the group still fits (``TOGETHER_MAX_CORE`` per core, ``others`` included)."""
    demand = {v: costs.predict(v, sessions) for v in variants}
    emulator = costs.predict("emulator", sessions)
    skipped = {
        v: f"predicted {demand[v]:.2f} cores (> {SKIP_ABOVE_CORES}): saturated"
        for v in variants
        if v != SUBJECT and demand[v] > SKIP_ABOVE_CORES and not run_saturated
    }
    running = [v for v in variants if v not in skipped]
    demand["emulators"] = emulator * len(running)
    pinning = can_pin()

    def packed(group: list[str]) -> tuple[dict[str, int], list[float]]:
        if len(group) == 1:  # alone: the emulator on core 0, the client on core 1
            return {}, [emulator, demand[group[0]]]
        items = [(f"client:{v}", demand[v]) for v in group]
        return _pack(items + [(f"emulator:{v}", emulator) for v in group])

    def fits(group: list[str]) -> bool:
        return max(packed(group)[1]) + others / 2 <= TOGETHER_MAX_CORE

    if mode == "together":
        groups = [running]
    elif mode == "turns" or not pinning:
        groups = [[v] for v in running]
    else:
        groups = []
        for v in running:
            if groups and fits([*groups[-1], v]):
                groups[-1].append(v)
            else:
                groups.append([v])
    turn = rep % max(1, len(groups))
    groups = groups[turn:] + groups[:turn]  # each repetition starts with another group
    placement: dict[str, Placement] = {}
    for group in groups:
        where, _ = packed(group)
        for v in group:
            if not pinning:
                placement[v] = Placement(None, None)
            elif len(group) == 1:
                placement[v] = Placement(1, 0)
            else:
                placement[v] = Placement(where[f"client:{v}"], where[f"emulator:{v}"])
    loads = " | ".join(
        f"{'+'.join(VARIANTS[v].name for v in g)} {'/'.join(f'{c:.2f}' for c in packed(g)[1])}"
        for g in groups
    )
    if len(groups) == 1 and len(running) > 1:
        label = "together"
    elif all(len(group) == 1 for group in groups):
        label = "turns"
    else:
        label = "groups"
    why = {
        "together": "together: all started at once, packed onto both cores",
        "groups": "in groups: each group started at once, packed onto both cores",
        "turns": "in turns: each client alone on core 1, its emulator on core 0",
    }[label]
    if not pinning:
        why = f"{label}: fewer than 2 CPUs, nothing pinned"
    why += (
        f" (predicted core loads: {loads}; the rest of the machine {others:.2f} cores;"
        f" a group fits under {TOGETHER_MAX_CORE} per core)"
    )
    return Plan(sessions, label, groups, placement, demand, skipped, why)


# --- running --------------------------------------------------------------------------------


class WorkerError(RuntimeError):
    pass


class Worker:
    """A variant's worker process: its JSON lines read by a thread, its stderr to a file."""

    def __init__(self, variant: Variant, url: str, sessions: int) -> None:
        self.variant = variant
        if not Path(variant.command[0]).exists():
            raise WorkerError(f"{variant.command[0]} is missing: run 'make peers'")
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        command = [*variant.command, "--load", str(sessions), "--url", url]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            cwd=ROOT,
            env=child_environment() | dict(variant.environment),
        )
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a stray print of the client's own
            if isinstance(event, dict) and "event" in event:
                self.lines.put(event)
        self.lines.put(None)

    def expect(self, kind: str, deadline: float) -> dict[str, Any]:
        while True:
            try:
                event = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise WorkerError(f"{self.variant.name}: no {kind} line in time") from None
            if event is None:
                self.process.wait()
                raise WorkerError(
                    f"{self.variant.name} exited ({self.process.returncode}) before its {kind}"
                    f" line; stderr tail:\n{self.stderr_tail()}"
                )
            if event["event"] == kind:
                return event

    def send_window(self, start: float, end: float) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"start": start, "end": end}) + "\n")
        self.process.stdin.flush()

    def stderr_tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-2000:]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        self.stderr.close()


@contextmanager
def _worker(variant: Variant, url: str, sessions: int) -> Iterator[Worker]:
    worker = Worker(variant, url, sessions)
    try:
        yield worker
    finally:
        worker.close()


def wait_for_quiet(
    max_seconds: float = QUIET_WAIT_SECONDS, quiet: float = QUIET_CORES
) -> tuple[float, float]:
    """Wait (up to ``max_seconds``) for a second in which the rest of the machine used less
    than ``quiet`` cores (nothing of ours runs then); returns (seconds waited, cores the rest
    used in the last second). The machine is shared: this only spares a run the worst."""
    started = time.monotonic()
    while True:
        busy0, total0 = machine_jiffies()
        time.sleep(1.0)
        busy1, total1 = machine_jiffies()
        others = (os.cpu_count() or 1) * (busy1 - busy0) / max(1, total1 - total0)
        waited = time.monotonic() - started
        if others < quiet or waited >= max_seconds:
            return round(waited, 1), round(others, 2)


def _sleep_until(epoch: float) -> None:
    time.sleep(max(0.0, epoch - time.time()))


@dataclass
class Snapshot:
    cpu: dict[str, float]  # per process label
    busy: int
    total: int

    @classmethod
    def take(cls, pids: dict[str, int]) -> Snapshot:
        busy, total = machine_jiffies()
        return cls({label: cpu_seconds(pid) for label, pid in pids.items()}, busy, total)


def run_group(
    names: Sequence[str],
    sessions: int,
    placement: dict[str, Placement],
    *,
    window: float = WINDOW_SECONDS,
    warmup: float = WARMUP_SECONDS,
    quiet: tuple[float, float] = (0.0, 0.0),
) -> list[dict[str, Any]]:
    """Start every variant in ``names`` at once (each with its own emulator), measure them
    over one window, return one row per variant (its report, its emulator's load, and
    where the machine's cores went)."""
    waited, others_before = quiet  # from wait_for_quiet, just before
    load_before = load_average()
    with ExitStack() as stack:
        emulators: dict[str, EmulatorProcess] = {}
        for name in names:
            core = placement[name].emulator_core
            emulators[name] = stack.enter_context(emulator_process(SCENARIO, core=core))
        workers: dict[str, Worker] = {}
        for name in names:
            variant = VARIANTS[name]
            url = emulators[name].url
            workers[name] = stack.enter_context(_worker(variant, url, sessions))
        deadline = time.monotonic() + CONNECT_SECONDS + 0.2 * sessions
        connected = {name: workers[name].expect("connected", deadline) for name in names}
        # Pinned once connected: imports and the connection storm may use both cores.
        for name, worker in workers.items():
            core = placement[name].client_core
            if core is not None:
                pin_process(worker.process.pid, core)
        start = time.time() + warmup
        end = start + window
        for worker in workers.values():
            worker.send_window(start, end)
        pids = {f"emulator:{n}": e.pid for n, e in emulators.items()}
        pids |= {f"client:{n}": w.process.pid for n, w in workers.items()}
        _sleep_until(start)
        before = Snapshot.take(pids)
        _sleep_until(end)
        after = Snapshot.take(pids)
        deadline = time.monotonic() + REPORT_SECONDS
        reports = {name: workers[name].expect("report", deadline) for name in names}
    seconds = window
    ncpu = os.cpu_count() or 1
    machine_busy = ncpu * (after.busy - before.busy) / max(1, after.total - before.total)
    share = {label: (after.cpu[label] - before.cpu[label]) / seconds for label in pids}
    ours_total = sum(share.values())
    rows = []
    for name in names:
        stats = emulators[name].stats()  # written when it exited
        lag = stats["pacing_lag_ms"]
        row = dict(reports[name])
        row.update(
            variant=VARIANTS[name].name,  # as the parent names it (a baseline's own says "ours")
            variant_key=name,
            mode="together" if len(names) > 1 else "alone",
            group=[VARIANTS[n].name for n in names],
            client_core=placement[name].client_core,
            emulator_core=placement[name].emulator_core,
            connected=connected[name]["connected"],
            emulator_core_share=round(share[f"emulator:{name}"], 3),
            emulator_pacing_lag_p99_ms=lag["p99"],
            emulator_chunks_late_share=round(
                stats["chunks_late_over_20ms"] / max(1, stats["paced_chunks"]), 5
            ),
            cores={
                "clients": round(sum(v for k, v in share.items() if k.startswith("client:")), 3),
                "emulators": round(
                    sum(v for k, v in share.items() if k.startswith("emulator:")), 3
                ),
                "others": round(max(0.0, machine_busy - ours_total), 3),
                "others_before": others_before,
                "waited_for_quiet_seconds": waited,
                "machine_busy": round(machine_busy, 3),
                "of": ncpu,
            },
            load_average=[load_before, load_average()],
        )
        rows.append(row)
    return rows


def run(
    *,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    levels: Sequence[int] = LEVELS,
    reps: int = REPS,
    window: float = WINDOW_SECONDS,
    warmup: float = WARMUP_SECONDS,
    mode: str = "auto",
    run_saturated: bool = False,
    quiet_wait: float = QUIET_WAIT_SECONDS,
    echo: bool = True,
) -> dict[str, Any]:
    """Every level ``reps`` times, interleaved (all levels, then all again); returns the
    runs, the plans and the summary (see ``benchmarks/session_report.py``)."""
    # Long because the loop reads in the order the run happens (plan, wait for a quiet
    # machine, each group, record), and the settings written to results.json are listed.
    from benchmarks import session_report

    costs = Costs()
    runs: list[dict[str, Any]] = []
    plans: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    started = time.monotonic()
    for rep in range(reps):
        for sessions in sorted(levels):
            quiet = wait_for_quiet(quiet_wait)
            plan = plan_level(
                variants,
                sessions,
                costs,
                mode=mode,
                rep=rep,
                run_saturated=run_saturated,
                others=quiet[1],
            )
            plans.append(
                {
                    "rep": rep,
                    "sessions": sessions,
                    "mode": plan.mode,
                    "why": plan.why,
                    "skipped": plan.skipped,
                    "predicted_cores": {k: round(v, 2) for k, v in plan.demand.items()},
                }
            )
            if echo:
                print(f"-- rep {rep + 1}/{reps}, {sessions} sessions: {plan.why}", flush=True)
                for name, reason in plan.skipped.items():
                    print(f"   {VARIANTS[name].name} not run: {reason}", flush=True)
            for index, group in enumerate(plan.groups):
                if index:
                    quiet = wait_for_quiet(quiet_wait)
                try:
                    rows = run_group(
                        group,
                        sessions,
                        plan.placement,
                        window=window,
                        warmup=warmup,
                        quiet=quiet,
                    )
                except WorkerError as exc:  # one failed run must not lose the others
                    failures.append(
                        {"rep": rep, "sessions": sessions, "group": group, "error": str(exc)}
                    )
                    if echo:
                        print(f"   FAILED: {exc}", flush=True)
                    continue
                for row in rows:
                    row["rep"] = rep
                    runs.append(row)
                    _learn(costs, row)
                    if echo:
                        session_report.print_run(row)
    summary = session_report.summarize(runs)
    return {
        "settings": {
            "variants": list(variants),
            "levels": sorted(levels),
            "reps": reps,
            "window_seconds": window,
            "warmup_seconds": warmup,
            "mode": mode,
            "quiet_cores": QUIET_CORES,
            "quiet_wait_seconds": quiet_wait,
            "together_max_core": TOGETHER_MAX_CORE,
            "skip_above_cores": SKIP_ABOVE_CORES,
            "elapsed_seconds": round(time.monotonic() - started, 1),
        },
        "patterns": {VARIANTS[v].name: VARIANTS[v].pattern for v in variants},
        "plans": plans,
        "runs": runs,
        "failures": failures,
        **summary,
    }


def _learn(costs: Costs, row: dict[str, Any]) -> None:
    """Costs for planning: only from runs that kept up (a saturated run's CPU per session
    is the core divided by N, not a cost)."""
    if row["audio_sent_share"] >= 0.98 and row["core_share"] < 0.9:
        costs.note(row["variant_key"], row["sessions"], row["cpu_us_per_session_second"])
    if row["emulator_core_share"] < 0.9:
        us = row["emulator_core_share"] / row["sessions"] * 1e6
        costs.note("emulator", row["sessions"], us)


def parse_variants(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown or not names:
        named = ", ".join(unknown) or "(none)"
        raise argparse.ArgumentTypeError(f"unknown variant(s) {named}; from {', '.join(VARIANTS)}")
    return names


def parse_levels(text: str) -> list[int]:
    try:
        levels = [int(level) for level in text.split(",") if level.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"levels are numbers of sessions: {text!r}") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"levels are numbers of sessions >= 1: {text!r}")
    return levels


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The session-load options, shared with ``python -m benchmarks``."""
    parser.add_argument(
        "--variants",
        type=parse_variants,
        default=list(DEFAULT_VARIANTS),
        help=f"comma-separated, from {', '.join(VARIANTS)} (default: {','.join(DEFAULT_VARIANTS)})",
    )
    parser.add_argument(
        "--levels",
        type=parse_levels,
        help=f"comma-separated session counts (default {','.join(map(str, LEVELS))}; "
        f"--quick: {','.join(map(str, QUICK_LEVELS))})",
    )
    parser.add_argument(
        "--reps", type=int, help=f"repetitions per level (default {REPS}; --quick 1)"
    )
    parser.add_argument(
        "--window", type=float, help=f"measured seconds per run (default {WINDOW_SECONDS:g})"
    )
    parser.add_argument(
        "--mode",
        choices=("auto", "together", "turns"),
        default="auto",
        help="run the variants of a level together, in turns, or as predicted load allows",
    )
    parser.add_argument(
        "--run-saturated",
        action="store_true",
        help="also run variants predicted to need more than a core and a half",
    )


def options(args: argparse.Namespace, *, quick: bool) -> dict[str, Any]:
    return {
        "variants": args.variants,
        "levels": args.levels or (QUICK_LEVELS if quick else LEVELS),
        "reps": args.reps or (1 if quick else REPS),
        "window": args.window or (QUICK_WINDOW_SECONDS if quick else WINDOW_SECONDS),
        "warmup": QUICK_WARMUP_SECONDS if quick else WARMUP_SECONDS,
        "quiet_wait": QUICK_QUIET_WAIT_SECONDS if quick else QUIET_WAIT_SECONDS,
        "mode": args.mode,
        "run_saturated": args.run_saturated,
    }


def main() -> int:
    from benchmarks import session_report

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.session_load", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="levels 10,50 once, 4 s windows")
    parser.add_argument("--json", type=Path, help="also write everything measured here")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="also run ours as the checkout in DIR has it (e.g. git archive main | tar -x -C DIR)",
    )
    add_arguments(parser)
    args = parser.parse_args()
    if args.baseline is not None:
        if not (args.baseline / "benchmarks" / "session_ours.py").is_file():
            parser.error(f"--baseline {args.baseline}: no benchmarks/session_ours.py there")
        VARIANTS["baseline"] = baseline_variant(args.baseline)
        args.variants = ["baseline", *[v for v in args.variants if v != "baseline"]]
    result = run(**options(args, quick=args.quick))
    session_report.print_summary(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
