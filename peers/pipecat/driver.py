"""Pipecat's Gemini Live service, headless, against a Gemini Live server (the emulator).

Run with the Pipecat peer venv's python (``make peers`` builds it)::

    peers/pipecat/.venv/bin/python peers/pipecat/driver.py \\
        https://127.0.0.1:PORT ca.pem conversation \\
        gemini-2.5-flash-native-audio-preview-12-2025 16000

(``--run URL CA MODE MODEL RATE``, repeated, runs several conversations in one process;
``--speed 4`` plays the microphone 4x faster than real time.)

``--load N --url ws://HOST:PORT`` is the session-load benchmark's worker instead (see
``peers/loadlib.py``): N pipelines, each queueing a 20 ms ``InputAudioRawFrame`` at its due
time (one message each), replies drained into a null sink at the pipeline's end.

No transport: a ``Pipeline`` of the service between two small processors (one before it
sees what the service sends upstream, user transcripts and errors; one after it sees the
bot's audio, text and interruptions), an ``LLMContextFrame`` first, then
``InputAudioRawFrame``s from a simulated microphone at its own rate (Pipecat forwards the
rate in the mime type; it does not resample). The tool is a registered function. Events
go to stdout as JSON lines (see ``peers/driverlib.py``).

Modes: ``conversation`` (question -> tool call -> answer; thanks -> answer), ``barge-in``
(the user speaks over the answer), ``goaway`` (as conversation; the server sends goAway
after the first answer, then closes: Pipecat reconnects with its resumption handle),
``greeting`` (the context holds a user message, so the service asks for a reply first,
as Pipecat bots greet), ``slow-tool`` (as conversation, the tool taking 2 s and
registered asynchronous, ``cancel_on_interruption=False``: Pipecat declares it
NON_BLOCKING and answers with a scheduling; the model is expected to say something while
it runs, then the answer once the result is in).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.genai.types import HttpOptions
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMContextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.google.gemini_live.llm import GeminiLiveLLMService, GeminiVADParams
from pipecat.services.llm_service import FunctionCallParams
from pipecat.workers.runner import WorkerRunner

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
    """One spoken answer: TTSStartedFrame to TTSStoppedFrame."""

    audio_bytes: int = 0
    chunks: int = 0
    text: str = ""
    first_audio: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    interrupted: bool = False


async def conversation(spec: RunSpec, log: EventLog, speed: float) -> str | None:
    # Long because Pipecat is driven by subclassing inside the run: the service and the two
    # frame processors below close over this conversation's queues and log, and the steps
    # that follow read in the order a user would take them.
    replies: list[Reply] = []
    reply_started: asyncio.Queue[Reply] = asyncio.Queue()
    fatal: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    reconnected = asyncio.Event()

    class Service(GeminiLiveLLMService):
        """The service as shipped, with two observation points for the log."""

        async def _handle_session_ready(self, session: Any) -> None:
            log.connected(resumed=self._session_resumption_handle is not None)
            if log.summary["connections"] > 1:
                reconnected.set()
            await super()._handle_session_ready(session)

        async def _connection_task_handler(self, config: Any) -> None:
            try:
                await super()._connection_task_handler(config=config)
            except Exception as exc:  # Pipecat only logs it: the session is gone
                log.error(f"{type(exc).__name__}: {exc}")
                if not fatal.done():
                    fatal.set_result(f"the connection failed: {exc}")
                raise

        async def _handle_server_message(self, message: Any) -> None:
            if message.go_away is not None:  # Pipecat itself ignores goAway
                log.emit("go_away", time_left=message.go_away.time_left)
            status = getattr(message.server_content, "interaction_status", None)
            if status is not None:  # what 3.8+ thinking models' turns hinge on
                log.emit("interaction_status", value=str(getattr(status, "value", status)))
            await super()._handle_server_message(message)

    class UserSide(FrameProcessor):
        """Before the service: user transcripts and errors travel upstream to here."""

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if direction == FrameDirection.UPSTREAM:
                if isinstance(frame, TranscriptionFrame):
                    log.user(frame.text)
                elif isinstance(frame, ErrorFrame):
                    log.error(str(frame.error))
                    if frame.fatal and not fatal.done():
                        fatal.set_result(f"fatal error: {frame.error}")
            await self.push_frame(frame, direction)

    class BotSide(FrameProcessor):
        """After the service: the bot's speech, its transcript, interruptions."""

        current: Reply | None = None

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if direction == FrameDirection.DOWNSTREAM:
                self.observe(frame)
            await self.push_frame(frame, direction)

        def observe(self, frame: Frame) -> None:
            if isinstance(frame, TTSStartedFrame):
                self.current = Reply()
            elif isinstance(frame, TTSAudioRawFrame) and self.current is not None:
                reply = self.current
                if not reply.audio_bytes:
                    replies.append(reply)
                    reply_started.put_nowait(reply)
                    log.reply_started()
                    reply.first_audio.set()
                reply.audio_bytes += len(frame.audio)
                reply.chunks += 1
            elif isinstance(frame, TTSTextFrame) and self.current is not None:
                self.current.text += frame.text
            elif isinstance(frame, InterruptionFrame):
                if self.current is not None and not self.current.interrupted:
                    self.current.interrupted = True
                    log.interrupted()
            elif isinstance(frame, TTSStoppedFrame) and self.current is not None:
                reply, self.current = self.current, None
                if reply.audio_bytes:
                    log.reply_audio(reply.audio_bytes, reply.chunks)
                    log.agent(reply.text.strip())
                    reply.finished.set()

    async def get_weather(params: FunctionCallParams) -> None:
        log.tool_call(params.tool_call_id, params.function_name, dict(params.arguments))
        if params.function_name != TOOL_NAME:
            log.error(f"unexpected tool {params.function_name}")
        if spec.mode == "slow-tool":
            await asyncio.sleep(SLOW_TOOL_S)
        await params.result_callback(dict(TOOL_RESULT))
        log.tool_result(params.tool_call_id, TOOL_RESULT)

    weather = FunctionSchema(
        name=TOOL_NAME,
        description="The current weather in a city.",
        properties={"city": {"type": "string"}},
        required=["city"],
    )
    # How Pipecat's service is pointed at another Gemini Live server: google-genai's
    # http_options (base URL, API version, and an SSL context trusting its CA).
    service = Service(
        api_key="emulator-key",
        settings=GeminiLiveLLMService.Settings(model=spec.model),
        tools=ToolsSchema(standard_tools=[weather]),
        http_options=HttpOptions(
            base_url=spec.base_url,
            api_version="v1beta",
            async_client_args={"ssl": ssl_context(spec.ca_file)},
        ),
    )
    service.register_function(
        TOOL_NAME,
        get_weather,
        cancel_on_interruption=False if spec.mode == "slow-tool" else None,
    )
    worker = PipelineWorker(
        Pipeline([UserSide(), service, BotSide()]),
        params=PipelineParams(audio_in_sample_rate=spec.rate),
        cancel_on_idle_timeout=False,
        check_dangling_tasks=False,
        enable_rtvi=False,
    )
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _on_started(_worker: Any, _frame: Any) -> None:
        started.set()

    mic = Microphone(rate=spec.rate, speed=speed)

    async def wait(awaitable: Any, what: str) -> Any:
        try:
            return await asyncio.wait_for(awaitable, WAIT)
        except TimeoutError:
            raise DriverError(f"{what} within {WAIT:g} s") from None

    async def ready() -> None:
        # The service drops audio until its session is up and seeded; it says so only in
        # this attribute, so it is polled.
        while not service._ready_for_realtime_input:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    async def next_reply_done(what: str) -> Reply:
        reply = await wait(reply_started.get(), f"{what} never began")
        await wait(reply.finished.wait(), f"{what} never finished")
        return reply

    async def microphone() -> None:
        async for pcm in mic.frames():
            frame = InputAudioRawFrame(audio=pcm, sample_rate=spec.rate, num_channels=1)
            await worker.queue_frame(frame)

    async def script() -> str | None:
        await wait(started.wait(), "the pipeline did not start")
        messages = [{"role": "user", "content": "Greet the user."}]
        context = LLMContext(messages=messages if spec.mode == "greeting" else [])
        await worker.queue_frame(LLMContextFrame(context))
        await wait(ready(), "the service was not ready for input")
        mic_task = asyncio.create_task(microphone())
        try:
            if spec.mode == "greeting":
                await next_reply_done("the greeting")
            mic.say(speech(QUESTION, spec.rate))
            if spec.mode == "barge-in":
                answer = await wait(reply_started.get(), "no answer began")
                await wait(answer.first_audio.wait(), "no answer audio")
                mic.say(speech(BARGE_IN, spec.rate))
                await wait(answer.finished.wait(), "the interrupted answer never ended")
                if not answer.interrupted:
                    raise DriverError("the answer was not interrupted by the user's speech")
                await next_reply_done("the answer after the barge-in")
            else:
                if spec.mode == "slow-tool":
                    await next_reply_done("what the model says while the tool runs")
                await next_reply_done("the answer to the question")
                if spec.mode == "goaway":
                    await wait(reconnected.wait(), "no reconnection after goAway")
                    await wait(ready(), "the service was not ready after reconnecting")
                mic.say(speech(THANKS, spec.rate))
                await next_reply_done("the answer to the thanks")
        finally:
            mic_task.cancel()
        if spec.mode != "barge-in" and log.summary["interrupted"]:
            raise DriverError("an answer was interrupted though nobody spoke over it")
        results = len(log.summary["tool_results"])
        if results != 1:
            raise DriverError(f"{results} tool results sent, not 1")
        return None

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    conversation_task = asyncio.create_task(script())
    try:
        done, _ = await asyncio.wait(
            [conversation_task, fatal, running], return_when=asyncio.FIRST_COMPLETED
        )
        if conversation_task in done:
            return conversation_task.result()
        if fatal in done:
            return fatal.result()
        return "the pipeline ended before the conversation did"
    finally:
        conversation_task.cancel()
        try:
            await asyncio.wait_for(worker.cancel(), 5)
            await asyncio.wait_for(running, 5)
        except Exception as exc:  # stopping is best effort; the verdict is already made
            log.emit("close_error", text=repr(exc))


