"""LiveKit's Google realtime plugin (livekit-plugins-google 1.8.9) as a client of the emulator.

The plugin runs headless in its own locked venv (``peers/livekit``), driven by
``peers/livekit/driver.py``: no room, ``rtc.AudioFrame``s pushed into a
``RealtimeModel`` session, ``generation_created`` streams drained, the tool answered
through ``update_chat_ctx``. Every case below runs at once in one driver process (see
``tests/peers/harness.py``); each test checks one case.

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
    Case("greeting", "greeting", MODEL_25, 16000, GREETING_FIRST),
    Case("greeting-3.8", "greeting", MODEL_38, 16000, GREETING_FIRST),
    Case("slow-tool-3.8", "slow-tool", MODEL_38, 16000, SLOW_TOOL),
]


@pytest.fixture(scope="module")
def livekit() -> PeerRun:
    return run_peer("livekit", CASES)


def test_a_two_turn_spoken_conversation_with_a_tool_call_at_16_khz(livekit: PeerRun) -> None:
    assert_conversation(livekit.passed("conversation-16k"))


def test_the_same_at_48_khz_the_plugin_resamples_to_16_khz_itself(livekit: PeerRun) -> None:
    assert_conversation(livekit.passed("conversation-48k"))


def test_barge_in_interrupts_the_answer(livekit: PeerRun) -> None:
    assert_barge_in(livekit.passed("barge-in"))


def test_go_away_then_resume_on_a_new_connection(livekit: PeerRun) -> None:
    outcome = livekit.passed("goaway")
    assert_resumed(outcome)
    connected = outcome.of("connected")
    assert [e["resumed"] for e in connected] == [False, True]


def test_a_conversation_on_a_3_x_model(livekit: PeerRun) -> None:
    assert_conversation(livekit.passed("conversation-3.1"))


def test_gemini_3_8_live_is_accepted_by_the_default_scenario(livekit: PeerRun) -> None:
    """LiveKit's first listed model; it declares tools NON_BLOCKING there, so the answer
    comes as a reply of its own once the result is in (issue 15: the model list)."""
    assert_conversation(livekit.passed("conversation-3.8"))


def test_generate_reply_adds_no_user_transcript(livekit: PeerRun) -> None:
    """The '.' placeholder LiveKit sends on 2.5 is typed text: not transcribed (issue 15)."""
    outcome = livekit.passed("greeting")
    assert outcome.summary["agent_transcripts"][0] == GREETING
    assert outcome.summary["user_transcripts"] == [QUESTION, THANKS]


def test_generate_reply_on_3_8_sends_instructions_as_a_user_turn_and_is_answered(
    livekit: PeerRun,
) -> None:
    """On 3.x LiveKit sends no placeholder: its instructions go as a user turn with
    turnComplete, which starts the reply; nothing typed is transcribed."""
    outcome = livekit.passed("greeting-3.8")
    assert outcome.summary["agent_transcripts"][0] == GREETING
    assert outcome.summary["user_transcripts"] == [QUESTION, THANKS]
    assert outcome.turns_played == 3


def test_a_non_blocking_tool_does_not_silence_the_model(livekit: PeerRun) -> None:
    """gemini-3.8-live: LiveKit declares the tool NON_BLOCKING; the model speaks while
    the 2 s tool runs, then answers with its result (issue 15)."""
    assert_non_blocking(livekit.passed("slow-tool-3.8"))
