"""The main job (`make run`): one whole voice conversation through the public facade.

With no key (and no --endpoint) it starts the Gemini Live emulator in-process with a demo
scenario, asks the bundled spoken question (examples/assets/question.wav, made with
espeak-ng), answers the model's weather tool call with the lookup below, writes the agent's
audio to a WAV file and every event to a JSON-lines file (a line as it happens), and
prints the conversation as it happens. With GOOGLE_API_KEY (or GEMINI_API_KEY) set it
talks to the Gemini API instead; --endpoint URL talks to any compatible server (with
--api-key, never the environment's key). --console (`make console`) is a live
conversation: the microphone in, the speaker out, a live transcript, interruptions by
speaking, and typed lines sent as text turns.

The end rule: exit 0 once the input has ended (the WAV file, or the last --text turn sent)
and no reply is pending or playing, after --quiet seconds with nothing happening, if the
last reply was heard whole; exit 1 with one line naming the cause otherwise (no reply at
all, a reply cut off, a fatal error: host, close code, reason), and when --timeout passes;
130 on Ctrl+C. In --console mode, --timeout is the session's length (exit 0).
"""

from __future__ import annotations

import sys

try:  # Ctrl+C while the imports run is an exit, not a traceback
    import argparse
    import json
    import logging
    import ssl
    import time
    from contextlib import AsyncExitStack
    from dataclasses import dataclass, field
    from pathlib import Path
    from typing import Any, TextIO

    import trio

    HERE = Path(__file__).resolve().parent
    sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

    from actors import (
        GeminiLiveError,
        ImageFilesSource,
        LinkOptions,
        MicrophoneSource,
        NativeTransport,
        PlayoutOptions,
        RealtimeModel,
        RealtimeSession,
        ResponseContent,
        SpeakerSink,
        WavSink,
        WavSource,
        event_record,
        tool,
        tune_gc,
    )
    from emulator import (
        Behaviour,
        Reply,
        Scenario,
        ScenarioError,
        ToolCallSpec,
        Turn,
        load_scenario,
        open_emulator,
    )
    from runtime import messages as m
    from runtime.audio import WavError, open_wav
    from runtime.errors import unwrap
except KeyboardInterrupt:
    sys.exit(130)

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


class Failed(Exception):
    """The run failed: the message is the one line printed."""


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="examples/supervisor.py", description=__doc__.split("\n")[0]
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--input", type=Path, default=HERE / "assets" / "question.wav")
    source.add_argument("--mic", action="store_true", help="speak into the microphone")
    source.add_argument(
        "--text", action="append", help="a typed turn instead of audio (repeatable, in order)"
    )
    sink = parser.add_mutually_exclusive_group()
    sink.add_argument("--output", type=Path, default=Path("out/reply.wav"))
    sink.add_argument("--speaker", action="store_true", help="play the reply aloud")
    parser.add_argument(
        "--console", action="store_true", help="live: microphone, speaker, typed lines"
    )
    parser.add_argument("--mic-device", help="a sounddevice input device (name or index)")
    parser.add_argument("--speaker-device", help="a sounddevice output device")
    parser.add_argument("--video", type=Path, help="a folder of images to show, one a second")
    parser.add_argument("--vertex", action="store_true", help="Vertex AI (GOOGLE_CLOUD_*)")
    parser.add_argument("--events", type=Path, default=Path("out/events.jsonl"))
    parser.add_argument("--scenario", type=Path, help="emulator scenario (JSON or TOML)")
    parser.add_argument(
        "--endpoint", help="a Gemini Live compatible server, e.g. ws://127.0.0.1:PORT"
    )
    parser.add_argument("--api-key", help="the key to send (for --endpoint: only this one)")
    parser.add_argument("--ca", type=Path, help="trust this CA certificate (PEM) for wss://")
    parser.add_argument("--instructions", default="You are a friendly voice assistant. Be brief.")
    parser.add_argument("--timeout", type=float, help="end the run after SECONDS")
    parser.add_argument(
        "--quiet", type=float, default=2.0, help="seconds of quiet that end a finished run"
    )
    parser.add_argument("--connect-timeout", type=float, default=30.0, metavar="SECONDS")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log (-vv: more)")
    parser.add_argument(
        "--tune-gc",
        action="store_true",
        help="tune the garbage collector once the session is up (actors.tune_gc: freeze "
        "what lives, rarer collections), as a process holding many sessions would",
    )
    pacing = parser.add_mutually_exclusive_group()
    pacing.add_argument("--realtime", dest="realtime", action="store_true", default=True)
    pacing.add_argument(
        "--fast",
        dest="realtime",
        action="store_false",
        help="send the input, and write a reply file, as fast as possible",
    )
    args = parser.parse_args(argv)
    if args.console:
        args.mic = args.speaker = True
    return args


