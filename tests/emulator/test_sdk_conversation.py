"""google-genai's own live client (``client.aio.live.connect``) against the emulator.

The SDK always dials wss://, so the emulator serves TLS with a trustme CA and the SDK is
given an SSL context that trusts it. The SDK is asyncio; it runs in a worker thread while
the emulator runs in the test's trio loop. These tests use the real clock: the SDK's
waits are invisible to trio, so a virtual clock would run the emulator ahead of it.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import trio
from google import genai
from google.genai import errors, types

from emulator import Behaviour, Emulator, Reply, Scenario, Turn, open_emulator
from emulator.audio import synthesize_speech
from tests.emulator.client import WEATHER_TURN, speech

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
LONG_REPLY = " ".join(["Let me tell you a long story about the weather in many cities."] * 4)
SCENARIO = Scenario(
    turns=(
        WEATHER_TURN,
        Turn(user="Tell me more.", replies=(Reply(say=LONG_REPLY),)),
        Turn(user="Stop, thanks!", replies=(Reply(say="You're welcome."),)),
    ),
    behaviour=Behaviour(pace="realtime", speed=4.0, first_audio_delay_ms=0),
)
WEATHER_TOOL = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="get_weather",
            description="Weather for a city.",
            parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}},
        )
    ]
)
T = TypeVar("T")


async def in_sdk_thread(coroutine: Callable[[], Awaitable[T]]) -> T:
    """Run an asyncio coroutine function in a worker thread, as an SDK user's program would."""

    def run() -> T:
        async def main() -> T:
            return await coroutine()

        return asyncio.run(main())

    return await trio.to_thread.run_sync(run)


def sdk_client(emu: Emulator) -> genai.Client:
    assert emu.client_ssl_context is not None
    options = types.HttpOptions(
        base_url=emu.https_base_url,
        api_version="v1beta",
        async_client_args={"ssl": emu.client_ssl_context},
    )
    return genai.Client(api_key="test-key", http_options=options)


def live_config(**overrides: Any) -> types.LiveConnectConfig:
    fields: dict[str, Any] = {
        "response_modalities": [types.Modality.AUDIO],
        "input_audio_transcription": types.AudioTranscriptionConfig(),
        "output_audio_transcription": types.AudioTranscriptionConfig(),
        "realtime_input_config": types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(silence_duration_ms=200)
        ),
        "tools": [WEATHER_TOOL],
    }
    fields.update(overrides)
    return types.LiveConnectConfig(**fields)


@dataclass
class TurnLog:
    """What the SDK's receive() yielded for one turn."""

    audio: bytes = b""
    user: str = ""
    agent: str = ""
    tool_calls: list[types.FunctionCall] = field(default_factory=list)
    interrupted: bool = False
    go_away: types.LiveServerGoAway | None = None
    handles: list[str] = field(default_factory=list)
    usage: list[types.UsageMetadata] = field(default_factory=list)


async def send_speech(session: Any, pcm: bytes) -> None:
    for i in range(0, len(pcm), 640):
        await session.send_realtime_input(
            audio=types.Blob(data=pcm[i : i + 640], mime_type="audio/pcm;rate=16000")
        )


async def read_turn(
    session: Any,
    *,
    tool_output: dict[str, Any] | None = None,
    on_first_audio: Callable[[], Awaitable[None]] | None = None,
) -> TurnLog:
    """Everything up to turnComplete, answering tool calls and noting resumption handles."""
    log = TurnLog()
    async for message in session.receive():
        content = message.server_content
        if content is not None:
            if content.model_turn is not None:
                for part in content.model_turn.parts or []:
                    if part.inline_data is not None and part.inline_data.data:
                        first = not log.audio
                        log.audio += part.inline_data.data
                        if first and on_first_audio is not None:
                            await on_first_audio()
            if content.input_transcription is not None:
                log.user += content.input_transcription.text or ""
            if content.output_transcription is not None:
                log.agent += content.output_transcription.text or ""
            log.interrupted |= bool(content.interrupted)
        if message.tool_call is not None:
            for call in message.tool_call.function_calls or []:
                log.tool_calls.append(call)
                response = types.FunctionResponse(
                    id=call.id, name=call.name, response={"output": tool_output or {}}
                )
                await session.send_tool_response(function_responses=[response])
        update = message.session_resumption_update
        if update is not None and update.resumable and update.new_handle:
            log.handles.append(update.new_handle)
        if message.usage_metadata is not None:
            log.usage.append(message.usage_metadata)
    return log


async def read_until_go_away(session: Any) -> TurnLog:
    """Messages after a turn, up to goAway (receive() yields until a turnComplete, so loop)."""
    log = TurnLog()
    while log.go_away is None:
        async for message in session.receive():
            update = message.session_resumption_update
            if update is not None and update.resumable and update.new_handle:
                log.handles.append(update.new_handle)
            if message.go_away is not None:
                log.go_away = message.go_away
                break
    return log


