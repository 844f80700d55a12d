"""The router: each message where it is needed, in order, and everything observed."""

from __future__ import annotations

import math

import trio
from trio.testing import MockClock

from actors.router import destinations, router
from runtime import messages as m
from runtime.supervisor import ActorContext


def test_the_routing_table() -> None:
    call = m.ToolCallRequested(call_id="c", name="f", args={}, turn_id=1)
    assert destinations(call) == ("calls", "observed")
    assert destinations(m.TurnInterrupted(turn_id=1)) == (
        "calls",
        "playout",
        "metrics",
        "observed",
    )
    assert destinations(m.ModelAudio(turn_id=1, data=b"", offset=0)) == ("playout", "observed")
    assert destinations(m.ToolResult(call_id="c", name="f")) == ("outgoing", "observed")
    assert destinations(m.PlayoutProgress(turn_id=1, samples_played=1)) == ("metrics", "observed")
    assert destinations(m.AudioStreamEnded(timestamp=0.0)) == ("metrics", "observed")
    assert destinations(m.Connected(resumed=False)) == ("observed",)
    # Reply timing for the model metrics; the application's requests: to metrics only.
    assert destinations(m.TurnStarted(turn_id=1)) == ("metrics", "observed")
    assert destinations(m.VoiceActivityDetected(kind="end")) == ("metrics", "observed")
    assert destinations(m.TextInput(text="hi")) == ("metrics",)
    assert destinations(m.ResponseRequested()) == ("metrics",)


async def test_the_actor_with_fake_peers(autojump_clock: MockClock) -> None:
    inbox_send, inbox_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    names = ("calls", "playout", "outgoing", "metrics", "observed")
    channels = {name: trio.open_memory_channel[m.InternalMessage](math.inf) for name in names}
    sent: list[m.InternalMessage] = [
        m.ToolCallRequested(call_id="c", name="f", args={}, turn_id=1),
        m.ModelAudio(turn_id=1, data=b"\x00\x00", offset=0),
        m.ToolResult(call_id="c", name="f", output=1),
        m.TurnCompleted(turn_id=1),
    ]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: router(
                ActorContext("router", 1, trio.Event(), lambda: None),
                inbox=inbox_receive,
                **{name: send for name, (send, _) in channels.items()},
            )
        )
        for message in sent:
            await inbox_send.send(message)
        await inbox_send.aclose()
    got = {name: [x async for x in receive] for name, (_, receive) in channels.items()}
    assert got["observed"] == sent
    assert got["calls"] == sent[:1]
    assert got["playout"] == [sent[1], sent[3]]
    assert got["outgoing"] == [sent[2]]
    assert got["metrics"] == [sent[3]]
