"""The router: each message where it is needed, in order, and everything observed."""

from __future__ import annotations

import math

import trio
import trio.testing
from trio.testing import MockClock

from actors.router import Route, destinations, router
from actors.transcriber import Transcripts
from runtime import messages as m
from runtime.supervisor import ActorContext
from runtime.wiring import Wiring, deliver, messages

ROUTES: tuple[Route, ...] = ("calls", "playout", "outgoing", "metrics", "observed")


def context() -> ActorContext:
    return ActorContext("router", 1, trio.Event(), lambda: None)


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
    channels = {name: trio.open_memory_channel[m.InternalMessage](math.inf) for name in ROUTES}
    sent: list[m.InternalMessage] = [
        m.ToolCallRequested(call_id="c", name="f", args={}, turn_id=1),
        m.ModelAudio(turn_id=1, data=b"\x00\x00", offset=0),
        m.ToolResult(call_id="c", name="f", output=1),
        m.TurnCompleted(turn_id=1),
    ]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: router(
                context(),
                inbox=inbox_receive,
                calls=channels["calls"][0],
                playout=channels["playout"][0],
                outgoing=channels["outgoing"][0],
                metrics=channels["metrics"][0],
                observed=channels["observed"][0],
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


# --- inline: the router's work done in the sender's task -------------------------------------


def conversation(turns: int = 3) -> list[m.InternalMessage]:
    """What a link and the pipeline's other actors report over a few turns: each kind of
    message the table routes."""
    out: list[m.InternalMessage] = []
    for turn in range(1, turns + 1):
        out += [
            m.SpeechEnded(timestamp=0.0),
            m.TurnStarted(turn_id=turn),
            m.ToolCallRequested(call_id=f"c{turn}", name="f", args={}, turn_id=turn),
            m.ToolResult(call_id=f"c{turn}", name="f", output=turn),
        ]
        for index in range(4):
            out.append(m.ModelAudio(turn_id=turn, data=bytes(960), offset=480 * index))
            out.append(m.TranscriptFragment(role="agent", turn_id=turn, text=f" w{index}"))
        out.append(m.PlayoutProgress(turn_id=turn, samples_played=480))
        if turn == 2:
            out += [m.TurnInterrupted(turn_id=turn), m.ToolCallsCancelled(call_ids=("c2",))]
        out += [
            m.GenerationCompleted(turn_id=turn),
            m.UsageReported(turn_id=turn, prompt_tokens=1, response_tokens=2, total_tokens=3),
            m.TurnCompleted(turn_id=turn, interrupted=turn == 2),
        ]
    return out


def expected(sent: list[m.InternalMessage]) -> dict[Route, list[m.InternalMessage]]:
    """What the routing table gives each destination, in order."""
    return {where: [x for x in sent if where in destinations(x)] for where in ROUTES}


class Destination:
    """An actor reading one of the router's outputs, inline when ``inline`` (noting in
    which task each message was handled), failing on ``fail_on``."""

    def __init__(self, inline: bool = True, fail_on: type | None = None) -> None:
        self.got: list[m.InternalMessage] = []
        self.tasks: list[trio.lowlevel.Task] = []
        self.inline, self.fail_on = inline, fail_on
        self.error: Exception | None = None

    def now(self, message: m.InternalMessage) -> bool:
        if not self.inline:
            return False
        self.take(message)
        return True

    def take(self, message: m.InternalMessage) -> None:
        if self.fail_on is not None and isinstance(message, self.fail_on):
            raise RuntimeError(f"cannot handle {type(message).__name__}")
        self.got.append(message)
        self.tasks.append(trio.lowlevel.current_task())

    async def run(self, channel: trio.MemoryReceiveChannel[m.InternalMessage]) -> None:
        async with channel:
            try:
                async for message in messages(channel, inline=self.now):
                    self.take(message)
                    await trio.sleep(0.001)  # a slow actor: a bounded channel fills up
            except RuntimeError as exc:
                self.error = exc


async def route_through_wiring(
    sent: list[m.InternalMessage],
    *,
    inline: bool = True,
    backlog: bool = False,
    buffers: dict[Route, float] | None = None,
    fail_on: dict[Route, type] | None = None,
    audio_events: bool = True,
) -> tuple[dict[Route, Destination], set[trio.lowlevel.Task]]:
    """Run the router between a wiring's channels and an actor on each output, deliver
    ``sent`` to it as the link does (``backlog``: the first half queued at once, as
    while the router is busy); what each destination got, and the router's task."""
    wiring: Wiring[m.InternalMessage] = Wiring()
    wiring.add("reports")
    for name in ROUTES:
        wiring.add(name, (buffers or {}).get(name, math.inf))
    readers = {name: Destination(inline, (fail_on or {}).get(name)) for name in ROUTES}
    router_tasks: set[trio.lowlevel.Task] = set()

    async def run_router() -> None:
        router_tasks.add(trio.lowlevel.current_task())
        await router(
            context(),
            inbox=wiring.receiver("reports"),
            calls=wiring.sender("calls"),
            playout=wiring.sender("playout"),
            outgoing=wiring.sender("outgoing"),
            metrics=wiring.sender("metrics"),
            observed=wiring.sender("observed"),
            audio_events=audio_events,
        )

    async with trio.open_nursery() as nursery:
        for name, reader in readers.items():
            nursery.start_soon(reader.run, wiring.receiver(name))
        nursery.start_soon(run_router)
        await trio.testing.wait_all_tasks_blocked()
        async with wiring.sender("reports") as link:
            half = len(sent) // 2 if backlog else 0
            for message in sent[:half]:
                link.send_nowait(message)  # queued while the router has not run
            if backlog:
                await trio.sleep(0.1)  # the router routes its backlog, then waits again
            for message in sent[half:]:
                await deliver(link, message)
        wiring.close_senders()
    return readers, router_tasks


async def test_inline_routing_gives_each_destination_what_the_queued_path_gives(
    autojump_clock: MockClock,
) -> None:
    sent = conversation()
    for backlog in (False, True):
        readers, _ = await route_through_wiring(sent, backlog=backlog)
        assert {name: reader.got for name, reader in readers.items()} == expected(sent)
        queued, _ = await route_through_wiring(sent, inline=False, backlog=backlog)
        assert {name: reader.got for name, reader in queued.items()} == expected(sent)


async def test_a_message_costs_the_link_s_task_only_when_everyone_waits(
    autojump_clock: MockClock,
) -> None:
    sent = conversation(1)
    readers, router_tasks = await route_through_wiring(sent)
    link_task = trio.lowlevel.current_task()
    assert {task for reader in readers.values() for task in reader.tasks} == {link_task}
    # A backlog is the router's to route, in its own task, in order (then inline again).
    readers, router_tasks = await route_through_wiring(sent, backlog=True)
    half = len(sent) // 2
    observed = expected(sent)["observed"]
    queued = sum(1 for x in sent[:half] if "observed" in destinations(x))
    assert readers["observed"].got == observed
    assert readers["observed"].tasks == [*router_tasks] * queued + [link_task] * (
        len(observed) - queued
    )


async def test_bounded_outputs_are_routed_in_the_routers_task_in_the_same_order(
    autojump_clock: MockClock,
) -> None:
    sent = conversation()
    readers, _ = await route_through_wiring(sent, buffers={"observed": 2, "playout": 1})
    assert {name: reader.got for name, reader in readers.items()} == expected(sent)
    # Nothing inline while an output is bounded: the router cannot wait for room there.
    link_task = trio.lowlevel.current_task()
    assert all(link_task not in reader.tasks for reader in readers.values())


async def test_a_failing_inline_handler_fails_that_actor_not_the_router_or_the_link(
    autojump_clock: MockClock,
) -> None:
    sent = conversation(1)
    readers, _ = await route_through_wiring(sent, fail_on={"playout": m.TurnCompleted})
    playout = readers["playout"]
    assert isinstance(playout.error, RuntimeError)
    assert playout.got == expected(sent)["playout"][:-1]  # up to the message it failed on
    # The link went on delivering, and the router routing: everyone else got everything.
    assert readers["observed"].got == expected(sent)["observed"]
    assert readers["metrics"].got == expected(sent)["metrics"]


async def test_a_failing_router_handler_fails_the_router_not_the_link(
    autojump_clock: MockClock,
) -> None:
    wiring: Wiring[m.InternalMessage] = Wiring()
    wiring.add("reports")
    calls_send, calls_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    calls_receive.close()  # the tool executor is gone: routing a call raises
    observed_send, observed_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    failure: list[BaseException] = []

    async def run_router() -> None:
        try:
            await router(
                context(),
                inbox=wiring.receiver("reports"),
                calls=calls_send,
                playout=trio.open_memory_channel[m.InternalMessage](math.inf)[0],
                outgoing=trio.open_memory_channel[m.InternalMessage](math.inf)[0],
                metrics=trio.open_memory_channel[m.InternalMessage](math.inf)[0],
                observed=observed_send,
            )
        except* trio.BrokenResourceError as group:  # from its nursery, as a loop body's
            failure.extend(group.exceptions)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_router)
        await trio.testing.wait_all_tasks_blocked()
        link = wiring.sender("reports")
        await deliver(link, m.TurnStarted(turn_id=1))  # inline: routed to observed
        call = m.ToolCallRequested(call_id="c", name="f", args={}, turn_id=1)
        await deliver(link, call)  # returns: the failure is the router's
        await deliver(link, m.TurnCompleted(turn_id=1))  # queued for its next incarnation
    assert len(failure) == 1
    assert observed_receive.receive_nowait() == m.TurnStarted(turn_id=1)
    assert wiring.queued("reports") == 1


