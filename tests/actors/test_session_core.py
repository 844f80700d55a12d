"""The session core assembled: supervisor, wiring, gemini-link and tool-executor together
against the emulator, with faults, checking the invariants of the issue."""

from __future__ import annotations

import math
from collections import Counter

import trio
from trio.testing import MockClock

from actors import endpoint as ep
from actors.gemini_link import LinkOptions, LinkState, gemini_link
from actors.tool_executor import ExecutorState, tool_executor
from actors.tools import ToolSet, tool
from emulator import Behaviour, Reply, Scenario, ToolCallSpec, Turn, open_emulator
from protocol import wire as w
from runtime import ChildSpec, Supervisor, Wiring
from runtime import messages as m
from runtime.supervisor import ActorContext, Backoff, no_jitter
from tests.fakes import MemoryTransport

runs: Counter[str] = Counter()


@tool
async def lookup(topic: str) -> str:
    """Look a topic up (takes a while)."""
    runs[topic] += 1
    await trio.sleep(2)
    return f"all about {topic}"


SCENARIO = Scenario(
    turns=(
        Turn(
            replies=(
                Reply(tool_calls=(ToolCallSpec(name="lookup", args={"topic": "first"}),)),
                Reply(say="One."),
            )
        ),
        Turn(
            replies=(
                Reply(tool_calls=(ToolCallSpec(name="lookup", args={"topic": "second"}),)),
                Reply(say="Two."),
            )
        ),
    ),
    behaviour=Behaviour(pace="fast", first_audio_delay_ms=0),
)


async def test_every_tool_call_is_answered_once_across_a_reconnect_and_a_crash(
    autojump_clock: MockClock,
) -> None:
    runs.clear()
    wiring: Wiring[m.InternalMessage] = Wiring()
    for name in ("outgoing", "incoming", "calls", "app"):
        wiring.add(name)
    events_send, events_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    crashed = False

    async def router(ctx: ActorContext) -> None:
        """Tool traffic to the executor, the rest to the app; crashes once mid-session."""
        nonlocal crashed
        async with (
            wiring.receiver("incoming") as incoming,
            wiring.sender("calls") as calls,
            wiring.sender("app") as app,
        ):
            ctx.ready()
            async for message in incoming:
                if isinstance(
                    message, m.ToolCallRequested | m.ToolCallsCancelled | m.TurnInterrupted
                ):
                    await calls.send(message)
                await app.send(message)
                if isinstance(message, m.ToolCallRequested) and not crashed:
                    crashed = True
                    raise RuntimeError("router bug")

    async with open_emulator(scenario=SCENARIO, faults=["close:code=1011,at=tool-pending"]) as emu:
        async with trio.open_nursery() as nursery:
            transport = MemoryTransport(emu, nursery)
            link_state, executor_state = LinkState(), ExecutorState()

            async def link(ctx: ActorContext) -> None:
                await gemini_link(
                    ctx,
                    endpoint=ep.custom(emu.url, "gemini-2.5-flash-native-audio-latest"),
                    setup=w.Setup(
                        model="", output_audio_transcription=w.AudioTranscriptionConfig()
                    ),
                    transport=transport,
                    outgoing=wiring.receiver("outgoing"),
                    incoming=wiring.sender("incoming"),
                    state=link_state,
                    options=LinkOptions(random=no_jitter),
                )

            async def executor(ctx: ActorContext) -> None:
                await tool_executor(
                    ctx,
                    tools=ToolSet([lookup]),
                    calls=wiring.receiver("calls"),
                    results=wiring.sender("outgoing"),
                    state=executor_state,
                )

            supervisor = Supervisor(
                [
                    ChildSpec("router", router),
                    ChildSpec("tools", executor),
                    ChildSpec("link", link),
                ],
                events=events_send,
                backoff=Backoff(initial=0.1, jitter=0),
            )
            await nursery.start(supervisor.run)
            app = wiring.receiver("app")
            say = wiring.sender("outgoing")

            async def turn(text: str) -> list[m.InternalMessage]:
                await say.send(m.TextInput(text=text))
                got: list[m.InternalMessage] = []
                with trio.fail_after(60):
                    while not isinstance(message := await app.receive(), m.TurnCompleted):
                        got.append(message)
                got.append(message)
                return got

            first = await turn("first")  # the connection is closed while its tool call is pending
            assert first[-1] == m.TurnCompleted(
                turn_id=1, interrupted=True, reason="CONNECTION_LOST"
            )
            await trio.sleep(3)  # the lookup finishes; its result goes out after reconnecting
            second = await turn("second")
            assert "".join(x.text for x in second if isinstance(x, m.TranscriptFragment)) == "Two."
            supervisor.stop()

    responses = Counter(
        r.id
        for message in transport.sent
        if isinstance(message, w.ToolResponse)
        for r in message.function_responses or ()
    )
    calls = [x.call_id for x in first + second if isinstance(x, m.ToolCallRequested)]
    assert len(calls) == 2
    assert {call: responses[call] for call in calls} == dict.fromkeys(calls, 1)  # exactly once each
    assert runs == {"first": 1, "second": 1}  # none ran twice
    lifecycle = []
    while True:
        try:
            lifecycle.append(events_receive.receive_nowait())
        except trio.WouldBlock:
            break
    assert (
        m.ActorCrashed(actor="router", error_type="RuntimeError", error="router bug") in lifecycle
    )
    await wiring.aclose()
