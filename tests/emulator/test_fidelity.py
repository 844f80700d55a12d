"""The emulator as real clients find it (issue 15) and today's service behaviours they rely
on (issue 16), each with our raw client: audio at any rate, the current model names, typed
text never transcribed, the 3.x family's text turns and initial history, NON_BLOCKING
calls and their scheduling, interactionStatus, usage by modality, voiceActivity, the
service's closes, Vertex's id-less calls, built-in tools, transparent resumption."""

from __future__ import annotations

import numpy as np
import pytest
import trio
from trio.testing import MockClock

from emulator import Behaviour, Reply, Scenario, ToolCallSpec, Turn, open_emulator
from emulator.audio import synthesize_speech
from emulator.driver import DEADLINE_REASON, IN_USE_REASON
from emulator.scenario import CodeSpec, FamilyRules, SearchResult, SearchSpec, UrlSpec
from protocol import wire as w
from protocol.session import LiveSession
from tests.emulator.client import (
    WEATHER_TURN,
    RawClient,
    audio_of,
    closed_with,
    connect,
    setup,
    speech,
    transcript_of,
)

FAST = Behaviour(pace="fast", first_audio_delay_ms=0)
M25 = "models/gemini-2.5-flash-native-audio-preview-12-2025"
M31 = "models/gemini-3.1-flash-live-preview"
M38 = "models/gemini-3.8-live"
M38T = "models/gemini-3.8-live-extended-thinking"
VERTEX_PATH = "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"
VERTEX_38 = "projects/p/locations/us-central1/publishers/google/models/gemini-3.8-live"
HISTORY = w.HistoryConfig(initial_history_in_client_content=True)
LOW = w.GenerationConfig(thinking_config=w.ThinkingConfig(thinking_level="LOW"))
GREETING = Turn(user="(greet)", replies=(Reply(say="Hello there!"),))
TWO_TURNS = Scenario(
    turns=(GREETING, Turn(user="Next", replies=(Reply(say="The second answer."),))),
    behaviour=FAST,
)


def content_messages(messages: list[w.ServerMessage]) -> list[w.ServerContent]:
    return [m.server_content for m in messages if m.server_content is not None]


def turn_completes(messages: list[w.ServerMessage]) -> list[w.ServerMessage]:
    return [m for m in messages if m.server_content and m.server_content.turn_complete]


async def nothing_more(client: RawClient, seconds: float = 1.0) -> list[w.ServerMessage]:
    """What arrives within ``seconds`` (virtual): the test expects no further turn."""
    got: list[w.ServerMessage] = []
    with trio.move_on_after(seconds):
        while True:
            got.append(await client.receive())
    return got


def call_of(messages: list[w.ServerMessage]) -> w.FunctionCall:
    calls = [c for m in messages if m.tool_call for c in m.tool_call.function_calls or []]
    assert len(calls) == 1
    return calls[0]


# --- 15.1 audio at any rate ------------------------------------------------------------


def speech_at(rate: int, gap: float = 0.3, silence: float = 0.9) -> bytes:
    """Two 0.4 s tones 'gap' apart, then silence: one utterance for a 0.5 s end-of-speech
    silence (read at the wrong rate, a 48 kHz gap looks three times longer: two turns)."""
    t = np.arange(int(rate * 0.4)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    signal = np.concatenate([tone, np.zeros(int(rate * gap)), tone, np.zeros(int(rate * silence))])
    return (signal * 32767).astype("<i2").tobytes()


async def send_at(client: RawClient, pcm: bytes, rate: int, chunk: int = 0) -> None:
    chunk = chunk or 2 * rate // 50  # 20 ms, as Pipecat sends
    for i in range(0, len(pcm), chunk):
        blob = w.Blob(mime_type=f"audio/pcm;rate={rate}", data=pcm[i : i + chunk])
        await client.send(w.RealtimeInput(audio=blob))


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 44100, 48000])
async def test_one_utterance_at_any_rate_is_one_user_turn(
    rate: int, virtual_clock: MockClock
) -> None:
    detection = w.RealtimeInputConfig(
        automatic_activity_detection=w.AutomaticActivityDetection(silence_duration_ms=500)
    )
    scenario = Scenario(turns=(GREETING,), behaviour=FAST)
    async with (
        open_emulator(scenario=scenario) as emu,
        connect(emu.url, setup(realtime_input_config=detection)) as client,
    ):
        await send_at(client, speech_at(rate), rate)
        first = await client.until_turn_complete()
        assert transcript_of(first, "output_transcription") == "Hello there!"
        assert not turn_completes(await nothing_more(client))
        assert emu.stats.turns == 1


