"""The main job (`make run`): one whole voice conversation through the actor pipeline.

With no key (and no --endpoint) it starts the Gemini Live emulator in-process with a demo
scenario, asks the bundled spoken question (examples/assets/question.wav, made with
espeak-ng), answers the model's weather tool call with the lookup below, writes the agent's
audio to a WAV file and every event to a JSON-lines file, and prints the conversation as
it happens. With GOOGLE_API_KEY (or GEMINI_API_KEY) set it talks to the real service.

Exit status: 0 once the input is exhausted and the last reply has played; 1 with a
one-line reason on a fatal error; 130 on Ctrl+C.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from actors import endpoint as ep  # noqa: E402
from actors.capture import (  # noqa: E402
    AudioDeviceUnavailable,
    CaptureError,
    ImageFilesSource,
    MicrophoneSource,
    WavSource,
)
from actors.events import event_record  # noqa: E402
from actors.gemini_link import LinkError  # noqa: E402
from actors.pipeline import Pipeline  # noqa: E402
from actors.playout import PlayoutOptions, SpeakerSink, WavSink  # noqa: E402
from actors.tools import ToolSet, tool  # noqa: E402
from emulator import (  # noqa: E402
    Behaviour,
    Reply,
    Scenario,
    ToolCallSpec,
    Turn,
    load_scenario,
    open_emulator,
)
from protocol import wire  # noqa: E402
from runtime import messages as m  # noqa: E402
from runtime.supervisor import SupervisorGaveUp  # noqa: E402

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
DEMO = Scenario(
    turns=(
        Turn(
            user="What's the weather like in Paris today?",
            replies=(
                Reply(tool_calls=(ToolCallSpec(name="get_weather", args={"city": "Paris"}),)),
                Reply(
                    say="It is twenty-one degrees and sunny in Paris today. "
                    "A lovely day for a walk."
                ),
            ),
        ),
    ),
    behaviour=Behaviour(pace="realtime", speed=2.0),
)
WEATHER = {"paris": (21.0, "sunny"), "london": (14.0, "drizzle"), "tokyo": (18.0, "cloudy")}


@tool(timeout=5)
def get_weather(city: str) -> dict[str, Any]:
    """Current weather for a city.

    Args:
        city: The city name, e.g. "Paris".
    """
    temperature, sky = WEATHER.get(city.strip().lower(), (15.0, "unknown"))
    return {"city": city, "temperature_c": temperature, "sky": sky}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="examples/supervisor.py", description=__doc__.split("\n")[0]
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--input", type=Path, default=HERE / "assets" / "question.wav")
    source.add_argument("--mic", action="store_true", help="speak into the microphone")
    sink = parser.add_mutually_exclusive_group()
    sink.add_argument("--output", type=Path, default=Path("out/reply.wav"))
    sink.add_argument("--speaker", action="store_true", help="play the reply aloud")
    parser.add_argument("--video", type=Path, help="a folder of images to show, one a second")
    parser.add_argument("--vertex", action="store_true", help="Vertex AI (GOOGLE_CLOUD_*)")
    parser.add_argument("--events", type=Path, default=Path("out/events.jsonl"))
    parser.add_argument("--scenario", type=Path, help="emulator scenario (JSON or TOML)")
    parser.add_argument(
        "--endpoint", help="a Gemini Live compatible server, e.g. ws://127.0.0.1:PORT"
    )
    parser.add_argument("--instructions", default="You are a friendly voice assistant. Be brief.")
    pacing = parser.add_mutually_exclusive_group()
    pacing.add_argument("--realtime", dest="realtime", action="store_true", default=True)
    pacing.add_argument(
        "--fast", dest="realtime", action="store_false", help="send the input as fast as possible"
    )
    return parser.parse_args(argv)


def show(message: m.InternalMessage) -> None:
    if isinstance(message, m.TranscriptCompleted):
        who = "you  " if message.role == "user" else "agent"
        cut = " [interrupted]" if message.interrupted else ""
        print(f"{who}: {message.transcript}{cut}", flush=True)
    elif isinstance(message, m.ToolCallRequested):
        print(f"tool : {message.name}({json.dumps(message.args)})", flush=True)
    elif isinstance(message, m.ToolResult):
        print(
            "tool : -> "
            + json.dumps(message.output if message.error is None else {"error": message.error}),
            flush=True,
        )
    elif isinstance(message, m.Reconnecting):
        print(f"link : reconnecting ({message.reason})", flush=True)
    elif isinstance(message, m.MetricRecorded) and message.name == "time_to_first_audio":
        print(f"time to first audio: {message.value * 1000:.0f} ms", flush=True)


async def converse(args: argparse.Namespace) -> dict[str, Any]:
    key = ep.api_key_from_env()
    scenario = load_scenario(args.scenario) if args.scenario else DEMO
    if not args.speaker:
        args.output.parent.mkdir(parents=True, exist_ok=True)
    args.events.parent.mkdir(parents=True, exist_ok=True)
    tools = ToolSet([get_weather])
    setup = wire.Setup(
        model="",
        generation_config=wire.GenerationConfig(response_modalities=["AUDIO"]),
        system_instruction=wire.Content(role="user", parts=[wire.Part(text=args.instructions)]),
        tools=tools.declarations(),
        input_audio_transcription=wire.AudioTranscriptionConfig(),
        output_audio_transcription=wire.AudioTranscriptionConfig(),
    )
    summary: dict[str, Any] = {"turns": 0, "tool_calls": 0, "reconnects": 0}
    async with trio.open_nursery() as nursery:
        if args.endpoint:
            target = ep.custom(args.endpoint, MODEL, api_key=key)
        elif args.vertex:
            target = ep.vertex_ai("gemini-live-2.5-flash-native-audio")
        elif key:
            target = ep.gemini_api(MODEL, key)
        else:
            emulator = await nursery.start(_serve_emulator, scenario)
            target = ep.custom(emulator, MODEL)
            print(
                f"(no GOOGLE_API_KEY: talking to the built-in emulator at {emulator})", flush=True
            )
        pipeline = Pipeline(
            endpoint=target,
            setup=setup,
            sink=SpeakerSink() if args.speaker else WavSink(args.output),
            source=MicrophoneSource()
            if args.mic
            else WavSource(args.input, realtime=args.realtime),
            video=ImageFilesSource(args.video) if args.video else None,
            tools=tools,
            playout_options=PlayoutOptions(realtime=True),
        )
        events_send, events_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
        supervisor = pipeline.supervisor(events_send)
        nursery.start_soon(supervisor.run)
        started = time.monotonic()
        input_done = False
        last_turn: int | None = None
        with args.events.open("w") as log:
            async for message in events_receive:
                record = event_record(message, time.monotonic() - started)
                if record is not None:
                    log.write(json.dumps(record) + "\n")
                show(message)
                if isinstance(message, m.ActorGaveUp):
                    raise SystemExit(f"error: {message.actor} failed: {message.error}")
                if isinstance(message, m.ActorCrashed) and message.actor == "capture":
                    raise SystemExit(f"error: {message.error}")  # the input cannot be read
                if isinstance(message, m.TurnStarted):
                    last_turn = message.turn_id
                    summary["turns"] += 1
                elif isinstance(message, m.ToolCallRequested):
                    summary["tool_calls"] += 1
                elif isinstance(message, m.Reconnected):
                    summary["reconnects"] += 1
                elif isinstance(message, m.AudioStreamEnded):
                    input_done = True
                elif (
                    isinstance(message, m.PlayoutFinished)
                    and input_done
                    and message.turn_id == last_turn
                ):
                    break  # the input is exhausted and the last reply has played
        supervisor.stop()
        nursery.cancel_scope.cancel()
    summary["history"] = [msgspec.to_builtins(turn) for turn in pipeline.transcripts.history()]
    return summary


async def _serve_emulator(
    scenario: Scenario, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    async with open_emulator(scenario=scenario) as emu:
        task_status.started(emu.url)
        await trio.sleep_forever()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        summary = trio.run(converse, args)
    except BaseException as exc:  # sorted just below; anything else is re-raised
        leaves = _leaves(exc)
        if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
            return 130
        fatal = [leaf for leaf in leaves if isinstance(leaf, (*FATAL, SystemExit))]
        if not fatal:
            raise
        print(
            fatal[0] if isinstance(fatal[0], SystemExit) else f"error: {fatal[0]}", file=sys.stderr
        )
        return 1
    print(
        f"done: {summary['turns']} turn(s), {summary['tool_calls']} tool call(s), "
        f"{summary['reconnects']} reconnect(s); "
        + ("" if args.speaker else f"agent audio in {args.output}, ")
        + f"events in {args.events}",
        flush=True,
    )
    return 0


FATAL = (LinkError, SupervisorGaveUp, CaptureError, AudioDeviceUnavailable, ep.MissingCredentials)


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


if __name__ == "__main__":
    sys.exit(main())
