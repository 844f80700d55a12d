"""The Live model families (protocol.models) and how the server side applies them: which
names are served with which rules, what each family refuses at setup and mid-session, with
the service's close codes and words (issue 15)."""

from __future__ import annotations

from typing import Any

import pytest

from protocol import models
from protocol import wire as w
from protocol.models import INVALID_ARGUMENT
from protocol.server_session import (
    ClientRejected,
    ContentReceived,
    ServerSession,
    ServiceRules,
    SessionRecord,
    SetupRequested,
    ToolResponsesReceived,
)

NOT_FOUND = "is not found for API version v1beta, or is not supported for bidiGenerateContent."


def served(model: str, rules: ServiceRules | None = None, **setup: Any) -> ServerSession:
    if "thinking" in model and "generation_config" not in setup:  # it needs a level
        setup["generation_config"] = thinking("LOW")
    session = ServerSession(rules or ServiceRules())
    event = session.receive(w.Setup(model=model, **setup))
    assert isinstance(event, SetupRequested)
    session.accept(SessionRecord("s"))
    return session


def refused(model: str, rules: ServiceRules | None = None, **setup: Any) -> ClientRejected:
    session = ServerSession(rules or ServiceRules())
    with pytest.raises(ClientRejected) as info:
        session.receive(w.Setup(model=model, **setup))
    return info.value


def family(session: ServerSession) -> str:
    assert session.config is not None
    return session.config.family.name


# --- names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "api", "expected"),
    [
        ("models/gemini-3.8-live", "gemini", "3.8"),
        ("models/gemini-3.8-live-extended-thinking", "gemini", "3.8-thinking"),
        ("models/gemini-3.1-flash-live-preview", "gemini", "3.1"),
        ("models/gemini-2.5-flash-native-audio-preview-12-2025", "gemini", "2.5"),
        ("models/gemini-2.5-flash-native-audio-latest", "gemini", "2.5"),
        ("projects/p/locations/l/publishers/google/models/gemini-3.8-live", "vertex", "3.8"),
        ("publishers/google/models/gemini-live-2.5-flash-native-audio", "vertex", "2.5"),
    ],
)
def test_current_models_are_served_with_their_familys_rules(
    model: str, api: models.Api, expected: str
) -> None:
    assert family(served(model, ServiceRules(api=api))) == expected


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gemini-4-live", "3.8"),
        ("gemini-3.9-live-extended-thinking-preview", "3.8-thinking"),
        ("gemini-3.5-transcribe-live", "3.1"),
        ("gemini-2.5-flash-native-audio-preview-01-2027", "2.5"),
        ("gemini-live-3.0-flash", "3.1"),
    ],
)
def test_plausible_unknown_names_get_the_closest_family_by_default(
    model: str, expected: str
) -> None:
    assert family(served(f"models/{model}")) == expected


@pytest.mark.parametrize(
    "model",
    [
        "models/gemini-9-ultra",  # not a Live model
        "models/gemini-2.0-flash-exp",  # retired
        "models/gemini-live-2.5-flash-preview",  # retired
        "models/gemini-live-2.5-flash-native-audio",  # Vertex's name, on the Gemini API
        "models/",
        "",
    ],
)
def test_other_names_are_refused_with_1008_in_the_services_words(model: str) -> None:
    error = refused(model)
    assert error.close_code == 1008
    assert str(error).endswith(NOT_FOUND)
    assert error.field == "setup.model"


def test_unknown_names_policy_and_listed_patterns() -> None:
    strict = ServiceRules(unknown_models="refuse")
    assert refused("models/gemini-4-live", strict).close_code == 1008
    assert family(served("models/gemini-3.8-live", strict)) == "3.8"  # known: still served
    listed = ServiceRules(unknown_models="refuse", models=("gemini-4-*", "gemini-2.0-flash-exp"))
    assert family(served("models/gemini-4-live", listed)) == "3.8"
    assert family(served("models/gemini-2.0-flash-exp", listed)) == "2.5"  # retired, listed
    assert family(served("models/anything", ServiceRules(unknown_models="any"))) == "2.5"


