"""The router actor: every report in the pipeline goes where it is needed.

The link (what the server said), the tool executor (results), playout (progress) and the
encoder (end of stream, drops) all send to one inbox; the router sends each message, by
its type, to the actors that act on it and always to ``observed`` (the application's
event stream, through the transcriber):

    tool calls, cancellations     -> calls (tool-executor)
    interruptions                 -> calls and playout
    model audio, turn ends        -> playout
    tool results                  -> outgoing (the link: the model needs the answer)
    end of speech, first audio
    played, token usage, turns,
    copies of typed requests      -> metrics (the copies: there only)
    everything                    -> observed

``destinations`` is the table; the actor only applies it, in order (calls before playout
before observed), so one message is never seen by the application before the actors that
act on it.
"""

from __future__ import annotations

from typing import Literal

import trio

from runtime import messages as m
from runtime.supervisor import ActorContext
from runtime.wiring import deliver, messages

Route = Literal["calls", "playout", "outgoing", "metrics", "observed"]

_OBSERVED: tuple[Route, ...] = ("observed",)
_ROUTES: dict[type[m.InternalMessage], tuple[Route, ...]] = {
    m.ToolCallRequested: ("calls", "observed"),
    m.ToolCallsCancelled: ("calls", "observed"),
    m.TurnInterrupted: ("calls", "playout", "metrics", "observed"),
    m.ModelAudio: ("playout", "observed"),
    m.TurnStarted: ("metrics", "observed"),
    m.GenerationCompleted: ("playout", "metrics", "observed"),
    m.TurnCompleted: ("playout", "metrics", "observed"),
    m.ToolResult: ("outgoing", "observed"),
    m.ActivityEnded: ("metrics", "observed"),
    m.AudioStreamEnded: ("metrics", "observed"),
    m.VoiceActivityDetected: ("metrics", "observed"),
    m.SpeechEnded: ("metrics", "observed"),
    m.PlayoutProgress: ("metrics", "observed"),
    m.UsageReported: ("metrics", "observed"),
    # Copies of the application's requests (the originals go to the link): the metrics'
    # time to first content starts from them.
    m.TextInput: ("metrics",),
    m.ResponseRequested: ("metrics",),
}


def destinations(message: m.InternalMessage) -> tuple[Route, ...]:
    """Where ``message`` goes, in order."""
    return _ROUTES.get(type(message), _OBSERVED)


async def router(
    ctx: ActorContext,
    *,
    inbox: trio.MemoryReceiveChannel[m.InternalMessage],
    calls: trio.MemorySendChannel[m.InternalMessage],
    playout: trio.MemorySendChannel[m.InternalMessage],
    outgoing: trio.MemorySendChannel[m.InternalMessage],
    metrics: trio.MemorySendChannel[m.InternalMessage],
    observed: trio.MemorySendChannel[m.InternalMessage],
) -> None:
    """Route every ``inbox`` message until ``inbox`` ends, or until ``ctx.stopping`` is
    set and what is queued then has been routed (its inbox has senders that stop after
    it: the tool executor and playout, so it cannot wait for the end of the channel).
    Closes all its endpoints, which ends the channels it feeds."""
    outputs: dict[Route, trio.MemorySendChannel[m.InternalMessage]] = {
        "calls": calls,
        "playout": playout,
        "outgoing": outgoing,
        "metrics": metrics,
        "observed": observed,
    }

    async def route(message: m.InternalMessage) -> None:
        for where in destinations(message):
            await deliver(outputs[where], message)

    async with inbox, calls, playout, outgoing, metrics, observed:
        ctx.ready()
        with trio.CancelScope() as receiving:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ctx.cancel_when_stopping, receiving)
                async for message in messages(inbox):  # cancelled only while it waits
                    await route(message)
                nursery.cancel_scope.cancel()
        while True:  # stopping: what is queued still goes where it is needed
            try:
                await route(inbox.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                return
