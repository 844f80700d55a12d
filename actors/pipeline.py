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

``run()`` owns what the session holds: it opens the sink before the actors start and
closes it after they have all stopped (a restarted playout gets the same sink back), and
closes the wiring. ``stop()`` ends it in reverse start order: capture stops reading, and
each channel ends once its senders have stopped (``Wiring.close_senders``), so the encoder
drains into the link, the link closes its connection (1000), the router routes what is
queued, the tool executor answers what still runs, and playout, metrics and the
transcriber finish with what reached them. A fatal error (a ``LinkError``, a source or
sink that cannot be used) is never restarted: ``run()`` raises it as itself.

Why not OTP's ``rest_for_one`` (restart the stages started after a failed one): the
channels belong to the wiring, not to the actors, so a restarted stage is found at the
same place by every peer and nothing downstream holds a stale reference; and restarting
the stages after, say, playout would restart the link (a reconnect) and end the capture
(a file source cannot restart without replaying). ``one_for_one`` keeps a sink hiccup a
sink hiccup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import trio

from actors import limits
from actors.capture import AudioDeviceUnavailable, CaptureError, Source, capture
from actors.encoder import encoder
from actors.endpoint import Endpoint
from actors.errors import LinkError, SinkError
from actors.gemini_link import LinkOptions, LinkState, gemini_link
from actors.metrics import Metrics, metrics
from actors.playout import PlayoutOptions, Sink, open_sink, playout
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
SHUTDOWN_GRACE = 2.0  # s after stop() before what has not ended is cancelled
SINK_CLOSE_TIMEOUT = 5.0  # s the sink may take to finish (a WAV header, a device drain)


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
    tool_threads: int = limits.TOOL_THREADS
    transcripts: Transcripts = field(default_factory=Transcripts)
    wiring: Wiring[m.InternalMessage] = field(default_factory=Wiring)
    rules: ClientRules | None = None  # how to speak to the model (None: from its name)
    initial_history: list[wire.Content] = field(default_factory=list)  # given first
    resume_handle: str | None = None  # a stored session to resume
    # Whether ``events`` gets every ``ModelAudio`` (the reply's audio, also played into
    # the sink). False: none (the transcriber still counts the audio, from a few of
    # them): a session whose application does not take the audio saves a step of its
    # own per audio message.
    audio_events: bool = True

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
        # The session's tool threads: shared by the executor's incarnations, since a
        # thread that never returns holds its token past the incarnation that started it.
        self._tool_threads = trio.CapacityLimiter(self.tool_threads)
        self._supervisor: Supervisor | None = None

    async def run(
        self,
        events: trio.MemorySendChannel[m.InternalMessage],
        *,
        replace: Mapping[str, ChildSpec] | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Open the sink, run the actors until ``stop()`` has stopped them, then close the
        sink and the wiring. Reports started once every actor is ready (the link: the
        server's setupComplete). Raises a fatal error as itself (``LinkError``,
        ``CaptureError``, ``SinkError``...), or ``SupervisorGaveUp``. ``replace`` swaps
        children by name (see ``examples/custom_pipeline.py``)."""
        self._supervisor = self.supervisor(events, replace=replace)
        opened = False
        try:
            await open_sink(self.sink)
            opened = True
            await self._supervisor.run(task_status=task_status)
        finally:
            self.wiring.close()
            if opened:
                with trio.CancelScope(shield=True) as closing:
                    closing.deadline = trio.current_time() + SINK_CLOSE_TIMEOUT
                    await self.sink.aclose()

    def stop(self) -> None:
        """End ``run()``: in reverse start order (see the module docstring), bounded by
        ``SHUTDOWN_GRACE``. Returns at once. Idempotent."""
        self.wiring.close_senders()
        if self._supervisor is not None:
            self._supervisor.stop()

    def send(self) -> trio.MemorySendChannel[m.InternalMessage]:
        """An endpoint to push input to the session (text, activity signals, audio chunks)."""
        return self.wiring.sender("outgoing")

    def children(self, events: trio.MemorySendChannel[m.InternalMessage]) -> list[ChildSpec]:
        """Every actor, in start-up order; ``events`` gets what the application sees."""
        # Long because it is the list itself: one ChildSpec per actor, in order, so the
        # whole wiring reads on one screen (the picture in the module docstring).
        w = self.wiring
        return [
            ChildSpec(
                "transcriber",
                lambda ctx: transcriber(
                    ctx,
                    inbox=w.receiver("observed"),
                    out=events.clone(),
                    transcripts=self.transcripts,
                    audio_events=self.audio_events,
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
                fatal=(SinkError, AudioDeviceUnavailable),
            ),
            ChildSpec(
                "tool-executor",
                lambda ctx: tool_executor(
                    ctx,
                    tools=self.tools,
                    calls=w.receiver("calls"),
                    results=w.sender("reports"),
                    state=self._executor_state,
                    threads=self._tool_threads,
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
                    audio_events=self.audio_events,
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
                fatal=(LinkError,),
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

    def supervisor(
        self,
        events: trio.MemorySendChannel[m.InternalMessage],
        *,
        replace: Mapping[str, ChildSpec] | None = None,
    ) -> Supervisor:
        """A supervisor of ``children(events)`` (with the children named in ``replace``
        swapped). ``run()`` runs one with the sink opened and closed around it."""
        children = [(replace or {}).get(c.name, c) for c in self.children(events)]
        return Supervisor(children, events=events, shutdown_grace=SHUTDOWN_GRACE)


def _capture_spec(name: str, source: Source, wiring: Wiring[m.InternalMessage]) -> ChildSpec:
    return ChildSpec(
        name,
        lambda ctx: capture(ctx, source=source, out=wiring.sender("raw")),
        Restart.TEMPORARY,
        fatal=(CaptureError, AudioDeviceUnavailable),
    )
