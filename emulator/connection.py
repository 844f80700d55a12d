"""One emulated Gemini Live connection: setup, then a reader and a responder.

The reader decodes client frames leniently and turns them into user turns (activity
detection over 16 kHz audio, activityStart/End, text, clientContent) and tool responses.
The responder plays each user turn's scripted reply: input transcription, model audio
paced like the real service, output transcription, tool calls that wait for their
responses, then generationComplete, turnComplete and usage. Barge-in (speech during a
reply) interrupts the reply unless activityHandling is NO_INTERRUPTION. Errors go out only
as close frames with the real codes: 1007 bad client message, 1008 unknown model or
unsupported option, 1011 internal error.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NoReturn

import trio

from emulator.audio import OUTPUT_RATE, AudioFileError, read_wav, synthesize_speech
from emulator.faults import Fault, Point
from emulator.scenario import Reply, Turn
from emulator.vad import EnergyVad
from emulator.wsserver import ConnectionClosed, ServerWebSocket
from protocol import RemoteProtocolError, decode_client, encode
from protocol import wire as w

if TYPE_CHECKING:
    from emulator.server import ConversationState, Emulator, Handshake

log = logging.getLogger("emulator")

# Token accounting close to the real service's: 32 tokens per second of audio.
TOKENS_PER_AUDIO_SECOND = 32
MAX_SERVER_FRAME = 1 << 20  # the SDK's client refuses larger frames (it closes with 1009)


class _Closed(Exception):
    """The connection was closed on purpose; unwinds the connection's tasks."""


@dataclass
class _UserTurn:
    text: str | None


@lru_cache(maxsize=64)
def _speech(text: str) -> bytes:
    return synthesize_speech(text)


