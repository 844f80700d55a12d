"""The facade against a server that floods it, over real sockets on 127.0.0.1 (real clock,
generous bounds): whatever the server sends and whatever the application fails to read,
what the session holds stays bounded, and what it drops is reported."""

from __future__ import annotations

import base64

import trio

from actors import limits
from actors.event_queue import EventQueue
from actors.events import ResponseContent
from actors.playout import NullSink
from actors.realtime import RealtimeModel
from runtime import messages as m
from tests.hostile import Peer, hostile_server, setup_complete

CHUNK = bytes(1920)  # 40 ms at 24 kHz
AUDIO = {
    "serverContent": {
        "modelTurn": {
            "parts": [
                {
                    "inlineData": {
                        "mimeType": "audio/pcm;rate=24000",
                        "data": base64.b64encode(CHUNK).decode(),
                    }
                }
            ]
        }
    }
}


async def test_an_application_that_never_reads_events_holds_a_bounded_queue() -> None:
    turns = 200

    async def script(peer: Peer) -> None:
        await setup_complete(peer)
        for _ in range(turns):
            for _ in range(25):  # a second of audio a turn
                await peer.send(AUDIO)
            await peer.send({"serverContent": {"outputTranscription": {"text": "A reply."}}})
            await peer.send({"serverContent": {"turnComplete": True}})
        await peer.until_closed()

    async with hostile_server(script) as server:
        async with RealtimeModel(endpoint=server.url).session() as live:
            with trio.fail_after(60):
                while len(live.chat_ctx_copy()) < turns:  # noqa: ASYNC110  # polling on purpose
                    await trio.sleep(0.05)
            queue = live._events
            assert isinstance(queue, EventQueue)
            assert len(queue) <= limits.EVENT_QUEUE_EVENTS
            assert queue._bytes <= limits.EVENT_QUEUE_BYTES
            assert queue.dropped > 0
            first = await queue.get()
            assert isinstance(first, m.Dropped)
            assert first.count == queue.dropped
            assert isinstance(live._pipeline.sink, NullSink)  # the default keeps no audio


async def test_audio_at_a_hundred_times_real_time_is_bounded_everywhere() -> None:
    seconds = 150  # more than the jitter buffer and the reply stream may hold

    async def script(peer: Peer) -> None:
        await setup_complete(peer)
        start = trio.current_time()
        for n in range(seconds * 25):
            await trio.sleep_until(start + n * 0.0004)  # 100x real time
            await peer.send(AUDIO)
        await peer.send({"serverContent": {"turnComplete": True}})
        await peer.until_closed()

    seen: list[object] = []
    async with hostile_server(script) as server:
        async with RealtimeModel(endpoint=server.url).session() as live:
            with trio.fail_after(60):
                async for event in live.events():  # read, but not the reply's audio stream
                    seen.append(event)
                    if isinstance(event, ResponseContent):
                        content = event
                    if isinstance(event, m.TurnCompleted):
                        break
                async for event in live.events():  # its drop report follows the turn's end
                    seen.append(event)
                    if isinstance(event, m.Dropped) and "reply audio" in event.what:
                        break
            held = sum(len(chunk) for chunk in _queued(content.audio_stream))
    assert held <= limits.RESPONSE_STREAMS_BYTES
    reports = [e for e in seen if isinstance(e, m.Dropped)]
    stream = next(r for r in reports if r.what == "reply audio stream not read (turn 1)")
    assert stream.count == seconds * 25 - limits.RESPONSE_STREAMS_BYTES // len(CHUNK)
    assert any(r.what == "model audio (jitter buffer full)" for r in reports)
    assert len(reports) < 20  # aggregated, not one per chunk


def _queued(stream: trio.MemoryReceiveChannel[bytes]) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(stream.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return out
