"""What the facade tests of today's Gemini Live share: a session against the emulator over
the in-memory transport, and waiting for events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from actors.events import Event, event_name
from actors.playout import CollectorSink
from actors.realtime import RealtimeModel, RealtimeSession
from emulator import Behaviour, Emulator, Reply, Scenario, Turn, open_emulator
from protocol import wire as w
from runtime import messages as m
from tests.fakes import MemoryTransport

FAST = Behaviour(pace="fast", first_audio_delay_ms=0)
VERTEX_PATH = "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"


def three_turns(**behaviour: Any) -> Scenario:
    return Scenario(
        turns=(
            Turn(user="One?", replies=(Reply(say="First answer."),)),
            Turn(user="Two?", replies=(Reply(say="Second answer."),)),
            Turn(user="Three?", replies=(Reply(say="Third answer."),)),
        ),
        behaviour=Behaviour(pace="fast", first_audio_delay_ms=0, **behaviour),
    )


@asynccontextmanager
async def live_session(
    scenario: Scenario,
    *,
    faults: tuple[str, ...] = (),
    path: str = "",
    session_options: dict[str, Any] | None = None,
    **options: Any,
) -> AsyncIterator[tuple[RealtimeSession, MemoryTransport, Emulator]]:
    async with (
        open_emulator(scenario=scenario, faults=faults) as emu,
        trio.open_nursery() as nursery,
    ):
        transport = MemoryTransport(emu, nursery)
        model = RealtimeModel(endpoint=emu.url + path, transport=transport, **options)
        async with model.session(sink=CollectorSink(), **(session_options or {})) as live:
            yield live, transport, emu
        nursery.cancel_scope.cancel()


async def until(
    live: RealtimeSession, done: Callable[[Event], bool], limit: float = 60
) -> list[Event]:
    """Every event up to and including the first for which ``done`` is true."""
    seen: list[Event] = []
    with trio.fail_after(limit):
        async for event in live.events():
            seen.append(event)
            if done(event):
                return seen
    raise AssertionError("the session ended first")


def named(name: str) -> Callable[[Event], bool]:
    return lambda event: event_name(event) == name


def agent_said(events: list[Event]) -> str:
    return " ".join(
        e.transcript for e in events if isinstance(e, m.TranscriptCompleted) and e.role == "agent"
    )


async def reply(live: RealtimeSession) -> str:
    """What the agent says in its next completed reply."""
    events = await until(live, lambda e: isinstance(e, m.TranscriptCompleted) and e.role == "agent")
    return agent_said(events)


def of_type(sent: list[w.ClientMessage], kind: type[w.WireStruct]) -> list[Any]:
    return [x for x in sent if isinstance(x, kind)]


def caused_by(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first ``kind`` in ``error``, its groups and its causes. (Whether a fatal link
    error reaches the caller as itself or inside the supervisor's error is the
    lifecycle's business; these tests check the error the link chose.)"""
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending += [current.__cause__, current.__context__]
    return None
