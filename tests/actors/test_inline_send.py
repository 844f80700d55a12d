"""The link's inline send (issue 17, 2b): an audio chunk handed to a waiting link is
encoded, recorded and written to the socket in the sender's task (``deliver_nowait``),
with the same frames as the send loop writes; a partial write is finished by the loop;
a connection lost mid-write sends the message again on the next one; TLS, in-memory
streams and trio-websocket keep the loop. Real sockets on 127.0.0.1, real clock."""

from __future__ import annotations

import base64
import json
import socket
import struct
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import trio
import trio.testing

from actors import endpoint as ep
from actors.gemini_link import LinkOptions, LinkState, gemini_link
from actors.transport import (
    Connection,
    NativeConnection,
    NativeTransport,
    Transport,
    WebSocketTransport,
    native_over,
)
from emulator import open_emulator
from protocol import wire
from runtime import messages as m
from runtime.supervisor import ActorContext, Backoff, no_jitter
from runtime.wiring import Wiring, deliver_nowait
from tests.fakes import MemoryTransport
from tests.hostile import OP_CLOSE, Peer, frame, hostile_server, setup_complete

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
SETUP = wire.Setup(model="")
OPTIONS = LinkOptions(backoff=Backoff(initial=0.01, jitter=0), random=no_jitter)


def chunk(index: int, size: int = 640) -> m.AudioChunk:
    """A chunk whose bytes say which it is."""
    return m.AudioChunk(data=bytes([index % 251]) * size, timestamp=index * 0.02, sequence=index)


def audio_of(payload: bytes) -> bytes | None:
    """The audio bytes of a client message, None for any other message."""
    message = json.loads(payload)
    audio = message.get("realtimeInput", {}).get("audio")
    if audio is None:
        return None
    return base64.b64decode(audio["data"])


@dataclass
class SocketTransport:
    """Our client over a real TCP socket whose send buffer is ``sndbuf`` bytes (None: the
    system's), keeping each connection; ``direct=False`` takes its direct writer away
    (the connection then writes as it does over TLS: always through ``send_all``)."""

    sndbuf: int | None = None
    direct: bool = True
    conns: list[NativeConnection] = field(default_factory=list)

    @asynccontextmanager
    async def connect(
        self, url: str, headers: Sequence[tuple[str, str]]
    ) -> AsyncIterator[Connection]:
        parts = urlsplit(url)
        sock = trio.socket.socket()
        if self.sndbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
        await sock.connect((parts.hostname, parts.port))
        resource = parts.path + (f"?{parts.query}" if parts.query else "")
        async with trio.SocketStream(sock) as stream:
            async with native_over(stream, "127.0.0.1", resource, headers) as conn:
                if not self.direct:
                    conn._write_nowait = None
                self.conns.append(conn)
                yield conn


@dataclass
class Linked:
    outgoing: trio.MemorySendChannel[m.InternalMessage]
    incoming: trio.MemoryReceiveChannel[m.InternalMessage]
    state: LinkState
    wiring: Wiring[m.InternalMessage]

    async def parked(self) -> None:
        """Until the link's tasks wait (its send loop, with nothing queued)."""
        await trio.testing.wait_all_tasks_blocked(0.01)


@asynccontextmanager
async def linked(
    url: str, transport: Transport, setup: wire.Setup = SETUP
) -> AsyncIterator[Linked]:
    """The link actor on a wiring's channels (so its inline handler is offered), once
    the session is up; stopped on the way out."""
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


@dataclass
class Recorder:
    """A server script keeping each connection's client messages (after the setup);
    ``reading`` holds its reads back until set."""

    payloads: dict[int, list[bytes]] = field(default_factory=dict)
    reading: trio.Event = field(default_factory=trio.Event)
    cut_first: trio.Event | None = None  # set: reset the first connection
    changed: trio.Event = field(default_factory=trio.Event)

    def __post_init__(self) -> None:
        self.reading.set()

    async def __call__(self, peer: Peer) -> None:
        await setup_complete(peer)
        got = self.payloads.setdefault(peer.index, [])
        if peer.index == 1 and self.cut_first is not None:
            await self.cut_first.wait()
            linger = struct.pack("ii", 1, 0)
            peer.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            await peer.stream.aclose()  # an RST: the client's write fails
            return
        await self.reading.wait()
        while True:
            opcode, payload = await peer.receive()
            if opcode == OP_CLOSE:
                await peer.stream.send_all(frame(OP_CLOSE, payload[:2]))
                return
            got.append(payload)
            self.changed.set()
            self.changed = trio.Event()

    def audio(self, index: int = 1) -> list[bytes]:
        return [a for a in map(audio_of, self.payloads.get(index, [])) if a is not None]

    async def until_audio(self, count: int, index: int = 1) -> list[bytes]:
        with trio.fail_after(10):
            while len(self.audio(index)) < count:
                await self.changed.wait()
        return self.audio(index)


