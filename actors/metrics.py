"""Metrics: time to first audio per turn, token usage per turn and per session, and
each reply's model metrics as LiveKit reports them.

Time to first audio runs from the end of the user's speech (``SpeechEnded``, where the
encoder's level gate heard the audio go quiet, or ``ActivityEnded`` with manual activity
detection; by its timestamp) to the first model audio played (the first
``PlayoutProgress`` of the next turn, by when it arrives). The end of the input stream
(``AudioStreamEnded``) is not the end of speech: trailing silence, or a microphone that
never ends, would hide or skew it. Token counts come from the
server's ``UsageReported``. Every measurement is a ``MetricRecorded``.

``ModelMetrics`` (LiveKit's ``RealtimeModelMetrics``) go out with each usage report: the
reply's time to first content (``ttft``, from the latest request: the end of speech the
client sent or the server's voiceActivity END, typed text, a reply request), its duration
to generationComplete, tokens per second, tokens by modality, cache, thoughts, tool-use
prompt tokens, and the service tier (Gemini API) or traffic type (Vertex). LiveKit's is
always -1 ("Gemini has no response-start event"); here it is the first content's arrival.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import trio

from runtime import messages as m
from runtime.supervisor import ActorContext
from runtime.wiring import deliver, deliver_nowait, messages

TURNS_TIMED = 32  # replies whose timing is kept for their usage reports


@dataclass
class _Timing:
    started: float  # the first content arrived
    ttft: float | None
    done: float | None = None  # generationComplete (or turnComplete)
    cancelled: bool = False


@dataclass
class Metrics:
    speech_ended_at: float | None = None
    started: set[int] = field(default_factory=set)
    session_tokens: dict[str, int] = field(
        default_factory=lambda: {"prompt": 0, "response": 0, "total": 0}
    )
    requested_at: float | None = None  # the latest request a reply may answer
    timings: dict[int, _Timing] = field(default_factory=dict)

    def model(self, message: m.InternalMessage, now: float) -> m.ModelMetrics | None:
        """Follow replies' timing; a ``ModelMetrics`` for each usage report."""
        if isinstance(message, m.ActivityEnded | m.AudioStreamEnded):
            self.requested_at = message.timestamp
        elif isinstance(message, m.TextInput | m.ResponseRequested) or (
            isinstance(message, m.VoiceActivityDetected) and message.kind == "end"
        ):
            self.requested_at = now
        elif isinstance(message, m.TurnStarted):
            ttft = now - self.requested_at if self.requested_at is not None else None
            self.requested_at = None
            self.timings[message.turn_id] = _Timing(started=now, ttft=ttft)
            while len(self.timings) > TURNS_TIMED:
                del self.timings[next(iter(self.timings))]
        elif isinstance(message, m.GenerationCompleted | m.TurnCompleted):
            timing = self.timings.get(message.turn_id)
            if timing is not None and timing.done is None:
                timing.done = now
        elif isinstance(message, m.TurnInterrupted):
            timing = self.timings.get(message.turn_id)
            if timing is not None:
                timing.cancelled = True
                timing.done = timing.done or now
        elif isinstance(message, m.UsageReported):
            return self._report(message, now)
        return None

    def _report(self, usage: m.UsageReported, now: float) -> m.ModelMetrics:
        timing = self.timings.get(usage.turn_id) if usage.turn_id is not None else None
        started = timing.started if timing is not None else now
        done = timing.done if timing is not None and timing.done is not None else now
        duration = max(0.0, done - started)
        return m.ModelMetrics(
            turn_id=usage.turn_id,
            timestamp=started,
            ttft=timing.ttft if timing is not None else None,
            duration=duration,
            cancelled=timing.cancelled if timing is not None else False,
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.response_tokens,
            total_tokens=usage.total_tokens,
            tokens_per_second=usage.response_tokens / duration if duration > 0 else 0.0,
            input_by_modality=dict(usage.prompt_by_modality),
            output_by_modality=dict(usage.response_by_modality),
            cached_tokens=usage.cached_tokens,
            cached_by_modality=dict(usage.cached_by_modality),
            thoughts_tokens=usage.thoughts_tokens,
            tool_use_prompt_tokens=usage.tool_use_prompt_tokens,
            service_tier=usage.service_tier,
            traffic_type=usage.traffic_type,
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
    """Turn ``inbox`` messages into ``MetricRecorded`` and ``ModelMetrics`` on ``out``
    until ``inbox`` ends; ``tracker`` outlives restarts. Closes both endpoints. While it
    waits with nothing queued, senders (the router) run its loop body inline, unless
    ``out`` is bounded (inline work cannot wait for room)."""
    unbounded = out.statistics().max_buffer_size == math.inf  # a bound never changes

    def now(message: m.InternalMessage) -> bool:
        if not unbounded:
            return False
        for event in _measured(tracker, message):
            deliver_nowait(out, event)
        return True

    async with inbox, out:
        ctx.ready()
        async for message in messages(inbox, inline=now):
            for event in _measured(tracker, message):
                await deliver(out, event)


def _measured(tracker: Metrics, message: m.InternalMessage) -> list[m.InternalMessage]:
    """What ``message`` makes ``tracker`` report: metrics, then a model report."""
    now = trio.current_time()
    out: list[m.InternalMessage] = list(tracker.feed(message, now))
    report = tracker.model(message, now)
    if report is not None:
        out.append(report)
    return out
