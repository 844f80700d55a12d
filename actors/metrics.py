"""Metrics: time to first audio per turn, and token usage per turn and per session.

Time to first audio runs from the end of the user's speech (``SpeechEnded``, where the
encoder's level gate heard the audio go quiet, or ``ActivityEnded`` with manual activity
detection; by its timestamp) to the first model audio played (the first
``PlayoutProgress`` of the next turn, by when it arrives). The end of the input stream
(``AudioStreamEnded``) is not the end of speech: trailing silence, or a microphone that
never ends, would hide or skew it. Token counts come from the
server's ``UsageReported``. Every measurement is a ``MetricRecorded``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from runtime import messages as m
from runtime.supervisor import ActorContext
from runtime.wiring import deliver, messages


@dataclass
class Metrics:
    speech_ended_at: float | None = None
    started: set[int] = field(default_factory=set)
    session_tokens: dict[str, int] = field(
        default_factory=lambda: {"prompt": 0, "response": 0, "total": 0}
    )

    def feed(self, message: m.InternalMessage, now: float) -> list[m.MetricRecorded]:
        if isinstance(message, m.ActivityEnded | m.SpeechEnded):
            self.speech_ended_at = message.timestamp
        elif isinstance(message, m.PlayoutProgress) and message.turn_id not in self.started:
            self.started.add(message.turn_id)
            ended, self.speech_ended_at = self.speech_ended_at, None
            # A speech end still ahead of the clock is the time of audio sent faster than
            # real time (a file read as fast as possible): nothing to measure.
            if ended is not None and ended <= now:
                latency = now - ended
                return [
                    m.MetricRecorded(
                        name="time_to_first_audio", value=latency, turn_id=message.turn_id
                    )
                ]
        elif isinstance(message, m.UsageReported):
            counts = {
                "prompt": message.prompt_tokens,
                "response": message.response_tokens,
                "total": message.total_tokens,
            }
            out = []
            for kind, value in counts.items():
                self.session_tokens[kind] += value
                out.append(
                    m.MetricRecorded(
                        name=f"tokens.turn.{kind}", value=value, turn_id=message.turn_id
                    )
                )
                out.append(
                    m.MetricRecorded(name=f"tokens.session.{kind}", value=self.session_tokens[kind])
                )
            return out
        return []


async def metrics(
    ctx: ActorContext,
    *,
    inbox: trio.MemoryReceiveChannel[m.InternalMessage],
    out: trio.MemorySendChannel[m.InternalMessage],
    tracker: Metrics,
) -> None:
    """Turn ``inbox`` messages into ``MetricRecorded`` on ``out`` until ``inbox`` ends;
    ``tracker`` outlives restarts. Closes both endpoints."""
    async with inbox, out:
        ctx.ready()
        async for message in messages(inbox):
            for metric in tracker.feed(message, trio.current_time()):
                await deliver(out, metric)