# --- the end rule --------------------------------------------------------------------------

QUIET_EVENTS = (m.UsageReported, m.ResumptionUpdated, m.MetricRecorded, m.Dropped)


@dataclass
class Conversation:
    """What the run has seen, and when it is over. A turn is open from its start until its
    reply has finished playing (or playout lost it). The run is over once the input has
    ended, no turn is open, and ``quiet`` seconds passed with nothing happening; it then
    succeeded if at least one reply was heard and the last one was not cut off."""

    quiet: float
    input_ended: bool = False
    open_turns: set[int] = field(default_factory=set)
    turns: int = 0
    tool_calls: int = 0
    reconnects: int = 0
    cut_off: bool = False  # the last turn was lost with its connection
    last_closed: str = ""
    last_activity: float = field(default_factory=trio.current_time)

    def feed(self, event: m.InternalMessage | ResponseContent, now: float) -> None:
        if not isinstance(event, QUIET_EVENTS):
            self.last_activity = now
        if isinstance(event, ResponseContent):  # a reply started (the seed's name for it)
            self.turns += 1
            self.open_turns.add(event.turn_id)
            self.cut_off = False
        elif isinstance(event, m.PlayoutFinished):
            self.open_turns.discard(event.turn_id)
        elif isinstance(event, m.ActorCrashed) and event.actor == "playout":
            self.open_turns.clear()  # what it was playing is gone
        elif isinstance(event, m.TurnCompleted) and event.reason == "CONNECTION_LOST":
            self.cut_off = True
        elif isinstance(event, m.Reconnecting):
            self.last_closed = event.reason
        elif isinstance(event, m.Reconnected):
            self.reconnects += 1
        elif isinstance(event, m.ToolCallRequested):
            self.tool_calls += 1
        elif isinstance(event, m.AudioStreamEnded):
            self.input_ended = True

    def over(self, now: float) -> bool:
        return self.input_ended and not self.open_turns and now - self.last_activity >= self.quiet

    def verdict(self) -> None:
        """Raise ``Failed`` when the conversation did not happen as it should."""
        if self.turns == 0:
            why = (
                f"the server closed the connection: {self.last_closed}"
                if self.last_closed
                else (
                    f"the input ended and the server said nothing for {self.quiet:g} s "
                    "(was anything said?)"
                )
            )
            raise Failed(f"error: no reply: {why}")
        if self.cut_off:
            raise Failed(
                f"error: the last reply was cut off: the connection was lost mid-reply "
                f"({self.last_closed or 'no reason given'}) and the question was not asked again"
            )


# --- printing ------------------------------------------------------------------------------


