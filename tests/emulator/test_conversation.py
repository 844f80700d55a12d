"""The emulator's behaviour with a raw client: turns, audio, transcripts, tools, barge-in,
resumption and goAway."""

from __future__ import annotations

import itertools

import pytest
import trio
from trio.testing import MockClock

from emulator import Behaviour, Reply, Scenario, ToolCallSpec, Turn, open_emulator
from emulator.audio import synthesize_speech
from emulator.driver import DEADLINE_REASON
from protocol import wire as w
from tests.emulator.client import (
    WEATHER_TURN,
    audio_of,
    closed_with,
    connect,
    setup,
    speech,
    transcript_of,
)

FAST = Behaviour(pace="fast", first_audio_delay_ms=0)
WEATHER = Scenario(
    turns=(
        WEATHER_TURN,
        Turn(user="Thanks!", replies=(Reply(say="You're welcome."),)),
    ),
    behaviour=FAST,
)


async def test_a_spoken_turn_gets_transcripts_audio_and_the_turn_sequence(
    virtual_clock: MockClock,
) -> None:
    scenario = Scenario(
        turns=(Turn(user="Hello there", replies=(Reply(say="Hi, how can I help?"),)),),
        behaviour=FAST,
    )
    async with open_emulator(scenario=scenario) as emu, connect(emu.url) as client:
        await client.send_audio(speech())
        got = await client.until_turn_complete()
    assert transcript_of(got, "input_transcription") == "Hello there"
    assert transcript_of(got, "output_transcription") == "Hi, how can I help?"
    assert audio_of(got) == synthesize_speech("Hi, how can I help?")
    kinds = [
        next(
            k
            for k in ("input_transcription", "model_turn", "generation_complete", "turn_complete")
            if getattr(m.server_content, k)
        )
        for m in got
        if m.server_content is not None
    ]
    assert kinds[0] == "input_transcription"
    assert kinds.index("generation_complete") == len(kinds) - 2
    assert kinds[-1] == "turn_complete"
    assert got[-1].usage_metadata is not None
    assert got[-1].usage_metadata.total_token_count
    finished = [
        m.server_content.input_transcription.finished
        for m in got
        if m.server_content and m.server_content.input_transcription
    ]
    assert finished[-1] is True


async def test_silence_is_not_a_turn_and_audio_stream_end_closes_an_utterance(
    virtual_clock: MockClock,
) -> None:
    async with open_emulator(scenario=Scenario(behaviour=FAST)) as emu, connect(emu.url) as client:
        await client.send_audio(bytes(32000))  # one second of silence
        with trio.move_on_after(0.5) as quiet:
            await client.receive()
        assert quiet.cancelled_caught
        await client.send_audio(speech(silence=0))  # speech that never falls silent...
        await client.send(w.RealtimeInput(audio_stream_end=True))  # ...ended by the client
        assert audio_of(await client.until_turn_complete())


async def test_tool_calls_wait_for_their_response(virtual_clock: MockClock) -> None:
    async with open_emulator(scenario=WEATHER) as emu, connect(emu.url) as client:
        await client.send_audio(speech())
        got = await client.until(lambda m: m.tool_call is not None)
        call = got[-1].tool_call.function_calls[0]  # type: ignore[union-attr,index]
        assert (call.name, call.args) == ("get_weather", {"city": "Paris"})
        with trio.move_on_after(0.3) as waiting:
            await client.receive()
        assert waiting.cancelled_caught  # nothing until the response
        response = w.FunctionResponse(
            id=call.id, name=call.name, response={"output": {"sky": "sunny"}}
        )
        await client.send(w.ToolResponse(function_responses=[response]))
        rest = await client.until_turn_complete()
        assert transcript_of(rest, "output_transcription") == "It is sunny in Paris today."


async def test_parallel_tool_calls_come_in_one_message(virtual_clock: MockClock) -> None:
    scenario = Scenario(
        turns=(
            Turn(
                replies=(
                    Reply(tool_calls=(ToolCallSpec(name="a"), ToolCallSpec(name="b"))),
                    Reply(say="Done."),
                )
            ),
        ),
        behaviour=FAST,
    )
    async with open_emulator(scenario=scenario) as emu, connect(emu.url) as client:
        await client.send(w.RealtimeInput(text="do both"))
        got = await client.until(lambda m: m.tool_call is not None)
        calls = got[-1].tool_call.function_calls  # type: ignore[union-attr]
        assert [c.name for c in calls or []] == ["a", "b"]
        await client.send(
            w.ToolResponse(
                function_responses=[
                    w.FunctionResponse(id=c.id, name=c.name, response={}) for c in calls or []
                ]
            )
        )
        assert transcript_of(await client.until_turn_complete(), "output_transcription") == "Done."