class Connection:
    def __init__(
        self,
        emulator: Emulator,
        ws: ServerWebSocket,
        handshake: Handshake,
        index: int,
    ):
        self.emulator = emulator
        self.ws = ws
        self.handshake = handshake
        self.index = index
        self.behaviour = emulator.scenario.behaviour
        self.setup = w.Setup(model="")
        self.state: ConversationState = emulator.new_state()
        self.messages_sent = 0
        self.vad = EnergyVad()
        self.auto_vad = True
        self.interruptible = True
        self.text_mode = False
        self.pending_calls: dict[str, trio.Event] = {}
        self.cancelled_calls: set[str] = set()
        self.replying = False
        self.interrupt = trio.Event()
        self.user_speaking = False
        self._turns_send, self._turns_receive = trio.open_memory_channel[_UserTurn](math.inf)
        self._nursery: trio.Nursery | None = None
        slow = emulator.faults.active("slow", connection=index)
        self.pace_factor = slow.factor if slow else 1.0

    # --- lifecycle ------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery  # first: a fault may fire on setupComplete itself
                await self._handshake_setup()
                nursery.start_soon(self._reader)
                nursery.start_soon(self._responder)
                nursery.start_soon(self._lifetime)
        except* _Closed:
            pass
        except* ConnectionClosed:
            log.info("connection %d: closed by the client", self.index)
        except* trio.BrokenResourceError:
            log.info("connection %d: transport broken", self.index)

    async def close(self, code: int, reason: str) -> NoReturn:
        """Close with ``code`` and unwind every task of this connection."""
        log.info("connection %d: closing %d %s", self.index, code, reason)
        with trio.move_on_after(2):
            await self.ws.aclose(code, reason[:120])
        raise _Closed

    async def drop(self) -> NoReturn:
        """Drop the TCP connection with no close frame (the client sees 1006)."""
        log.info("connection %d: dropping TCP connection", self.index)
        await self.ws.abort()
        raise _Closed

    # --- setup ----------------------------------------------------------------------

    async def _handshake_setup(self) -> None:
        message = await self._next_message()
        if not isinstance(message, w.Setup):
            await self.close(
                1007, f"the first message must be setup, not {w.envelope_key(message)}"
            )
        self.setup = message
        await self._check_setup(message)
        resumption = message.session_resumption
        if resumption is not None and resumption.handle:
            refused = self._fire("setup")
            state = None if refused else self.emulator.resume(resumption.handle)
            if state is None:
                await self.close(1008, "session resumption handle is invalid or expired")
            self.state = state
        config = message.realtime_input_config or w.RealtimeInputConfig()
        detection = config.automatic_activity_detection
        self.auto_vad = not (detection is not None and detection.disabled)
        self.vad = EnergyVad.from_config(detection)
        self.interruptible = config.activity_handling != "NO_INTERRUPTION"
        modalities = (message.generation_config or w.GenerationConfig()).response_modalities or [
            "AUDIO"
        ]
        self.text_mode = modalities == ["TEXT"]
        await self.send(
            w.ServerMessage(setup_complete=w.SetupComplete(session_id=self.state.session_id))
        )
        self.ws.fast_handler = self._fast_message
        if resumption is not None:
            await self._resumption_update(resumable=True)

    async def _check_setup(self, setup: w.Setup) -> None:
        model = setup.model.rsplit("/", 1)[-1]
        allowed = self.behaviour.models
        if not model or (allowed and model not in allowed):
            await self.close(
                1008,
                f"models/{model} is not found for API version {self.handshake.version}, "
                "or is not supported for bidiGenerateContent.",
            )
        modalities = (setup.generation_config or w.GenerationConfig()).response_modalities or [
            "AUDIO"
        ]
        if len(modalities) != 1 or modalities[0] not in ("AUDIO", "TEXT"):
            await self.close(
                1008, f"unsupported responseModalities {modalities}: use one of AUDIO or TEXT"
            )
        resumption = setup.session_resumption
        if resumption is not None and resumption.transparent and self.handshake.api != "vertex":
            await self.close(1008, "transparent session resumption is only supported on Vertex AI")

    # --- sending --------------------------------------------------------------------

    async def send(self, message: w.ServerMessage) -> None:
        frame = encode(message)
        unknown = self.emulator.faults.active("unknown", connection=self.index)
        if unknown is not None and (self.messages_sent + 1) % max(1, unknown.every) == 0:
            frame = _with_unknown_fields(frame)
        if len(frame) > MAX_SERVER_FRAME:
            log.error(
                "connection %d: a %d-byte server message; check chunk_ms", self.index, len(frame)
            )
            await self.close(1011, "internal error: server message over 1 MiB")
        await self.ws.send(frame)
        self.messages_sent += 1
        self.emulator.stats.messages_out += 1
        await self._apply(self._fire("message"))

    def _fire(self, point: Point) -> list[Fault]:
        return self.emulator.faults.due(
            point, messages_sent=self.messages_sent, connection=self.index
        )

    async def _apply(self, faults: list[Fault]) -> None:
        for fault in faults:
            log.info("connection %d: injecting %s", self.index, fault.kind)
            if fault.kind == "close":
                await self.close(fault.code, fault.reason)
            elif fault.kind == "drop":
                await self.drop()
            elif fault.kind == "goaway":
                await self._go_away(fault.time_left)
            elif fault.kind == "malformed":
                await self.ws.send(b'{"serverContent": {"modelTurn": ')
            elif fault.kind == "stall":
                await trio.sleep_forever()

    async def _go_away(self, time_left: float) -> None:
        await self.ws.send(
            encode(w.ServerMessage(go_away=w.GoAway(time_left=w.format_duration(time_left))))
        )
        self.messages_sent += 1
        assert self._nursery is not None
        self._nursery.start_soon(self._close_after, time_left)

    async def _close_after(self, seconds: float) -> None:
        await trio.sleep(seconds)
        await self.close(1000, "connection lifetime reached after goAway")

    async def _lifetime(self) -> None:
        notice = min(self.behaviour.go_away_notice_s, self.behaviour.connection_lifetime_s)
        await trio.sleep(self.behaviour.connection_lifetime_s - notice)
        await self._go_away(notice)

    async def _resumption_update(self, *, resumable: bool) -> None:
        if self.setup.session_resumption is None:
            return
        handle = self.emulator.issue_handle(self.state) if resumable else None
        await self.send(
            w.ServerMessage(
                session_resumption_update=w.SessionResumptionUpdate(
                    new_handle=handle, resumable=resumable
                )
            )
        )

    # --- reading --------------------------------------------------------------------

    async def _next_message(self) -> w.ClientMessage:
        """The next client message; a malformed one closes the connection with 1007."""
        frame = await self.ws.receive()
        self.emulator.stats.messages_in += 1
        try:
            return decode_client(frame)
        except RemoteProtocolError as exc:
            await self.close(1007, f"Invalid client message: {exc}")

    async def _reader(self) -> None:
        while True:
            await self._on_client_message(await self._next_message())

    async def _on_client_message(self, message: w.ClientMessage) -> None:
        if isinstance(message, w.Setup):
            await self.close(1007, "setup must be the first message and is sent once")
        elif isinstance(message, w.RealtimeInput):
            await self._on_realtime_input(message)
        elif isinstance(message, w.ClientContent):
            for content in message.turns or ():
                text = " ".join(p.text for p in content.parts or () if p.text)
                self.state.history.append((content.role or "user", text))
            if message.turn_complete:
                last_user = next(
                    (t for r, t in reversed(self.state.history) if r == "user" and t), None
                )
                self._start_of_speech()
                self._turns_send.send_nowait(_UserTurn(last_user))
        elif isinstance(message, w.ToolResponse):
            for index, response in enumerate(message.function_responses or ()):
                event = self.pending_calls.get(response.id or "")
                if event is not None:
                    if not response.will_continue:
                        event.set()
                elif (
                    response.id not in self.cancelled_calls
                    and response.id not in self.state.call_ids
                ):
                    # Calls of this conversation issued on an earlier connection are
                    # answered late after a reconnect: accepted and ignored (that reply
                    # was cut off with its connection). Ids never issued are errors.
                    await self.close(
                        1007,
                        f"toolResponse.functionResponses[{index}].id {response.id!r} "
                        "matches no pending call",
                    )
        # contextUpdate is accepted: the scripted replies do not depend on it.

    async def _on_realtime_input(self, message: w.RealtimeInput) -> None:
        audio = message.audio
        if audio is None and message.media_chunks:
            audio = next(
                (b for b in message.media_chunks if (b.mime_type or "").startswith("audio/")), None
            )
            if any((b.mime_type or "").startswith("image/") for b in message.media_chunks):
                self.state.video_seen = True
        if audio is not None:
            await self._on_audio(audio)
        elif message.video is not None:
            self.state.video_seen = True
        elif message.text is not None:
            self._start_of_speech()
            self._turns_send.send_nowait(_UserTurn(message.text))
        elif message.activity_start is not None:
            if self.auto_vad:
                await self.close(1007, "activityStart needs automatic activity detection disabled")
            self._start_of_speech()
        elif message.activity_end is not None:
            if self.auto_vad:
                await self.close(1007, "activityEnd needs automatic activity detection disabled")
            self._end_of_speech()
        elif message.audio_stream_end and self.auto_vad and self.vad.force_end():
            self._end_of_speech()

    async def _on_audio(self, blob: w.Blob) -> None:
        problem = self._audio_problem(blob)
        if problem is not None:
            await self.close(*problem)
        self._take_audio(blob)

    def _audio_problem(self, blob: w.Blob) -> tuple[int, str] | None:
        """Why this chunk must end the session (close code and reason), if it must."""
        mime = blob.mime_type or ""
        if not mime.startswith("audio/pcm"):
            return 1007, f"unsupported audio mimeType {mime!r}: send audio/pcm;rate=16000"
        seconds = self.state.audio_seconds + len(blob.data or b"") / 32000
        limit = (
            self.behaviour.session_audio_video_limit_s
            if self.state.video_seen
            else self.behaviour.session_audio_limit_s
        )
        if self.setup.context_window_compression is None and seconds > limit:
            return 1000, "session length limit reached; enable contextWindowCompression"
        return None

    def _take_audio(self, blob: w.Blob) -> None:
        data = blob.data or b""
        self.state.audio_seconds += len(data) / 32000
        if not self.auto_vad:
            return
        for transition in self.vad.feed(data):
            if transition == "start":
                self._start_of_speech()
            else:
                self._end_of_speech()

    def _fast_message(self, frame: bytes | str) -> bool:
        """Handle an audio chunk synchronously, in the server's read reactor: almost all
        input is audio, and this spares it a task switch. Anything else (or an audio chunk
        that must end the session) returns False and goes to ``_reader`` in order."""
        try:
            message = decode_client(frame)
        except RemoteProtocolError:
            return False
        audio = message.audio if isinstance(message, w.RealtimeInput) else None
        if audio is None or self._audio_problem(audio) is not None:
            return False
        self.emulator.stats.messages_in += 1
        self._take_audio(audio)
        return True

    def _start_of_speech(self) -> None:
        self.user_speaking = True
        if self.replying and self.interruptible:
            self.interrupt.set()

    def _end_of_speech(self) -> None:
        if self.user_speaking:
            self.user_speaking = False
            self._turns_send.send_nowait(_UserTurn(None))

    # --- replying -------------------------------------------------------------------

    async def _responder(self) -> None:
        async for user_turn in self._turns_receive:
            turn = self.emulator.scenario.turn(self.state.next_turn)
            self.state.next_turn += 1
            self.interrupt = trio.Event()
            self.replying = True
            try:
                completed = await self._play(turn, user_turn.text or turn.user)
            finally:
                self.replying = False
            if not completed:
                await self._finish_interrupted()
            self.emulator.stats.turns += 1
            await self._apply(self._fire("turn-end"))

    async def _pause(self, seconds: float) -> bool:
        """Sleep unless interrupted first; False when the reply was interrupted."""
        if seconds > 0:
            with trio.move_on_after(seconds * self.pace_factor):
                await self.interrupt.wait()
        else:
            await trio.lowlevel.checkpoint()
        return not self.interrupt.is_set()

    async def _play(self, turn: Turn, transcript: str) -> bool:
        """Play one reply; False if it was interrupted."""
        await self._resumption_update(resumable=False)
        self.state.history.append(("user", transcript))
        if self.setup.input_audio_transcription is not None:
            fragments = _fragments(transcript, self.behaviour.transcript_words_per_fragment)
            for i, text in enumerate(fragments):
                last = i == len(fragments) - 1
                await self.send(
                    w.ServerMessage(
                        server_content=w.ServerContent(
                            input_transcription=w.Transcription(text=text, finished=last or None)
                        )
                    )
                )
        if not await self._pause(self.behaviour.first_audio_delay_ms / 1000):
            return False
        audio_seconds = 0.0
        started = trio.current_time()
        for reply in turn.replies:
            if reply.tool_calls and not await self._call_tools(reply):
                return False
            if reply.say is not None or reply.audio is not None:
                played = await self._speak(reply)
                if played is None:
                    return False
                audio_seconds += played
        await self.send(w.ServerMessage(server_content=w.ServerContent(generation_complete=True)))
        if self.behaviour.pace != "fast":  # the real server waits for playback to finish
            remaining = started + audio_seconds / self.behaviour.speed - trio.current_time()
            if not await self._pause(remaining):
                return False
        response_tokens = int(audio_seconds * TOKENS_PER_AUDIO_SECOND) + len(transcript.split())
        prompt_tokens = int(self.state.audio_seconds * TOKENS_PER_AUDIO_SECOND) + 10
        await self.send(
            w.ServerMessage(
                server_content=w.ServerContent(turn_complete=True),
                usage_metadata=w.UsageMetadata(
                    prompt_token_count=prompt_tokens,
                    response_token_count=response_tokens,
                    total_token_count=prompt_tokens + response_tokens,
                ),
            )
        )
        await self._resumption_update(resumable=True)
        return True

    async def _speak(self, reply: Reply) -> float | None:
        """Stream one spoken step; its length in seconds, or None if interrupted."""
        text = reply.say or ""
        self.state.history.append(("model", text))
        if self.text_mode:
            for fragment in _fragments(text, 3):
                if not await self._pause(0.05):
                    return None
                await self.send(
                    w.ServerMessage(
                        server_content=w.ServerContent(
                            model_turn=w.Content(role="model", parts=[w.Part(text=fragment)])
                        )
                    )
                )
            return 0.0
        try:
            pcm = (
                read_wav(self.emulator.scenario.resolve(reply.audio))
                if reply.audio
                else _speech(text)
            )
        except AudioFileError as exc:
            log.error("connection %d: %s", self.index, exc)
            await self.close(1011, "internal error: scenario audio is unreadable")
        chunk_bytes = 2 * OUTPUT_RATE * self.behaviour.chunk_ms // 1000
        chunks = [pcm[i : i + chunk_bytes] for i in range(0, len(pcm), chunk_bytes)]
        words = _fragments(text, 1) if self.setup.output_audio_transcription is not None else []
        chunk_seconds = self.behaviour.chunk_ms / 1000 / self.behaviour.speed
        start = trio.current_time()
        for i, chunk in enumerate(chunks):
            if self.interrupt.is_set():
                return None
            # Words are spread evenly over the chunks, as the real transcription trails the audio.
            said = words[len(words) * i // len(chunks) : len(words) * (i + 1) // len(chunks)]
            content = w.ServerContent(
                model_turn=w.Content(
                    role="model",
                    parts=[
                        w.Part(inline_data=w.Blob(mime_type="audio/pcm;rate=24000", data=chunk))
                    ],
                ),
                output_transcription=w.Transcription(text="".join(said)) if said else None,
            )
            await self.send(w.ServerMessage(server_content=content))
            if i == 1:
                await self._apply(self._fire("mid-reply"))
            if not await self._pace(i, start, chunk_seconds):
                return None
        return len(pcm) / 2 / OUTPUT_RATE

    async def _pace(self, index: int, start: float, chunk_seconds: float) -> bool:
        pace = self.behaviour.pace
        if pace == "fast":
            return await self._pause(0)
        if pace == "bursty" and (index + 1) % self.behaviour.burst_chunks != 0:
            return await self._pause(0)
        delay = start + (index + 1) * chunk_seconds - trio.current_time()
        self.emulator.stats.record_lag(-delay)
        # The shared pacer, not a cancellable wait per chunk: a cancellation per chunk was a
        # large share of the emulator's CPU under load. Barge-in is noticed at the next
        # chunk instead, at most one chunk (40 ms at real-time pace) later.
        await self.emulator.pacer.sleep_until(trio.current_time() + delay * self.pace_factor)
        return not self.interrupt.is_set()

    async def _call_tools(self, reply: Reply) -> bool:
        calls = []
        for spec in reply.tool_calls:
            self.state.call_counter += 1
            call_id = f"call-{self.state.session_id}-{self.state.call_counter}"
            self.state.call_ids.add(call_id)
            self.pending_calls[call_id] = trio.Event()
            calls.append(w.FunctionCall(id=call_id, name=spec.name, args=dict(spec.args)))
        await self.send(w.ServerMessage(tool_call=w.ToolCall(function_calls=calls)))
        await self._apply(self._fire("tool-pending"))
        for call in calls:
            assert call.id is not None
            event = self.pending_calls[call.id]
            async with trio.open_nursery() as nursery:

                async def stop_on_interrupt(scope: trio.CancelScope = nursery.cancel_scope) -> None:
                    await self.interrupt.wait()
                    scope.cancel()

                nursery.start_soon(stop_on_interrupt)
                await event.wait()
                nursery.cancel_scope.cancel()
            if self.interrupt.is_set():
                return False
            del self.pending_calls[call.id]
        return True

    async def _finish_interrupted(self) -> None:
        await self.send(w.ServerMessage(server_content=w.ServerContent(interrupted=True)))
        if self.pending_calls:
            ids = list(self.pending_calls)
            self.cancelled_calls.update(ids)
            self.pending_calls.clear()
            await self.send(w.ServerMessage(tool_call_cancellation=w.ToolCallCancellation(ids=ids)))
        await self.send(w.ServerMessage(server_content=w.ServerContent(turn_complete=True)))
        await self._resumption_update(resumable=True)


def _fragments(text: str, words_per_fragment: int) -> list[str]:
    """Split text into fragments of a few words, keeping the spaces (as the service does)."""
    words = text.split(" ")
    step = max(1, words_per_fragment)
    pieces = [" ".join(words[i : i + step]) for i in range(0, len(words), step)]
    return [p if i == 0 else " " + p for i, p in enumerate(pieces) if p or i == 0]


def _with_unknown_fields(frame: bytes) -> bytes:
    """The same message plus an unknown field and an unknown message kind beside it."""
    import json

    data: dict[str, Any] = json.loads(frame)
    for value in data.values():
        if isinstance(value, dict):
            value["emulatorFutureField"] = {"note": "clients must ignore unknown fields"}
    data["emulatorFutureMessage"] = {"note": "clients must ignore unknown message kinds"}
    return json.dumps(data).encode()
