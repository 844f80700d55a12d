"""Turn-taking, sans-IO: when the user has finished a turn, and when they barge in.

The emulated model's ears. It takes what client messages mean (``protocol.server_session``
events) and keeps the floor: speech from the energy detector over the audio, or the
client's own activityStart/End when automatic detection is off; a text input or a
clientContent with turnComplete is a whole turn at once. Speech starting while a reply
plays is a barge-in, unless the setup asked for NO_INTERRUPTION. ``handle()`` says what
happened (``Reaction``); finished user turns wait in order for ``next_turn()``, at most
``MAX_PENDING_USER_TURNS`` of them: past that a new turn merges into the last one, as if
the user had said both at once (a client faster than the model cannot queue up work).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Final

from emulator.limits import MAX_PENDING_USER_TURNS, MAX_TEXT_CHARS
from emulator.vad import EnergyVad, Transition
from protocol.server_session import (
    ActivityEnded,
    ActivityStarted,
    AudioReceived,
    AudioStreamEnded,
    ClientEvent,
    ContentReceived,
    SessionConfig,
    TextReceived,
)


class Reaction(enum.Flag):
    NONE = 0
    BARGE_IN = enum.auto()  # the reply playing now must stop
    USER_TURN = enum.auto()  # a finished user turn waits in next_turn()
    MERGED = enum.auto()  # ... merged into the last pending one (the limit was reached)


NO_REACTION: Final = Reaction.NONE  # a module constant: checked on every audio chunk


@dataclass(frozen=True)
class UserTurn:
    text: str | None  # what the user typed; None for speech (the script says what it was)


class TurnTaking:
    def __init__(
        self,
        config: SessionConfig,
        history: deque[tuple[str, str]],
        *,
        max_pending: int = MAX_PENDING_USER_TURNS,
    ) -> None:
        self.vad = EnergyVad.from_config(config.activity_detection)
        self.automatic = config.automatic_activity_detection
        self.interruptible = config.interruptible
        self.history = history
        self.replying = False  # set by whoever plays the replies
        self.user_speaking = False
        self.turns_merged = 0
        self._max_pending = max_pending
        self._pending: deque[UserTurn] = deque()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def next_turn(self) -> UserTurn | None:
        """The oldest finished user turn not yet answered, or None."""
        return self._pending.popleft() if self._pending else None

    def handle(self, event: ClientEvent) -> Reaction:
        """Take one client event; what it does to the floor."""
        if type(event) is AudioReceived:  # almost every event: first, and cheap
            transitions = self.vad.feed(event.data) if self.automatic else None
            return self._on_transitions(transitions) if transitions else NO_REACTION
        if isinstance(event, TextReceived):
            return self._speech_started() | self._queue(UserTurn(event.text))
        if isinstance(event, ContentReceived):
            return self._on_content(event)
        if isinstance(event, ActivityStarted):
            return self._speech_started()
        if isinstance(event, ActivityEnded):
            return self._speech_ended()
        if isinstance(event, AudioStreamEnded) and self.vad.force_end():
            return self._speech_ended()
        return Reaction.NONE

    def _on_transitions(self, transitions: list[Transition]) -> Reaction:
        reaction = Reaction.NONE
        for transition in transitions:
            reaction |= self._speech_started() if transition == "start" else self._speech_ended()
        return reaction

    def _on_content(self, event: ContentReceived) -> Reaction:
        self.history.extend(event.turns)
        if not event.turn_complete:
            return Reaction.NONE
        last_user = next((t for r, t in reversed(self.history) if r == "user" and t), None)
        return self._speech_started() | self._queue(UserTurn(last_user))

    def _speech_started(self) -> Reaction:
        self.user_speaking = True
        return Reaction.BARGE_IN if self.replying and self.interruptible else Reaction.NONE

    def _speech_ended(self) -> Reaction:
        if not self.user_speaking:
            return Reaction.NONE
        self.user_speaking = False
        return self._queue(UserTurn(None))

    def _queue(self, turn: UserTurn) -> Reaction:
        if len(self._pending) < self._max_pending:
            self._pending.append(turn)
        else:
            last = self._pending[-1]
            texts = [t for t in (last.text, turn.text) if t]
            merged = " ".join(texts)[-MAX_TEXT_CHARS:] if texts else None
            self._pending[-1] = UserTurn(merged)
            self.turns_merged += 1
            return Reaction.USER_TURN | Reaction.MERGED
        return Reaction.USER_TURN