async def test_a_whole_conversation_with_tools_go_away_resume_and_barge_in() -> None:
    async with open_emulator(
        scenario=SCENARIO, tls=True, faults=["goaway:at=turn-end,time_left=0.5,connection=1"]
    ) as emu:
        client = sdk_client(emu)

        async def first_connection() -> tuple[TurnLog, TurnLog]:
            config = live_config(session_resumption=types.SessionResumptionConfig())
            async with client.aio.live.connect(model=MODEL, config=config) as session:
                assert session.session_id
                await send_speech(session, speech())
                turn = await read_turn(session, tool_output={"sky": "sunny"})
                after = await read_until_go_away(session)
                return turn, after

        turn1, after1 = await in_sdk_thread(first_connection)
        assert turn1.user == "What's the weather in Paris?"
        assert [(c.name, c.args) for c in turn1.tool_calls] == [("get_weather", {"city": "Paris"})]
        assert turn1.agent == "It is sunny in Paris today."
        assert turn1.audio == synthesize_speech("It is sunny in Paris today.")
        assert not turn1.interrupted
        assert turn1.usage
        assert turn1.usage[-1].total_token_count
        assert after1.go_away is not None
        assert after1.go_away.time_left == "0.500s"
        handle = (turn1.handles + after1.handles)[-1]

        async def resumed_connection() -> tuple[TurnLog, TurnLog]:
            config = live_config(session_resumption=types.SessionResumptionConfig(handle=handle))
            async with client.aio.live.connect(model=MODEL, config=config) as session:
                await session.send_realtime_input(text="Tell me more.")

                async def barge_in() -> None:
                    await send_speech(session, speech())

                interrupted = await read_turn(session, on_first_audio=barge_in)
                following = await read_turn(session)
                return interrupted, following

        with trio.fail_after(30):
            turn2, turn3 = await in_sdk_thread(resumed_connection)
        assert turn2.interrupted
        assert 0 < len(turn2.audio) < len(synthesize_speech(LONG_REPLY)) / 2
        assert turn3.agent == "You're welcome."  # the conversation went on where it was
        assert emu.connections == 2


async def test_every_sdk_send_method_is_accepted() -> None:
    jpeg = b"\xff\xd8\xff\xe0" + bytes(64)
    async with open_emulator(scenario=SCENARIO, tls=True) as emu:
        client = sdk_client(emu)
        manual = types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)
        )

        async def every_method() -> tuple[TurnLog, TurnLog, list[warnings.WarningMessage]]:
            config = live_config(
                realtime_input_config=manual, session_resumption=types.SessionResumptionConfig()
            )
            async with client.aio.live.connect(model=MODEL, config=config) as session:
                await session.send_client_content(
                    turns=[
                        types.Content(
                            role="user", parts=[types.Part(text="Remember: I live in Paris.")]
                        )
                    ],
                    turn_complete=False,
                )
                await session.send_context_update(
                    system_instruction="Be brief.", tools=[WEATHER_TOOL]
                )
                await session.send_realtime_input(
                    video=types.Blob(data=jpeg, mime_type="image/jpeg")
                )
                await session.send_realtime_input(
                    media=types.Blob(data=bytes(640), mime_type="audio/pcm;rate=16000")
                )
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    await session.send(
                        input=types.LiveClientRealtimeInput(
                            media_chunks=[types.Blob(data=bytes(640), mime_type="audio/pcm")]
                        )
                    )
                await session.send_realtime_input(activity_start=types.ActivityStart())
                await send_speech(session, speech())
                await session.send_realtime_input(activity_end=types.ActivityEnd())
                first = await read_turn(session, tool_output={"sky": "sunny"})
                await session.send_realtime_input(audio_stream_end=True)
                await session.send_realtime_input(text="Tell me more.")
                second = await read_turn(session)
                return first, second, caught

        with trio.fail_after(30):
            first, second, caught = await in_sdk_thread(every_method)
        assert any(issubclass(w.category, DeprecationWarning) for w in caught)  # session.send
        assert first.tool_calls
        assert first.agent == "It is sunny in Paris today."
        assert second.agent == LONG_REPLY
        assert emu.connections == 1


async def test_the_sdk_ignores_unknown_fields_and_message_kinds() -> None:
    async with open_emulator(
        scenario=SCENARIO, tls=True, faults=["unknown:every=1,repeat=true"]
    ) as emu:
        client = sdk_client(emu)

        async def converse() -> TurnLog:
            async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
                await send_speech(session, speech())
                return await read_turn(session)

        with trio.fail_after(30):
            log = await in_sdk_thread(converse)
        assert log.agent == "It is sunny in Paris today."


@pytest.mark.parametrize(
    ("model", "faults", "code"),
    [("gemini-9-ultra", [], 1008), (MODEL, ["close:code=1011,at=mid-reply"], 1011)],
    ids=["unknown-model", "internal-error"],
)
async def test_the_sdk_reports_close_codes(model: str, faults: list[str], code: int) -> None:
    async with open_emulator(scenario=SCENARIO, tls=True, faults=faults) as emu:
        client = sdk_client(emu)

        async def converse() -> None:
            async with client.aio.live.connect(model=model, config=live_config()) as session:
                await session.send_realtime_input(text="hello")
                await read_turn(session)

        with pytest.raises(errors.APIError) as info, trio.fail_after(30):
            await in_sdk_thread(converse)
        assert info.value.code == code
