"""How the client speaks to each model family (protocol.client_rules): the messages per
family, checked against the emulator's own family rules (protocol.models) and, where the
SDK has the types, against google-genai 3.6.1's parser (which forbids unknown fields)."""

from __future__ import annotations

from typing import Any

import pytest
from google.genai import types

from protocol import encode, models
from protocol import wire as w
from protocol.client_rules import (
    INSTRUCTIONS_TEMPLATE,
    ClientRules,
    ModelRuleError,
    folded_call,
    folded_result,
)

R25 = ClientRules.for_model("gemini-2.5-flash-native-audio-preview-12-2025")
R31 = ClientRules.for_model("gemini-3.1-flash-live-preview")
R38 = ClientRules.for_model("models/gemini-3.8-live")
R38T = ClientRules.for_model("gemini-3.8-live-extended-thinking")
V38 = ClientRules.for_model("gemini-3.8-live", "vertex")


def sdk(message: w.ClientMessage) -> types.LiveClientMessage:
    return types.LiveClientMessage.model_validate_json(encode(message))


def test_families_are_looked_up_guessed_or_given() -> None:
    assert (R25.family.name, R31.family.name, R38.family.name, R38T.family.name) == (
        "2.5",
        "3.1",
        "3.8",
        "3.8-thinking",
    )
    assert R38.known
    assert R38.model == "gemini-3.8-live"
    guessed = ClientRules.for_model("gemini-4.0-live-preview")
    assert (guessed.family.name, guessed.known) == ("3.8", False)
    assert ClientRules.for_model("gemini-4.0-live", family="3.1").family.name == "3.1"
    with pytest.raises(ModelRuleError, match="no model family"):
        ClientRules.for_model("x", family="9.9")


def test_typed_text_is_a_user_turn_on_2_5_and_realtime_text_on_3x() -> None:
    assert R25.user_text("hi") == w.ClientContent(
        turns=[w.Content(role="user", parts=[w.Part(text="hi")])], turn_complete=True
    )
    for rules in (R31, R38, R38T):
        assert rules.user_text("hi") == w.RealtimeInput(text="hi")
    assert sdk(R38.user_text("hi")).realtime_input == types.LiveClientRealtimeInput(text="hi")


def test_context_always_says_each_turns_role() -> None:
    message = R38.context([("user", "I am Ada."), ("model", "Hello Ada.")])
    assert [t.role for t in message.turns or ()] == ["user", "model"]
    assert not message.turn_complete
    parsed = sdk(message).client_content
    assert parsed is not None
    assert parsed.turns is not None
    assert [t.role for t in parsed.turns] == ["user", "model"]


def test_reply_requests_per_family() -> None:
    bare = w.ClientContent(turn_complete=True)
    assert R25.reply_request() == [bare]
    assert R38.reply_request() == [bare]
    assert R31.reply_request() == [bare, w.RealtimeInput(text=" ")]  # Pipecat's 3.1 nudge
    wrapped = INSTRUCTIONS_TEMPLATE.format("Greet the user.")
    assert R38.reply_request("Greet the user.") == [w.RealtimeInput(text=wrapped)]
    assert R25.reply_request("Greet the user.") == [
        w.ClientContent(
            turns=[w.Content(role="user", parts=[w.Part(text=wrapped)])], turn_complete=True
        )
    ]
    for message in R31.reply_request() + R25.reply_request("x"):
        sdk(message)


HISTORY = [
    w.Content(role="user", parts=[w.Part(text="Hi, I am Ada.")]),
    w.Content(role="model", parts=[w.Part(text="Hello Ada.")]),
]


def test_seeds_follow_the_family_and_the_api() -> None:
    # 3.x on the Gemini API: historyConfig, and the history ends with turnComplete.
    assert R38.history_config(seeding=True) == w.HistoryConfig(
        initial_history_in_client_content=True
    )
    assert R38.history_config(seeding=False) is None
    assert R38.seed(HISTORY) == [w.ClientContent(turns=HISTORY, turn_complete=True)]
    assert R38.seed(HISTORY, reply_wanted=True) == [
        w.ClientContent(turns=HISTORY, turn_complete=True),
        w.ClientContent(turn_complete=True),
    ]
    # Vertex refuses historyConfig; 2.5 ignores it.
    assert V38.history_config(seeding=True) is None
    assert R25.history_config(seeding=True) is None
    assert V38.seed(HISTORY) == [w.ClientContent(turns=HISTORY, turn_complete=False)]
    assert R25.seed(HISTORY) == [w.ClientContent(turns=HISTORY, turn_complete=False)]
    # 2.5 replies only after a user turn: a seed ending with the model's asks for none.
    assert R25.seed(HISTORY, reply_wanted=True) == [
        w.ClientContent(turns=HISTORY, turn_complete=False)
    ]
    ends_with_user = [*HISTORY, folded_result("f", {"ok": True})]
    assert R25.seed(ends_with_user, reply_wanted=True) == [
        w.ClientContent(turns=ends_with_user, turn_complete=True)
    ]
    assert R25.seed([]) == []


@pytest.mark.parametrize("rules", [R25, R31, R38, R38T, V38], ids=lambda r: r.family.name)
def test_every_seed_passes_the_familys_own_rules(rules: ClientRules) -> None:
    """What the emulator refuses (protocol.server_session) is never what we send: a seed
    ending with the model's turn never carries turnComplete on 2.5."""
    for turns in (HISTORY, [*HISTORY, folded_result("f", 1)]):
        for wanted in (False, True):
            for message in rules.seed(turns, reply_wanted=wanted):
                sdk(message)
                if isinstance(message, w.ClientContent) and message.turn_complete:
                    last = (message.turns or [w.Content(role="user")])[-1]
                    seeding = rules.uses_history_config and message.turns is not None
                    assert seeding or not rules.family.seed_ends_with_user or last.role == "user"


