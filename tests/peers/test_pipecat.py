"""Pipecat's Gemini Live service (pipecat-ai[google] 1.14.0) as a client of the emulator.

The service runs headless in its own locked venv (``peers/pipecat``; Pipecat pins
google-genai < 3), driven by ``peers/pipecat/driver.py``: a ``Pipeline`` of the service
between two small processors, an ``LLMContextFrame`` first, then ``InputAudioRawFrame``s
at the microphone's own rate, the tool a registered function. Every case below runs at
once in one driver process (see ``tests/peers/harness.py``); each test checks one case.

The tests that were strict xfails for the emulator's faults (issue 15: the audio rate,
the model list, typed text echoed as a transcript, 3.x text turns, NON_BLOCKING tools,
interactionStatus) now pass; each says which fault it guards.
"""

from __future__ import annotations

import pytest

from tests.peers.harness import (
    BARGE_IN,
    CONVERSATION,
    GO_AWAY,
    GREETING,
    GREETING_FIRST,
    MODEL_25,
    MODEL_31,
    MODEL_38,
    MODEL_38_THINKING,
    QUESTION,
    SLOW_TOOL,
    THANKS,
    Case,
    PeerRun,
    assert_barge_in,
    assert_conversation,
    assert_non_blocking,
    assert_resumed,
    run_peer,
)

CASES = [
    Case("conversation-16k", "conversation", MODEL_25, 16000, CONVERSATION),
    Case("conversation-48k", "conversation", MODEL_25, 48000, CONVERSATION),
    Case("barge-in", "barge-in", MODEL_25, 16000, BARGE_IN),
    Case("goaway", "goaway", MODEL_25, 16000, CONVERSATION, (GO_AWAY,)),
    Case("conversation-3.1", "conversation", MODEL_31, 16000, CONVERSATION),
    Case("conversation-3.8", "conversation", MODEL_38, 16000, CONVERSATION),
    Case("greeting-2.5", "greeting", MODEL_25, 16000, GREETING_FIRST),
    Case("greeting-3.1", "greeting", MODEL_31, 16000, GREETING_FIRST),
    Case("greeting-3.8", "greeting", MODEL_38, 16000, GREETING_FIRST),
    Case("thinking-3.8", "conversation", MODEL_38_THINKING, 16000, CONVERSATION),
    Case("slow-tool-3.8", "slow-tool", MODEL_38, 16000, SLOW_TOOL),
]


@pytest.fixture(scope="module")
def pipecat() -> PeerRun:
    return run_peer("pipecat", CASES)


def test_a_two_turn_spoken_conversation_with_a_tool_call_at_16_khz(pipecat: PeerRun) -> None:
    assert_conversation(pipecat.passed("conversation-16k"))


def test_the_same_at_48_khz_pipecat_sends_its_own_rate(pipecat: PeerRun) -> None:
    """audio/pcm;rate=48000 as Pipecat sends it: resampled for the VAD (issue 15)."""
    outcome = pipecat.passed("conversation-48k")
    assert_conversation(outcome)


def test_barge_in_interrupts_the_answer(pipecat: PeerRun) -> None:
    assert_barge_in(pipecat.passed("barge-in"))


def test_go_away_then_resume_on_a_new_connection(pipecat: PeerRun) -> None:
    """Pipecat ignores goAway itself: the server closes the connection when the time is up
    (1011, as the service does), and Pipecat reconnects with its latest resumption handle."""
    outcome = pipecat.passed("goaway")
    assert outcome.first("go_away")["time_left"] == "0.500s"
    assert_resumed(outcome)


def test_a_conversation_on_a_3_x_model(pipecat: PeerRun) -> None:
    assert_conversation(pipecat.passed("conversation-3.1"))


def test_pipecats_default_model_is_accepted_by_the_default_scenario(pipecat: PeerRun) -> None:
    """gemini-3.8-live, Pipecat's default (issue 15: the model list)."""
    assert_conversation(pipecat.passed("conversation-3.8"))


def test_a_greeting_from_the_context_adds_no_user_transcript(pipecat: PeerRun) -> None:
    """The greeting request is typed text: not transcribed (issue 15)."""
    outcome = pipecat.passed("greeting-2.5")
    assert outcome.summary["agent_transcripts"][0] == GREETING
    assert outcome.summary["user_transcripts"] == [QUESTION, THANKS]


@pytest.mark.parametrize("case", ["greeting-3.1", "greeting-3.8"])
def test_a_greeting_on_a_3_x_model_is_one_turn(pipecat: PeerRun, case: str) -> None:
    """On 3.x Pipecat seeds the context as initial history (historyConfig), then nudges
    with realtimeInput text " ": one reply, not two turns (issue 15)."""
    outcome = pipecat.passed(case)
    assert outcome.summary["interrupted"] == 0
    assert outcome.summary["agent_transcripts"][0] == GREETING
    assert outcome.summary["user_transcripts"] == [QUESTION, THANKS]
    assert outcome.turns_played == 3  # the greeting, the question, the thanks


def test_a_conversation_on_a_3_8_thinking_model(pipecat: PeerRun) -> None:
    assert_conversation(pipecat.passed("thinking-3.8"))


def test_a_thinking_model_reports_its_interaction_status(pipecat: PeerRun) -> None:
    """Every turnComplete of gemini-3.8-live-extended-thinking carries interactionStatus:
    IN_PROGRESS while the NON_BLOCKING call runs, IDLE at the end (issue 15)."""
    statuses = [e["value"] for e in pipecat.passed("thinking-3.8").of("interaction_status")]
    assert statuses[0] == "IN_PROGRESS"  # the tool call's turn: the call still runs
    assert statuses[-1] == "IDLE"


def test_an_async_tool_is_non_blocking_and_its_result_scheduled(pipecat: PeerRun) -> None:
    """Pipecat declares an async tool NON_BLOCKING and answers with WHEN_IDLE: the model
    speaks while it runs and says the result after (issue 15)."""
    assert_non_blocking(pipecat.passed("slow-tool-3.8"))