async def test_audio_time_counts_at_the_real_rate_at_the_limit_and_one_chunk_past(
    virtual_clock: MockClock,
) -> None:
    limited = Scenario(behaviour=Behaviour(pace="fast", session_audio_limit_s=1.0))
    async with open_emulator(scenario=limited) as emu, connect(emu.url) as client:
        # 1 s at 48 kHz, in one message (a sum of 20 ms chunks is not exactly 1.0): at
        # the limit. Counted at 16 kHz it would be 3 s, far past it.
        await send_at(client, bytes(2 * 48000), 48000, chunk=2 * 48000)
        assert not turn_completes(await nothing_more(client, 0.5))  # still open
        reason = await closed_with(lambda: _one_more_chunk(client))
    assert reason.code == 1000
    assert "contextWindowCompression" in (reason.reason or "")


async def _one_more_chunk(client: RawClient) -> None:
    await send_at(client, bytes(1920), 48000)
    while True:
        await client.receive()


# --- 15.2 model names --------------------------------------------------------------------


@pytest.mark.parametrize("model", [M38, M38T, M31, "models/gemini-4-live"])
async def test_current_and_plausible_model_names_are_served(
    model: str, virtual_clock: MockClock
) -> None:
    config = setup(model=model, generation_config=LOW if "thinking" in model else None)
    scenario = Scenario(turns=(GREETING,), behaviour=FAST)
    async with open_emulator(scenario=scenario) as emu, connect(emu.url, config) as client:
        got = await client.converse("hi")
    assert transcript_of(got, "output_transcription") == "Hello there!"


async def test_unknown_models_are_refused_in_the_services_words(virtual_clock: MockClock) -> None:
    strict = Scenario(behaviour=Behaviour(unknown_models="refuse"))
    async with open_emulator(scenario=strict) as emu:
        async with connect(
            emu.url, setup(model="models/gemini-4-live"), expect_setup_complete=False
        ) as client:
            reason = await closed_with(client.receive)
    assert (reason.code, reason.reason) == (
        1008,
        "models/gemini-4-live is not found for API version v1beta, or is not supported "
        "for bidiGenerateContent.",
    )


# --- 15.3 typed text is never transcribed --------------------------------------------------


@pytest.mark.parametrize("model", [M25, M38])
async def test_typed_text_is_never_echoed_as_input_transcription(
    model: str, virtual_clock: MockClock
) -> None:
    async with (
        open_emulator(scenario=TWO_TURNS) as emu,
        connect(emu.url, setup(model=model)) as client,
    ):
        first = await client.converse("typed words")
        placeholder = w.ClientContent(
            turns=[
                w.Content(role="model", parts=[w.Part(text="Greet the user.")]),
                w.Content(role="user", parts=[w.Part(text="hello")]),
            ],
            turn_complete=True,
        )
        await client.send(placeholder)
        second = await client.until_turn_complete()
    for got in (first, second):
        assert transcript_of(got, "input_transcription") == ""
        assert transcript_of(got, "output_transcription")


async def test_speech_is_still_transcribed(virtual_clock: MockClock) -> None:
    scenario = Scenario(
        turns=(Turn(user="Spoken words", replies=(Reply(say="ok"),)),), behaviour=FAST
    )
    async with open_emulator(scenario=scenario) as emu, connect(emu.url) as client:
        await client.send_audio(speech())
        got = await client.until_turn_complete()
    assert transcript_of(got, "input_transcription") == "Spoken words"