def test_a_family_override_applies_to_every_model_of_the_family() -> None:
    rules = ServiceRules(
        families={
            **models.FAMILIES,
            "3.8": _replace(
                models.FAMILIES["3.8"], thinking="level", thinking_levels=frozenset({"LOW"})
            ),
        }
    )
    level = w.GenerationConfig(thinking_config=w.ThinkingConfig(thinking_level="LOW"))
    assert served("models/gemini-3.8-live", rules, generation_config=level)


def _replace(family: models.ModelFamily, **changes: object) -> models.ModelFamily:
    import dataclasses

    return dataclasses.replace(family, **changes)  # type: ignore[arg-type]


# --- setup rules -----------------------------------------------------------------------


def thinking(level: str | None = None, budget: int | None = None) -> w.GenerationConfig:
    return w.GenerationConfig(
        thinking_config=w.ThinkingConfig(thinking_level=level, thinking_budget=budget)  # type: ignore[arg-type]
    )


def tools(behavior: str) -> list[w.Tool]:
    return [w.Tool(function_declarations=[w.FunctionDeclaration(name="f", behavior=behavior)])]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "setup", "words"),
    [
        (
            "gemini-3.8-live",
            {"generation_config": thinking("LOW")},
            "thinking_level is not supported by gemini-3.8-live",
        ),
        ("gemini-3.8-live", {"generation_config": thinking(budget=100)}, "thinkingBudget"),
        ("gemini-3.8-live-extended-thinking", {}, "needs a thinkingLevel"),
        (
            "gemini-3.8-live-extended-thinking",
            {"generation_config": thinking("MINIMAL")},
            "MINIMAL",
        ),
        ("gemini-3.8-live-extended-thinking", {"generation_config": thinking("XHIGH")}, "XHIGH"),
        ("gemini-3.1-flash-live-preview", {"generation_config": thinking("XHIGH")}, "XHIGH"),
        ("gemini-3.1-flash-live-preview", {"generation_config": thinking(budget=5)}, "Budget"),
        (
            "gemini-2.5-flash-native-audio-preview-12-2025",
            {"generation_config": thinking("LOW")},
            "not thinkingLevel",
        ),
        ("gemini-3.1-flash-live-preview", {"tools": tools("NON_BLOCKING")}, "NON_BLOCKING"),
        (
            "gemini-3.8-live-extended-thinking",
            {"tools": tools("BLOCKING"), "generation_config": thinking("LOW")},
            "BLOCKING",
        ),
        (
            "gemini-3.1-flash-live-preview",
            {"proactivity": w.ProactivityConfig(proactive_audio=True)},
            "proactive audio",
        ),
        (
            "gemini-3.8-live",
            {"proactivity": w.ProactivityConfig(proactive_audio=False)},
            "proactive audio",
        ),
        (
            "gemini-3.8-live",
            {"generation_config": w.GenerationConfig(enable_affective_dialog=True)},
            "affective dialog",
        ),
    ],
)
def test_setups_a_family_refuses_close_with_1007(
    model: str, setup: dict[str, Any], words: str
) -> None:
    error = refused(f"models/{model}", **setup)
    assert error.close_code == 1007
    assert words in str(error)
    assert str(error).startswith("thinking_level") or str(error).startswith(INVALID_ARGUMENT)


