"""The script player, sans-IO: one scenario turn as a sequence of steps, as data.

``ScriptPlayer.reply()`` yields what a reply does, in order: ``Send`` a message, ``Pause``
(thinking time; a barge-in ends it early), ``PaceUntil`` (hold the next audio chunk until
its real-time slot), ``AwaitTools`` (until the client has answered these calls),
``Checkpoint`` (a point where injected faults may fire), ``UpdateResumption`` (a
sessionResumptionUpdate, with a fresh handle when resumable), ``Defer`` (NON_BLOCKING
calls went out: the rest of the turn waits for their results, ``emulator.tool_results``).
The driver performs each step and stops pulling on barge-in; ``interrupted()`` then
yields how the reply ends. ``result_reply()`` says what results brought, ``empty_reply()``
is a turn with nothing in it.
Pacing reads the clock (``now``) when a step is pulled, once the previous step is done,
so a slow send delays the schedule as it would the real service's.

What a reply says comes from the scenario: the input transcript (for speech only: typed
text is not transcribed), spoken steps (audio chunks of ``chunk_ms`` with the words spread
over them, or text parts in TEXT mode; built-in tool results with them), tool calls sent
together, then generationComplete, the wait for playback, turnComplete with usage by
modality (and interactionStatus for the families that send it). A new behaviour of the
service is a new branch here, or a new step kind the driver learns to perform.
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
from emulator.tool_results import ResultReply
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


class Defer(msgspec.Struct, frozen=True, gc=False):
    """NON_BLOCKING calls are running: ``replies`` are said once they have results."""

    call_ids: tuple[str, ...]
    replies: tuple[Reply, ...]
    progress: dict[str, str]  # call id -> its scripted progress line


Step = Send | Pause | PaceUntil | AwaitTools | Checkpoint | UpdateResumption | Defer
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
        api: str = "gemini",
    ) -> None:
        self.scenario = scenario
        self.behaviour = scenario.behaviour
        self.config = config
        self.conversation = conversation
        self.now = now
        self.pace_factor = pace_factor  # a "slow" fault's factor
        self.api = api
        self._said_seconds = 0.0  # audio sent in the current generation

    def next_turn(self) -> Turn:
        """The scenario's turn that answers the next user turn (a default one past the end)."""
        turn = self.scenario.turn(self.conversation.next_turn)
        self.conversation.next_turn += 1
        return turn

    def reply(self, turn: Turn, transcript: str, *, spoken: bool = True) -> Iterator[Step]:
        """The steps of ``turn``'s reply to a user turn, ``transcript`` being what the user
        said (input transcription, for ``spoken`` turns only) or typed.

        Raises ``AudioFileError`` (while pulled) when a reply's WAV file is unreadable.
        """
        yield UpdateResumption(resumable=False)
        self.conversation.history.append(("user", transcript))
        if self.config.input_transcription and spoken:
            said = fragments(transcript, self.behaviour.transcript_words_per_fragment)
            for i, text in enumerate(said):
                finished = True if i == len(said) - 1 else None
                transcription = w.Transcription(text=text, finished=finished)
                yield Send(_content(w.ServerContent(input_transcription=transcription)))
        yield from self._generation(turn.replies, turn)

    def result_reply(self, result: ResultReply) -> Iterator[Step]:
        """The steps of a reply about NON_BLOCKING results (no user turn precedes it)."""
        yield UpdateResumption(resumable=False)
        yield from self._generation(result.replies, None)

    def empty_reply(self) -> Iterator[Step]:
        """A turn with nothing in it (a 3.x model's answer to a "." placeholder)."""
        self._said_seconds = 0.0
        yield Send(self._turn_complete(None))

    def interrupted(self, pending_calls: Sequence[str]) -> Iterator[Step]:
        """How a reply ends after a barge-in; ``pending_calls`` are cancelled."""
        yield Send(_content(w.ServerContent(interrupted=True)))
        if pending_calls:
            cancellation = w.ToolCallCancellation(ids=list(pending_calls))
            yield Send(w.ServerMessage(tool_call_cancellation=cancellation))
        yield Send(self._turn_complete(None))
        yield UpdateResumption(resumable=True)

    def _generation(self, replies: tuple[Reply, ...], turn: Turn | None) -> Iterator[Step]:
        self._said_seconds = 0.0
        yield self._pause(self.behaviour.first_audio_delay_ms / 1000)
        audio_seconds = 0.0
        started = self.now()
        for index, reply in enumerate(replies):
            if reply.tool_calls:
                rest = replies[index + 1 :]
                if reply.say is not None or reply.audio is not None:
                    rest = (msgspec.structs.replace(reply, tool_calls=()), *rest)
                deferred = yield from self._call_tools(reply, rest)
                if deferred:
                    if reply.meanwhile:
                        audio_seconds += yield from self._speak(Reply(say=reply.meanwhile))
                    break
            if reply.say is not None or reply.audio is not None:
                audio_seconds += yield from self._speak(reply)
        yield Send(_content(w.ServerContent(generation_complete=True)))
        if self.behaviour.pace != "fast":  # the real server waits for playback to finish
            yield self._pause(started + audio_seconds / self.behaviour.speed - self.now())
        yield Send(self._turn_complete(turn))
        yield UpdateResumption(resumable=True)

    def _pause(self, seconds: float) -> Pause:
        return Pause(seconds * self.pace_factor) if seconds > 0 else _NO_PAUSE

    def _call_tools(self, reply: Reply, rest: tuple[Reply, ...]) -> Generator[Step, None, bool]:
        """Send the reply's calls together; wait for the BLOCKING ones. True when every one
        is NON_BLOCKING: ``rest`` is then deferred until their results."""
        record = self.conversation.record
        calls = [
            w.FunctionCall(id=record.new_call_id(), name=spec.name, args=dict(spec.args))
            for spec in reply.tool_calls
        ]
        ids = tuple(call.id or "" for call in calls)
        yield Send(w.ServerMessage(tool_call=w.ToolCall(function_calls=calls)))
        yield Checkpoint("tool-pending")
        blocking = tuple(
            call_id
            for call_id, spec in zip(ids, reply.tool_calls, strict=True)
            if not self.config.non_blocking(spec.name)
        )
        if blocking:
            yield AwaitTools(blocking)
            return False
        progress = {
            call_id: spec.progress
            for call_id, spec in zip(ids, reply.tool_calls, strict=True)
            if spec.progress
        }
        yield Defer(ids, rest, progress)
        return True

    def _speak(self, reply: Reply) -> Generator[Step, None, float]:
        """Stream one spoken step; returns its length in seconds (0 in TEXT mode)."""
        text = reply.say or ""
        self.conversation.history.append(("model", text))
        yield from self._code(reply)
        extras = self._grounding(reply, text)
        if self.config.text_mode:
            for index, fragment in enumerate(fragments(text, 3)):
                yield self._pause(0.05)
                turn = w.Content(role="model", parts=[w.Part(text=fragment)])
                content = w.ServerContent(model_turn=turn)
                yield Send(_content(_with(content, extras) if index == 0 else content))
            return 0.0
        pcm = read_wav(self.scenario.resolve(reply.audio)) if reply.audio else _speech(text)
        chunk_bytes = 2 * OUTPUT_RATE * self.behaviour.chunk_ms // 1000
        chunks = [pcm[i : i + chunk_bytes] for i in range(0, len(pcm), chunk_bytes)]
        words = fragments(text, 1) if self.config.output_transcription else []
        if words and self.behaviour.transcription_ahead:
            # Vertex: the transcription arrives ahead of the audio it describes.
            said = w.Transcription(text="".join(words))
            yield Send(_content(_with(w.ServerContent(output_transcription=said), extras)))
            words, extras = [], None
        chunk_seconds = self.behaviour.chunk_ms / 1000 / self.behaviour.speed
        start = self.now()
        for i, chunk in enumerate(chunks):
            message = _audio_message(chunk, _words_of_chunk(words, i, len(chunks)))
            if i == 0 and extras is not None:
                message = _content(_with(message.server_content, extras))
            yield Send(message)
            self._said_seconds += len(chunk) / 2 / OUTPUT_RATE
            if i == 1:
                yield Checkpoint("mid-reply")
            yield self._pace(i, start, chunk_seconds)
        return len(pcm) / 2 / OUTPUT_RATE

    def _code(self, reply: Reply) -> Iterator[Step]:
        """The executableCode and codeExecutionResult parts of a reply that runs code
        (one part per message: Pipecat reads only the first)."""
        code = reply.code
        if code is None or "codeExecution" not in self.config.builtin_tools:
            return
        code_id = f"code-{self.conversation.record.calls_issued}-{len(self.conversation.history)}"
        parts = (
            w.Part(
                executable_code=w.ExecutableCode(code=code.code, language=code.language, id=code_id)
            ),
            w.Part(
                code_execution_result=w.CodeExecutionResult(
                    outcome=code.outcome, output=code.output, id=code_id
                )
            ),
        )
        for part in parts:
            yield Send(_content(w.ServerContent(model_turn=w.Content(role="model", parts=[part]))))

    def _grounding(self, reply: Reply, text: str) -> w.ServerContent | None:
        """Grounding and URL-context metadata for a reply's first message, for the
        built-in tools the setup declared."""
        tools = self.config.builtin_tools
        search = reply.search if "googleSearch" in tools else None
        urls = reply.urls if "urlContext" in tools else ()
        if search is None and not urls:
            return None
        grounding = None
        if search is not None:
            chunks = [
                w.GroundingChunk(web=w.GroundingChunkWeb(uri=r.uri, title=r.title))
                for r in search.results
            ]
            supports = (
                [
                    w.GroundingSupport(
                        segment=w.Segment(start_index=0, end_index=len(text), text=text),
                        grounding_chunk_indices=list(range(len(chunks))),
                    )
                ]
                if chunks and text
                else None
            )
            grounding = w.GroundingMetadata(
                web_search_queries=list(search.queries),
                grounding_chunks=chunks or None,
                grounding_supports=supports,
                search_entry_point=w.SearchEntryPoint(
                    rendered_content=f'<div class="search">{" | ".join(search.queries)}</div>'
                ),
            )
        url_context = (
            w.UrlContextMetadata(
                url_metadata=[
                    w.UrlMetadata(retrieved_url=u.url, url_retrieval_status=u.status) for u in urls
                ]
            )
            if urls
            else None
        )
        return w.ServerContent(grounding_metadata=grounding, url_context_metadata=url_context)

    def _pace(self, index: int, start: float, chunk_seconds: float) -> Step:
        pace = self.behaviour.pace
        if pace == "fast" or (pace == "bursty" and (index + 1) % self.behaviour.burst_chunks):
            return _NO_PAUSE
        now = self.now()
        delay = start + (index + 1) * chunk_seconds - now
        return PaceUntil(deadline=now + delay * self.pace_factor, lag=-delay)

    def _turn_complete(self, turn: Turn | None) -> w.ServerMessage:
        """turnComplete with the turn's usage, by modality, on the same message (Pipecat
        reads usage only there), and interactionStatus where the family sends it."""
        status = None
        if self.config.family.interaction_status:
            status = "IN_PROGRESS" if self.conversation.results.busy else "IDLE"
        content = w.ServerContent(
            turn_complete=True,
            interaction_status=status,
            turn_complete_reason=turn.turn_complete_reason if turn is not None else None,
            waiting_for_input=True if turn is not None and turn.waiting_for_input else None,
        )
        return w.ServerMessage(server_content=content, usage_metadata=self._usage())

    def _usage(self) -> w.UsageMetadata:
        history_words = sum(len(text.split()) for _, text in self.conversation.history)
        audio_tokens = int(self.conversation.record.audio_seconds * TOKENS_PER_AUDIO_SECOND)
        text_tokens = 10 + history_words  # the system instruction, roughly, and the history
        said = int(self._said_seconds * TOKENS_PER_AUDIO_SECOND)
        last = self.conversation.history[-1] if self.conversation.history else ("", "")
        said_text = len(last[1].split()) if last[0] == "model" else 0
        response = (
            [w.ModalityTokenCount(modality="TEXT", token_count=said_text)]
            if self.config.text_mode
            else [w.ModalityTokenCount(modality="AUDIO", token_count=said)]
        )
        response_tokens = response[0].token_count or 0
        prompt = [
            w.ModalityTokenCount(modality="AUDIO", token_count=audio_tokens),
            w.ModalityTokenCount(modality="TEXT", token_count=text_tokens),
        ]
        prompt_tokens = audio_tokens + text_tokens
        usage = w.UsageMetadata(
            prompt_token_count=prompt_tokens,
            total_token_count=prompt_tokens + response_tokens,
            prompt_tokens_details=prompt,
        )
        if self.api == "vertex":  # Vertex's names, and its traffic type
            return msgspec.structs.replace(
                usage,
                candidates_token_count=response_tokens,
                candidates_tokens_details=response,
                traffic_type="ON_DEMAND",
            )
        return msgspec.structs.replace(
            usage,
            response_token_count=response_tokens,
            response_tokens_details=response,
            service_tier="standard",
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


def _content(content: w.ServerContent | None) -> w.ServerMessage:
    return w.ServerMessage(server_content=content)


def _with(content: w.ServerContent | None, extras: w.ServerContent | None) -> w.ServerContent:
    """``content`` carrying the grounding and URL-context metadata of ``extras``."""
    content = content or w.ServerContent()
    if extras is None:
        return content
    return msgspec.structs.replace(
        content,
        grounding_metadata=extras.grounding_metadata,
        url_context_metadata=extras.url_context_metadata,
    )
