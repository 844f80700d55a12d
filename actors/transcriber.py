"""The transcriber: per-turn transcripts, the conversation history, truncation on barge-in.

``Transcripts`` (no I/O) assembles input and output transcription fragments into one
transcript per side of each turn: ``TranscriptUpdated`` as fragments come, then one
``TranscriptCompleted`` per side (the user's when its fragments say finished or the turn
ends; the agent's when the turn ends). The history is ordered by turn, the user's words
before the agent's reply, even when the user's fragments arrive after the reply started.

When a reply is interrupted, the agent's transcript is trimmed to what was heard: each
output fragment is tagged with how much of the turn's audio had arrived with it, and
playout's ``PlayoutFinished`` says how much was played. Without playout (text replies, or
``expect_playout=False``) the whole text is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import trio

from actors.metrics import Metrics
from runtime import messages as m
from runtime.supervisor import ActorContext
from runtime.wiring import deliver, messages

_SPACES = re.compile(r"\s+")
_GLUED = re.compile(r"([.!?,;:])(?=[^\W\d_])")  # "Hi.How" -> "Hi. How"
HEARD_TOLERANCE = 480  # one 20 ms frame at 24 kHz: a word just being played counts as heard


def assemble(fragments: list[str]) -> str:
    """Join transcription fragments as the service sends them (spaces included), tidily."""
    text = _SPACES.sub(" ", "".join(fragments)).strip()
    return _GLUED.sub(r"\1 ", text)


@dataclass
class _Side:
    fragments: list[tuple[str, int]] = field(default_factory=list)  # text, audio samples then
    final: str | None = None
    interrupted: bool = False

    def text(self, heard: int | None = None) -> str:
        kept = [t for t, at in self.fragments if heard is None or at <= heard + HEARD_TOLERANCE]
        return assemble(kept)


@dataclass
class _TurnState:
    user: _Side = field(default_factory=_Side)
    agent: _Side = field(default_factory=_Side)
    audio_samples: int = 0
    completed: bool = False
    interrupted: bool = False
    heard: int | None = None  # samples played, once playout reported


class Transcripts:
    def __init__(self, *, expect_playout: bool = True) -> None:
        self.expect_playout = expect_playout
        self._turns: dict[int, _TurnState] = {}

    def feed(self, message: m.InternalMessage) -> list[m.InternalMessage]:
        """Apply one pipeline message; the transcript events it causes."""
        if isinstance(message, m.TranscriptFragment):
            return self._fragment(message)
        if isinstance(message, m.ModelAudio):
            turn = self._turn(message.turn_id)
            turn.audio_samples = max(turn.audio_samples, message.offset + len(message.data) // 2)
        elif isinstance(message, m.ModelText) and not message.thought:
            return self._fragment(
                m.TranscriptFragment(role="agent", turn_id=message.turn_id, text=message.text)
            )
        elif isinstance(message, m.TurnCompleted):
            turn = self._turn(message.turn_id)
            turn.completed, turn.interrupted = True, message.interrupted
            return self._finish(message.turn_id)
        elif isinstance(message, m.PlayoutFinished):
            turn = self._turn(message.turn_id)
            turn.heard = message.samples_played
            turn.interrupted = turn.interrupted or message.interrupted
            return self._finish(message.turn_id)
        return []

    def history(self) -> list[m.ChatTurn]:
        """The conversation so far, in turn order, the user before the agent in each turn."""
        out: list[m.ChatTurn] = []
        for turn_id in sorted(self._turns):
            turn = self._turns[turn_id]
            sides: tuple[tuple[m.Role, _Side], ...] = (("user", turn.user), ("agent", turn.agent))
            for role, side in sides:
                text = side.final if side.final is not None else side.text()
                if text:
                    out.append(
                        m.ChatTurn(
                            role=role,
                            text=text,
                            item_id=_item_id(turn_id, role),
                            interrupted=side.interrupted,
                        )
                    )
        return out

    def _turn(self, turn_id: int) -> _TurnState:
        return self._turns.setdefault(turn_id, _TurnState())

    def _fragment(self, fragment: m.TranscriptFragment) -> list[m.InternalMessage]:
        turn = self._turn(fragment.turn_id)
        side = turn.user if fragment.role == "user" else turn.agent
        if side.final is not None:
            return []  # late fragments after the final one are not news
        side.fragments.append((fragment.text, turn.audio_samples))
        out: list[m.InternalMessage] = [
            m.TranscriptUpdated(role=fragment.role, turn_id=fragment.turn_id, text=side.text())
        ]
        if fragment.role == "user" and fragment.finished:
            out += self._final(fragment.turn_id, "user", side, side.text())
        return out

    def _finish(self, turn_id: int) -> list[m.InternalMessage]:
        turn = self._turns[turn_id]
        out: list[m.InternalMessage] = []
        if turn.completed and turn.user.final is None:
            out += self._final(turn_id, "user", turn.user, turn.user.text())
        if turn.agent.final is not None or not turn.completed:
            return out
        spoken = turn.audio_samples > 0 and self.expect_playout
        if turn.interrupted and spoken:
            if turn.heard is None:
                return out  # wait for playout to say how much was heard
            text = turn.agent.text(heard=turn.heard)
        else:
            text = turn.agent.text()
        turn.agent.interrupted = turn.interrupted
        return out + self._final(turn_id, "agent", turn.agent, text)

    def _final(self, turn_id: int, role: m.Role, side: _Side, text: str) -> list[m.InternalMessage]:
        side.final = text
        if not text:
            return []
        return [
            m.TranscriptCompleted(
                role=role,
                turn_id=turn_id,
                item_id=_item_id(turn_id, role),
                transcript=text,
                interrupted=side.interrupted,
            )
        ]


def _item_id(turn_id: int, role: str) -> str:
    return f"turn-{turn_id}-{role}"


async def transcriber(
    ctx: ActorContext,
    *,
    inbox: trio.MemoryReceiveChannel[m.InternalMessage],
    out: trio.MemorySendChannel[m.InternalMessage],
    transcripts: Transcripts,
    metrics: Metrics | None = None,
    forward: bool = False,
) -> None:
    """Feed ``inbox`` to ``transcripts`` (which outlives restarts) and send its events to
    ``out`` until ``inbox`` ends. Closes both endpoints.

    With ``metrics``, its ``MetricRecorded`` go to ``out`` too; with ``forward``, every
    inbox message goes to ``out`` before what it caused (the pipeline's event stream)."""
    async with inbox, out:
        ctx.ready()
        async for message in messages(inbox):
            if forward:
                await deliver(out, message)
            for event in transcripts.feed(message):
                await deliver(out, event)
            if metrics is not None:
                for metric in metrics.feed(message, trio.current_time()):
                    await deliver(out, metric)