async def test_barge_in_interrupts_cancels_pending_tools_then_completes_the_turn(
    virtual_clock: MockClock,
) -> None:
    async with open_emulator(scenario=WEATHER) as emu, connect(emu.url) as client:
        await client.send_audio(speech())
        got = await client.until(lambda m: m.tool_call is not None)
        call_id = got[-1].tool_call.function_calls[0].id  # type: ignore[union-attr,index]
        await client.send_audio(speech(silence=0))  # the user talks over it
        rest = [m for m in await client.until_turn_complete() if m.voice_activity is None]
        assert rest[0].server_content == w.ServerContent(interrupted=True)
        assert rest[1].tool_call_cancellation == w.ToolCallCancellation(ids=[str(call_id)])
        assert rest[-1].server_content == w.ServerContent(turn_complete=True)
        await client.send_audio(bytes(16000))  # silence ends the barge-in utterance: next turn
        nxt = await client.until_turn_complete()
        assert transcript_of(nxt, "output_transcription") == "You're welcome."


async def test_barge_in_during_speech_stops_the_audio(virtual_clock: MockClock) -> None:
    long_reply = Scenario(
        turns=(Turn(replies=(Reply(say="word " * 60),)),),
        behaviour=Behaviour(pace="realtime", speed=4.0, first_audio_delay_ms=0),
    )
    async with open_emulator(scenario=long_reply) as emu, connect(emu.url) as client:
        await client.send(w.RealtimeInput(text="talk"))
        await client.until(
            lambda m: m.server_content is not None and m.server_content.model_turn is not None
        )
        await client.send_audio(speech(silence=0))
        rest = await client.until_turn_complete()
    full = synthesize_speech("word " * 60)
    assert len(audio_of(client.received)) < len(full) / 2
    assert any(m.server_content and m.server_content.interrupted for m in rest)
    assert not any(m.server_content and m.server_content.generation_complete for m in rest)


async def test_no_interruption_lets_the_reply_finish(virtual_clock: MockClock) -> None:
    config = w.RealtimeInputConfig(
        automatic_activity_detection=w.AutomaticActivityDetection(silence_duration_ms=200),
        activity_handling="NO_INTERRUPTION",
    )
    async with (
        open_emulator(scenario=WEATHER) as emu,
        connect(emu.url, setup(realtime_input_config=config)) as client,
    ):
        await client.send_audio(speech())
        got = await client.until(lambda m: m.tool_call is not None)
        await client.send_audio(speech(silence=0))
        call = got[-1].tool_call.function_calls[0]  # type: ignore[union-attr,index]
        await client.send(
            w.ToolResponse(
                function_responses=[w.FunctionResponse(id=call.id, name="get_weather", response={})]
            )
        )
        rest = await client.until_turn_complete()
        assert not any(m.server_content and m.server_content.interrupted for m in rest)


async def test_manual_activity_signals_and_text_turns(virtual_clock: MockClock) -> None:
    manual = w.RealtimeInputConfig(
        automatic_activity_detection=w.AutomaticActivityDetection(disabled=True)
    )
    async with (
        open_emulator(scenario=WEATHER) as emu,
        connect(emu.url, setup(realtime_input_config=manual)) as client,
    ):
        await client.send(w.RealtimeInput(activity_start=w.ActivityStart()))
        await client.send_audio(speech())  # the detector is off: audio alone ends nothing
        await client.send(w.RealtimeInput(activity_end=w.ActivityEnd()))
        got = await client.until(lambda m: m.tool_call is not None)
        assert transcript_of(got, "input_transcription") == "What's the weather in Paris?"
    async with open_emulator(scenario=Scenario(behaviour=FAST)) as emu, connect(emu.url) as client:
        turn = w.Content(role="user", parts=[w.Part(text="typed question")])
        await client.send(w.ClientContent(turns=[turn], turn_complete=True))
        got = await client.until_turn_complete()
        assert transcript_of(got, "output_transcription")  # answered...
        assert transcript_of(got, "input_transcription") == ""  # ...typed text is not heard


async def test_text_modality_replies_with_text_parts(virtual_clock: MockClock) -> None:
    text_setup = setup(generation_config=w.GenerationConfig(response_modalities=["TEXT"]))
    async with open_emulator(scenario=WEATHER) as emu, connect(emu.url, text_setup) as client:
        await client.send(w.RealtimeInput(text="thanks"))
        got = await client.until(lambda m: m.tool_call is not None)
        call = got[-1].tool_call.function_calls[0]  # type: ignore[union-attr,index]
        await client.send(
            w.ToolResponse(
                function_responses=[w.FunctionResponse(id=call.id, name="get_weather", response={})]
            )
        )
        rest = await client.until_turn_complete()
    texts = [
        p.text
        for m in rest
        if m.server_content and m.server_content.model_turn
        for p in m.server_content.model_turn.parts or []
        if p.text
    ]
    assert "".join(texts) == "It is sunny in Paris today."
    assert audio_of(rest) == b""


