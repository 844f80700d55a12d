"""The public API: ``RealtimeModel`` and its sessions, the seed's API in Trio form.

    model = RealtimeModel(instructions="Be brief.", voice="Puck")   # key from the environment
    async with model.session(tools=[get_weather], sink=WavSink("reply.wav")) as session:
        session.push_audio(samples, sample_rate=48000)               # any rate and channels
        async for event in session.events():
            ...

Options follow the seed (LiveKit's Google realtime plugin) and add today's: language,
activity detection, context-window compression, proactivity, affective dialog, thinking,
media resolution, and ``endpoint`` for the emulator or a gateway. Validation is the
seed's: without Vertex a key is required; with Vertex a project and a location.
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import trio

from actors import endpoint as ep
from actors.capture import Source
from actors.encoder import VideoEncoder
from actors.events import ResponseContent
from actors.gemini_link import LinkOptions
from actors.pipeline import Pipeline
from actors.playout import CollectorSink, PlayoutOptions, Sink
from actors.tools import Tool, ToolSet
from actors.transport import NativeTransport, Transport
from protocol import wire
from runtime import messages as m

DEFAULT_MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
DEFAULT_VERTEX_MODEL = "gemini-live-2.5-flash-native-audio"


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
        api_version: str = "v1beta",
        voice: str = "Puck",
        modalities: Sequence[Literal["AUDIO", "TEXT"]] = ("AUDIO",),
        enable_user_audio_transcription: bool = True,
        enable_agent_audio_transcription: bool = True,
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
    ) -> None:
        """Raises ``ValueError`` like the seed: no key without Vertex (or an ``endpoint``),
        or Vertex without a project and a location."""
        key = api_key or os.environ.get("GOOGLE_API_KEY") or os.environ.get("GEMINI_API_KEY")
        if endpoint is not None:
            self._endpoint = ep.custom(endpoint, model or DEFAULT_MODEL, api_key=key)
        elif vertexai:
            try:
                self._endpoint = ep.vertex_ai(model or DEFAULT_VERTEX_MODEL, project, location)
            except ep.MissingCredentials as exc:
                raise ValueError(str(exc)) from None
        else:
            if not key:
                raise ValueError(
                    "API key is required for the Gemini API: pass api_key or set GOOGLE_API_KEY "
                    "(or use vertexai=True, or endpoint= for the emulator)"
                )
            self._endpoint = ep.gemini_api(model or DEFAULT_MODEL, key, api_version=api_version)
        self.instructions = instructions
        self._transport = transport or NativeTransport()
        self._link_options = link_options or LinkOptions()
        self._playout_options = playout_options or PlayoutOptions()
        detection = wire.AutomaticActivityDetection(
            disabled=not automatic_activity_detection or None,
            start_of_speech_sensitivity=start_of_speech_sensitivity,
            end_of_speech_sensitivity=end_of_speech_sensitivity,
            prefix_padding_ms=prefix_padding_ms,
            silence_duration_ms=silence_duration_ms,
        )
        thinking = (
            wire.ThinkingConfig(thinking_budget=thinking_budget, include_thoughts=include_thoughts)
            if thinking_budget is not None or include_thoughts is not None
            else None
        )
        self._setup = wire.Setup(
            model=self._endpoint.model,
            generation_config=wire.GenerationConfig(
                response_modalities=list(modalities),
                candidate_count=candidate_count,
                temperature=temperature,
                max_output_tokens=max_output_tokens,
                top_p=top_p,
                top_k=top_k,
                presence_penalty=presence_penalty,
                frequency_penalty=frequency_penalty,
                media_resolution=media_resolution,
                speech_config=wire.SpeechConfig(
                    voice_config=wire.VoiceConfig(
                        prebuilt_voice_config=wire.PrebuiltVoiceConfig(voice_name=voice)
                    ),
                    language_code=language,
                ),
                thinking_config=thinking,
                enable_affective_dialog=affective_dialog,
            ),
            system_instruction=wire.Content(role="user", parts=[wire.Part(text=instructions)])
            if instructions
            else None,
            realtime_input_config=wire.RealtimeInputConfig(
                automatic_activity_detection=detection, activity_handling=activity_handling
            ),
            input_audio_transcription=wire.AudioTranscriptionConfig()
            if enable_user_audio_transcription
            else None,
            output_audio_transcription=wire.AudioTranscriptionConfig()
            if enable_agent_audio_transcription
            else None,
            context_window_compression=wire.ContextWindowCompression(
                trigger_tokens=context_window_compression, sliding_window=wire.SlidingWindow()
            )
            if context_window_compression is not None
            else None,
            proactivity=wire.ProactivityConfig(proactive_audio=proactive_audio)
            if proactive_audio is not None
            else None,
        )
        self.manual_activity = not automatic_activity_detection
        self.capabilities = Capabilities(supports_truncate=True, input_audio_sample_rate=16000)

    def __repr__(self) -> str:
        return f"RealtimeModel(endpoint={self._endpoint!r})"

    def setup(self, tools: ToolSet) -> wire.Setup:
        """The setup message a session sends (with the session's tools declared)."""
        return wire.Setup(**{**_fields(self._setup), "tools": tools.declarations() or None})

    @asynccontextmanager
    async def session(
        self,
        *,
        chat_ctx: Iterable[m.ChatTurn] = (),
        tools: Iterable[Tool] = (),
        source: Source | None = None,
        video: Source | None = None,
        sink: Sink | None = None,
    ) -> AsyncIterator[RealtimeSession]:
        """Run a session's pipeline until the block exits. Waits for the server's
        setupComplete before entering; on exit stops the actors (gracefully, bounded)."""
        toolset = ToolSet(tools)
        pipeline = Pipeline(
            endpoint=self._endpoint,
            setup=self.setup(toolset),
            sink=sink or CollectorSink(),
            source=source,
            video=video,
            tools=toolset,
            transport=self._transport,
            link_options=self._link_options,
            playout_options=self._playout_options,
        )
        events_send, events_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
        app_send, app_receive = trio.open_memory_channel[m.InternalMessage | ResponseContent](
            math.inf
        )
        supervisor = pipeline.supervisor(events_send)
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            session = RealtimeSession(self, pipeline, app_receive)
            nursery.start_soon(session._track, events_receive, app_send)
            context = tuple(chat_ctx)
            if context:
                session.set_chat_ctx(context)
            try:
                yield session
            finally:
                supervisor.stop()
                await events_send.aclose()


class RealtimeSession:
    def __init__(
        self,
        model: RealtimeModel,
        pipeline: Pipeline,
        events: trio.MemoryReceiveChannel[m.InternalMessage | ResponseContent],
    ) -> None:
        self._model = model
        self._pipeline = pipeline
        self._events = events
        self._outgoing = pipeline.send()
        self._raw = pipeline.wiring.sender("raw")
        self._playout = pipeline.wiring.sender("playout")
        self.playout_complete = trio.Event()
        self.playout_complete.set()
        self._current_turn: int | None = None

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
        self._raw.send_nowait(
            m.RawAudio(
                data=data,
                sample_rate=sample_rate,
                channels=channels,
                sample_format=fmt,  # type: ignore[arg-type]
                timestamp=trio.current_time(),
                source="push_audio",
            )
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
            self._raw.send_nowait(raw)
            return
        encoder = VideoEncoder(
            max_size=(encode_options.width, encode_options.height),
            quality=encode_options.quality,
            image_format=encode_options.format,
        )
        self._outgoing.send_nowait(encoder.encode(raw))

    def send_text(self, text: str) -> None:
        """A typed user turn."""
        self._outgoing.send_nowait(m.TextInput(text=text))

    def create_response(self) -> None:
        """Ask the model to reply now (to what it has heard and been given)."""
        self._outgoing.send_nowait(m.ResponseRequested())

    def commit_audio_buffer(self) -> None:
        """Manual activity detection: the user's turn is over (``activityEnd``)."""
        if not self._model.manual_activity:
            raise RuntimeError("commit_audio_buffer needs automatic_activity_detection=False")
        self._outgoing.send_nowait(m.ActivityEnded(timestamp=trio.current_time()))

    def start_user_turn(self) -> None:
        """Manual activity detection: the user started speaking (``activityStart``)."""
        if not self._model.manual_activity:
            raise RuntimeError("start_user_turn needs automatic_activity_detection=False")
        self._outgoing.send_nowait(m.ActivityStarted(timestamp=trio.current_time()))

    def interrupt(self) -> None:
        """Stop playing the current reply now (within one frame)."""
        if self._current_turn is not None:
            self._playout.send_nowait(m.TurnInterrupted(turn_id=self._current_turn))

    cancel_response = interrupt

    def update_instructions(self, instructions: str) -> None:
        self._outgoing.send_nowait(m.InstructionsUpdated(instructions=instructions))

    def chat_ctx_copy(self) -> list[m.ChatTurn]:
        """The conversation so far, in turn order (the user before the agent)."""
        return self._pipeline.transcripts.history()

    def set_chat_ctx(self, turns: Iterable[m.ChatTurn]) -> None:
        """Give the model these turns as context (appended: Live history is append-only)."""
        self._outgoing.send_nowait(m.ResponseRequested(turns=tuple(turns), respond=False))

    # --- output -----------------------------------------------------------------------------

    def events(self) -> AsyncIterator[m.InternalMessage | ResponseContent]:
        """Every event of the session, typed (``actors.events.event_name`` names them).

        An iterator, not a generator: leaving a loop over it early is fine, and a later loop
        goes on where it stopped. It ends when the session does.
        """
        return _Events(self)

    async def _next_event(self) -> m.InternalMessage | ResponseContent:
        try:
            return await self._events.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def _track(
        self,
        pipeline_events: trio.MemoryReceiveChannel[m.InternalMessage],
        app: trio.MemorySendChannel[m.InternalMessage | ResponseContent],
    ) -> None:
        """Keep the session's state (current turn, ``playout_complete``, the reply's
        streams) whether or not the application reads ``events()``, and pass every event
        on to it; a turn's start goes out as a ``ResponseContent`` with its streams."""
        streams: dict[int, tuple[trio.MemorySendChannel[str], trio.MemorySendChannel[bytes]]] = {}
        async with pipeline_events, app:
            async for message in pipeline_events:
                if isinstance(message, m.TurnStarted):
                    self._current_turn = message.turn_id
                    self.playout_complete = trio.Event()
                    text_send, text_receive = trio.open_memory_channel[str](math.inf)
                    audio_send, audio_receive = trio.open_memory_channel[bytes](math.inf)
                    streams[message.turn_id] = (text_send, audio_send)
                    item = f"turn-{message.turn_id}-agent"
                    content = ResponseContent(
                        item, item, text_receive, audio_receive, turn_id=message.turn_id
                    )
                    app.send_nowait(content)
                    continue
                if isinstance(message, m.PlayoutFinished) and message.turn_id == self._current_turn:
                    self.playout_complete.set()
                elif isinstance(message, m.ModelAudio) and message.turn_id in streams:
                    streams[message.turn_id][1].send_nowait(message.data)
                elif isinstance(message, m.TranscriptFragment) and message.turn_id in streams:
                    if message.role == "agent":
                        streams[message.turn_id][0].send_nowait(message.text)
                elif isinstance(message, m.ModelText) and message.turn_id in streams:
                    if not message.thought:
                        streams[message.turn_id][0].send_nowait(message.text)
                elif isinstance(message, m.TurnCompleted) and message.turn_id in streams:
                    text_stream, audio_stream = streams.pop(message.turn_id)
                    text_stream.close()
                    audio_stream.close()
                app.send_nowait(message)


class _Events:
    def __init__(self, session: RealtimeSession) -> None:
        self._session = session

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> m.InternalMessage | ResponseContent:
        return await self._session._next_event()


def _fields(struct: Any) -> dict[str, Any]:
    return {name: getattr(struct, name) for name in struct.__struct_fields__}