# --- 15.4 the 3.x family's text turns and initial history ------------------------------


@pytest.mark.parametrize("model", [M31, M38])
async def test_pipecats_greeting_on_3_x_initial_history_then_a_blank_nudge_is_one_turn(
    model: str, virtual_clock: MockClock
) -> None:
    async with (
        open_emulator(scenario=TWO_TURNS) as emu,
        connect(emu.url, setup(model=model, history_config=HISTORY)) as client,
    ):
        seed = w.Content(role="user", parts=[w.Part(text="Greet the user.")])
        await client.send(w.ClientContent(turns=[seed], turn_complete=True))
        assert not await nothing_more(client, 0.5)  # initial history starts no reply
        await client.send(w.RealtimeInput(text=" "))
        got = await client.until_turn_complete()
        assert transcript_of(got, "output_transcription") == "Hello there!"
        assert not any(c.interrupted for c in content_messages(got))
        assert not turn_completes(await nothing_more(client))
        assert emu.stats.turns == 1


async def test_a_turn_complete_then_a_blank_nudge_is_one_uninterrupted_reply(
    virtual_clock: MockClock,
) -> None:
    """Without historyConfig (LiveKit; Pipecat on Vertex) a clientContent with
    turnComplete starts the reply; the nudge that follows joins it."""
    async with (
        open_emulator(scenario=TWO_TURNS) as emu,
        connect(emu.url, setup(model=M38)) as client,
    ):
        turn = w.Content(role="user", parts=[w.Part(text="<instructions>greet</instructions>")])
        await client.send(w.ClientContent(turns=[turn], turn_complete=True))
        await client.send(w.RealtimeInput(text=" "))
        got = await client.until_turn_complete()
        assert transcript_of(got, "output_transcription") == "Hello there!"
        assert not any(c.interrupted for c in content_messages(got))
        assert not turn_completes(await nothing_more(client))


async def test_a_bare_turn_complete_asks_for_a_reply_on_3_8(virtual_clock: MockClock) -> None:
    async with (
        open_emulator(scenario=TWO_TURNS) as emu,
        connect(emu.url, setup(model=M38)) as client,
    ):
        await client.send(w.ClientContent(turns=[], turn_complete=True))
        got = await client.until_turn_complete()
    assert transcript_of(got, "output_transcription") == "Hello there!"


async def test_a_dot_placeholder_gets_an_empty_turn_on_3_x_and_a_reply_on_2_5(
    virtual_clock: MockClock,
) -> None:
    dot = w.ClientContent(
        turns=[w.Content(role="user", parts=[w.Part(text=".")])], turn_complete=True
    )
    async with open_emulator(scenario=TWO_TURNS) as emu:
        async with connect(emu.url, setup(model=M38)) as client:
            await client.send(dot)
            empty = await client.until_turn_complete()
            assert content_messages(empty) == [w.ServerContent(turn_complete=True)]
            assert empty[-1].usage_metadata is not None
            # The script did not move on: the next turn gets its first reply.
            got = await client.converse("now")
            assert transcript_of(got, "output_transcription") == "Hello there!"
        async with connect(emu.url, setup(model=M25)) as client:
            await client.send(dot)
            got = await client.until_turn_complete()
            assert transcript_of(got, "output_transcription") == "Hello there!"


async def test_a_3_x_turn_without_a_role_closes_with_1007(virtual_clock: MockClock) -> None:
    async with (
        open_emulator(scenario=TWO_TURNS) as emu,
        connect(emu.url, setup(model=M38)) as client,
    ):
        await client.send(w.ClientContent(turns=[w.Content(parts=[w.Part(text="hi")])]))
        reason = await closed_with(client.receive)
    assert reason.code == 1007
    assert (reason.reason or "").startswith("Request contains an invalid argument.")