@pytest.mark.parametrize(
    ("model", "setup"),
    [
        ("gemini-3.8-live-extended-thinking", {"generation_config": thinking("LOW")}),
        (
            "gemini-3.8-live-extended-thinking",
            {"tools": tools("NON_BLOCKING"), "generation_config": thinking("HIGH")},
        ),
        ("gemini-3.1-flash-live-preview", {"generation_config": thinking("MINIMAL")}),
        ("gemini-3.1-flash-live-preview", {"tools": tools("BLOCKING")}),
        ("gemini-3.8-live", {"tools": tools("BLOCKING")}),
        ("gemini-3.8-live", {"proactivity": w.ProactivityConfig(proactive_audio=True)}),
        (
            "gemini-2.5-flash-native-audio-preview-12-2025",
            {
                "generation_config": w.GenerationConfig(
                    enable_affective_dialog=True,
                    thinking_config=w.ThinkingConfig(thinking_budget=512),
                ),
                "tools": tools("NON_BLOCKING"),
                "proactivity": w.ProactivityConfig(proactive_audio=True),
            },
        ),
    ],
)
def test_setups_a_family_accepts(model: str, setup: dict[str, Any]) -> None:
    served(f"models/{model}", **setup)


def test_tool_behaviors_default_per_family() -> None:
    declared = [
        w.Tool(
            function_declarations=[
                w.FunctionDeclaration(name="plain"),
                w.FunctionDeclaration(name="sync", behavior="BLOCKING"),
                w.FunctionDeclaration(name="async", behavior="NON_BLOCKING"),
            ]
        )
    ]
    config_38 = served("models/gemini-3.8-live", tools=declared).config
    assert config_38 is not None
    assert [config_38.non_blocking(n) for n in ("plain", "sync", "async")] == [True, False, True]
    config_25 = served("models/gemini-2.5-flash-native-audio-latest", tools=declared).config
    assert config_25 is not None
    assert [config_25.non_blocking(n) for n in ("plain", "sync", "async")] == [False, False, True]


def test_history_config_is_refused_on_vertex() -> None:
    error = refused(
        "publishers/google/models/gemini-3.8-live",
        ServiceRules(api="vertex"),
        history_config=w.HistoryConfig(initial_history_in_client_content=True),
    )
    assert (error.close_code, error.field) == (1007, "setup.historyConfig")


# --- mid-session rules -------------------------------------------------------------------


def content(*turns: tuple[str | None, str], complete: bool = True) -> w.ClientContent:
    return w.ClientContent(
        turns=[w.Content(role=role, parts=[w.Part(text=text)]) for role, text in turns],
        turn_complete=complete,
    )


def test_3_x_accepts_client_content_with_roles_and_refuses_a_turn_without_one() -> None:
    session = served("models/gemini-3.1-flash-live-preview")
    event = session.receive(content(("user", "hi"), ("model", "hello")))
    assert event == ContentReceived((("user", "hi"), ("model", "hello")), True)
    with pytest.raises(ClientRejected) as info:
        session.receive(content((None, "no role")))
    assert (info.value.close_code, info.value.field) == (1007, "clientContent.turns[0].role")
    assert str(info.value).startswith(INVALID_ARGUMENT)
    # 2.5 takes a turn without a role as the user's.
    old = served("models/gemini-2.5-flash-native-audio-latest")
    assert old.receive(content((None, "hi"))) == ContentReceived((("user", "hi"),), True)


def test_role_system_is_refused_on_the_gemini_api_and_a_new_instruction_on_vertex() -> None:
    gemini = served("models/gemini-2.5-flash-native-audio-latest")
    with pytest.raises(ClientRejected) as info:
        gemini.receive(content(("system", "be brief"), complete=False))
    assert info.value.close_code == 1007
    vertex = served("publishers/google/models/gemini-3.8-live", ServiceRules(api="vertex"))
    assert vertex.receive(content(("system", "be brief"), complete=False)) == ContentReceived(
        (), False
    )


def test_on_2_5_a_turn_complete_whose_last_turn_is_the_models_is_refused() -> None:
    session = served("models/gemini-2.5-flash-native-audio-latest")
    assert session.receive(content(("user", "hi"), ("model", "hello"), complete=False))
    with pytest.raises(ClientRejected) as info:
        session.receive(content(("user", "hi"), ("model", "hello")))
    assert info.value.close_code == 1007
    assert "last turn must be the user's" in str(info.value)
    # 3.x has no such rule.
    assert served("models/gemini-3.8-live").receive(content(("user", "a"), ("model", "b")))


