"""Issue 16, model-aware protocol: each family gets text, context, initial history, reply
requests, tool declarations and thinking the way it accepts them. Every conversation runs
against the emulator, which refuses (1007) what the family refuses; the frames are also
parsed by google-genai 3.6.1's types (which forbid unknown fields)."""

from __future__ import annotations

import pytest
from google.genai import types
from trio.testing import MockClock

from actors.realtime import DEFAULT_MODEL, DEFAULT_VERTEX_MODEL, RealtimeModel
from actors.tools import ToolSet, tool
from protocol import encode, models
from protocol import wire as w
from protocol.client_rules import INSTRUCTIONS_TEMPLATE, ModelRuleError
from runtime import messages as m
from tests.actors.helpers import live_session, reply, three_turns
from tests.protocol.sdk import sdk_parse_client


@tool
async def get_weather(city: str) -> dict[str, object]:
    """Weather for a city."""
    return {"city": city, "sky": "sunny"}


@tool(behavior="NON_BLOCKING", scheduling="WHEN_IDLE")
async def book_table(place: str) -> str:
    """Book a table."""
    return "booked"


HISTORY = [
    m.ChatTurn(role="user", text="My name is Ada."),
    m.ChatTurn(role="agent", text="Hello Ada."),
]
MODELS = [
    "gemini-2.5-flash-native-audio-preview-12-2025",
    "gemini-3.1-flash-live-preview",
    "gemini-3.8-live",
    "gemini-3.8-live-extended-thinking",
]


def test_the_default_is_gemini_3_8_live_on_both_apis() -> None:
    assert DEFAULT_MODEL == DEFAULT_VERTEX_MODEL == "gemini-3.8-live"
    model = RealtimeModel(endpoint="ws://127.0.0.1:9")
    assert model.rules.family.name == "3.8"
    legacy = RealtimeModel(
        endpoint="ws://127.0.0.1:9", model="gemini-2.5-flash-native-audio-preview-12-2025"
    )
    assert legacy.rules.family.name == "2.5"


@pytest.mark.parametrize("model", MODELS)
async def test_each_family_is_spoken_to_as_it_accepts(
    autojump_clock: MockClock, model: str
) -> None:
    family = models.family_of(model, "gemini")
    assert family is not None
    async with live_session(
        three_turns(), model=model, session_options={"chat_ctx": HISTORY, "tools": [get_weather]}
    ) as (live, transport, emu):
        live.send_text("Hi")
        assert await reply(live) == "First answer."
        live.set_chat_ctx([m.ChatTurn(role="user", text="I like tea.")])
        live.generate_reply(instructions="Say goodbye.")
        assert await reply(live) == "Second answer."
        live.create_response()
        assert await reply(live) == "Third answer."
        assert emu.connections == 1  # nothing was refused
    sent = transport.sent
    setup = sent[0]
    assert isinstance(setup, w.Setup)
    for message in sent:  # google-genai's own parser takes every frame
        sdk_parse_client(encode(message))
    seed = sent[1]
    assert isinstance(seed, w.ClientContent)
    assert [t.role for t in seed.turns or ()] == ["user", "model"]
    wrapped = INSTRUCTIONS_TEMPLATE.format("Say goodbye.")
    declared = (setup.tools or [w.Tool()])[0].function_declarations or []
    thinking = (setup.generation_config or w.GenerationConfig()).thinking_config
    if family.name == "2.5":
        assert setup.history_config is None
        assert seed.turn_complete is False  # history, no reply
        assert (
            w.ClientContent(
                turns=[w.Content(role="user", parts=[w.Part(text="Hi")])], turn_complete=True
            )
            in sent
        )
        assert (
            w.ClientContent(
                turns=[w.Content(role="user", parts=[w.Part(text=wrapped)])], turn_complete=True
            )
            in sent
        )
        assert declared[0].behavior is None  # BLOCKING, the server's default
        assert thinking is None
    else:
        assert setup.history_config == w.HistoryConfig(initial_history_in_client_content=True)
        assert seed.turn_complete is True  # initial history ends, and starts no reply
        assert w.RealtimeInput(text="Hi") in sent
        assert w.RealtimeInput(text=wrapped) in sent
    if family.name == "3.1":
        assert declared[0].behavior is None
        index = sent.index(w.ClientContent(turn_complete=True))
        assert sent[index + 1] == w.RealtimeInput(text=" ")  # Pipecat's nudge
    if family.name == "3.8":
        assert declared[0].behavior == "BLOCKING"  # the default there is NON_BLOCKING
        assert thinking is None
    if family.name == "3.8-thinking":
        assert declared[0].behavior == "NON_BLOCKING"  # the only kind it runs
        assert thinking == w.ThinkingConfig(thinking_level="LOW")  # one is required
    context = w.ClientContent(
        turns=[w.Content(role="user", parts=[w.Part(text="I like tea.")])], turn_complete=False
    )
    assert context in sent