BLOCKING_WEATHER = [
    w.Tool(function_declarations=[w.FunctionDeclaration(name="get_weather", behavior="BLOCKING")])
]

# --- 15.5 NON_BLOCKING calls, scheduling, willContinue, interactionStatus -----------------

TOOL = ToolCallSpec(name="get_weather", args={"city": "Paris"}, progress="Still looking.")
MEANWHILE = "Let me check the weather for you, it takes a moment."


def non_blocking(behaviour: Behaviour = FAST) -> Scenario:
    return Scenario(
        turns=(
            Turn(
                user="weather?",
                replies=(
                    Reply(tool_calls=(TOOL,), meanwhile=MEANWHILE),
                    Reply(say="It is sunny in Paris."),
                ),
            ),
            Turn(user="thanks", replies=(Reply(say="You're welcome."),)),
        ),
        behaviour=behaviour,
    )


def respond(call: w.FunctionCall, **fields: object) -> w.ToolResponse:
    response = w.FunctionResponse(id=call.id, name=call.name, response={"sky": "sunny"}, **fields)  # type: ignore[arg-type]
    return w.ToolResponse(function_responses=[response])


async def test_a_non_blocking_call_lets_the_model_speak_then_when_idle_says_the_result(
    virtual_clock: MockClock,
) -> None:
    async with (
        open_emulator(scenario=non_blocking()) as emu,
        connect(emu.url, setup(model=M38)) as client,
    ):
        first = await client.converse("weather?")  # no waiting for the result
        assert transcript_of(first, "output_transcription") == MEANWHILE
        await client.send(respond(call_of(first)))
        second = await client.until_turn_complete()
        assert transcript_of(second, "output_transcription") == "It is sunny in Paris."
        third = await client.converse("thanks")
        assert transcript_of(third, "output_transcription") == "You're welcome."
        assert (emu.stats.turns, emu.stats.result_replies) == (2, 1)


async def test_when_idle_waits_for_the_reply_playing_and_interrupt_cuts_it_short(
    virtual_clock: MockClock,
) -> None:
    realtime = Behaviour(pace="realtime", first_audio_delay_ms=0)
    for scheduling, interrupted in (("WHEN_IDLE", False), ("INTERRUPT", True)):
        async with (
            open_emulator(scenario=non_blocking(realtime)) as emu,
            connect(emu.url, setup(model=M38)) as client,
        ):
            await client.send(w.RealtimeInput(text="weather?"))
            got = await client.until(lambda m: m.tool_call is not None)
            got += await client.until(lambda m: bool(audio_of([m])))  # the filler plays
            await client.send(respond(call_of(got), scheduling=scheduling))
            rest = await client.until_turn_complete()  # the filler's turn ends
            assert any(c.interrupted for c in content_messages(rest)) is interrupted
            said = len(audio_of(got + rest))
            assert (said < len(synthesize_speech(MEANWHILE))) is interrupted
            answer = await client.until_turn_complete()
            assert transcript_of(answer, "output_transcription") == "It is sunny in Paris."


async def test_scheduling_inside_the_response_counts_too_and_silent_says_nothing(
    virtual_clock: MockClock,
) -> None:
    async with (
        open_emulator(scenario=non_blocking()) as emu,
        connect(emu.url, setup(model=M38)) as client,
    ):
        first = await client.converse("weather?")
        response = w.FunctionResponse(
            id=call_of(first).id, name="get_weather", response={"scheduling": "SILENT"}
        )
        await client.send(w.ToolResponse(function_responses=[response]))
        assert not await nothing_more(client)
        assert emu.stats.result_replies == 0