async def test_without_audio_events_observed_gets_the_latest_audio_before_each_message(
    autojump_clock: MockClock,
) -> None:
    sent = conversation()
    readers, _ = await route_through_wiring(sent, audio_events=False)
    assert readers["playout"].got == expected(sent)["playout"]  # all the audio
    observed = readers["observed"].got
    assert [x for x in observed if not isinstance(x, m.ModelAudio)] == [
        x for x in expected(sent)["observed"] if not isinstance(x, m.ModelAudio)
    ]
    # Each audio message just before the fragment that came after it (they alternate).
    audio = [x for x in observed if isinstance(x, m.ModelAudio)]
    assert audio == [x for x in sent if isinstance(x, m.ModelAudio)]
    # The transcripts made of either are the same.
    full, lean = Transcripts(), Transcripts()
    events_full = [e for x in expected(sent)["observed"] for e in full.feed(x)]
    events_lean = [e for x in observed for e in lean.feed(x)]
    assert events_lean == events_full
    assert lean.history() == full.history()


async def test_without_audio_events_a_burst_of_audio_reaches_observed_as_its_latest(
    autojump_clock: MockClock,
) -> None:
    burst = [m.ModelAudio(turn_id=1, data=bytes(960), offset=480 * i) for i in range(10)]
    sent: list[m.InternalMessage] = [
        m.TurnStarted(turn_id=1),
        *burst,
        m.TranscriptFragment(role="agent", turn_id=1, text="Hello"),
        m.TurnCompleted(turn_id=1),
    ]
    for backlog in (False, True):
        readers, _ = await route_through_wiring(sent, audio_events=False, backlog=backlog)
        assert readers["playout"].got == [*burst, sent[-1]]
        assert readers["observed"].got == [sent[0], burst[-1], *sent[-2:]]