async def test_instructions_are_not_reported_as_the_users_words(autojump_clock: MockClock) -> None:
    async with live_session(three_turns()) as (live, _, _):
        live.generate_reply(instructions="Greet the user.")
        assert await reply(live) == "First answer."
        assert [t.role for t in live.chat_ctx_copy()] == ["agent"]


def test_what_a_family_refuses_is_an_error_before_connecting() -> None:
    url = "ws://127.0.0.1:9"
    with pytest.raises(ModelRuleError, match="no thinking"):
        RealtimeModel(endpoint=url, thinking_level="LOW")  # gemini-3.8-live
    with pytest.raises(ModelRuleError, match="affective"):
        RealtimeModel(endpoint=url, affective_dialog=True)
    with pytest.raises(ModelRuleError, match="not supported"):
        RealtimeModel(
            endpoint=url, model="gemini-3.8-live-extended-thinking", thinking_level="MINIMAL"
        )
    with pytest.raises(ModelRuleError, match="not thinking_level"):
        RealtimeModel(
            endpoint=url,
            model="gemini-2.5-flash-native-audio-preview-12-2025",
            thinking_level="HIGH",
        )
    with pytest.raises(ModelRuleError, match="BLOCKING tools only"):
        RealtimeModel(endpoint=url, model="gemini-3.1-flash-live-preview").setup(
            ToolSet([book_table])
        )
    blocking = tool(behavior="BLOCKING")(get_weather.function)
    with pytest.raises(ModelRuleError, match="NON_BLOCKING tools only"):
        RealtimeModel(endpoint=url, model="gemini-3.8-live-extended-thinking").setup(
            ToolSet([blocking])
        )


def test_thinking_levels_including_xhigh_per_family() -> None:
    url = "ws://127.0.0.1:9"
    model = RealtimeModel(
        endpoint=url, model="gemini-3.1-flash-live-preview", thinking_level="HIGH"
    )
    config = model.setup(ToolSet()).generation_config
    assert config is not None
    assert config.thinking_config == w.ThinkingConfig(thinking_level="HIGH")
    # No source says which Live model takes XHIGH: refused by the table, sent under a family
    # of one's own rules.
    with pytest.raises(ModelRuleError, match="XHIGH"):
        RealtimeModel(
            endpoint=url, model="gemini-3.8-live-extended-thinking", thinking_level="XHIGH"
        )
    import dataclasses

    own = dataclasses.replace(
        models.FAMILIES["3.8-thinking"], thinking_levels=frozenset({"LOW", "XHIGH"})
    )
    custom = RealtimeModel(endpoint=url, model="gemini-4-live", family=own, thinking_level="XHIGH")
    setup = custom.setup(ToolSet())
    parsed = sdk_parse_client(encode(setup)).setup
    assert parsed is not None
    assert parsed.generation_config is not None
    assert parsed.generation_config.thinking_config is not None
    assert parsed.generation_config.thinking_config.thinking_level == types.ThinkingLevel.XHIGH