# --- load mode (the session-load benchmark) ------------------------------------------------


class NullSink(FrameProcessor):
    """The pipeline's end, where a transport would play the bot's audio: audio frames are
    consumed, everything else passed on."""

    def __init__(self, probe: loadlib.SessionProbe) -> None:
        super().__init__()
        self.probe = probe

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM and isinstance(frame, TTSAudioRawFrame):
            self.probe.delivered()
            return
        await self.push_frame(frame, direction)


async def load_session(probe: loadlib.SessionProbe, args: argparse.Namespace) -> None:
    """One session until cancelled: a pipeline of the service and a null sink, the
    context first, then a 20 ms ``InputAudioRawFrame`` queued at each frame's due time."""
    service = GeminiLiveLLMService(
        api_key="load-test",
        settings=GeminiLiveLLMService.Settings(
            model=args.model, vad=GeminiVADParams(silence_duration_ms=loadlib.SILENCE_DURATION_MS)
        ),
        http_options=HttpOptions(
            base_url=args.url.replace("ws://", "http://", 1), api_version="v1beta"
        ),
    )
    worker = PipelineWorker(
        Pipeline([service, NullSink(probe)]),
        params=PipelineParams(audio_in_sample_rate=loadlib.RATE),
        cancel_on_idle_timeout=False,
        check_dangling_tasks=False,
        enable_rtvi=False,
    )
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _on_started(_worker: Any, _frame: Any) -> None:
        started.set()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    try:
        await started.wait()
        await worker.queue_frame(LLMContextFrame(LLMContext(messages=[])))
        # The service drops audio until its session is up and seeded (an attribute only).
        while not service._ready_for_realtime_input:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        async for pcm in probe.microphone():
            frame = InputAudioRawFrame(audio=pcm, sample_rate=loadlib.RATE, num_channels=1)
            await worker.queue_frame(frame)
    finally:
        running.cancel()


def quiet_logs() -> None:
    """Pipecat logs every frame at DEBUG; warnings and errors are enough on stderr."""
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")


if __name__ == "__main__":
    quiet_logs()
    if "--load" in sys.argv[1:]:
        loadlib.main("pipecat", load_session, sys.argv[1:], None, ("pipecat-ai", "google-genai"))
    run_all(conversation, parse_args())
