"""Compose your own pipeline: the standard wiring with one actor swapped for another.

Here the playout actor (jitter buffer into a speaker or file) is replaced by a level meter
that prints how loud each reply was. Everything else is the stock pipeline: the meter
reads the same "playout" channel the stock actor reads and reports on the same "reports"
channel (which the router passes on), so nothing else changes: ``Pipeline.run`` runs the
stock children with the one named in ``replace`` swapped, and ``Pipeline.stop`` ends them
all in order. Run it with `python examples/custom_pipeline.py` (it starts the emulator
itself).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from actors import endpoint as ep
from actors.capture import WavSource
from actors.pipeline import Pipeline
from actors.playout import CollectorSink
from emulator import Behaviour, Reply, Scenario, Turn, open_emulator
from protocol import wire
from runtime import ChildSpec
from runtime import messages as m
from runtime.supervisor import ActorContext

QUESTION = Path(__file__).resolve().parent / "assets" / "question.wav"


def level_meter(pipeline: Pipeline) -> ChildSpec:
    """An actor with the playout actor's endpoints: model audio in, events out."""

    async def meter(ctx: ActorContext) -> None:
        peaks: dict[int, float] = {}
        async with (
            pipeline.wiring.receiver("playout") as audio,
            pipeline.wiring.sender("reports") as events,
        ):
            ctx.ready()
            async for message in audio:
                if isinstance(message, m.ModelAudio):
                    samples = np.frombuffer(message.data, dtype="<i2").astype(np.float32) / 32768
                    peaks[message.turn_id] = max(
                        peaks.get(message.turn_id, 0.0), float(np.abs(samples).max())
                    )
                elif isinstance(message, m.TurnCompleted):
                    peak = peaks.pop(message.turn_id, 0.0)
                    db = 20 * math.log10(peak) if peak > 0 else -120.0
                    print(f"reply {message.turn_id}: peak {db:.1f} dBFS", flush=True)
                    await events.send(
                        m.PlayoutFinished(
                            turn_id=message.turn_id, samples_played=0, interrupted=False
                        )
                    )

    return ChildSpec("playout", meter)  # same name, same place in the start-up order


async def main() -> None:
    scenario = Scenario(
        turns=(Turn(replies=(Reply(say="Measured, not heard."),)),),
        behaviour=Behaviour(pace="fast"),
    )
    async with open_emulator(scenario=scenario) as emu:
        pipeline = Pipeline(
            endpoint=ep.custom(emu.url, "gemini-2.5-flash-native-audio-latest"),
            setup=wire.Setup(model=""),
            sink=CollectorSink(),
            source=WavSource(QUESTION, realtime=False),
        )
        events_send, events_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: pipeline.run(
                    events_send,
                    replace={"playout": level_meter(pipeline)},
                    task_status=task_status,
                )
            )
            async for event in events_receive:
                if isinstance(event, m.PlayoutFinished):
                    break
            pipeline.stop()


if __name__ == "__main__":
    trio.run(main)