async def test_will_continue_responses_keep_the_call_open_and_say_its_progress(
    virtual_clock: MockClock,
) -> None:
    async with (
        open_emulator(scenario=non_blocking()) as emu,
        connect(emu.url, setup(model=M38)) as client,
    ):
        call = call_of(await client.converse("weather?"))
        await client.send(respond(call, will_continue=True))
        progress = await client.until_turn_complete()
        assert transcript_of(progress, "output_transcription") == "Still looking."
        await client.send(respond(call, will_continue=True, scheduling="SILENT"))
        assert not await nothing_more(client, 0.5)
        await client.send(respond(call, will_continue=False))
        final = await client.until_turn_complete()
        assert transcript_of(final, "output_transcription") == "It is sunny in Paris."


async def test_a_thinking_model_says_in_progress_until_its_work_is_done(
    virtual_clock: MockClock,
) -> None:
    async with (
        open_emulator(scenario=non_blocking()) as emu,
        connect(emu.url, setup(model=M38T, generation_config=LOW)) as client,
    ):
        first = await client.converse("weather?")
        assert first[-1].server_content == w.ServerContent(
            turn_complete=True, interaction_status="IN_PROGRESS"
        )
        await client.send(respond(call_of(first)))
        second = await client.until_turn_complete()
        assert second[-1].server_content is not None
        assert second[-1].server_content.interaction_status == "IDLE"
    # The family's rule decides: 3.8 sends none unless the scenario says it does.
    says = Behaviour(
        pace="fast", first_audio_delay_ms=0, families={"3.8": FamilyRules(interaction_status=True)}
    )
    for behaviour, status in ((FAST, None), (says, "IN_PROGRESS")):
        async with (
            open_emulator(scenario=non_blocking(behaviour)) as emu,
            connect(emu.url, setup(model=M38)) as client,
        ):
            first = await client.converse("weather?")
            assert first[-1].server_content is not None
            assert first[-1].server_content.interaction_status == status


async def test_a_barge_in_cancels_blocking_calls_only(virtual_clock: MockClock) -> None:
    realtime = Behaviour(pace="realtime", first_audio_delay_ms=0)
    async with (
        open_emulator(scenario=non_blocking(realtime)) as emu,
        connect(emu.url, setup(model=M38)) as client,
    ):
        await client.send(w.RealtimeInput(text="weather?"))
        got = await client.until(lambda m: bool(audio_of([m])))
        await client.send(w.RealtimeInput(text="wait, something else"))  # barge-in
        rest = await client.until_turn_complete()
        assert any(c.interrupted for c in content_messages(rest))
        assert not any(m.tool_call_cancellation for m in rest)  # NON_BLOCKING runs on
        await client.send(respond(call_of(got)))
        later = await client.until_turn_complete()
        later += await client.until_turn_complete()
    assert "It is sunny in Paris." in transcript_of(later, "output_transcription")


async def test_usage_by_modality_comes_with_every_turn_complete(virtual_clock: MockClock) -> None:
    realtime = Behaviour(pace="realtime", first_audio_delay_ms=0)
    long = Scenario(turns=(Turn(replies=(Reply(say="word " * 40),)),), behaviour=realtime)
    async with open_emulator(scenario=long) as emu, connect(emu.url) as client:
        await client.send_audio(speech())
        await client.until(lambda m: bool(audio_of([m])))
        await client.send(w.RealtimeInput(text="stop"))
        interrupted = await client.until_turn_complete()
        answered = await client.until_turn_complete()
    for got in (interrupted, answered):
        usage = got[-1].usage_metadata
        assert usage is not None
        assert usage.service_tier == "standard"  # lower case, as the Gemini API writes it
        prompt = {d.modality: d.token_count for d in usage.prompt_tokens_details or []}
        response = {d.modality: d.token_count for d in usage.response_tokens_details or []}
        assert set(prompt) == {"AUDIO", "TEXT"}
        assert prompt["AUDIO"]  # the speech heard
        assert set(response) == {"AUDIO"}
        assert usage.total_token_count == (usage.prompt_token_count or 0) + (
            usage.response_token_count or 0
        )
    interrupted_usage = interrupted[-1].usage_metadata
    assert interrupted_usage is not None
    assert 0 < (interrupted_usage.response_token_count or 0) < 32 * 40 * 0.28  # cut short


