"""The whole pipeline, wired: every channel and actor of one voice session on one screen.

    capture ─raw─► encoder ─outgoing─► gemini-link ◄══► Gemini Live | emulator
                      │                  ▲   │
                      │       tool results   │ what the server said
                      ▼                  │   ▼
    playout ─────► reports ─────────► router ─calls─► tool-executor ─► reports
      ▲  (progress)                    │ │ │
      └───────────── playout ──────────┘ │ └─metrics─► metrics ─────────┐
                                         └─observed─► transcriber ──────┴─► events

Every actor that has something to say sends it to ``reports``; the router sends each
message where it is needed (``actors.router``), and everything to the transcriber, through
which the application's event stream passes. The supervisor starts them in this order:
transcriber, metrics, playout, tool-executor, router, link (ready once setupComplete
arrived), encoder, capture, so no audio is captured before the session can take it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from actors.capture import Source, capture
from actors.encoder import encoder
from actors.endpoint import Endpoint
from actors.gemini_link import LinkOptions, LinkState, gemini_link
from actors.metrics import Metrics, metrics
from actors.playout import PlayoutOptions, Sink, playout
from actors.router import router
from actors.tool_executor import ExecutorState, tool_executor
from actors.tools import ToolSet
from actors.transcriber import Transcripts, transcriber
from actors.transport import NativeTransport, Transport
from protocol import wire
from protocol.client_rules import ClientRules
from runtime import messages as m
from runtime.supervisor import ChildSpec, Restart, Supervisor
from runtime.wiring import Wiring

CHANNELS = ("raw", "outgoing", "reports", "calls", "playout", "metrics", "observed")


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
    rules: ClientRules | None = None  # how to speak to the model (None: from its name)
    initial_history: list[wire.Content] = field(default_factory=list)  # given first
    resume_handle: str | None = None  # a stored session to resume

    def __post_init__(self) -> None:
        for name in CHANNELS:
            self.wiring.add(name)
        # What outlives an actor's restarts: plain data, given back to each incarnation.
        self._link_state = LinkState(rules=self.rules)
        if self.initial_history:
            self._link_state.history.add(0, list(self.initial_history), turns=1)
        if self.resume_handle is not None:
            self._link_state.session.resumption_handle = self.resume_handle
            self._link_state.session.resumable = True
        self._executor_state = ExecutorState()
        self._metrics = Metrics()

    def send(self) -> trio.MemorySendChannel[m.InternalMessage]:
        """An endpoint to push input to the session (text, activity signals, audio chunks)."""
        return self.wiring.sender("outgoing")

    def children(self, events: trio.MemorySendChannel[m.InternalMessage]) -> list[ChildSpec]:
        """Every actor, in start-up order; ``events`` gets what the application sees."""
        w = self.wiring
        return [
            ChildSpec(
                "transcriber",
                lambda ctx: transcriber(
                    ctx,
                    inbox=w.receiver("observed"),
                    out=events.clone(),
                    transcripts=self.transcripts,
                ),
            ),
            ChildSpec(
                "metrics",
                lambda ctx: metrics(
                    ctx, inbox=w.receiver("metrics"), out=events.clone(), tracker=self._metrics
                ),
            ),
            ChildSpec(
                "playout",
                lambda ctx: playout(
                    ctx,
                    audio=w.receiver("playout"),
                    sink=self.sink,
                    events=w.sender("reports"),
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
                    results=w.sender("reports"),
                    state=self._executor_state,
                ),
            ),
            ChildSpec(
                "router",
                lambda ctx: router(
                    ctx,
                    inbox=w.receiver("reports"),
                    calls=w.sender("calls"),
                    playout=w.sender("playout"),
                    outgoing=w.sender("outgoing"),
                    metrics=w.sender("metrics"),
                    observed=w.sender("observed"),
                ),
            ),
            ChildSpec(
                "gemini-link",
                lambda ctx: gemini_link(
                    ctx,
                    endpoint=self.endpoint,
                    setup=self.setup,
                    transport=self.transport,
                    outgoing=w.receiver("outgoing"),
                    incoming=w.sender("reports"),
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
                    reports=w.sender("reports"),
                    chunk_ms=self.chunk_ms,
                    video_sources=frozenset({self.video.name} if self.video else ()),
                ),
                Restart.TRANSIENT,
            ),
            *self._captures(),
        ]

    def _captures(self) -> list[ChildSpec]:
        # Never restarted: a restarted file source would replay from the start.
        sources = (("capture", self.source), ("video-capture", self.video))
        return [
            _capture_spec(name, source, self.wiring)
            for name, source in sources
            if source is not None
        ]

    def supervisor(self, events: trio.MemorySendChannel[m.InternalMessage]) -> Supervisor:
        """A supervisor of ``children(events)``; run it with ``run()``, end it with ``stop()``."""
        return Supervisor(self.children(events), events=events)


def _capture_spec(name: str, source: Source, wiring: Wiring[m.InternalMessage]) -> ChildSpec:
    return ChildSpec(
        name, lambda ctx: capture(ctx, source=source, out=wiring.sender("raw")), Restart.TEMPORARY
    )
