"""Hostile review of the hot paths (issue 17): inline sends held across a connection
lost with transparent resumption, and the shared clock's callbacks. Real sockets on
127.0.0.1 (real clock) for the link; the autojump clock for the pacer."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from actors import endpoint as ep
from actors.gemini_link import LinkState, gemini_link
from protocol import wire
from runtime import messages as m
from runtime.supervisor import ActorContext
from runtime.wiring import Wiring, deliver_nowait
from tests.actors.test_inline_send import (
    MODEL,
    OPTIONS,
    Linked,
    Recorder,
    SocketTransport,
    chunk,
    fill_until_held,
)
from tests.hostile import Peer, hostile_server

TRANSPARENT = wire.Setup(
    model="", session_resumption=wire.SessionResumptionConfig(transparent=True)
)


@asynccontextmanager
async def linked(url: str, transport: SocketTransport, setup: wire.Setup) -> AsyncIterator[Linked]:
    wiring: Wiring[m.InternalMessage] = Wiring()
    wiring.add("outgoing")
    wiring.add("incoming")
    state = LinkState()
    ready = trio.Event()
    ctx = ActorContext("link", 1, trio.Event(), ready.set)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: gemini_link(
                ctx,
                endpoint=ep.custom(url, MODEL),
                setup=setup,
                transport=transport,
                outgoing=wiring.receiver("outgoing"),
                incoming=wiring.sender("incoming"),
                state=state,
                options=OPTIONS,
            )
        )
        with trio.fail_after(10):
            await ready.wait()
        link = Linked(wiring.sender("outgoing"), wiring.receiver("incoming"), state, wiring)
        await link.parked()
        yield link
        ctx.stopping.set()


class Resumable(Recorder):
    """The recorder, giving the first connection a resumption handle (nothing consumed)."""

    async def __call__(self, peer: Peer) -> None:
        if peer.index == 1:
            await peer.receive_json()
            await peer.send({"setupComplete": {}})
            await peer.send({"sessionResumptionUpdate": {"newHandle": "h1", "resumable": True}})
            assert self.cut_first is not None
            await self.cut_first.wait()
            linger = struct.pack("ii", 1, 0)
            peer.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            await peer.stream.aclose()  # an RST: the client's write fails
            return
        await Recorder.__call__(self, peer)


async def test_a_held_partial_write_is_replayed_once_on_a_transparently_resumed_connection() -> (
    None
):
    recorder = Resumable(cut_first=trio.Event())
    transport = SocketTransport(sndbuf=4096)
    async with hostile_server(recorder) as server:
        async with linked(server.url, transport, TRANSPARENT) as link:
            with trio.fail_after(10):
                async for event in link.incoming:
                    if isinstance(event, m.ResumptionUpdated) and event.resumable:
                        break
            assert link.state.session.resumption_handle == "h1"
            last = await fill_until_held(link, 0)
            recorder.cut_first.set()  # type: ignore[union-attr]
            deliver_nowait(link.outgoing, chunk(last + 1, 48000))  # queued behind it
            await recorder.until_audio(last + 2, index=2)
            await link.parked()
            got = recorder.audio(2)
            assert server.connections == 2
    # Nothing was consumed: every chunk is replayed, the held one included, exactly once
    # (it was sent twice: replayed, then again as the outbox's unsent head).
    assert [audio[0] for audio in got] == list(range(last + 2))