async def test_resumption_handles_continue_the_conversation_on_a_new_connection(
    virtual_clock: MockClock,
) -> None:
    resumable = setup(session_resumption=w.SessionResumptionConfig())
    async with open_emulator(scenario=WEATHER) as emu:
        async with connect(emu.url, resumable) as client:
            first = (await client.receive()).session_resumption_update
            assert first is not None
            assert first.resumable
            assert first.new_handle
            await client.send(w.RealtimeInput(text="weather?"))
            got = await client.until(lambda m: m.tool_call is not None)
            assert any(
                m.session_resumption_update == w.SessionResumptionUpdate(resumable=False)
                for m in got
            )
            call = got[-1].tool_call.function_calls[0]  # type: ignore[union-attr,index]
            await client.send(
                w.ToolResponse(
                    function_responses=[
                        w.FunctionResponse(id=call.id, name="get_weather", response={})
                    ]
                )
            )
            await client.until_turn_complete()
            update = await client.receive()
            handle = update.session_resumption_update.new_handle  # type: ignore[union-attr]
            assert handle
        again = setup(session_resumption=w.SessionResumptionConfig(handle=handle))
        async with connect(emu.url, again) as client:
            await client.send(w.RealtimeInput(text="thanks"))
            got = await client.until_turn_complete()
            assert (
                transcript_of(got, "output_transcription") == "You're welcome."
            )  # the second turn


async def test_go_away_before_the_connection_lifetime_then_close(virtual_clock: MockClock) -> None:
    short = Scenario(
        behaviour=Behaviour(pace="fast", connection_lifetime_s=0.6, go_away_notice_s=0.3)
    )
    async with open_emulator(scenario=short) as emu, connect(emu.url) as client:
        start = trio.current_time()
        message = await client.receive()
        assert message.go_away == w.GoAway(time_left="0.300s")
        assert trio.current_time() - start == pytest.approx(0.3, abs=0.01)
        reason = await closed_with(client.receive)  # as the service: 1011, its own words
        assert (reason.code, reason.reason) == (1011, DEADLINE_REASON)


async def test_session_length_limit_without_compression(virtual_clock: MockClock) -> None:
    tiny = Scenario(behaviour=Behaviour(pace="fast", session_audio_limit_s=0.5))
    async with open_emulator(scenario=tiny) as emu, connect(emu.url) as client:

        async def talk_past_the_limit() -> None:
            await client.send_audio(bytes(32000))
            await client.receive()

        reason = await closed_with(talk_past_the_limit)
        assert reason.code == 1000
        assert "contextWindowCompression" in (reason.reason or "")
    compressed = setup(
        context_window_compression=w.ContextWindowCompression(sliding_window=w.SlidingWindow())
    )
    async with open_emulator(scenario=tiny) as emu, connect(emu.url, compressed) as client:
        await client.send_audio(bytes(32000))
        await client.send(w.RealtimeInput(text="still here"))
        assert await client.until_turn_complete()


async def test_bursty_pace_sends_chunks_in_bursts_at_the_real_time_rate(
    virtual_clock: MockClock,
) -> None:
    bursty = Scenario(
        turns=(Turn(replies=(Reply(say="word " * 20),)),),
        behaviour=Behaviour(pace="bursty", burst_chunks=5, chunk_ms=40, first_audio_delay_ms=0),
    )
    arrivals: list[float] = []
    async with open_emulator(scenario=bursty) as emu, connect(emu.url) as client:
        await client.send(w.RealtimeInput(text="talk"))
        while True:
            message = await client.receive()
            content = message.server_content
            if content is not None and content.model_turn is not None:
                arrivals.append(trio.current_time())
            if content is not None and content.generation_complete:
                break
    bursts = [arrivals[i : i + 5] for i in range(0, len(arrivals), 5)]
    for burst in bursts:
        assert burst[-1] - burst[0] == pytest.approx(0, abs=0.003)  # back to back
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(bursts)]
    assert gaps
    assert all(gap == pytest.approx(5 * 0.040, abs=0.005) for gap in gaps)  # real-time on average


async def test_faults_listed_in_a_scenario_fire(virtual_clock: MockClock) -> None:
    from emulator.scenario import FaultEntry

    scenario = Scenario(
        turns=(Turn(replies=(Reply(say="one two three four"),)),),
        behaviour=Behaviour(pace="fast", first_audio_delay_ms=0),
        faults=(FaultEntry(spec="close:code=1011,at=mid-reply"),),
    )
    async with open_emulator(scenario=scenario) as emu, connect(emu.url) as client:
        assert (await closed_with(client.converse)).code == 1011