def test_tool_behaviors_per_family() -> None:
    # Unasked: blocking where the family has it; 3.8 extended thinking runs NON_BLOCKING only.
    assert [r.effective_behavior("f", None) for r in (R25, R31, R38, R38T)] == [
        "BLOCKING",
        "BLOCKING",
        "BLOCKING",
        "NON_BLOCKING",
    ]
    with pytest.raises(ModelRuleError, match="BLOCKING tools only"):
        R31.effective_behavior("f", "NON_BLOCKING")
    with pytest.raises(ModelRuleError, match="NON_BLOCKING tools only"):
        R38T.effective_behavior("f", "BLOCKING")
    # Declared: BLOCKING written out only where the default is NON_BLOCKING (3.8).
    assert [r.declared_behavior("BLOCKING") for r in (R25, R31, R38)] == [None, None, "BLOCKING"]
    assert [r.declared_behavior("NON_BLOCKING") for r in (R25, R38, R38T)] == ["NON_BLOCKING"] * 3


def setup_with(rules: ClientRules, **fields: Any) -> w.Setup:
    return w.Setup(model=f"models/{rules.model}", **fields)


def test_thinking_per_family_and_what_each_refuses() -> None:
    assert R25.thinking_config(budget=512) == w.ThinkingConfig(thinking_budget=512)
    assert R31.thinking_config(level="MINIMAL") == w.ThinkingConfig(thinking_level="MINIMAL")
    assert R38T.thinking_config() == w.ThinkingConfig(thinking_level="LOW")  # one is needed
    assert R38T.thinking_config(level="HIGH", include_thoughts=True) == w.ThinkingConfig(
        thinking_level="HIGH", include_thoughts=True
    )
    assert R38.thinking_config() is None
    assert R38.thinking_config(include_thoughts=True) == w.ThinkingConfig(include_thoughts=True)
    for rules, kwargs, message in (
        (R38, {"level": "LOW"}, "no thinking"),
        (R38, {"budget": 1}, "no thinking"),
        (R25, {"level": "LOW"}, "not thinking_level"),
        (R31, {"budget": 1}, "not thinking_budget"),
        (R38T, {"level": "MINIMAL"}, "not supported"),
        (R38T, {"level": "XHIGH"}, "not supported"),
        (R31, {"level": "XHIGH"}, "not supported"),
    ):
        with pytest.raises(ModelRuleError, match=message):
            rules.thinking_config(**kwargs)
    # What we build, each family's own check accepts, and the SDK parses (XHIGH included).
    for rules, config in (
        (R25, R25.thinking_config(budget=1)),
        (R31, R31.thinking_config(level="HIGH")),
        (R38T, R38T.thinking_config()),
    ):
        setup = setup_with(rules, generation_config=w.GenerationConfig(thinking_config=config))
        assert models.setup_problem(setup, rules.family, "gemini") is None
        sdk(setup)
    xhigh = w.Setup(
        model="m",
        generation_config=w.GenerationConfig(
            thinking_config=w.ThinkingConfig(thinking_level="XHIGH")
        ),
    )
    parsed = sdk(xhigh).setup
    assert parsed is not None
    assert parsed.generation_config is not None
    assert parsed.generation_config.thinking_config is not None
    assert parsed.generation_config.thinking_config.thinking_level == types.ThinkingLevel.XHIGH


def test_check_setup_refuses_what_the_service_or_the_sdk_would() -> None:
    R38.check_setup(setup_with(R38, tools=[w.Tool(google_search={})]))
    cases: list[tuple[ClientRules, w.Setup, str]] = [
        (
            R38,
            setup_with(R38, generation_config=w.GenerationConfig(enable_affective_dialog=True)),
            "affective",
        ),
        (
            R31,
            setup_with(R31, proactivity=w.ProactivityConfig(proactive_video=True)),
            "proactivity",
        ),
        (
            R25,
            setup_with(R25, proactivity=w.ProactivityConfig(proactive_video=True)),
            "needs proactive_audio",
        ),
        (R38, setup_with(R38, explicit_vad_signal=True), "Vertex AI only"),
        (
            R38,
            setup_with(R38, tools=[w.Tool(retrieval={})]),
            "retrieval tool is supported on Vertex",
        ),
        (
            V38,
            setup_with(V38, tools=[w.Tool(file_search={})]),
            "fileSearch tool is supported on the Gemini",
        ),
        (
            R25,
            setup_with(
                R25,
                generation_config=w.GenerationConfig(
                    speech_config=w.SpeechConfig(
                        multi_speaker_voice_config=w.MultiSpeakerVoiceConfig()
                    )
                ),
            ),
            "multi-speaker",
        ),
    ]
    for rules, setup, message in cases:
        with pytest.raises(ModelRuleError, match=message):
            rules.check_setup(setup)
    R25.check_setup(
        setup_with(R25, proactivity=w.ProactivityConfig(proactive_audio=True, proactive_video=True))
    )
    V38.check_setup(setup_with(V38, explicit_vad_signal=True))


def test_folded_calls_are_text_the_sdk_parses() -> None:
    called = folded_call("get_weather", {"city": "Paris"})
    assert called == w.Content(
        role="model",
        parts=[w.Part(text='[Called function get_weather with args {"city": "Paris"}]')],
    )
    assert folded_result("f", error="boom").parts == [w.Part(text="[Function f failed: boom]")]
    long = folded_result("f", "x" * 10_000)
    assert long.parts is not None
    assert len(long.parts[0].text or "") == 4000
    sdk(w.ClientContent(turns=[called, long], turn_complete=True))
