"""``python -m web`` (``make web``): serve the voice page and print its URL.

With GOOGLE_API_KEY (or GEMINI_API_KEY) set, each tab talks to the Gemini API; without
one, to the Gemini Live emulator started in-process with a demo script (``web.demo``);
--endpoint URL talks to any compatible server. Ctrl+C stops it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import trio

from actors import GeminiLiveError, RealtimeModel
from emulator import ScenarioError, load_scenario, open_emulator
from runtime.errors import unwrap
from web.app import MAX_SESSIONS, WebApp
from web.demo import DEMO, get_weather
from web.server import serve

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
INSTRUCTIONS = "You are a friendly voice assistant. Be brief."


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m web", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on")
    parser.add_argument("--port", type=int, default=8080, help="port (0: any free one)")
    parser.add_argument("--endpoint", help="a Gemini Live compatible server (ws:// or wss://)")
    parser.add_argument("--api-key", help="the key to send (for --endpoint: only this one)")
    parser.add_argument("--scenario", type=Path, help="emulator scenario (JSON or TOML)")
    parser.add_argument("--instructions", default=INSTRUCTIONS)
    parser.add_argument("--max-sessions", type=int, default=MAX_SESSIONS)
    parser.add_argument("-v", "--verbose", action="store_true", help="log sessions")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    async with AsyncExitStack() as stack:
        model, backend = await _model(args, stack)
        app = WebApp(
            model=model,
            tools=[get_weather],
            hello={"backend": backend},
            max_sessions=args.max_sessions,
        )
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve, app, args.host, args.port)
            print(f"open {url} in a browser and press Start (Ctrl+C to stop)", flush=True)


async def _model(args: argparse.Namespace, stack: AsyncExitStack) -> tuple[RealtimeModel, str]:
    """The model every tab talks to, starting the emulator when there is no key."""
    if args.endpoint:
        model = RealtimeModel(
            endpoint=args.endpoint,
            api_key=args.api_key,
            model=MODEL,
            instructions=args.instructions,
        )
        return model, "endpoint"
    try:
        return RealtimeModel(api_key=args.api_key, instructions=args.instructions), "gemini"
    except GeminiLiveError:
        raise
    except ValueError:
        pass  # no key: the built-in emulator
    scenario = load_scenario(args.scenario) if args.scenario else DEMO
    emu = await stack.enter_async_context(open_emulator(scenario=scenario))
    print(f"(no GOOGLE_API_KEY: each tab talks to the built-in emulator at {emu.url})", flush=True)
    return RealtimeModel(endpoint=emu.url, model=MODEL, instructions=args.instructions), "emulator"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.verbose:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s: %(message)s")
    try:
        trio.run(run, args)
    except BaseException as exc:  # every way out is one line (a bug keeps its traceback)
        error = unwrap(exc)
        if isinstance(error, KeyboardInterrupt):
            return 130
        if isinstance(error, GeminiLiveError | ScenarioError | OSError):
            print(f"error: {error}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
