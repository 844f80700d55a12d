"""Barge-in latency: from the server's ``interrupted`` frame arriving to the last model
audio handed to the sink.

Each trial plays a long reply through the real playout actor in real time, interrupts it
at a random moment by feeding the real server frame (``{"serverContent":
{"interrupted": true}}``) through the session state machine, and measures how long after
that the sink last received audio (0 when the frame being written was the last). Target:
under one frame (20 ms) at p99.
"""

from __future__ import annotations

import math
import random
import statistics
from typing import Any

import trio

from actors.playout import CollectorSink, PlayoutOptions, playout
from protocol import wire
from protocol.session import LiveSession
from runtime import messages as m
from runtime.supervisor import ActorContext

INTERRUPTED = b'{"serverContent": {"interrupted": true}}'


async def _trial(rng: random.Random) -> float:
    session = LiveSession()
    session.send(wire.Setup(model="m"))
    session.receive_frame(b'{"setupComplete": {}}')
    sink = CollectorSink()
    audio_send, audio_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    events_send, _events_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    ctx = ActorContext("playout", 1, trio.Event(), lambda: None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: playout(
                ctx, audio=audio_receive, sink=sink, events=events_send, options=PlayoutOptions()
            )
        )
        chunk = wire.encode(
            wire.ServerMessage(
                server_content=wire.ServerContent(
                    model_turn=wire.Content(
                        parts=[
                            wire.Part(
                                inline_data=wire.Blob(
                                    mime_type="audio/pcm;rate=24000", data=bytes(1920)
                                )
                            )
                        ]
                    )
                )
            )
        )
        for _ in range(100):  # 4 s of reply, delivered at once (the buffer holds it)
            for message in session.receive_frame(chunk):
                await audio_send.send(message)
        await trio.sleep(0.2 + rng.random() * 0.6)  # interrupt somewhere in the first second
        arrived = trio.current_time()
        for message in session.receive_frame(INTERRUPTED):
            await audio_send.send(message)
        await trio.sleep(0.1)
        await audio_send.aclose()
        nursery.cancel_scope.cancel()
    after = [t for t in sink.times if t >= arrived]
    return (max(after) - arrived) if after else 0.0


async def _run(trials: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [await _trial(rng) for _ in range(trials)]


def run(*, quick: bool = False) -> dict[str, Any]:
    trials = 30 if quick else 200
    latencies = sorted(x * 1000 for x in trio.run(_run, trials, 7))
    p99 = latencies[min(len(latencies) - 1, math.ceil(0.99 * len(latencies)) - 1)]
    return {
        "trials": trials,
        "p50_ms": round(statistics.median(latencies), 3),
        "p99_ms": round(p99, 3),
        "max_ms": round(latencies[-1], 3),
        "target_ms": 20.0,
    }


def print_table(result: dict[str, Any]) -> None:
    print(
        f"barge-in: {result['trials']} trials, last audio after `interrupted`: "
        f"p50 {result['p50_ms']:.3f} ms, p99 {result['p99_ms']:.3f} ms, "
        f"max {result['max_ms']:.3f} ms (target p99 < {result['target_ms']:.0f} ms)"
    )
