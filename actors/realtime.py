"""The public API: ``RealtimeModel`` and its sessions, the seed's API in Trio form.

    model = RealtimeModel(instructions="Be brief.", voice="Puck")   # key from the environment
    async with model.session(tools=[get_weather], sink=WavSink("reply.wav")) as session:
        session.push_audio(samples, sample_rate=48000)               # any rate and channels
        async for event in session.events():
            ...

A session ends one of three ways, and the ``async with`` says which: the block ends
(normal: the actors stop in order, in a few milliseconds), the session fails (one typed
``GeminiLiveError`` is raised from the ``async with``, never an exception group: a
``LinkError`` such as ``ConnectFailed`` or ``CredentialsRefused``, ``SupervisorGaveUp``,
``CaptureError``...), or the block is cancelled from outside (the cancellation goes on, as
trio's always does, once the actors have stopped).

Options follow the seed (LiveKit's Google realtime plugin) and add today's: language,
activity detection, context-window compression, proactivity, affective dialog, thinking,
media resolution, transcription details, ephemeral tokens, and ``endpoint`` for the
emulator or a gateway. Validation is the seed's: without Vertex a key is required; with
Vertex a project and a location; and what the model's family refuses
(``protocol.client_rules``) is a ``ModelRuleError`` (a ``ValueError``) before connecting.

The default model is ``gemini-3.8-live`` on both APIs: the current stable Live model
(September 2026), Pipecat 1.14's default on both, listed by LiveKit 1.8.9 for both (whose
default is still 2.5); 2.5 native audio stays one ``model=`` away.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import trio

from actors import endpoint as ep
from actors import limits
from actors.capture import Source
from actors.encoder import VideoEncoder
from actors.errors import SessionClosed
from actors.event_queue import EventQueue, ReplyStreams, StreamBudget
from actors.events import ResponseContent
from actors.gemini_link import LinkOptions
from actors.pipeline import Pipeline
from actors.playout import NullSink, PlayoutOptions, Sink
from actors.resumption import HandleStore
from actors.tools import BuiltinTool, Tool, ToolSet
from actors.transport import NativeTransport, Transport
from protocol import wire
from protocol.client_rules import ClientRules, ThinkingLevel
from protocol.models import ModelFamily
from runtime import messages as m
from runtime.audio import INPUT_RATE
from runtime.errors import leaves, unwrap
from runtime.wiring import messages

DEFAULT_MODEL = "gemini-3.8-live"
DEFAULT_VERTEX_MODEL = "gemini-3.8-live"


@dataclass(frozen=True)
class TranscriptionOptions:
    """What a transcription should give besides the text (google-genai 3.6.1's
    ``AudioTranscriptionConfig``): language hints (BCP-47; none: detected), words the
    model may not know, word timestamps, speaker labels, and VERBATIM or SMART (which
    drops disfluencies and applies self-corrections)."""

    language_codes: Sequence[str] = ()
    custom_vocabulary: Sequence[str] = ()
    word_timestamps: bool = False
    diarization: bool = False
    mode: wire.TranscriptionMode | None = None

    def wire(self) -> wire.AudioTranscriptionConfig:
        return wire.AudioTranscriptionConfig(
            language_codes=list(self.language_codes) or None,
            custom_vocabulary=list(self.custom_vocabulary) or None,
            word_timestamp=self.word_timestamps or None,
            diarization=self.diarization or None,
            mode=self.mode,
        )


@dataclass(frozen=True)
class EncodeOptions:
    """How ``push_video(frame, encode_options)`` encodes a frame it sends at once."""

    format: Literal["JPEG", "PNG"] = "JPEG"
    quality: int = 75
    width: int = 1024
    height: int = 1024


@dataclass(frozen=True)
class Capabilities:
    supports_truncate: bool
    input_audio_sample_rate: int | None = None


class RealtimeModel:
    def __init__(
        self,
        *,
        instructions: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        api_version: str | None = None,
        voice: str = "Puck",
        modalities: Sequence[Literal["AUDIO", "TEXT"]] = ("AUDIO",),
        enable_user_audio_transcription: bool | TranscriptionOptions = True,
        enable_agent_audio_transcription: bool | TranscriptionOptions = True,
        vertexai: bool = False,
        project: str | None = None,
        location: str | None = None,
        candidate_count: int = 1,
        temperature: float | None = None,
        max_output_tokens: int | None = None,
        top_p: float | None = None,
        top_k: float | None = None,
        presence_penalty: float | None = None,
        frequency_penalty: float | None = None,
        language: str | None = None,
        automatic_activity_detection: bool = True,
        start_of_speech_sensitivity: wire.StartSensitivity | None = None,
        end_of_speech_sensitivity: wire.EndSensitivity | None = None,
        prefix_padding_ms: int | None = None,
        silence_duration_ms: int | None = None,
        activity_handling: wire.ActivityHandling | None = None,
        context_window_compression: int | None = None,
        proactive_audio: bool | None = None,
        affective_dialog: bool | None = None,
        thinking_budget: int | None = None,
        include_thoughts: bool | None = None,
        media_resolution: wire.MediaResolution | None = None,
        endpoint: str | None = None,
        transport: Transport | None = None,
        link_options: LinkOptions | None = None,
        playout_options: PlayoutOptions | None = None,
        thinking_level: ThinkingLevel | None = None,
        proactive_video: bool | None = None,
        explicit_vad_signal: bool | None = None,
        transparent_resumption: bool | None = None,
        ephemeral_token: str | None = None,
        token_in_query: bool = False,
        family: str | ModelFamily | None = None,
        tool_threads: int = limits.TOOL_THREADS,
    ) -> None:
        """Raises ``ValueError`` like the seed: no key without Vertex (or an ``endpoint``),
        or Vertex without a project and a location; and for a key with control characters
        (``InvalidApiKey``) or an endpoint that is not a ws:// or wss:// URL
        (``InvalidEndpoint``), both also ``GeminiLiveError``s. Raises ``ModelRuleError``
        (a ``ValueError``) for options the model refuses.

        The key comes from ``api_key``, else ``GOOGLE_API_KEY`` / ``GEMINI_API_KEY``; a
        custom ``endpoint`` gets only a key passed as ``api_key``, never the environment's.
        An ephemeral token (``ephemeral_token``, or an ``api_key`` starting with
        ``auth_tokens/``) connects to the constrained method, as google-genai does.
        ``family`` overrides the model family guessed for a name the rules do not know.
        ``tool_threads`` bounds the threads sync tools run in (their own limiter: a tool
        that never returns cannot starve the sink's or the token refresh's threads).
        ``link_options.connect_timeout`` bounds entering a session (default 30 s).
        """
        # Long only by its signature (the seed's options, one a line); the work is below.
        if ephemeral_token is not None:
            self._endpoint = ep.ephemeral(
                ephemeral_token,
                model or DEFAULT_MODEL,
                api_version=api_version or ep.TOKEN_API_VERSION,
                base_url=endpoint,
                in_query=token_in_query,
            )
        else:
            self._endpoint = _endpoint(
                endpoint, model, api_key, api_version, vertexai, project, location
            )
        self.rules = ClientRules.for_model(self._endpoint.model, self._endpoint.wire_api, family)
        if transparent_resumption is None:
            transparent_resumption = self._endpoint.wire_api == "vertex"
        self.instructions = instructions
        self._transport = transport or NativeTransport()
        self._link_options = link_options or LinkOptions()
        self._playout_options = playout_options or PlayoutOptions()
        self._tool_threads = tool_threads
        self._setup = wire.Setup(
            model=self._endpoint.model,
            generation_config=_generation_config(
                modalities=modalities,
                candidate_count=candidate_count,
                temperature=temperature,
                max_output_tokens=max_output_tokens,
                top_p=top_p,
                top_k=top_k,
                presence_penalty=presence_penalty,
                frequency_penalty=frequency_penalty,
                media_resolution=media_resolution,
                voice=voice,
                language=language,
                thinking=self.rules.thinking_config(
                    level=thinking_level, budget=thinking_budget, include_thoughts=include_thoughts
                ),
                affective_dialog=affective_dialog,
            ),
            system_instruction=_text(instructions),
            realtime_input_config=wire.RealtimeInputConfig(
                automatic_activity_detection=wire.AutomaticActivityDetection(
                    disabled=not automatic_activity_detection or None,
                    start_of_speech_sensitivity=start_of_speech_sensitivity,
                    end_of_speech_sensitivity=end_of_speech_sensitivity,
                    prefix_padding_ms=prefix_padding_ms,
                    silence_duration_ms=silence_duration_ms,
                ),
                activity_handling=activity_handling,
            ),
            input_audio_transcription=_transcription(enable_user_audio_transcription),
            output_audio_transcription=_transcription(enable_agent_audio_transcription),
            context_window_compression=_compression(context_window_compression),
            proactivity=wire.ProactivityConfig(
                proactive_audio=proactive_audio, proactive_video=proactive_video
            )
            if proactive_audio is not None or proactive_video is not None
            else None,
            explicit_vad_signal=explicit_vad_signal,
            session_resumption=wire.SessionResumptionConfig(transparent=True)
            if transparent_resumption
            else None,
        )
        if transparent_resumption and self._endpoint.api == "gemini":
            raise ValueError(
                "transparent resumption is supported on Vertex AI only (google-genai "
                "refuses it on the Gemini API)"
            )
        self.rules.check_setup(self._setup)
        self.manual_activity = not automatic_activity_detection
        self.capabilities = Capabilities(supports_truncate=True, input_audio_sample_rate=INPUT_RATE)

    def __repr__(self) -> str:
        return f"RealtimeModel(endpoint={self._endpoint!r})"

    def setup(self, tools: ToolSet, base: wire.Setup | None = None) -> wire.Setup:
        """The setup message a session sends (with the session's tools declared as the
        model takes them); ``base``: the setup to start from (default: the model's).
        Raises ``ModelRuleError`` for a tool the model refuses."""
        declared = tools.resolved(self.rules).declarations(self.rules) or None
        setup = wire.Setup(**{**_fields(base or self._setup), "tools": declared})
        self.rules.check_setup(setup)
        return setup

    @asynccontextmanager
    async def session(
        self,
        *,
        chat_ctx: Iterable[m.ChatTurn] = (),
        tools: Iterable[Tool | BuiltinTool] = (),
        source: Source | None = None,
        video: Source | None = None,
        sink: Sink | None = None,
        resume: str | HandleStore | None = None,
        audio_events: bool = True,
    ) -> AsyncIterator[RealtimeSession]:
        """Run a session's actors for as long as the block runs.

        Entering waits for the server's setupComplete, within
        ``LinkOptions.connect_timeout``, or raises one typed error (``ConnectFailed``
        naming the host and the cause, ``CredentialsRefused``, ``ModelNotSupported``,
        ``CaptureError``, ``SinkError``...). Leaving stops the actors in reverse start
        order (milliseconds after a normal conversation; bounded). If the session fails
        while the block runs, the block is cancelled and the error is raised from the
        ``async with`` as itself, never in an exception group. Cancelled from outside,
        the session stops the same way and the cancellation goes on.

        The session owns ``sink`` for its duration: it opens it before connecting and
        closes it after the actors have stopped (a restarted playout gets it back intact).
        Without a ``sink`` the reply's audio is played into a ``NullSink`` (paced, kept
        nowhere): take it from each reply's ``audio_stream``, or pass ``WavSink``,
        ``SpeakerSink`` or your own. ``chat_ctx`` is the conversation's initial history,
        given before anything else (as initial history where the model has it).
        ``resume``: a handle, or a ``HandleStore`` to load one from (and to save each new
        one to), to go on with a session of an earlier process; a handle the server no
        longer knows starts a new session.

        ``audio_events``: whether the application takes the reply's audio: each
        ``ModelAudio`` in ``events()`` and each reply's ``audio_stream`` (LiveKit's way),
        as by default. False when the audio only needs to be played (into ``sink``):
        ``events()`` then has no ``ModelAudio``, each ``audio_stream`` ends empty, and an
        audio message costs the session no step of its own beyond its receipt (the
        transcripts, the interruption's truncation and the metrics are the same)."""
        toolset = ToolSet(tools).resolved(self.rules)
        store = resume if resume is not None and not isinstance(resume, str) else None
        handle = resume if isinstance(resume, str) else None
        if store is not None:
            handle = await trio.to_thread.run_sync(store.load)
        pipeline = Pipeline(
            endpoint=self._endpoint,
            setup=self.setup(toolset),
            sink=sink or NullSink(),
            source=source,
            video=video,
            tools=toolset,
            transport=self._transport,
            link_options=self._link_options,
            playout_options=self._playout_options,
            rules=self.rules,
            initial_history=[_chat_content(turn) for turn in chat_ctx],
            resume_handle=handle,
            tool_threads=self._tool_threads,
            audio_events=audio_events,
        )
        live = RealtimeSession(self, pipeline, EventQueue(), store=store)
        body_error: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(live._track)
                await nursery.start(live._run)
                try:
                    yield live
                except BaseException as exc:
                    body_error = exc
                    raise
                finally:
                    live._leave()
        except BaseExceptionGroup as group:
            error = _one_error(group, body_error)
            if error is group:
                raise  # only cancellations (their scope catches them), or several failures
            raise error from error.__cause__


class RealtimeSession:
    def __init__(
        self,
        model: RealtimeModel,
        pipeline: Pipeline,
        events: EventQueue,
        *,
        store: HandleStore | None = None,
    ) -> None:
        self._model = model
        self._pipeline = pipeline
        self._events = events
        self._pipeline_events, self._pipeline_receive = trio.open_memory_channel[m.InternalMessage](
            math.inf
        )
        self._outgoing = pipeline.send()
        self._raw = pipeline.wiring.sender("raw")
        self._playout = pipeline.wiring.sender("playout")
        self._reports = pipeline.wiring.sender("reports")
        self._playouts: dict[int, trio.Event] = {}  # turns whose playout has not finished
        self._played = trio.Event()
        self._played.set()
        self._current_turn: int | None = None
        self._ended = False
        self._setup = pipeline.setup  # the setup in force (update_tools, update_options)
        self._store = store
        self.resumption_handle: str | None = pipeline.resume_handle
        """The latest handle that resumes this session (also in another process)."""

    @property
    def playout_complete(self) -> trio.Event:
        """Set once the latest reply has finished playing (or was interrupted), and when
        the session ends. A waiter on an earlier reply's event is woken when that reply
        finishes, whatever started since."""
        if self._current_turn is None:
            return self._played
        return self._playouts.get(self._current_turn, self._played)

    # --- lifecycle --------------------------------------------------------------------------

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the pipeline; the pipeline's event channel ends with it (for ``_track``)."""
        async with self._pipeline_events:
            await self._pipeline.run(self._pipeline_events, task_status=task_status)

    def _leave(self) -> None:
        """Close the session's own input endpoints and stop the pipeline (in order)."""
        self._ended = True
        for channel in (self._outgoing, self._raw, self._playout, self._reports):
            channel.close()
        self._pipeline.stop()

    def _send(
        self, channel: trio.MemorySendChannel[m.InternalMessage], message: m.InternalMessage
    ) -> None:
        if self._ended:
            raise SessionClosed("the session has ended")
        channel.send_nowait(message)

    # --- input ------------------------------------------------------------------------------

    def push_audio(
        self, samples: np.ndarray | bytes, sample_rate: int = 16000, channels: int = 1
    ) -> None:
        """Queue audio of any rate and channel count: int16 or float samples, interleaved
        bytes as int16. Resampled to 16 kHz mono and sent in 20 ms chunks."""
        if isinstance(samples, bytes | bytearray):
            data, fmt = bytes(samples), "s16"
        else:
            array = np.asarray(samples)
            channels = array.shape[1] if array.ndim == 2 else channels
            if array.dtype == np.int16:
                data, fmt = array.astype("<i2").tobytes(), "s16"
            else:
                data, fmt = array.astype("<f4").tobytes(), "f32"
        self._send(
            self._raw,
            m.RawAudio(
                data=data,
                sample_rate=sample_rate,
                channels=channels,
                sample_format=fmt,  # type: ignore[arg-type]
                timestamp=trio.current_time(),
                source="push_audio",
            ),
        )

    def push_video(self, frame: np.ndarray, encode_options: EncodeOptions | None = None) -> None:
        """Queue a video frame (HxWx3 RGB, HxWx4 RGBA or HxW gray, uint8). Encoded to JPEG
        at about 1 fps while the user speaks, less otherwise; the latest frame wins. With
        ``encode_options`` (the seed's form) it is encoded here and sent at once instead."""
        array = np.ascontiguousarray(frame)
        formats = {2: "gray", 3: "rgb24"} if array.ndim == 2 else {3: "rgb24", 4: "rgba"}
        channels = array.shape[2] if array.ndim == 3 else 2
        if array.dtype != np.uint8 or channels not in formats:
            raise ValueError(
                f"frames must be uint8 HxW, HxWx3 or HxWx4, not {array.dtype} {array.shape}"
            )
        raw = m.RawVideo(
            data=array.tobytes(),
            width=array.shape[1],
            height=array.shape[0],
            pixel_format=formats[channels],  # type: ignore[arg-type]
            timestamp=trio.current_time(),
        )
        if encode_options is None:
            self._send(self._raw, raw)
            return
        encoder = VideoEncoder(
            max_size=(encode_options.width, encode_options.height),
            quality=encode_options.quality,
            image_format=encode_options.format,
        )
        self._send(self._outgoing, encoder.encode(raw))

    def send_text(self, text: str) -> None:
        """A typed user turn: realtime text on 3.x models, a user turn on 2.5."""
        self._request(m.TextInput(text=text))

    def create_response(self) -> None:
        """Ask the model to reply now (to what it has heard and been given)."""
        self._request(m.ResponseRequested())

    def generate_reply(self, instructions: str | None = None) -> None:
        """Ask the model to reply now, following ``instructions`` for this reply only
        (sent as a user turn holding them, as realtime text on 3.x models; never reported
        as the user's transcript)."""
        self._request(m.ResponseRequested(instructions=instructions))

    def _request(self, message: m.TextInput | m.ResponseRequested) -> None:
        self._send(self._outgoing, message)
        self._send(self._reports, message)  # a copy for the metrics (time to first content)

    def update_tools(self, tools: Iterable[Tool | BuiltinTool]) -> None:
        """Give the model these tools instead. Raises ``ModelRuleError`` (nothing changes)
        for a tool the model refuses. Calls of the new functions run at once; the model
        learns of them at the next turn boundary, on a new connection resuming the
        session with its handle (Live has no other way that every model takes)."""
        toolset = ToolSet(tools).resolved(self._model.rules)
        setup = self._model.setup(toolset, base=self._setup)
        self._pipeline.tools.replace(toolset.all())
        self._change_setup(setup, "tools updated")

    def update_options(
        self,
        *,
        voice: str | None = None,
        language: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: float | None = None,
        max_output_tokens: int | None = None,
        thinking_level: ThinkingLevel | None = None,
        thinking_budget: int | None = None,
        include_thoughts: bool | None = None,
        media_resolution: wire.MediaResolution | None = None,
    ) -> None:
        """Change generation options for the rest of the session (None keeps one). Raises
        ``ModelRuleError`` (nothing changes) for what the model refuses. Applied as
        ``update_tools`` is: at the next turn boundary, resuming on a new connection."""
        rules = self._model.rules
        generation = self._setup.generation_config or wire.GenerationConfig()
        changes: dict[str, Any] = {
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "max_output_tokens": max_output_tokens,
            "media_resolution": media_resolution,
        }
        if (
            thinking_level is not None
            or thinking_budget is not None
            or include_thoughts is not None
        ):
            changes["thinking_config"] = rules.thinking_config(
                level=thinking_level, budget=thinking_budget, include_thoughts=include_thoughts
            )
        if voice is not None or language is not None:
            speech = generation.speech_config or wire.SpeechConfig()
            changes["speech_config"] = wire.SpeechConfig(
                voice_config=_voice(voice) if voice is not None else speech.voice_config,
                language_code=language if language is not None else speech.language_code,
            )
        updated = {k: v for k, v in changes.items() if v is not None}
        if not updated:
            return
        setup = wire.Setup(
            **{
                **_fields(self._setup),
                "generation_config": wire.GenerationConfig(**{**_fields(generation), **updated}),
            }
        )
        rules.check_setup(setup)
        self._change_setup(setup, "options updated")

    def _change_setup(self, setup: wire.Setup, reason: str) -> None:
        self._setup = setup
        self._send(self._outgoing, m.SetupChanged(setup=setup, reason=reason))

    def clear_audio(self) -> None:
        """Forget the user's audio not yet sent to the server: the encoder's partial
        chunk, and what the link holds while reconnecting or for replay (reported as
        ``Dropped``). Audio already sent cannot be taken back."""
        self._send(self._raw, m.AudioCleared(timestamp=trio.current_time()))

    def commit_audio_buffer(self) -> None:
        """Manual activity detection: the user's turn is over (``activityEnd``)."""
        if not self._model.manual_activity:
            raise RuntimeError("commit_audio_buffer needs automatic_activity_detection=False")
        self._send(self._outgoing, m.ActivityEnded(timestamp=trio.current_time()))

    def start_user_turn(self) -> None:
        """Manual activity detection: the user started speaking (``activityStart``)."""
        if not self._model.manual_activity:
            raise RuntimeError("start_user_turn needs automatic_activity_detection=False")
        self._send(self._outgoing, m.ActivityStarted(timestamp=trio.current_time()))

    def interrupt(self) -> None:
        """Stop playing the current reply now (within one frame)."""
        if self._current_turn is not None:
            self._send(self._playout, m.TurnInterrupted(turn_id=self._current_turn))

    cancel_response = interrupt

    def update_instructions(self, instructions: str) -> None:
        self._send(self._outgoing, m.InstructionsUpdated(instructions=instructions))

    def chat_ctx_copy(self) -> list[m.ChatTurn]:
        """The conversation so far, in turn order (the user before the agent)."""
        return self._pipeline.transcripts.history()

    def set_chat_ctx(self, turns: Iterable[m.ChatTurn]) -> None:
        """Give the model these turns as context (appended: Live history is append-only)."""
        self._send(self._outgoing, m.ResponseRequested(turns=tuple(turns), respond=False))

    # --- output -----------------------------------------------------------------------------

    def events(self) -> AsyncIterator[m.InternalMessage | ResponseContent]:
        """Every event of the session, typed (``actors.events.event_name`` names them).

        An iterator, not a generator: leaving a loop over it early is fine, and a later loop
        goes on where it stopped. It ends when the session does.
        """
        return _Events(self)

    async def _next_event(self) -> m.InternalMessage | ResponseContent:
        try:
            return await self._events.get()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def _track(self) -> None:
        """Keep the session's state (current turn, ``playout_complete``, the reply's
        streams) whether or not the application reads ``events()``, and queue every event
        for it (bounded: see ``EventQueue``); a turn's start goes out as a
        ``ResponseContent`` with its streams. Closes the queue, and sets every
        ``playout_complete``, when the pipeline's events end."""
        replies: dict[int, ReplyStreams] = {}
        budget = StreamBudget()
        pipeline_events = self._pipeline_receive
        try:
            async with pipeline_events:
                async for message in messages(pipeline_events):
                    if isinstance(message, m.ResumptionUpdated):
                        await self._keep_handle(message)
                    for event in self._on_event(message, replies, budget):
                        self._events.put(event)
                    discarded = budget.discarded.due(trio.current_time())
                    if discarded is not None:
                        self._events.put(discarded)
        finally:
            for reply in replies.values():
                reply.close()
            self._events.close()
            self._playouts_done(math.inf)

    async def _keep_handle(self, update: m.ResumptionUpdated) -> None:
        """Note the latest resumable handle, and save it to the store (in a thread)."""
        if not update.resumable or not update.handle or update.handle == self.resumption_handle:
            return
        self.resumption_handle = update.handle
        if self._store is not None:
            await trio.to_thread.run_sync(self._store.save, update.handle)

    def _on_event(
        self, message: m.InternalMessage, replies: dict[int, ReplyStreams], budget: StreamBudget
    ) -> list[m.InternalMessage | ResponseContent]:
        """What the application gets for one pipeline event, after updating the state."""
        turn_id = getattr(message, "turn_id", None)
        reply = replies.get(turn_id) if isinstance(turn_id, int) else None
        if isinstance(message, m.TurnStarted):
            self._current_turn = message.turn_id
            self._playouts[message.turn_id] = trio.Event()
            replies[message.turn_id] = reply = ReplyStreams(message.turn_id, budget)
            return [reply.content()]
        if isinstance(message, m.PlayoutFinished):
            self._playouts_done(message.turn_id)
        elif isinstance(message, m.ActorCrashed) and message.actor == "playout":
            self._playouts_done(math.inf)  # what it held will not play
        elif reply is None:
            pass
        elif isinstance(message, m.ModelAudio):
            reply.audio.put(message.data, len(message.data))
        elif (isinstance(message, m.TranscriptFragment) and message.role == "agent") or (
            isinstance(message, m.ModelText) and not message.thought
        ):
            if message.text:
                reply.text.put(message.text, len(message.text))
        elif isinstance(message, m.TurnCompleted):
            del replies[message.turn_id]
            return [message, *reply.close()]
        return [message]

    def _playouts_done(self, up_to: float) -> None:
        """Set ``playout_complete`` for every turn up to ``up_to``."""
        for turn_id in [t for t in self._playouts if t <= up_to]:
            self._playouts.pop(turn_id).set()


class _Events:
    def __init__(self, session: RealtimeSession) -> None:
        self._session = session

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> m.InternalMessage | ResponseContent:
        return await self._session._next_event()


def _one_error(
    group: BaseExceptionGroup[BaseException], body_error: BaseException | None
) -> BaseException:
    """What leaving a session raises for ``group``: the block's own error untouched when
    only cancellations came with it, else what ``unwrap`` makes of the group."""
    own = body_error is not None and not isinstance(body_error, trio.Cancelled)
    if own and any(e is body_error for e in group.exceptions):
        others = [leaf for e in group.exceptions if e is not body_error for leaf in leaves(e)]
        if all(isinstance(leaf, trio.Cancelled) for leaf in others):
            assert body_error is not None
            return body_error
    return unwrap(group)


def _fields(struct: Any) -> dict[str, Any]:
    return {name: getattr(struct, name) for name in struct.__struct_fields__}


def _endpoint(
    url: str | None,
    model: str | None,
    api_key: str | None,
    api_version: str | None,
    vertexai: bool,
    project: str | None,
    location: str | None,
) -> ep.Endpoint:
    """Where sessions connect, with which credentials (``ValueError`` like the seed)."""
    if url is not None:
        return ep.custom(url, model or DEFAULT_MODEL, api_key=api_key)  # never the env's key
    if vertexai:
        try:
            return ep.vertex_ai(model or DEFAULT_VERTEX_MODEL, project, location)
        except ep.MissingCredentials as exc:
            raise ValueError(str(exc)) from None
    key = ep.check_api_key(api_key, "api_key") if api_key else ep.api_key_from_env()
    if not key:
        raise ValueError(
            "API key is required for the Gemini API: pass api_key or set GOOGLE_API_KEY "
            "(or use vertexai=True, or endpoint= for the emulator)"
        )
    return ep.gemini_api(model or DEFAULT_MODEL, key, api_version=api_version)


def _generation_config(
    *,
    modalities: Sequence[Literal["AUDIO", "TEXT"]],
    candidate_count: int,
    temperature: float | None,
    max_output_tokens: int | None,
    top_p: float | None,
    top_k: float | None,
    presence_penalty: float | None,
    frequency_penalty: float | None,
    media_resolution: wire.MediaResolution | None,
    voice: str,
    language: str | None,
    thinking: wire.ThinkingConfig | None,
    affective_dialog: bool | None,
) -> wire.GenerationConfig:
    voice_config = _voice(voice)
    return wire.GenerationConfig(
        response_modalities=list(modalities),
        candidate_count=candidate_count,
        temperature=temperature,
        max_output_tokens=max_output_tokens,
        top_p=top_p,
        top_k=top_k,
        presence_penalty=presence_penalty,
        frequency_penalty=frequency_penalty,
        media_resolution=media_resolution,
        speech_config=wire.SpeechConfig(voice_config=voice_config, language_code=language),
        thinking_config=thinking,
        enable_affective_dialog=affective_dialog,
    )


def _text(instructions: str | None) -> wire.Content | None:
    return wire.Content(role="user", parts=[wire.Part(text=instructions)]) if instructions else None


def _voice(name: str) -> wire.VoiceConfig:
    return wire.VoiceConfig(prebuilt_voice_config=wire.PrebuiltVoiceConfig(voice_name=name))


def _transcription(enabled: bool | TranscriptionOptions) -> wire.AudioTranscriptionConfig | None:
    if isinstance(enabled, TranscriptionOptions):
        return enabled.wire()
    return wire.AudioTranscriptionConfig() if enabled else None


def _chat_content(turn: m.ChatTurn) -> wire.Content:
    role = "user" if turn.role == "user" else "model"
    return wire.Content(role=role, parts=[wire.Part(text=turn.text)])


def _compression(trigger_tokens: int | None) -> wire.ContextWindowCompression | None:
    if trigger_tokens is None:
        return None
    return wire.ContextWindowCompression(
        trigger_tokens=trigger_tokens, sliding_window=wire.SlidingWindow()
    )
