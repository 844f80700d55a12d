"""LiveKit's Google realtime plugin, headless, against a Gemini Live server (the emulator).

Run with the LiveKit peer venv's python (``make peers`` builds it)::

    peers/livekit/.venv/bin/python peers/livekit/driver.py \
        https://127.0.0.1:PORT ca.pem conversation \
        gemini-2.5-flash-native-audio-preview-12-2025 16000

(``--run URL CA MODE MODEL RATE``, repeated, runs several conversations in one process;
``--speed 4`` plays the microphone 4x faster than real time.)

``--load N --url ws://HOST:PORT`` is the session-load benchmark's worker instead (see
``peers/loadlib.py``): N sessions streaming 20 ms ``rtc.AudioFrame``s in real time (the
plugin cuts them into 50 ms messages), replies drained into a null sink.

No LiveKit room: a ``RealtimeModel`` session gets ``rtc.AudioFrame``s from a simulated
microphone, its ``generation_created`` streams are drained, tool calls are answered
through ``update_chat_ctx`` (as LiveKit's ``AgentActivity`` does). Events go to stdout as
JSON lines (see ``peers/driverlib.py``).

Modes: ``conversation`` (question -> tool call -> answer; thanks -> answer), ``barge-in``
(the user speaks over the answer), ``goaway`` (as conversation; the server sends goAway
after the first answer and the plugin resumes on a new connection), ``greeting``
(``generate_reply`` first, as agents greet, then the question), ``slow-tool`` (as
conversation, the tool taking 2 s; the model is expected to say something while it runs,
as a NON_BLOCKING call allows, then the answer once the result is in).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.genai import types
from livekit import rtc
from livekit.agents import llm
from livekit.plugins.google.realtime import RealtimeModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import loadlib
from driverlib import (
    BARGE_IN,
    QUESTION,
    SLOW_TOOL_S,
    THANKS,
    TOOL_NAME,
    TOOL_RESULT,
    DriverError,
    EventLog,
    Microphone,
    RunSpec,
    parse_args,
    run_all,
    speech,
    ssl_context,
)

WAIT = 15.0  # the longest any single step may take


@dataclass
class Reply:
    """One generation that carried audio (a spoken answer)."""

    audio_bytes: int = 0
    chunks: int = 0
    text: str = ""
    first_audio: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    interrupted: bool = False


class Driver:
    def __init__(self, log: EventLog, mode: str, model: str, rate: int, speed: float) -> None:
        self.log = log
        self.mode = mode
        self.model = model
        self.rate = rate
        self.mic = Microphone(rate=rate, speed=speed)
        self.replies: list[Reply] = []
        self.reply_started: asyncio.Queue[Reply] = asyncio.Queue()
        self.connected = asyncio.Event()
        self.reconnected = asyncio.Event()
        self.fatal: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.tasks: set[asyncio.Task[Any]] = set()

    async def main(self, base_url: str, ca_file: str) -> str | None:
        @llm.function_tool
        async def get_weather(city: str) -> dict[str, Any]:
            """The current weather in a city."""
            return dict(TOOL_RESULT)

        # How LiveKit's plugin is pointed at another Gemini Live server: google-genai's
        # http_options (base URL, API version, and an SSL context trusting its CA).
        model = RealtimeModel(
            api_key="emulator-key",
            model=self.model,
            http_options=types.HttpOptions(
                base_url=base_url,
                api_version="v1beta",
                async_client_args={"ssl": ssl_context(ca_file)},
            ),
        )
        session = model.session()
        await session.update_tools([get_weather])
        self.session = session
        session.on("generation_created", self._on_generation)
        session.on("input_audio_transcription_completed", self._on_user_transcript)
        session.on("input_speech_started", self._on_speech_started)
        session.on("metrics_collected", self._on_metrics)
        session.on("error", self._on_error)

        async def microphone() -> None:
            async for pcm in self.mic.frames():
                frame = rtc.AudioFrame(
                    data=pcm,
                    sample_rate=self.rate,
                    num_channels=1,
                    samples_per_channel=len(pcm) // 2,
                )
                session.push_audio(frame)

        mic_task = asyncio.create_task(microphone())
        script = asyncio.create_task(self.script())
        try:
            done, _ = await asyncio.wait([script, self.fatal], return_when=asyncio.FIRST_COMPLETED)
            if self.fatal in done:
                return self.fatal.result()
            return script.result()
        finally:
            for task in (mic_task, script, *self.tasks):
                task.cancel()
            with_timeout = asyncio.wait_for(session.aclose(), 5)
            try:
                await with_timeout
            except Exception as exc:  # closing is best effort; the verdict is already made
                self.log.emit("close_error", text=repr(exc))

    # --- the conversation --------------------------------------------------------

    async def script(self) -> str | None:
        await self._wait(self.connected.wait(), "no connection")
        if self.mode == "greeting":
            await self._wait(
                self.session.generate_reply(instructions="Greet the user."), "no greeting"
            )
            await self._next_reply_done("the greeting")
        self.mic.say(speech(QUESTION, self.rate))
        if self.mode == "barge-in":
            answer = await self._wait(self.reply_started.get(), "no answer began")
            await self._wait(answer.first_audio.wait(), "no answer audio")
            self.mic.say(speech(BARGE_IN, self.rate))
            await self._wait(answer.finished.wait(), "the interrupted answer never ended")
            if not answer.interrupted:
                raise DriverError("the answer was not interrupted by the user's speech")
            await self._next_reply_done("the answer after the barge-in")
        else:
            if self.mode == "slow-tool":
                await self._next_reply_done("what the model says while the tool runs")
            await self._next_reply_done("the answer to the question")
            if self.mode == "goaway":
                await self._wait(self.reconnected.wait(), "no reconnection after goAway")
            self.mic.say(speech(THANKS, self.rate))
            await self._next_reply_done("the answer to the thanks")
        if self.mode != "barge-in" and self.log.summary["interrupted"]:
            raise DriverError("an answer was interrupted though nobody spoke over it")
        if len(self.log.summary["tool_results"]) != 1:
            raise DriverError(f"{len(self.log.summary['tool_results'])} tool results sent, not 1")
        return None

    async def _next_reply_done(self, what: str) -> Reply:
        reply = await self._wait(self.reply_started.get(), f"{what} never began")
        await self._wait(reply.finished.wait(), f"{what} never finished")
        return reply

    async def _wait(self, awaitable: Any, what: str) -> Any:
        try:
            return await asyncio.wait_for(awaitable, WAIT)
        except TimeoutError:
            raise DriverError(f"{what} within {WAIT:g} s") from None

    # --- the plugin's events -------------------------------------------------------

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _on_generation(self, event: Any) -> None:
        self._spawn(self._drain_generation(event))

    async def _drain_generation(self, event: Any) -> None:
        reply = Reply()

        async def messages() -> None:
            async for message in event.message_stream:
                await asyncio.gather(audio(message.audio_stream), text(message.text_stream))

        async def audio(stream: Any) -> None:
            async for frame in stream:
                if not reply.audio_bytes:
                    self.replies.append(reply)
                    self.reply_started.put_nowait(reply)
                    self.log.reply_started()
                    reply.first_audio.set()
                reply.audio_bytes += frame.data.nbytes
                reply.chunks += 1

        async def text(stream: Any) -> None:
            async for piece in stream:
                reply.text += piece

        async def functions() -> None:
            async for call in event.function_stream:
                self._spawn(self._run_tool(call))

        await asyncio.gather(messages(), functions())
        if reply.audio_bytes:
            self.log.reply_audio(reply.audio_bytes, reply.chunks)
            self.log.agent(reply.text.strip())
            reply.finished.set()

    async def _run_tool(self, call: Any) -> None:
        args = json.loads(call.arguments or "{}")
        self.log.tool_call(call.call_id, call.name, args)
        if call.name != TOOL_NAME:
            self.log.error(f"unexpected tool {call.name}")
        if self.mode == "slow-tool":
            await asyncio.sleep(SLOW_TOOL_S)
        output = llm.FunctionCallOutput(
            call_id=call.call_id, name=call.name, output=json.dumps(TOOL_RESULT), is_error=False
        )
        chat_ctx = self.session.chat_ctx.copy()
        chat_ctx.items.append(output)
        await self.session.update_chat_ctx(chat_ctx)
        self.log.tool_result(call.call_id, TOOL_RESULT)

    def _on_user_transcript(self, event: Any) -> None:
        if event.is_final:
            self.log.user(event.transcript)

    def _on_speech_started(self, _event: Any) -> None:
        # The plugin reports the server's `interrupted` as input_speech_started (it also
        # emits one when a server-initiated generation starts, before any of its audio).
        for reply in self.replies:
            if reply.audio_bytes and not reply.finished.is_set() and not reply.interrupted:
                reply.interrupted = True
                self.log.interrupted()

    def _on_metrics(self, metrics: Any) -> None:
        if getattr(metrics, "acquire_time", 0) and not getattr(metrics, "request_id", "x"):
            resumed = self.session.session_resumption_handle is not None
            self.log.connected(resumed=resumed)
            (self.reconnected if self.connected.is_set() else self.connected).set()

    def _on_error(self, event: Any) -> None:
        self.log.error(f"{type(event.error).__name__}: {event.error}")
        if not event.recoverable and not self.fatal.done():
            self.fatal.set_result(f"unrecoverable error: {event.error}")


async def conversation(spec: RunSpec, log: EventLog, speed: float) -> str | None:
    driver = Driver(log, spec.mode, spec.model, spec.rate, speed)
    return await driver.main(spec.base_url, spec.ca_file)


# --- load mode (the session-load benchmark) ------------------------------------------------


async def load_session(probe: loadlib.SessionProbe, args: argparse.Namespace) -> None:
    """One session until cancelled, as an agent holds it without a room: the plugin's
    ``RealtimeSession``, 20 ms frames pushed at their due time, every generation's streams
    drained (audio into a null sink)."""
    model = RealtimeModel(
        api_key="load-test",
        model=args.model,
        http_options=types.HttpOptions(
            base_url=args.url.replace("ws://", "http://", 1), api_version="v1beta"
        ),
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(
                silence_duration_ms=loadlib.SILENCE_DURATION_MS
            )
        ),
    )
    session = model.session()
    drains: set[asyncio.Task[None]] = set()

    async def drain(event: Any) -> None:
        async def messages() -> None:
            async for message in event.message_stream:
                await asyncio.gather(audio(message.audio_stream), text(message.text_stream))

        async def audio(stream: Any) -> None:
            async for _frame in stream:  # the null sink
                probe.delivered()

        async def text(stream: Any) -> None:
            async for _piece in stream:
                pass

        async def functions() -> None:
            async for _call in event.function_stream:
                pass

        await asyncio.gather(messages(), functions())

    def on_generation(event: Any) -> None:
        task = asyncio.create_task(drain(event))
        drains.add(task)
        task.add_done_callback(drains.discard)

    session.on("generation_created", on_generation)
    await probe.connected.wait()
    async for pcm in probe.microphone():
        frame = rtc.AudioFrame(
            data=pcm, sample_rate=loadlib.RATE, num_channels=1, samples_per_channel=len(pcm) // 2
        )
        session.push_audio(frame)


def prepare_load() -> None:
    """The plugin's one-time work before the memory baseline: LiveKit's native library is
    loaded with the first frame."""
    rtc.AudioFrame(data=bytes(640), sample_rate=16000, num_channels=1, samples_per_channel=320)


if __name__ == "__main__":
    if "--load" in sys.argv[1:]:
        packages = ("livekit-agents", "livekit-plugins-google", "livekit", "google-genai")
        loadlib.main("livekit", load_session, sys.argv[1:], prepare_load, packages)
    run_all(conversation, parse_args())
