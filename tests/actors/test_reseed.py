"""Issue 16, after a reconnect that could not resume: the new session never issued the
calls of the lost one, so no toolResponse goes to it (the emulator, as the service, would
close 1007); each call and its result are folded into the re-seeded history as text, and
the history ends as the family needs: on 2.5 with the user's turn (the result) and
turnComplete, on 3.x as initial history (historyConfig) followed by a reply request."""

from __future__ import annotations

import pytest
from trio.testing import MockClock

from actors.tools import tool
from emulator import Reply, Scenario, ToolCallSpec, Turn
from protocol import wire as w
from runtime import messages as m
from tests.actors.helpers import FAST, live_session, until


@tool
async def get_weather(city: str) -> dict[str, object]:
    """Weather for a city."""
    return {"city": city, "sky": "sunny"}


SCENARIO = Scenario(
    turns=(
        Turn(
            replies=(
                Reply(tool_calls=(ToolCallSpec(name="get_weather", args={"city": "Paris"}),)),
                Reply(say="Sunny in Paris."),
            )
        ),
    ),
    default_reply=Reply(say="As I said, sunny."),
    behaviour=FAST,
)
CALLED = '[Called function get_weather with args {"city": "Paris"}]'
RETURNED = '[Function get_weather returned {"city": "Paris", "sky": "sunny"}]'


@pytest.mark.parametrize(
    "model", ["gemini-2.5-flash-native-audio-preview-12-2025", "gemini-3.8-live"]
)
async def test_calls_of_a_lost_session_are_folded_into_its_history(
    autojump_clock: MockClock, model: str
) -> None:
    faults = ("close:code=1011,at=tool-pending", "refuse-resume")
    async with live_session(
        SCENARIO, faults=faults, model=model, session_options={"tools": [get_weather]}
    ) as (live, transport, emu):
        live.send_text("Weather in Paris?")
        events = await until(live, lambda e: isinstance(e, m.Reconnected))
        events += await until(
            live, lambda e: isinstance(e, m.TranscriptCompleted) and e.role == "agent"
        )
        assert emu.connections == 3  # dropped; resume refused; a new session
    first_call = next(e for e in events if isinstance(e, m.ToolCallRequested))
    answered = [
        r.id
        for x in transport.sent
        if isinstance(x, w.ToolResponse)
        for r in x.function_responses or ()
    ]
    assert first_call.call_id not in answered  # never sent to a session that did not issue it
    assert m.Reconnected(restored=False) in events
    setups = [i for i, x in enumerate(transport.sent) if isinstance(x, w.Setup)]
    last_setup = transport.sent[setups[-1]]
    assert isinstance(last_setup, w.Setup)
    seed = transport.sent[setups[-1] + 1]
    assert isinstance(seed, w.ClientContent)
    texts = [(t.role, (t.parts or [w.Part()])[0].text) for t in seed.turns or ()]
    assert texts[-2:] == [("model", CALLED), ("user", RETURNED)]
    assert seed.turn_complete is True
    if model.startswith("gemini-2.5"):
        assert last_setup.history_config is None  # the seed itself asks for the reply
    else:
        assert last_setup.history_config == w.HistoryConfig(initial_history_in_client_content=True)
        assert transport.sent[setups[-1] + 2] == w.ClientContent(turn_complete=True)
    said = [e for e in events if isinstance(e, m.TranscriptCompleted) and e.role == "agent"]
    assert said  # the new session answered
    assert not [e for e in events if isinstance(e, m.ServerFault)]


async def test_vertex_calls_without_ids_are_answered_by_name(autojump_clock: MockClock) -> None:
    """Vertex may send calls without ids (google-genai lets the response go by name): each
    gets an id of ours for the pipeline, never sent back."""
    from emulator import Behaviour
    from tests.actors.helpers import VERTEX_PATH

    scenario = Scenario(
        turns=SCENARIO.turns,
        behaviour=Behaviour(pace="fast", first_audio_delay_ms=0, omit_call_ids=True),
    )
    async with live_session(
        scenario, path=VERTEX_PATH, session_options={"tools": [get_weather]}
    ) as (live, transport, _):
        live.send_text("Weather in Paris?")
        events = await until(
            live, lambda e: isinstance(e, m.TranscriptCompleted) and e.role == "agent"
        )
    call = next(e for e in events if isinstance(e, m.ToolCallRequested))
    assert call.call_id.startswith("no-id-")
    (response,) = [x for x in transport.sent if isinstance(x, w.ToolResponse)]
    assert response.function_responses == [
        w.FunctionResponse(
            name="get_weather", response={"output": {"city": "Paris", "sky": "sunny"}}
        )
    ]
    said = [e for e in events if isinstance(e, m.TranscriptCompleted) and e.role == "agent"]
    assert said[-1].transcript == "Sunny in Paris."