HISTORY = w.HistoryConfig(initial_history_in_client_content=True)


def test_initial_history_is_history_until_turn_complete_or_realtime_input() -> None:
    session = served("models/gemini-3.8-live", history_config=HISTORY)
    assert session.seeding
    first = session.receive(content(("user", "earlier"), ("model", "yes"), complete=False))
    assert first == ContentReceived((("user", "earlier"), ("model", "yes")), False, True)
    last = session.receive(content(("user", "greet me")))
    assert last == ContentReceived((("user", "greet me"),), True, history_only=True)
    assert not seeding(session)
    after = session.receive(content(("user", "now a turn")))
    assert after == ContentReceived((("user", "now a turn"),), True, history_only=False)
    # Realtime input ends the initial history too (Pipecat sends none when it has none).
    audio_first = served("models/gemini-3.8-live", history_config=HISTORY)
    audio_first.receive(w.RealtimeInput(audio=w.Blob(mime_type="audio/pcm", data=bytes(320))))
    assert not audio_first.seeding
    # 2.5 ignores historyConfig: its first clientContent with turnComplete is a turn.
    old = served("models/gemini-2.5-flash-native-audio-latest", history_config=HISTORY)
    assert not old.seeding


def test_function_calls_in_initial_history_are_refused_with_1007() -> None:
    session = served("models/gemini-3.8-live", history_config=HISTORY)
    call = w.Part(function_call=w.FunctionCall(id="c", name="f", args={}))
    with pytest.raises(ClientRejected) as info:
        session.receive(w.ClientContent(turns=[w.Content(role="model", parts=[call])]))
    assert (info.value.close_code, info.value.field) == (1007, "clientContent.turns[0].parts")


# --- Vertex tool calls without ids -----------------------------------------------------


def test_vertex_responses_without_ids_answer_the_oldest_call_of_that_name() -> None:
    session = served("publishers/google/models/gemini-3.8-live", ServiceRules(api="vertex"))
    calls = [w.FunctionCall(id="c1", name="f", args={}), w.FunctionCall(id="c2", name="f", args={})]
    session.send(w.ServerMessage(tool_call=w.ToolCall(function_calls=calls)))
    event = session.receive(w.ToolResponse(function_responses=[w.FunctionResponse(name="f")]))
    assert isinstance(event, ToolResponsesReceived)
    assert event.answered == ("c1",)
    assert session.pending_calls == ("c2",)
    nothing = session.receive(w.ToolResponse(function_responses=[w.FunctionResponse(name="g")]))
    assert nothing == ToolResponsesReceived((), ())  # no call of that name: ignored


def test_on_the_gemini_api_a_response_needs_its_id() -> None:
    session = served("models/gemini-3.8-live")
    call = w.FunctionCall(id="c1", name="f", args={})
    session.send(w.ServerMessage(tool_call=w.ToolCall(function_calls=[call])))
    with pytest.raises(ClientRejected) as info:
        session.receive(w.ToolResponse(function_responses=[w.FunctionResponse(name="f")]))
    assert info.value.close_code == 1007


def test_vertex_calls_can_go_out_without_ids() -> None:
    rules = ServiceRules(api="vertex", omit_call_ids=True)
    session = served("publishers/google/models/gemini-3.8-live", rules)
    call = w.FunctionCall(id="c1", name="f", args={"a": 1})
    frame = session.send(w.ServerMessage(tool_call=w.ToolCall(function_calls=[call])))
    assert b'"id"' not in frame
    assert session.pending_calls == ("c1",)
    assert session.cancellable_calls == ()  # the client cannot be told about them by id
    session.forget_calls(["c1"])
    assert pending(session) == ()


def pending(session: ServerSession) -> tuple[str, ...]:
    return session.pending_calls  # a call: mypy would keep the attribute narrowed


def seeding(session: ServerSession) -> bool:
    return session.seeding