async def test_a_chunk_for_a_waiting_link_is_written_in_the_senders_task_as_the_loop_would() -> (
    None
):
    chunks = [chunk(i) for i in range(20)]
    written: dict[bool, list[bytes]] = {}
    for direct in (True, False):
        recorder = Recorder()
        async with hostile_server(recorder) as server:
            transport = SocketTransport(direct=direct)
            async with linked(server.url, transport) as link:
                for item in chunks:
                    before = link.state.session.messages_sent
                    deliver_nowait(link.outgoing, item)
                    # Inline: encoded, recorded and written before deliver_nowait returned.
                    inline = link.state.session.messages_sent == before + 1
                    assert inline == direct
                    assert not link.state.outbox.pending
                    await link.parked()
                await recorder.until_audio(len(chunks))
            written[direct] = recorder.payloads[1]
    assert written[True] == written[False]  # the very same messages
    assert [audio_of(p) for p in written[True]] == [c.data for c in chunks]


async def test_a_message_the_handler_declines_keeps_its_place_before_later_chunks() -> None:
    recorder = Recorder()
    async with hostile_server(recorder) as server:
        async with linked(server.url, SocketTransport()) as link:
            deliver_nowait(
                link.outgoing, m.ActivityStarted(timestamp=0.0)
            )  # declined: the loop sends it
            for index in range(5):  # the loop was woken: these queue behind it
                deliver_nowait(link.outgoing, chunk(index))
            await recorder.until_audio(5)
    kinds = [next(iter(json.loads(p)["realtimeInput"])) for p in recorder.payloads[1]]
    assert kinds == ["activityStart"] + ["audio"] * 5
    assert recorder.audio() == [chunk(i).data for i in range(5)]


def partial_writes(conn: NativeConnection) -> list[tuple[int, int]]:
    """(written, asked) for each ``send_nowait`` that did not write its frame whole."""
    partial: list[tuple[int, int]] = []
    inner = conn._write_nowait
    assert inner is not None

    def write(data: bytes | memoryview) -> int:
        written = inner(data)
        if written < len(data):
            partial.append((written, len(data)))
        return written

    conn._write_nowait = write
    return partial


async def fill_until_held(link: Linked, first: int) -> int:
    """Hand the link big chunks from ``first`` on until one is only partly written (the
    connection holds the rest: the outbox's head stays unsent); the index of that one."""
    index = first
    while True:
        deliver_nowait(link.outgoing, chunk(index, 48000))
        if link.state.outbox.unsent_frame is not None:
            return index
        assert not link.state.outbox.pending
        index += 1
        await link.parked()
        assert index < 200, "the socket never filled"


async def test_a_partial_write_is_finished_by_the_loop_and_later_chunks_wait_their_turn() -> None:
    recorder = Recorder(reading=trio.Event())
    transport = SocketTransport(sndbuf=4096)
    async with hostile_server(recorder) as server:
        async with linked(server.url, transport) as link:
            partial = partial_writes(transport.conns[0])
            held = fill_until_held(link, 0)
            last = await held
            assert partial, "a partial write"
            for index in range(last + 1, last + 4):  # a backlog behind the held rest
                deliver_nowait(link.outgoing, chunk(index, 48000))
            waiting = len(link.state.outbox.pending) + link.wiring.queued("outgoing")
            assert waiting == 4
            recorder.reading.set()
            got = await recorder.until_audio(last + 4)
            await link.parked()
            assert not link.state.outbox.pending
            assert link.state.outbox.unsent_frame is None
            deliver_nowait(link.outgoing, chunk(last + 4))  # inline again
            assert not link.state.outbox.pending
    assert got == [chunk(i, 48000).data for i in range(last + 4)]


async def test_a_connection_lost_mid_write_sends_the_message_again_on_the_next() -> None:
    recorder = Recorder(cut_first=trio.Event())
    transport = SocketTransport(sndbuf=4096)
    async with hostile_server(recorder) as server:
        async with linked(server.url, transport) as link:
            last = await fill_until_held(link, 0)
            recorder.cut_first.set()  # type: ignore[union-attr]
            for index in range(last + 1, last + 3):
                deliver_nowait(link.outgoing, chunk(index, 48000))
            got = await recorder.until_audio(3, index=2)
            assert server.connections == 2
    # The head was never written whole: it leads on the next connection, then the rest.
    assert got == [chunk(i, 48000).data for i in range(last, last + 3)]


async def test_tls_memory_streams_and_trio_websocket_keep_the_send_loop() -> None:
    async with open_emulator(tls=True) as emu, trio.open_nursery() as nursery:
        transports: list[tuple[str, Transport]] = [
            ("wss", NativeTransport(ssl_context=emu.client_ssl_context)),
            ("trio-websocket", WebSocketTransport(ssl_context=emu.client_ssl_context)),
            ("memory", MemoryTransport(emu, nursery)),
        ]
        for name, transport in transports:
            async with linked(emu.url, transport) as link:
                before = link.state.session.messages_sent
                deliver_nowait(link.outgoing, chunk(0))
                assert link.state.session.messages_sent == before, name  # not sent inline
                await link.parked()
                assert link.state.session.messages_sent == before + 1, name  # the loop sent it
        nursery.cancel_scope.cancel()
