"""Runs a peer's headless driver (``peers/<peer>/driver.py``) against emulators.

Each case gets its own emulator (``open_emulator(tls=True)`` on 127.0.0.1, port 0: its
own scenario and faults); then one driver process, with the peer's own venv python, holds
every case's conversation at once (``--run`` per case), which pays the peer's import time
(LiveKit's is about 9 s of CPU) once per peer rather than once per case. The driver
prints JSON lines; ``PeerRun.outcome(name)`` is what one case's conversation did.

Everything runs in a ``trio.run`` of its own, from a module-scoped fixture: the tests then
assert on the outcomes, so a case that fails only fails its own test.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from emulator import Behaviour, Reply, Scenario, Turn, open_emulator
from emulator.audio import synthesize_speech
from tests.emulator.client import WEATHER_TURN

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "peers"
SPEED = 4.0  # the microphone and the emulator's replies both run 4x real time
DRIVER_TIMEOUT = 45.0  # each driver's own global timeout (s)
PROCESS_TIMEOUT = 75.0  # the whole driver process, imports included (s)

MODEL_25 = "gemini-2.5-flash-native-audio-preview-12-2025"
MODEL_31 = "gemini-3.1-flash-live-preview"  # a 3.x model in the emulator's list
MODEL_38 = "gemini-3.8-live"  # LiveKit's first listed model, Pipecat's default
MODEL_38_THINKING = "gemini-3.8-live-extended-thinking"

QUESTION = WEATHER_TURN.user  # "What's the weather in Paris?"
ANSWER = "It is sunny in Paris today."
THANKS = "Thanks, that is all."
WELCOME = "You're welcome."
GREETING = "Hello! How can I help you today?"
LONG_ANSWER = " ".join(["Let me tell you a long story about the weather in many cities."] * 4)
STOP = "Stop, please."
OKAY = "Okay."
FAST = Behaviour(speed=SPEED, first_audio_delay_ms=0)
THANKS_TURN = Turn(user=THANKS, replies=(Reply(say=WELCOME),))
GREETING_TURN = Turn(user="(a text turn)", replies=(Reply(say=GREETING),))

CONVERSATION = Scenario(turns=(WEATHER_TURN, THANKS_TURN), behaviour=FAST)
BARGE_IN = Scenario(
    turns=(
        Turn(user=QUESTION, replies=(WEATHER_TURN.replies[0], Reply(say=LONG_ANSWER))),
        Turn(user=STOP, replies=(Reply(say=OKAY),)),
    ),
    behaviour=FAST,
)
GREETING_FIRST = Scenario(turns=(GREETING_TURN, WEATHER_TURN, THANKS_TURN), behaviour=FAST)
GO_AWAY = "goaway:at=turn-end,time_left=0.5,connection=1"
MEANWHILE = "Let me check the weather for you."
# The weather turn with what the model says while a NON_BLOCKING call runs.
SLOW_TOOL = Scenario(
    turns=(
        Turn(
            user=QUESTION,
            replies=(
                Reply(tool_calls=WEATHER_TURN.replies[0].tool_calls, meanwhile=MEANWHILE),
                *WEATHER_TURN.replies[1:],
            ),
        ),
        THANKS_TURN,
    ),
    behaviour=FAST,
)


def speech_bytes(text: str) -> int:
    """How many bytes of 24 kHz audio the emulator speaks for ``text``."""
    return len(synthesize_speech(text))


@dataclass(frozen=True)
class Case:
    """One conversation of one peer: the driver's mode, model and microphone rate, and the
    emulator it talks to."""

    name: str
    mode: str
    model: str
    rate: int
    scenario: Scenario
    faults: tuple[str, ...] = ()


@dataclass
class Outcome:
    """What one case's conversation did: the driver's events and summary, and what its
    emulator counted."""

    events: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    connections: int = 0
    turns_played: int = 0

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    def first(self, kind: str) -> dict[str, Any]:
        found = self.of(kind)
        assert found, f"no {kind} event in {self.events}"
        return found[0]


@dataclass
class PeerRun:
    peer: str
    returncode: int
    stderr: str
    outcomes: dict[str, Outcome]

    def outcome(self, name: str) -> Outcome:
        """The case's outcome; its summary must say the driver finished it."""
        result = self.outcomes[name]
        assert result.summary, f"{self.peer} printed no summary for {name}:\n{self.stderr}"
        return result

    def passed(self, name: str) -> Outcome:
        """The case's outcome, which the driver must have judged a success."""
        result = self.outcome(name)
        assert result.summary["ok"], (
            f"{self.peer} {name}: {result.summary['reason']}\n"
            f"events: {json.dumps(result.events)[:3000]}\nstderr tail:\n{self.stderr[-3000:]}"
        )
        return result


