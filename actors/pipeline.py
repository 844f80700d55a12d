"""The whole pipeline, wired: every channel and actor of one voice session on one screen.

    capture ─raw─► encoder ─outgoing─► gemini-link ◄══► Gemini Live | emulator
                                           │
                        ┌──────incoming────┘
                        ▼
                     router ─calls─► tool-executor ─results─► router ─► outgoing (to the link)
                        │  └─playout─► playout ─► sink
                        ▼               │
                    transcriber ◄───────┘  (+ metrics) ─► the application's events

The supervisor starts them in this order: transcriber, playout, tool-executor, router, link
(ready once setupComplete arrived), encoder, capture, so no audio is captured before the
session can take it. The application gets every internal message on ``events`` (model
audio included), plus transcripts and metrics, and can push input with ``send``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from actors.capture import Source, capture
from actors.encoder import encoder
from actors.endpoint import Endpoint
from actors.gemini_link import LinkOptions, LinkState, gemini_link
from actors.metrics import Metrics
from actors.playout import PlayoutOptions, Sink, playout
from actors.tool_executor import ExecutorState, tool_executor
from actors.tools import ToolSet
from actors.transcriber import Transcripts, transcriber
from actors.transport import NativeTransport, Transport
from protocol import wire
from runtime import messages as m
from runtime.supervisor import ActorContext, ChildSpec, Restart, Supervisor
from runtime.wiring import Wiring, deliver, messages

_TO_PLAYOUT = (m.ModelAudio, m.TurnInterrupted, m.GenerationCompleted, m.TurnCompleted)
_TO_TOOLS = (m.ToolCallRequested, m.ToolCallsCancelled, m.TurnInterrupted)


@dataclass
class Pipeline:
    endpoint: Endpoint
    setup: wire.Setup
    sink: Sink
    source: Source | None = None
    video: Source | None = None  # a second source, of frames, beside the audio
    tools: ToolSet = field(default_factory=ToolSet)
    transport: Transport = field(default_factory=NativeTransport)
    link_options: LinkOptions = field(default_factory=LinkOptions)
    playout_options: PlayoutOptions = field(default_factory=PlayoutOptions)
    chunk_ms: int = 20
    transcripts: Transcripts = field(default_factory=Transcripts)
    wiring: Wiring[m.InternalMessage] = field(default_factory=Wiring)

    def __post_init__(self) -> None:
        for name in ("raw", "outgoing", "incoming", "calls", "results", "playout", "observed"):
            self.wiring.add(name)
        self._link_state = LinkState()
        self._executor_state = ExecutorState()
        self._metrics = Metrics()

    def send(self) -> trio.MemorySendChannel[m.InternalMessage]:
        """An endpoint to push input to the session (text, activity signals, audio chunks)."""
        return self.wiring.sender("outgoing")

    def children(self, events: trio.MemorySendChannel[m.InternalMessage]) -> list[ChildSpec]:
        w = self.wiring

        async def router(ctx: ActorContext) -> None:
            async with (
                w.receiver("incoming") as incoming,
                w.receiver("results") as results,
                w.sender("calls") as calls,
                w.sender("playout") as audio,
                w.sender("outgoing") as outgoing,
                w.sender("observed") as observed,
                trio.open_nursery() as nursery,
            ):
                ctx.ready()

                async def forward_results() -> None:
                    async for result in results:
                        await deliver(outgoing, result)
                        await deliver(observed, result)

                nursery.start_soon(forward_results)
                async for message in messages(incoming):
                    if isinstance(message, _TO_TOOLS):
                        await deliver(calls, message)
                    if isinstance(message, _TO_PLAYOUT):
                        await deliver(audio, message)
                    await deliver(observed, message)  # the transcriber needs the audio too
                nursery.cancel_scope.cancel()

        specs = [
            ChildSpec(
                "transcriber",  # and metrics; forwards everything it sees as the events
                lambda ctx: transcriber(
                    ctx,
                    inbox=w.receiver("observed"),
                    out=events.clone(),
                    transcripts=self.transcripts,
                    metrics=self._metrics,
                    forward=True,
                ),
            ),
            ChildSpec(
                "playout",
                lambda ctx: playout(
                    ctx,
                    audio=w.receiver("playout"),
                    sink=self.sink,
                    events=w.sender("observed"),
                    options=self.playout_options,
                ),
                Restart.TRANSIENT,
            ),
            ChildSpec(
                "tool-executor",
                lambda ctx: tool_executor(
                    ctx,
                    tools=self.tools,
                    calls=w.receiver("calls"),
                    results=w.sender("results"),
                    state=self._executor_state,
                ),
            ),
            ChildSpec("router", router),
            ChildSpec(
                "gemini-link",
                lambda ctx: gemini_link(
                    ctx,
                    endpoint=self.endpoint,
                    setup=self.setup,
                    transport=self.transport,
                    outgoing=w.receiver("outgoing"),
                    incoming=w.sender("incoming"),
                    state=self._link_state,
                    options=self.link_options,
                ),
            ),
            ChildSpec(
                "encoder",
                lambda ctx: encoder(
                    ctx,
                    raw=w.receiver("raw"),
                    out=w.sender("outgoing"),
                    chunk_ms=self.chunk_ms,
                    reports=w.sender("observed"),
                    video_sources=frozenset({self.video.name} if self.video else ()),
                ),
                Restart.TRANSIENT,
            ),
        ]
        for name, source in (("capture", self.source), ("video-capture", self.video)):
            if source is not None:
                specs.append(_capture_spec(name, source, w))
        return specs

    def supervisor(self, events: trio.MemorySendChannel[m.InternalMessage]) -> Supervisor:
        """A supervisor of ``children(events)``; run it with ``run()``, end it with ``stop()``."""
        return Supervisor(self.children(events), events=events)


def _capture_spec(name: str, source: Source, wiring: Wiring[m.InternalMessage]) -> ChildSpec:
    # Never restarted: a restarted file source would replay from the start.
    return ChildSpec(
        name, lambda ctx: capture(ctx, source=source, out=wiring.sender("raw")), Restart.TEMPORARY
    )
