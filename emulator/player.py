"""The script player, sans-IO: one scenario turn as a sequence of steps, as data.

``ScriptPlayer.reply()`` yields what a reply does, in order: ``Send`` a message, ``Pause``
(thinking time; a barge-in ends it early), ``PaceUntil`` (hold the next audio chunk until
its real-time slot), ``AwaitTools`` (until the client has answered these calls),
``Checkpoint`` (a point where injected faults may fire), ``UpdateResumption`` (a
sessionResumptionUpdate, with a fresh handle when resumable). The driver performs each
step and stops pulling on barge-in; ``interrupted()`` then yields how the reply ends.
Pacing reads the clock (``now``) when a step is pulled, once the previous step is done,
so a slow send delays the schedule as it would the real service's.

What a reply says comes from the scenario: the input transcript, spoken steps (audio
chunks of ``chunk_ms`` with the words spread over them, or text parts in TEXT mode), tool
calls sent together, then generationComplete, the wait for playback, turnComplete with
usage. A new behaviour of the service (non-blocking tools, interactionStatus...) is a new
branch here, or a new step kind the driver learns to perform.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from functools import lru_cache
from typing import Final

import msgspec

from emulator.audio import OUTPUT_RATE, read_wav, synthesize_speech
from emulator.conversation import Conversation
from emulator.faults import Point
from emulator.scenario import Reply, Scenario, Turn
from protocol import wire as w
from protocol.server_session import SessionConfig

TOKENS_PER_AUDIO_SECOND: Final = 32  # the service's accounting for audio


class Send(msgspec.Struct, frozen=True, gc=False):
    message: w.ServerMessage


class Pause(msgspec.Struct, frozen=True, gc=False):
    seconds: float  # 0: just let others run (and notice a barge-in)


class PaceUntil(msgspec.Struct, frozen=True, gc=False):
    deadline: float  # on the player's clock
    lag: float  # how far past the next chunk's real-time slot we are (ahead: negative)


class AwaitTools(msgspec.Struct, frozen=True, gc=False):
    call_ids: tuple[str, ...]


class Checkpoint(msgspec.Struct, frozen=True, gc=False):
    point: Point


class UpdateResumption(msgspec.Struct, frozen=True, gc=False):
    resumable: bool


Step = Send | Pause | PaceUntil | AwaitTools | Checkpoint | UpdateResumption
_NO_PAUSE: Final = Pause(0.0)


@lru_cache(maxsize=64)
def _speech(text: str) -> bytes:
    return synthesize_speech(text)


def fragments(text: str, words_per_fragment: int) -> list[str]:
    """Split text into fragments of a few words, keeping the spaces (as the service does)."""
    words = text.split(" ")
    step = max(1, words_per_fragment)
    pieces = [" ".join(words[i : i + step]) for i in range(0, len(words), step)]
    return [p if i == 0 else " " + p for i, p in enumerate(pieces) if p or i == 0]


class ScriptPlayer:
    def __init__(
        self,
        scenario: Scenario,
        config: SessionConfig,
        conversation: Conversation,
        *,
        now: Callable[[], float],
        pace_factor: float = 1.0,
    ) -> None:
        self.scenario = scenario
        self.behaviour = scenario.behaviour
        self.config = config
        self.conversation = conversation
        self.now = now
        self.pace_factor = pace_factor  # a "slow" fault's factor

    def next_turn(self) -> Turn:
        """The scenario's turn that answers the next user turn (a default one past the end)."""
        turn = self.scenario.turn(self.conversation.next_turn)
        self.conversation.next_turn += 1
        return turn

    def reply(self, turn: Turn, transcript: str) -> Iterator[Step]:
        """The steps of ``turn``'s reply to a user turn transcribed as ``transcript``.

        Raises ``AudioFileError`` (while pulled) when a reply's WAV file is unreadable.
        """
        yield UpdateResumption(resumable=False)
        self.conversation.history.append(("user", transcript))
        if self.config.input_transcription:
            said = fragments(transcript, self.behaviour.transcript_words_per_fragment)
            for i, text in enumerate(said):
                finished = True if i == len(said) - 1 else None
                transcription = w.Transcription(text=text, finished=finished)
                yield Send(_content(w.ServerContent(input_transcription=transcription)))
        yield self._pause(self.behaviour.first_audio_delay_ms / 1000)
        audio_seconds = 0.0
        started = self.now()
        for reply in turn.replies:
            if reply.tool_calls:
                yield from self._call_tools(reply)
            if reply.say is not None or reply.audio is not None:
                audio_seconds += yield from self._speak(reply)
        yield Send(_content(w.ServerContent(generation_complete=True)))
        if self.behaviour.pace != "fast":  # the real server waits for playback to finish
            yield self._pause(started + audio_seconds / self.behaviour.speed - self.now())
        yield Send(self._turn_complete(audio_seconds, transcript))
        yield UpdateResumption(resumable=True)

    def interrupted(self, pending_calls: Sequence[str]) -> Iterator[Step]:
        """How a reply ends after a barge-in; ``pending_calls`` are cancelled."""
        yield Send(_content(w.ServerContent(interrupted=True)))
        if pending_calls:
            cancellation = w.ToolCallCancellation(ids=list(pending_calls))
            yield Send(w.ServerMessage(tool_call_cancellation=cancellation))
        yield Send(_content(w.ServerContent(turn_complete=True)))
        yield UpdateResumption(resumable=True)

    def _pause(self, seconds: float) -> Pause:
        return Pause(seconds * self.pace_factor) if seconds > 0 else _NO_PAUSE

    def _call_tools(self, reply: Reply) -> Iterator[Step]:
        record = self.conversation.record
        calls = [
            w.FunctionCall(id=record.new_call_id(), name=spec.name, args=dict(spec.args))
            for spec in reply.tool_calls
        ]
        yield Send(w.ServerMessage(tool_call=w.ToolCall(function_calls=calls)))
        yield Checkpoint("tool-pending")
        yield AwaitTools(tuple(call.id or "" for call in calls))

    def _speak(self, reply: Reply) -> Generator[Step, None, float]:
        """Stream one spoken step; returns its length in seconds (0 in TEXT mode)."""
        text = reply.say or ""
        self.conversation.history.append(("model", text))
        if self.config.text_mode:
            for fragment in fragments(text, 3):
                yield self._pause(0.05)
                turn = w.Content(role="model", parts=[w.Part(text=fragment)])
                yield Send(_content(w.ServerContent(model_turn=turn)))
            return 0.0
        pcm = read_wav(self.scenario.resolve(reply.audio)) if reply.audio else _speech(text)
        chunk_bytes = 2 * OUTPUT_RATE * self.behaviour.chunk_ms // 1000
        chunks = [pcm[i : i + chunk_bytes] for i in range(0, len(pcm), chunk_bytes)]
        words = fragments(text, 1) if self.config.output_transcription else []
        chunk_seconds = self.behaviour.chunk_ms / 1000 / self.behaviour.speed
        start = self.now()
        for i, chunk in enumerate(chunks):
            yield Send(_audio_message(chunk, _words_of_chunk(words, i, len(chunks))))
            if i == 1:
                yield Checkpoint("mid-reply")
            yield self._pace(i, start, chunk_seconds)
        return len(pcm) / 2 / OUTPUT_RATE

    def _pace(self, index: int, start: float, chunk_seconds: float) -> Step:
        pace = self.behaviour.pace
        if pace == "fast" or (pace == "bursty" and (index + 1) % self.behaviour.burst_chunks):
            return _NO_PAUSE
        now = self.now()
        delay = start + (index + 1) * chunk_seconds - now
        return PaceUntil(deadline=now + delay * self.pace_factor, lag=-delay)

    def _turn_complete(self, audio_seconds: float, transcript: str) -> w.ServerMessage:
        response_tokens = int(audio_seconds * TOKENS_PER_AUDIO_SECOND) + len(transcript.split())
        heard = self.conversation.record.audio_seconds
        prompt_tokens = int(heard * TOKENS_PER_AUDIO_SECOND) + 10
        return w.ServerMessage(
            server_content=w.ServerContent(turn_complete=True),
            usage_metadata=w.UsageMetadata(
                prompt_token_count=prompt_tokens,
                response_token_count=response_tokens,
                total_token_count=prompt_tokens + response_tokens,
            ),
        )


def _words_of_chunk(words: list[str], index: int, chunks: int) -> str:
    """The words said during chunk ``index``: spread evenly, as the real transcription
    trails the audio."""
    return "".join(words[len(words) * index // chunks : len(words) * (index + 1) // chunks])


def _audio_message(chunk: bytes, said: str) -> w.ServerMessage:
    blob = w.Blob(mime_type="audio/pcm;rate=24000", data=chunk)
    return _content(
        w.ServerContent(
            model_turn=w.Content(role="model", parts=[w.Part(inline_data=blob)]),
            output_transcription=w.Transcription(text=said) if said else None,
        )
    )


def _content(content: w.ServerContent) -> w.ServerMessage:
    return w.ServerMessage(server_content=content)