async def test_a_scripted_turn_complete_reason_and_waiting_for_input(
    virtual_clock: MockClock,
) -> None:
    waiting = Turn(
        replies=(Reply(say="And?"),), turn_complete_reason="NEED_MORE_INPUT", waiting_for_input=True
    )
    async with (
        open_emulator(scenario=Scenario(turns=(waiting,), behaviour=FAST)) as emu,
        connect(emu.url) as client,
    ):
        got = await client.converse("so")
    assert got[-1].server_content == w.ServerContent(
        turn_complete=True, turn_complete_reason="NEED_MORE_INPUT", waiting_for_input=True
    )


async def test_vertex_calls_without_ids_are_answered_by_name(virtual_clock: MockClock) -> None:
    scenario = Scenario(
        turns=(WEATHER_TURN,),
        behaviour=Behaviour(pace="fast", first_audio_delay_ms=0, omit_call_ids=True),
    )
    config = setup(model=VERTEX_38, tools=BLOCKING_WEATHER)
    async with (
        open_emulator(scenario=scenario) as emu,
        connect(emu.url, config, path=VERTEX_PATH) as client,
    ):
        await client.send(w.RealtimeInput(text="weather?"))
        call = call_of(await client.until(lambda m: m.tool_call is not None))
        assert call.id is None
        # As google-genai sends it on Vertex (our encoder insists on ids).
        await client.ws.send_message(
            b'{"tool_response": {"functionResponses": [{"name": "get_weather", "response": {}}]}}'
        )
        rest = await client.until_turn_complete()
    assert transcript_of(rest, "output_transcription") == "It is sunny in Paris today."
    usage = rest[-1].usage_metadata
    assert usage is not None
    assert (usage.candidates_token_count is not None, usage.traffic_type) == (True, "ON_DEMAND")
    assert usage.response_token_count is None


# --- 15.6 the service's closes, voiceActivity, Vertex's transcription order ------------------


async def test_go_away_then_close_1011_in_the_services_words(virtual_clock: MockClock) -> None:
    short = Scenario(
        behaviour=Behaviour(pace="fast", connection_lifetime_s=1, go_away_notice_s=0.5)
    )
    async with open_emulator(scenario=short) as emu, connect(emu.url) as client:
        assert (await client.receive()).go_away == w.GoAway(time_left="0.500s")
        reason = await closed_with(client.receive)
    assert (reason.code, reason.reason) == (1011, DEADLINE_REASON)


async def test_a_resume_while_the_old_socket_is_open_closes_1011(virtual_clock: MockClock) -> None:
    resumable = setup(session_resumption=w.SessionResumptionConfig())
    async with open_emulator(scenario=TWO_TURNS) as emu:
        async with connect(emu.url, resumable) as old:
            update = (await old.receive()).session_resumption_update
            assert update is not None
            assert update.new_handle
            again = setup(session_resumption=w.SessionResumptionConfig(handle=update.new_handle))
            async with connect(emu.url, again, expect_setup_complete=False) as new:
                reason = await closed_with(new.receive)
            assert (reason.code, reason.reason) == (1011, IN_USE_REASON)
            await old.converse("still here")  # the old connection goes on
        async with connect(emu.url, again) as new:  # closed first: the resume works
            got = await new.converse("next")
    assert transcript_of(got, "output_transcription") == "The second answer."


