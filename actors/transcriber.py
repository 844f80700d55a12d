"""The transcriber: per-turn transcripts, the conversation history, truncation on barge-in.

``Transcripts`` (no I/O) assembles input and output transcription fragments into one
transcript per side of each turn: ``TranscriptUpdated`` as fragments come, then one
``TranscriptCompleted`` per side (the user's when its fragments say finished or the turn
ends; the agent's when the turn ends). The history is ordered by turn, the user's words
before the agent's reply, even when the user's fragments arrive after the reply started.
It keeps the latest ``max_turns`` turns.

When a reply is interrupted, the agent's transcript is trimmed to what was heard: each
output fragment is tagged with how much of the turn's audio had arrived with it, and
playout's ``PlayoutFinished`` says how much was played. Without playout (text replies, or
``expect_playout=False``) the whole text is kept.

Assembly is linear: each fragment is tidied once, as it comes (``_Text``), so a turn of n
fragments costs n small steps, not n re-assemblies of everything so far. (The link caps a
turn's text at ``actors.limits.TRANSCRIPT_CHARS``, so each update's copy is bounded too.)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import trio

from actors import limits
from runtime import messages as m
from runtime.supervisor import ActorContext
from runtime.wiring import deliver, deliver_nowait, messages

_SPACES = re.compile(r"\s+")
_GLUED = re.compile(r"([.!?,;:])(?=[^\W\d_])")  # "Hi.How" -> "Hi. How"
_LETTER = re.compile(r"[^\W\d_]")
_PUNCTUATION = frozenset(".!?,;:")
HEARD_TOLERANCE = 480  # one 20 ms frame at 24 kHz: a word just being played counts as heard


def assemble(fragments: list[str]) -> str:
    """Join transcription fragments as the service sends them (spaces included), tidily."""
    text = _Text()
    for fragment in fragments:
        text.add(fragment)
    return text.text()


class _Text:
    """Fragments joined tidily, one fragment at a time: runs of whitespace become one
    space, none at either end, and a space goes after punctuation glued to a word
    ("Hi.How" -> "Hi. How"). Adding a fragment costs its own length only."""

    def __init__(self) -> None:
        self._pieces: list[str] = []
        self._space_before_next = False
        self._last = ""

    def add(self, fragment: str) -> None:
        collapsed = _SPACES.sub(" ", fragment)
        core = collapsed.strip(" ")
        if not core:
            self._space_before_next = self._space_before_next or bool(collapsed)
            return
        if self._pieces and (
            self._space_before_next
            or collapsed[0] == " "
            or (self._last in _PUNCTUATION and _LETTER.match(core[0]))
        ):
            self._pieces.append(" ")
        self._pieces.append(_GLUED.sub(r"\1 ", core))
        self._last = core[-1]
        self._space_before_next = collapsed[-1] == " "

    def text(self) -> str:
        return "".join(self._pieces)


@dataclass
class _Side:
    fragments: list[tuple[str, int]] = field(default_factory=list)  # text, audio samples then
    final: str | None = None
    interrupted: bool = False
    assembled: _Text = field(default_factory=_Text)

    def add(self, text: str, audio_samples: int) -> None:
        self.fragments.append((text, audio_samples))
        self.assembled.add(text)

    def text(self, heard: int | None = None) -> str:
        if heard is None:
            return self.assembled.text()
        return assemble([t for t, at in self.fragments if at <= heard + HEARD_TOLERANCE])


@dataclass
class _TurnState:
    user: _Side = field(default_factory=_Side)
    agent: _Side = field(default_factory=_Side)
    audio_samples: int = 0
    completed: bool = False
    interrupted: bool = False
    heard: int | None = None  # samples played, once playout reported


class Transcripts:
    def __init__(
        self, *, expect_playout: bool = True, max_turns: int = limits.TRANSCRIPT_TURNS
    ) -> None:
        self.expect_playout = expect_playout
        self.max_turns = max_turns
        self._turns: dict[int, _TurnState] = {}
        self._interim_due: dict[tuple[int, m.Role], None] = {}  # sides changed, in order

    def feed(self, message: m.InternalMessage, *, interim: bool = True) -> list[m.InternalMessage]:
        """Apply one pipeline message; the transcript events it causes. With
        ``interim=False`` a fragment causes no ``TranscriptUpdated`` at once: ``interim()``
        gives one per side changed since, when asked (one copy of the text per batch of
        fragments, not per fragment)."""
        if isinstance(message, m.TranscriptFragment):
            return self._fragment(message, interim)
        if isinstance(message, m.ModelAudio):
            turn = self._turn(message.turn_id)
            turn.audio_samples = max(turn.audio_samples, message.offset + len(message.data) // 2)
        elif isinstance(message, m.ModelText) and not message.thought:
            fragment = m.TranscriptFragment(
                role="agent", turn_id=message.turn_id, text=message.text
            )
            return self._fragment(fragment, interim)
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

    def interim(self) -> list[m.TranscriptUpdated]:
        """The interim transcript of each side changed since the last call, in order."""
        out = []
        for turn_id, role in self._interim_due:
            turn = self._turns.get(turn_id)
            if turn is not None:
                side = turn.user if role == "user" else turn.agent
                out.append(m.TranscriptUpdated(role=role, turn_id=turn_id, text=side.text()))
        self._interim_due.clear()
        return out

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
        turn = self._turns.get(turn_id)
        if turn is None:
            turn = self._turns[turn_id] = _TurnState()
            while len(self._turns) > self.max_turns:
                del self._turns[next(iter(self._turns))]  # the oldest turn is forgotten
        return turn

    def _fragment(self, fragment: m.TranscriptFragment, interim: bool) -> list[m.InternalMessage]:
        turn = self._turn(fragment.turn_id)
        side = turn.user if fragment.role == "user" else turn.agent
        if side.final is not None:
            return []  # late fragments after the final one are not news
        side.add(fragment.text, turn.audio_samples)
        out: list[m.InternalMessage] = []
        if interim:
            out.append(
                m.TranscriptUpdated(role=fragment.role, turn_id=fragment.turn_id, text=side.text())
            )
        else:
            self._interim_due[(fragment.turn_id, fragment.role)] = None
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
    audio_events: bool = True,
) -> None:
    """Pass every ``inbox`` message on to ``out``, followed by the transcript events it
    causes in ``transcripts`` (which outlives restarts), until ``inbox`` ends. Closes both
    endpoints. ``audio_events=False``: ``ModelAudio`` is fed to ``transcripts`` (it counts
    the turn's audio) but not passed on (the application did not ask for it).

    The application's event stream runs through here so that a turn's transcripts come
    right after what completed them: an application that sees ``TurnCompleted`` finds the
    turn in ``chat_ctx_copy()``. Interim transcripts go out once per batch of queued
    messages (a flood of fragments costs one copy of the text per batch, not per
    fragment), always before the final transcript of their side.

    While it waits with nothing queued, senders (the router) run its loop body inline
    (``_Transcribing.now``): a message alone is a batch of one."""
    work = _Transcribing(inbox, out, transcripts, audio_events)
    async with inbox, out:
        ctx.ready()
        async for message in messages(inbox, inline=work.now):
            await work.handle(message)


class _Transcribing:
    """One transcriber incarnation's loop body: ``handle`` (in its task), ``now`` (the
    same for a sender to run inline, synchronously)."""

    def __init__(
        self,
        inbox: trio.MemoryReceiveChannel[m.InternalMessage],
        out: trio.MemorySendChannel[m.InternalMessage],
        transcripts: Transcripts,
        audio_events: bool,
    ) -> None:
        self.inbox, self.out, self.transcripts = inbox, out, transcripts
        self.audio_events = audio_events
        # Inline work cannot wait for room in a bounded ``out``; a bound never changes.
        self.unbounded = out.statistics().max_buffer_size == math.inf

    async def handle(self, message: m.InternalMessage) -> None:
        """Pass ``message`` on, then its transcript events, the interim transcripts first
        when it ends a batch (nothing more is queued) or causes events."""
        if self.audio_events or type(message) is not m.ModelAudio:
            await deliver(self.out, message)
        events = self.transcripts.feed(message, interim=False)
        if events or not self.inbox.statistics().current_buffer_used:
            for update in self.transcripts.interim():
                await deliver(self.out, update)
        for event in events:
            await deliver(self.out, event)

    def now(self, message: m.InternalMessage) -> bool:
        """``handle`` without waiting, of a message that is a batch of its own (nothing is
        queued when a sender runs it); declines (False, nothing done) when ``out`` is
        bounded."""
        if not self.unbounded:
            return False
        if self.audio_events or type(message) is not m.ModelAudio:
            deliver_nowait(self.out, message)
        events = self.transcripts.feed(message, interim=False)
        for update in self.transcripts.interim():
            deliver_nowait(self.out, update)
        for event in events:
            deliver_nowait(self.out, event)
        return True