@dataclass
class Printer:
    """The terminal side: final lines always; in a live console, interim transcripts
    rewritten in place on a terminal."""

    scripted: bool  # the emulator's "user transcript" is its script, not what was said
    live: bool
    out: TextIO = sys.stdout
    _interim: bool = False

    def line(self, text: str) -> None:
        if self._interim:
            self.out.write("\r\x1b[K")
            self._interim = False
        print(text, file=self.out, flush=True)

    def interim(self, who: str, text: str) -> None:
        if self.live and self.out.isatty():
            self.out.write(f"\r\x1b[K{who}: {text[-150:]}")
            self.out.flush()
            self._interim = True

    def show(self, event: m.InternalMessage | ResponseContent) -> None:
        if isinstance(event, m.TranscriptCompleted):
            who = "you  " if event.role == "user" else "agent"
            note = " [interrupted]" if event.interrupted else ""
            if event.role == "user" and self.scripted:
                note += " [scripted by the emulator, not what was said]"
            self.line(f"{who}: {event.transcript}{note}")
        elif isinstance(event, m.TranscriptUpdated):
            self.interim("you  " if event.role == "user" else "agent", event.text)
        elif isinstance(event, m.ToolCallRequested):
            self.line(f"tool : {event.name}({json.dumps(event.args)})")
        elif isinstance(event, m.ToolResult):
            result = event.output if event.error is None else {"error": event.error}
            self.line("tool : -> " + json.dumps(result))
        elif isinstance(event, m.Reconnecting):
            self.line(f"link : reconnecting ({event.reason})")
        elif isinstance(event, m.Dropped):
            self.line(f"note : dropped {event.count} x {event.what}")
        elif isinstance(event, m.ActorCrashed):
            self.line(f"note : {event.actor} crashed ({event.error_type}: {event.error})")
        elif isinstance(event, m.MetricRecorded) and event.name == "time_to_first_audio":
            self.line(f"time to first audio: {event.value * 1000:.0f} ms")


# --- the run -------------------------------------------------------------------------------


async def converse(args: argparse.Namespace) -> Conversation:
    """Run the conversation; returns it once over (``Failed`` if it went wrong)."""
    async with AsyncExitStack() as stack:
        model, scripted = await _model(args, stack)
        log = stack.enter_context(_events_file(args.events))
        printer = Printer(scripted=scripted, live=args.console)
        if args.console:
            printer.line("(speak, or type a line and press Enter; Ctrl+C to quit)")
        conversation = Conversation(quiet=args.quiet)
        session = model.session(
            tools=[get_weather], source=_source(args), video=_video(args), sink=_sink(args)
        )
        started = time.monotonic()
        async with session as live, trio.open_nursery() as nursery:
            if args.tune_gc:  # after start-up: what the session holds is frozen
                stack.callback(tune_gc().undo)
            if args.text:
                nursery.start_soon(_text_turns, live, args.text, conversation)
            if args.console:
                nursery.start_soon(_typed_lines, live)
            with trio.move_on_after(args.timeout or float("inf")) as timer:
                await _follow(live, conversation, printer, log, started, args.console)
            nursery.cancel_scope.cancel()
        if timer.cancelled_caught and not args.console:
            state = "the input ended" if conversation.input_ended else "the input had not ended"
            raise Failed(
                f"error: timed out after {args.timeout:g} s ({state}; "
                f"{conversation.turns} turn(s), {len(conversation.open_turns)} still open)"
            )
    if not args.console:
        conversation.verdict()
    return conversation


async def _follow(
    live: RealtimeSession,
    conversation: Conversation,
    printer: Printer,
    log: TextIO,
    started: float,
    console: bool,
) -> None:
    """Print and log every event until the conversation is over (never, in a console)."""
    events = live.events()
    while console or not conversation.over(trio.current_time()):
        with trio.move_on_after(0.1):  # to notice the quiet period ending (loses no event)
            try:
                event = await events.__anext__()
            except StopAsyncIteration:
                return  # the session ended: leaving it says why
            record = event_record(event, time.monotonic() - started)
            if record is not None:
                log.write(json.dumps(record) + "\n")  # line buffered: one line per event
            printer.show(event)
            conversation.feed(event, trio.current_time())


async def _text_turns(live: RealtimeSession, texts: list[str], conversation: Conversation) -> None:
    """Send each text turn once the previous reply has finished playing."""
    for text in texts:
        before = conversation.turns
        live.send_text(text)
        # The flags move with the events the main loop reads: poll them.
        while conversation.turns == before or conversation.open_turns:  # noqa: ASYNC110
            await trio.sleep(0.05)
    conversation.input_ended = True