async def test_voice_activity_with_its_type_and_audio_offset(virtual_clock: MockClock) -> None:
    async with open_emulator(scenario=Scenario(behaviour=FAST)) as emu, connect(emu.url) as client:
        await client.send_audio(bytes(16000))  # 0.5 s of silence first
        await client.send_audio(speech(seconds=0.4, silence=0.3))
        got = await client.until_turn_complete()
    activity = [m.voice_activity for m in got if m.voice_activity is not None]
    assert [a.type for a in activity] == ["ACTIVITY_START", "ACTIVITY_END"]
    start, end = (w.parse_duration(a.audio_offset or "") for a in activity)
    assert start == pytest.approx(0.5, abs=0.02)
    assert end == pytest.approx(0.9, abs=0.02)
    session = LiveSession()
    session.send(w.Setup(model="m"))
    session.receive(w.ServerMessage(setup_complete=w.SetupComplete()))
    reported = session.receive(next(m for m in got if m.voice_activity is not None))
    assert reported[0].audio_offset == start  # type: ignore[union-attr]
    quiet = Scenario(behaviour=Behaviour(pace="fast", first_audio_delay_ms=0, voice_activity=False))
    async with open_emulator(scenario=quiet) as emu, connect(emu.url) as client:
        await client.send_audio(speech())
        assert not [m for m in await client.until_turn_complete() if m.voice_activity]


async def test_vertex_may_send_each_steps_transcription_ahead_of_its_audio(
    virtual_clock: MockClock,
) -> None:
    ahead = Scenario(
        turns=(GREETING,),
        behaviour=Behaviour(pace="fast", first_audio_delay_ms=0, transcription_ahead=True),
    )
    async with open_emulator(scenario=ahead) as emu, connect(emu.url) as client:
        got = await client.converse("hi")
    contents = content_messages(got)
    first_audio = next(i for i, c in enumerate(contents) if c.model_turn is not None)
    said = [i for i, c in enumerate(contents) if c.output_transcription is not None]
    assert said == [first_audio - 1]
    assert transcript_of(got, "output_transcription") == "Hello there!"


# --- 16: built-in tools ---------------------------------------------------------------------

BUILTIN_TURN = Turn(
    replies=(
        Reply(
            say="It is sunny, says the web.",
            search=SearchSpec(
                queries=("weather paris",),
                results=(SearchResult(uri="https://example.com/w", title="Weather"),),
            ),
            code=CodeSpec(code="print(20 + 1)", output="21\n"),
            urls=(UrlSpec(url="https://example.com/w"),),
        ),
    )
)
BUILTIN_TOOLS = [w.Tool(google_search={}), w.Tool(code_execution={}), w.Tool(url_context={})]


@pytest.mark.parametrize("text_mode", [False, True], ids=["audio", "text"])
async def test_declared_built_in_tools_bring_grounding_code_and_url_context(
    text_mode: bool, virtual_clock: MockClock
) -> None:
    modalities = w.GenerationConfig(response_modalities=["TEXT" if text_mode else "AUDIO"])
    config = setup(tools=BUILTIN_TOOLS, generation_config=modalities)
    scenario = Scenario(turns=(BUILTIN_TURN,), behaviour=FAST)
    async with open_emulator(scenario=scenario) as emu, connect(emu.url, config) as client:
        got = await client.converse("weather?")
    contents = content_messages(got)
    parts = [p for c in contents if c.model_turn for p in c.model_turn.parts or []]
    code = [p.executable_code for p in parts if p.executable_code]
    result = [p.code_execution_result for p in parts if p.code_execution_result]
    assert [(c.code, c.language) for c in code] == [("print(20 + 1)", "PYTHON")]
    assert [(r.outcome, r.output, r.id) for r in result] == [("OUTCOME_OK", "21\n", code[0].id)]
    grounded = [c for c in contents if c.grounding_metadata is not None]
    assert len(grounded) == 1
    grounding = grounded[0].grounding_metadata
    assert grounding is not None
    assert grounding.web_search_queries == ["weather paris"]
    assert grounding.grounding_chunks == [
        w.GroundingChunk(web=w.GroundingChunkWeb(uri="https://example.com/w", title="Weather"))
    ]
    assert grounded[0].url_context_metadata == w.UrlContextMetadata(
        url_metadata=[
            w.UrlMetadata(
                retrieved_url="https://example.com/w",
                url_retrieval_status="URL_RETRIEVAL_STATUS_SUCCESS",
            )
        ]
    )
    # Our client's session reports them as events.
    session = LiveSession()
    session.send(w.Setup(model="m"))
    events = [
        e
        for m in [w.ServerMessage(setup_complete=w.SetupComplete()), *got]
        for e in session.receive(m)
    ]
    kinds = [type(e).__name__ for e in events]
    assert {"ModelCode", "ModelCodeResult", "GroundingReported"} <= set(kinds)


