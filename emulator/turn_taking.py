"""Turn-taking, sans-IO: when the user has finished a turn, and when they barge in.

The emulated model's ears. It takes what client messages mean (``protocol.server_session``
events) and keeps the floor: speech from the energy detector over the audio (resampled to
16 kHz from whatever rate the client sends), or the client's own activityStart/End when
automatic detection is off; a text input or a clientContent with turnComplete is a whole
turn at once. Speech starting while a reply plays is a barge-in, unless the setup asked
for NO_INTERRUPTION. ``handle()`` says what happened (``Reaction``); finished user turns
wait in order for ``next_turn()``, at most ``MAX_PENDING_USER_TURNS`` of them: past that a
new turn merges into the last one, as if the user had said both at once (a client faster
than the model cannot queue up work).

Text is never "heard": a typed turn gets no input transcription. Two text inputs mean no
new turn: a blank ``realtimeInput.text`` (Pipecat's " " nudge after a clientContent)
while a reply is owed or playing joins that reply, and initial history (historyConfig)
only fills the history. A lone "." user turn (LiveKit's generate_reply placeholder) gets
an empty turn from the families that do so (``ModelFamily.placeholder_gets_empty_turn``).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Final

from emulator.limits import MAX_PENDING_USER_TURNS, MAX_PENDING_VOICE_ACTIVITY, MAX_TEXT_CHARS
from emulator.vad import EnergyVad, InputResampler, Transition
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
    VOICE_ACTIVITY = enum.auto()  # the detector heard speech start or end: take_activity()


NO_REACTION: Final = Reaction.NONE  # a module constant: checked on every audio chunk
PLACEHOLDER: Final = "."


@dataclass(frozen=True)
class UserTurn:
    text: str | None  # what the user typed, or the turn's text; None for speech
    spoken: bool = False  # heard (transcribed), not typed
    empty: bool = False  # answered with an empty turn (a placeholder on 3.x)


class TurnTaking:
    def __init__(
        self,
        config: SessionConfig,
        history: deque[tuple[str, str]],
        *,
        max_pending: int = MAX_PENDING_USER_TURNS,
    ) -> None:
        self.vad = EnergyVad.from_config(config.activity_detection)
        self.resampler = InputResampler()
        self.automatic = config.automatic_activity_detection
        self.interruptible = config.interruptible
        self.placeholder_gets_empty_turn = config.family.placeholder_gets_empty_turn
        self.history = history
        self.replying = False  # set by whoever plays the replies
        self.user_speaking = False
        self.turns_merged = 0
        self.nudges_joined = 0  # blank text inputs that joined an owed reply
        self._max_pending = max_pending
        self._pending: deque[UserTurn] = deque()
        # Speech starts and ends not yet reported; a client streaming audio faster than it
        # reads cannot grow it (the oldest go first).
        self._activity: deque[tuple[Transition, float]] = deque(maxlen=MAX_PENDING_VOICE_ACTIVITY)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def next_turn(self) -> UserTurn | None:
        """The oldest finished user turn not yet answered, or None."""
        return self._pending.popleft() if self._pending else None

    def take_activity(self) -> list[tuple[Transition, float]]:
        """Speech starts and ends the detector heard since the last call, each with its
        offset (seconds) in the connection's audio stream."""
        activity = list(self._activity)
        self._activity.clear()
        return activity

    def handle(self, event: ClientEvent) -> Reaction:
        """Take one client event; what it does to the floor."""
        if type(event) is AudioReceived:  # almost every event: first, and cheap
            if not self.automatic:
                return NO_REACTION
            pcm = (
                event.data if event.rate == 16000 else self.resampler.to_16k(event.data, event.rate)
            )
            transitions = self.vad.feed(pcm)
            return self._on_transitions(transitions) if transitions else NO_REACTION
        if isinstance(event, TextReceived):
            return self._on_text(event.text)
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
        reaction = Reaction.VOICE_ACTIVITY
        self._activity.extend(zip(transitions, self.vad.offsets, strict=True))
        for transition in transitions:
            reaction |= self._speech_started() if transition == "start" else self._speech_ended()
        return reaction

    def _on_text(self, text: str) -> Reaction:
        if not text.strip():
            if self.replying or self._pending:
                self.nudges_joined += 1
                return Reaction.NONE
            return self._queue(UserTurn(text))
        return self._barge_in() | self._queue(UserTurn(text))

    def _on_content(self, event: ContentReceived) -> Reaction:
        self.history.extend(event.turns)
        if not event.turn_complete or event.history_only:
            return Reaction.NONE
        last_user = next((t for r, t in reversed(self.history) if r == "user" and t), None)
        final = event.turns[-1] if event.turns else None
        empty = (
            self.placeholder_gets_empty_turn
            and final is not None
            and final[0] == "user"
            and final[1].strip() == PLACEHOLDER
        )
        return self._barge_in() | self._queue(UserTurn(last_user, empty=empty))

    def _barge_in(self) -> Reaction:
        return Reaction.BARGE_IN if self.replying and self.interruptible else Reaction.NONE

    def _speech_started(self) -> Reaction:
        self.user_speaking = True
        return self._barge_in()

    def _speech_ended(self) -> Reaction:
        if not self.user_speaking:
            return Reaction.NONE
        self.user_speaking = False
        return self._queue(UserTurn(None, spoken=True))

    def _queue(self, turn: UserTurn) -> Reaction:
        if len(self._pending) < self._max_pending:
            self._pending.append(turn)
        else:
            last = self._pending[-1]
            texts = [t for t in (last.text, turn.text) if t]
            merged = " ".join(texts)[-MAX_TEXT_CHARS:] if texts else None
            self._pending[-1] = UserTurn(merged, spoken=last.spoken or turn.spoken)
            self.turns_merged += 1
            return Reaction.USER_TURN | Reaction.MERGED
        return Reaction.USER_TURN
