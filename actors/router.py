"""The router actor: every report in the pipeline goes where it is needed.

The link (what the server said), the tool executor (results), playout (progress) and the
encoder (end of stream, drops) all send to one inbox; the router sends each message, by
its type, to the actors that act on it and always to ``observed`` (the application's
event stream, through the transcriber):

    tool calls, cancellations     -> calls (tool-executor)
    interruptions                 -> calls and playout
    model audio, turn ends        -> playout (audio: see below)
    tool results                  -> outgoing (the link: the model needs the answer)
    end of speech, first audio
    played, token usage, turns,
    copies of typed requests      -> metrics (the copies: there only)
    everything                    -> observed

``destinations`` is the table; the actor only applies it, in order (calls before playout
before observed), so one message is never seen by the application before the actors that
act on it.

Model audio goes to ``observed`` only when the application wants it (``audio_events``);
otherwise the transcriber gets just enough of it to count the turn's audio (``Routing``).
A server message costs one task step end to end: while the router waits with nothing
queued, the link routes its message itself, and the actors it feeds handle theirs
likewise (``runtime.wiring``'s inline hand-off).
"""

from __future__ import annotations

import math
from typing import Literal

import trio

from runtime import messages as m
from runtime.supervisor import ActorContext
from runtime.wiring import deliver, deliver_nowait, messages

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
    audio_events: bool = True,
) -> None:
    """Route every ``inbox`` message until ``inbox`` ends, or until ``ctx.stopping`` is
    set and what is queued then has been routed (its inbox has senders that stop after
    it: the tool executor and playout, so it cannot wait for the end of the channel).
    Closes all its endpoints, which ends the channels it feeds.

    While it waits with nothing queued, a sender routes its message itself, in its own
    task (``Routing.now``: the inline hand-off of ``runtime.wiring``), so a server message
    costs no task step here, nor in the actors it feeds that wait likewise.

    ``audio_events``: whether ``observed`` (the application's stream) gets every
    ``ModelAudio``. Without, it gets only what the transcriber needs of them (see
    ``Routing``)."""
    routing = Routing(
        {
            "calls": calls,
            "playout": playout,
            "outgoing": outgoing,
            "metrics": metrics,
            "observed": observed,
        },
        audio_events=audio_events,
    )
    async with inbox, calls, playout, outgoing, metrics, observed:
        ctx.ready()
        with trio.CancelScope() as receiving:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ctx.cancel_when_stopping, receiving)
                # Cancelled only while it waits (the inline handler runs in senders' tasks).
                async for message in messages(inbox, inline=routing.now):
                    await routing.route(message)
                nursery.cancel_scope.cancel()
        while True:  # stopping: what is queued still goes where it is needed
            try:
                await routing.route(inbox.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        routing.flush_audio()


class Routing:
    """One router incarnation's work: ``route`` (the actor's loop body) and ``now`` (the
    same, synchronously, for senders to run inline).

    Without ``audio_events`` a ``ModelAudio`` goes to playout only; the transcriber, which
    reads ``observed``, needs of a turn's audio only how far it has come (to tag each
    transcript fragment with the audio that had arrived with it: what was heard of an
    interrupted reply). So the latest audio message of each turn is held back and sent to
    ``observed`` just before the next message that goes there: the transcriber sees the
    same counts when it matters, from one audio message per other message, not one per
    audio message (the transcriber does not pass it on to the application)."""

    def __init__(
        self,
        outputs: dict[Route, trio.MemorySendChannel[m.InternalMessage]],
        *,
        audio_events: bool = True,
    ) -> None:
        self.outputs = outputs
        self.audio_events = audio_events
        self.held: dict[int, m.ModelAudio] = {}  # by turn: its latest audio, for observed
        # Inline handling cannot wait for room in a bounded channel: it is declined then.
        # (A channel's bound never changes: looked up once.)
        self.unbounded = all(
            channel.statistics().max_buffer_size == math.inf for channel in outputs.values()
        )

    async def route(self, message: m.InternalMessage) -> None:
        """Send ``message`` to each of its destinations, in order; waits for room in a
        bounded destination."""
        if not self.audio_events and type(message) is m.ModelAudio:
            self._hold(message)
            await deliver(self.outputs["playout"], message)
            return
        for where in destinations(message):
            if where == "observed" and self.held:
                for audio in self._release():
                    await deliver(self.outputs["observed"], audio)
            await deliver(self.outputs[where], message)

    def now(self, message: m.InternalMessage) -> bool:
        """``route`` without waiting, for ``messages(..., inline=...)``: declines (False,
        nothing done) when a destination channel is bounded."""
        if not self.unbounded:
            return False
        if not self.audio_events and type(message) is m.ModelAudio:
            self._hold(message)
            deliver_nowait(self.outputs["playout"], message)
            return True
        for where in destinations(message):
            if where == "observed" and self.held:
                for audio in self._release():
                    deliver_nowait(self.outputs["observed"], audio)
            deliver_nowait(self.outputs[where], message)
        return True

    def flush_audio(self) -> None:
        """Send what is held back to ``observed`` (the router's last act: nothing waits
        for it, but the transcriber's counts stay whole). Never waits: declines to send
        into a full bounded channel."""
        for audio in self._release():
            try:
                deliver_nowait(self.outputs["observed"], audio)
            except (trio.WouldBlock, trio.BrokenResourceError):
                return

    def _hold(self, audio: m.ModelAudio) -> None:
        held = self.held.get(audio.turn_id)
        if held is None or _end(audio) >= _end(held):
            self.held[audio.turn_id] = audio

    def _release(self) -> list[m.ModelAudio]:
        held = list(self.held.values())
        self.held.clear()
        return held


def _end(audio: m.ModelAudio) -> int:
    """The turn's samples that have arrived with ``audio``."""
    return audio.offset + len(audio.data) // 2