async def test_undeclared_built_in_tools_are_not_used(virtual_clock: MockClock) -> None:
    scenario = Scenario(turns=(BUILTIN_TURN,), behaviour=FAST)
    async with open_emulator(scenario=scenario) as emu, connect(emu.url) as client:
        got = await client.converse("weather?")
    contents = content_messages(got)
    assert not any(c.grounding_metadata or c.url_context_metadata for c in contents)
    parts = [p for c in contents if c.model_turn for p in c.model_turn.parts or []]
    assert not any(p.executable_code or p.code_execution_result for p in parts)
    assert transcript_of(got, "output_transcription") == "It is sunny, says the web."


# --- 16: transparent resumption and what a dropped connection loses ---------------------------


async def test_transparent_resumption_reports_the_last_consumed_client_message(
    virtual_clock: MockClock,
) -> None:
    transparent = setup(
        model=VERTEX_38, session_resumption=w.SessionResumptionConfig(transparent=True)
    )
    async with (
        open_emulator(scenario=TWO_TURNS) as emu,
        connect(emu.url, transparent, path=VERTEX_PATH) as client,
    ):
        first = (await client.receive()).session_resumption_update
        assert first is not None
        assert first.last_consumed_client_message_index == 0  # the setup
        await client.send_audio(bytes(640 * 3))  # messages 1-3
        got = await client.converse("hi")  # message 4
        got.append(await client.receive())  # the update after turnComplete
    indexes = [
        m.session_resumption_update.last_consumed_client_message_index
        for m in got
        if m.session_resumption_update is not None
    ]
    assert indexes == [4, 4]  # when the reply starts (not resumable) and when it ends
    async with (
        open_emulator(scenario=TWO_TURNS) as emu,
        connect(emu.url, setup(session_resumption=w.SessionResumptionConfig())) as client,
    ):  # not transparent: no index
        update = (await client.receive()).session_resumption_update
        assert update is not None
        assert update.last_consumed_client_message_index is None


async def test_a_dropped_connection_loses_what_it_had_not_consumed_and_a_replay_restores_it(
    virtual_clock: MockClock,
) -> None:
    transparent = setup(
        model=VERTEX_38, session_resumption=w.SessionResumptionConfig(transparent=True)
    )
    lose = "lose:at=turn-end,count=2,connection=1"
    async with open_emulator(scenario=TWO_TURNS, faults=[lose]) as emu:
        async with connect(emu.url, transparent, path=VERTEX_PATH) as client:
            await client.receive()
            sent: list[w.ClientMessage] = [w.RealtimeInput(text="hi")]  # index 1
            await client.send(sent[0])
            got = await client.until_turn_complete()
            got += [await client.receive()]  # the resumable update after the turn
            update = got[-1].session_resumption_update
            assert update is not None
            assert (update.resumable, update.last_consumed_client_message_index) == (True, 1)
            handle = update.new_handle
            sent += [
                w.RealtimeInput(audio=w.Blob(mime_type="audio/pcm", data=bytes(640))),
                w.RealtimeInput(text="next"),
            ]  # indexes 2 and 3: lost
            for message in sent[1:]:
                await client.send(message)
            assert (await closed_with(client.receive)).code == 1006  # dropped
        again = setup(
            model=VERTEX_38,
            session_resumption=w.SessionResumptionConfig(handle=handle, transparent=True),
        )
        async with connect(emu.url, again, path=VERTEX_PATH) as client:
            await client.receive()
            for message in sent[update.last_consumed_client_message_index :]:  # the replay
                await client.send(message)
            replayed = await client.until_turn_complete()
    assert transcript_of(replayed, "output_transcription") == "The second answer."