def python_of(peer: str) -> Path:
    python = PEERS / peer / ".venv" / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"{python} is missing: run 'make peers' (make test does)")
    return python


def run_peer(peer: str, cases: list[Case]) -> PeerRun:
    """Every case of one peer at once, each on its own emulator, in one driver process."""
    return trio.run(_run_peer, peer, cases)


async def _run_peer(peer: str, cases: list[Case]) -> PeerRun:
    command: list[str] = [str(python_of(peer)), str(PEERS / peer / "driver.py")]
    command += ["--speed", str(SPEED), "--timeout", str(DRIVER_TIMEOUT)]
    async with AsyncExitStack() as stack:
        emulators = []
        for case in cases:
            emu = await stack.enter_async_context(
                open_emulator(scenario=case.scenario, tls=True, faults=case.faults)
            )
            emulators.append(emu)
            command += ["--run", emu.https_base_url, str(emu.ca_path), case.mode, case.model]
            command.append(str(case.rate))
        with trio.fail_after(PROCESS_TIMEOUT):
            done = await trio.run_process(
                command, capture_stdout=True, capture_stderr=True, check=False
            )
        outcomes = {case.name: Outcome() for case in cases}
        for line in done.stdout.decode().splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a stray print of the peer's own
            if not isinstance(event, dict) or "run" not in event:
                continue
            outcome = outcomes[cases[event["run"]].name]
            outcome.events.append(event)
            if event["event"] == "summary":
                outcome.summary = event
        for case, emu in zip(cases, emulators, strict=True):
            outcomes[case.name].connections = emu.connections
            outcomes[case.name].turns_played = emu.stats.turns
    return PeerRun(peer, done.returncode, done.stderr.decode(errors="replace"), outcomes)


# --- what a good conversation looks like, whoever the peer ----------------------------


def assert_tool_ran_once(outcome: Outcome) -> None:
    """One get_weather call, answered once with that call's id. The emulator speaks the
    answer only after a toolResponse with the id of the call it issued (any other id
    closes the session with 1007), so the spoken answer that follows proves the result
    reached it."""
    calls = outcome.summary["tool_calls"]
    results = outcome.summary["tool_results"]
    assert [(c["name"], c["args"]) for c in calls] == [("get_weather", {"city": "Paris"})]
    assert [r["id"] for r in results] == [calls[0]["id"]]
    assert calls[0]["id"].startswith("call-emu-")


def assert_conversation(outcome: Outcome, *, connections: int = 1) -> None:
    """Question -> tool call -> spoken answer; thanks -> spoken answer; nothing else."""
    summary = outcome.summary
    assert summary["ok"], summary["reason"]
    assert summary["user_transcripts"] == [QUESTION, THANKS]
    assert summary["agent_transcripts"] == [ANSWER, WELCOME]
    assert_tool_ran_once(outcome)
    assert summary["replies_audio_bytes"] == [speech_bytes(ANSWER), speech_bytes(WELCOME)]
    assert summary["interrupted"] == 0
    assert summary["errors"] == []
    assert outcome.connections == connections
    assert outcome.turns_played == 2


def assert_barge_in(outcome: Outcome) -> None:
    """The long answer is cut short by the user's speech; the next turn answers that."""
    summary = outcome.summary
    assert summary["ok"], summary["reason"]
    assert summary["interrupted"] == 1
    assert_tool_ran_once(outcome)
    interrupted_audio, next_audio = summary["replies_audio_bytes"]
    assert 0 < interrupted_audio < speech_bytes(LONG_ANSWER) / 2
    assert next_audio == speech_bytes(OKAY)
    assert summary["user_transcripts"] == [QUESTION, STOP]
    assert summary["agent_transcripts"][-1] == OKAY
    assert outcome.turns_played == 2


def assert_non_blocking(outcome: Outcome) -> None:
    """The model spoke while the tool ran (its audio began before the result was sent),
    then answered with the result, then answered the thanks: one tool call, no
    interruption, three spoken replies for two user turns."""
    summary = outcome.summary
    assert summary["ok"], summary["reason"]
    assert outcome.first("audio_start")["t"] < outcome.first("tool_result_sent")["t"]
    assert summary["agent_transcripts"] == [MEANWHILE, ANSWER, WELCOME]
    assert summary["user_transcripts"] == [QUESTION, THANKS]
    assert_tool_ran_once(outcome)
    assert summary["interrupted"] == 0
    assert outcome.turns_played == 2


def assert_resumed(outcome: Outcome) -> None:
    """goAway after the first answer; the client reconnects with its handle and the
    conversation goes on where it was (the emulator's script continues at the second
    turn: a fresh session would start the script again and answer the weather)."""
    assert outcome.connections == 2
    assert outcome.summary["connections"] == 2
    assert outcome.summary["resumed"] == 1
    assert_conversation(outcome, connections=2)
