"""A message whose write was cut short (an inline send's rest held) when the connection
was lost is sent once on the transparently resumed connection, not replayed and sent
again. Real sockets on 127.0.0.1, the real clock."""

from __future__ import annotations

import socket
import struct

import trio
import trio.testing

from protocol import wire
from runtime import messages as m
from runtime.wiring import deliver_nowait
from tests.actors.test_inline_send import (
    Recorder,
    SocketTransport,
    chunk,
    fill_until_held,
    linked,
)
from tests.hostile import Peer, hostile_server

TRANSPARENT = wire.Setup(
    model="", session_resumption=wire.SessionResumptionConfig(transparent=True)
)


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