async def _typed_lines(live: RealtimeSession) -> None:
    """Console: each line typed on stdin is a text turn (Ctrl+D on a terminal ends)."""
    while True:
        line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        if not line:
            if sys.stdin.isatty():
                raise Failed("bye")  # Ctrl+D
            return  # stdin is not a terminal (closed, or /dev/null): speak instead
        if line.strip():
            live.send_text(line.strip())


async def _model(args: argparse.Namespace, stack: AsyncExitStack) -> tuple[RealtimeModel, bool]:
    """The model to talk to (starting the emulator when there is no key and no endpoint),
    and whether its user transcripts are the emulator's script."""
    options: dict[str, Any] = {
        "instructions": args.instructions,
        "link_options": LinkOptions(connect_timeout=args.connect_timeout),
        # --fast into a file: the reply is written as fast as it comes, too
        "playout_options": PlayoutOptions(realtime=args.realtime or args.speaker),
    }
    if args.ca is not None:
        options["transport"] = NativeTransport(ssl_context=_trust(args.ca))
    if args.endpoint:
        return RealtimeModel(endpoint=args.endpoint, api_key=args.api_key, **options), False
    if args.vertex:
        return RealtimeModel(vertexai=True, **options), False
    try:
        return RealtimeModel(api_key=args.api_key, **options), False
    except GeminiLiveError:
        raise
    except ValueError:
        pass  # no key: the built-in emulator
    scenario = load_scenario(args.scenario) if args.scenario else DEMO
    emu = await stack.enter_async_context(open_emulator(scenario=scenario))
    print(f"(no GOOGLE_API_KEY: talking to the built-in emulator at {emu.url})", flush=True)
    return RealtimeModel(endpoint=emu.url, model=MODEL, **options), True


def _trust(ca: Path) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise Failed(f"error: cannot use --ca {ca}: {why}") from exc


def _events_file(path: Path) -> TextIO:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("w", buffering=1)  # line buffered: a killed run keeps what it saw
    except OSError as exc:
        raise Failed(f"error: cannot write {path}: {exc.strerror}") from exc


def _source(args: argparse.Namespace) -> WavSource | MicrophoneSource | None:
    if args.mic:
        return MicrophoneSource(device=_device(args.mic_device))
    if args.text:
        return None
    try:
        with open_wav(args.input) as reader:
            frames = reader.frames
    except WavError as exc:
        raise Failed(f"error: {exc}") from exc
    if frames == 0:
        raise Failed(f"error: {args.input} holds no audio (0 samples)")
    return WavSource(args.input, realtime=args.realtime)


def _video(args: argparse.Namespace) -> ImageFilesSource | None:
    return ImageFilesSource(args.video) if args.video else None  # CaptureError if missing


def _sink(args: argparse.Namespace) -> SpeakerSink | WavSink:
    if args.speaker:
        return SpeakerSink(device=_device(args.speaker_device))
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Failed(f"error: cannot write {args.output}: {exc.strerror}") from exc
    return WavSink(args.output)


def _device(name: str | None) -> str | int | None:
    return int(name) if name is not None and name.isdigit() else name


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.verbose:
        level = logging.DEBUG if args.verbose > 1 else logging.INFO
        logging.basicConfig(stream=sys.stderr, level=level, format="%(name)s: %(message)s")
    try:
        conversation = trio.run(converse, args)
    except BaseException as exc:  # every way out is one line (a bug keeps its traceback)
        error = unwrap(exc)
        if isinstance(error, KeyboardInterrupt):
            return 130
        if isinstance(error, Failed):
            if str(error) == "bye":
                return 0
            print(error, file=sys.stderr)
            return 1
        if isinstance(error, GeminiLiveError | ScenarioError):
            print(f"error: {error}", file=sys.stderr)
            return 1
        raise
    where = "" if args.speaker else f"agent audio in {args.output}, "
    print(
        f"done: {conversation.turns} turn(s), {conversation.tool_calls} tool call(s), "
        f"{conversation.reconnects} reconnect(s); {where}events in {args.events}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # between trio.run and exit
        sys.exit(130)
