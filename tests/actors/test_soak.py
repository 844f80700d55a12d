"""A short fault soak: concurrent sessions through the public facade against one emulator,
each with its own injected fault, several tool-calling turns each. Invariants on every
session: every tool call answered exactly once, every turn's transcripts complete and in
turn order, every fault recovered from, and no connection left open at the end."""

from __future__ import annotations

from collections import Counter

import trio
from trio.testing import MockClock

from actors.events import ResponseContent
from actors.playout import CollectorSink
from actors.realtime import RealtimeModel
from actors.tools import tool
from benchmarks.soak import SoakConfig, run_soak, scenario
from emulator import open_emulator
from protocol import wire as w
from runtime import messages as m
from tests.fakes import MemoryTransport

TURNS = 4
FAULTS = [
    None,
    "close:code=1011,at=mid-reply",
    "drop:at=mid-reply",
    "goaway:at=turn-end,time_left=2",
    "malformed:at=mid-reply",
    "close:code=1011,at=tool-pending",
]
runs: Counter[str] = Counter()


@tool
async def lookup(key: str) -> str:
    runs[key] += 1
    await trio.sleep(0.3)
    return f"value of {key}"


async def test_sessions_survive_their_faults_with_every_invariant_kept(
    autojump_clock: MockClock,
) -> None:
    runs.clear()
    # Faults are aimed at each session's first connection (connection N is the Nth accepted).
    specs = [f"{fault},connection={index + 1}" for index, fault in enumerate(FAULTS) if fault]
    violations: list[str] = []
    recoveries = 0
    total_calls = 0
    async with (
        open_emulator(scenario=scenario(TURNS * len(FAULTS), speed=4.0), faults=specs) as emu,
        trio.open_nursery() as nursery,
    ):

        async def one_session(index: int, task_status: trio.TaskStatus[None]) -> None:
            nonlocal recoveries, total_calls
            transport = MemoryTransport(emu, nursery)
            model = RealtimeModel(endpoint=emu.url, transport=transport)
            async with model.session(tools=[lookup], sink=CollectorSink()) as live:
                task_status.started()  # the next session connects after this one
                completed = 0
                seen: list[m.InternalMessage | ResponseContent] = []
                attempts = 0
                while completed < TURNS and attempts < 3 * TURNS:
                    attempts += 1  # a turn lost with its connection is asked again
                    live.send_text(f"question {completed} of session {index}")
                    with trio.fail_after(120):
                        async for event in live.events():
                            seen.append(event)
                            if isinstance(event, m.TranscriptCompleted) and event.role == "agent":
                                completed += 1
                                break
                            if (
                                isinstance(event, m.TurnCompleted)
                                and event.reason == "CONNECTION_LOST"
                            ):
                                break
                recoveries += sum(isinstance(e, m.Reconnected) for e in seen)
                answered = Counter(
                    r.id
                    for message in transport.sent
                    if isinstance(message, w.ToolResponse)
                    for r in message.function_responses or ()
                )
                calls = [e.call_id for e in seen if isinstance(e, m.ToolCallRequested)]
                total_calls += len(calls)
                if any(answered[c] != 1 for c in calls):
                    violations.append(f"session {index}: tool answers {dict(answered)} for {calls}")
                if completed != TURNS:
                    violations.append(f"session {index}: {completed} of {TURNS} turns completed")
                # In turn order, the user before the agent in each turn (a turn cut by a
                # fault may have the question and no answer).
                order = [
                    (int(h.item_id.split("-")[1]), h.role != "user") for h in live.chat_ctx_copy()
                ]
                if order != sorted(order) or len(order) != len(set(order)):
                    violations.append(f"session {index}: history out of order {order}")

        async with trio.open_nursery() as sessions:
            for index in range(len(FAULTS)):
                await sessions.start(one_session, index)
        with trio.fail_after(10):
            await emu.wait_until_idle()  # no connection left open
        assert all(fault.fired for fault in emu.faults.faults)  # every fault did happen
        nursery.cancel_scope.cancel()
    assert violations == []
    assert recoveries >= len(FAULTS) - 2  # every fault that cuts a connection was recovered
    assert sum(runs.values()) == total_calls  # every call ran, and none twice


async def test_the_random_soak_in_short_keeps_every_invariant(autojump_clock: MockClock) -> None:
    # `make soak` in miniature: random server faults, tool timeouts and actor crashes
    # (the sink failing, the link crashing) over the in-memory transport.
    config = SoakConfig(
        seconds=25,
        concurrency=4,
        turns=2,
        fault_interval=0.6,
        crash_probability=0.6,
        tool_timeout_probability=0.2,
        seed=7,
        check_process=False,
    )
    report = await run_soak(config, transport_for=MemoryTransport)
    assert report.violations == []
    assert report.sessions >= 4
    assert report.turns == report.sessions * config.turns
    assert report.reconnects > 0
    assert report.actor_restarts > 0
    assert report.faults_fired["tool timeout"] > 0
    assert report.recovered == report.sessions_hit > 0
    assert report.tasks[1] <= report.tasks[0]  # nothing left running
