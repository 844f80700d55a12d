"""``python -m emulator``: serve the Gemini Live emulator until SIGINT or SIGTERM.

Prints exactly one line on stdout once connections are accepted: ``ready <url>`` (with
--tls: ``ready <url> ca=<CA certificate path>``). Logs go to stderr, and so does, unless
``--quiet``, how to point a client at it: ``client_hint``'s copy-paste snippet for
gemini-live-trio and google-genai (the base URL, the API version and the CA).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any, get_args

import trio

from emulator.faults import FaultSpecError, parse_fault
from emulator.limits import MAX_CONNECTIONS
from emulator.scenario import Scenario, ScenarioError, load_scenario
from emulator.server import IoMode, choose_io, open_emulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    parser.add_argument("--tls", action="store_true", help="serve wss:// with a throwaway CA")
    parser.add_argument("--scenario", help="scenario file, .json or .toml")
    parser.add_argument("--api-key", help="accept only this key (default: any)")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inject a fault, e.g. close:code=1011,after=5",
    )
    parser.add_argument(
        "--stats", metavar="FILE", help="write traffic and pacing-lag stats (JSON) on exit"
    )
    parser.add_argument(
        "--io",
        choices=get_args(IoMode),
        default="auto",
        help="how sockets are read: fast (one epoll, Linux), portable (any platform); "
        "auto takes fast where epoll exists",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=MAX_CONNECTIONS,
        metavar="N",
        help=f"connections served at once; more get HTTP 503 (default {MAX_CONNECTIONS})",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every connection event")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no client snippet on stderr (logs still go)"
    )
    return parser


async def _serve(args: argparse.Namespace, scenario: Scenario) -> dict[str, Any]:
    """Serve until a signal; returns the emulator's stats summary."""
    # The signal receiver is open before "ready" is printed, so a signal sent right after
    # reading that line always gets the clean shutdown.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_emulator(
            scenario=scenario,
            tls=args.tls,
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            faults=args.fault,
            io=args.io,
            max_connections=args.max_connections,
        ) as emu:
            line = f"ready {emu.url}" + (f" ca={emu.ca_path}" if emu.ca_path else "")
            print(line, flush=True)
            if not args.quiet:
                print(client_hint(emu.url, emu.ca_path), file=sys.stderr, flush=True)
            async for signum in signals:
                logging.getLogger("emulator").info("stopping on %s", signal.Signals(signum).name)
                break
            summary = emu.stats.summary()
    return summary


def client_hint(url: str, ca_path: Path | None) -> str:
    """How to point gemini-live-trio and google-genai at the emulator at ``url``: Python
    a user can paste (the tests run it), with the CA when the emulator serves wss://."""
    if ca_path is None:
        return f"""\
# gemini-live-trio, against this emulator:
from actors import RealtimeModel
model = RealtimeModel(endpoint="{url}")
# google-genai (and LiveKit's and Pipecat's clients on it) dial wss:// only:
# start the emulator with --tls to use them.
"""
    base_url = url.replace("wss://", "https://")
    return f"""\
# gemini-live-trio, against this emulator:
import ssl
from actors import NativeTransport, RealtimeModel
trust = ssl.create_default_context(cafile="{ca_path}")
model = RealtimeModel(endpoint="{url}", transport=NativeTransport(ssl_context=trust))
# google-genai (LiveKit's and Pipecat's clients take the same http_options):
from google import genai
from google.genai import types
client = genai.Client(api_key="any", http_options=types.HttpOptions(
    base_url="{base_url}", api_version="v1beta",
    async_client_args={{"ssl": trust}}))
# then: async with client.aio.live.connect(model="gemini-3.8-live", config=...) as session:
"""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO if args.verbose else logging.WARNING,
        format="emulator: %(message)s",
    )
    try:
        scenario = load_scenario(args.scenario) if args.scenario else Scenario()
        for spec in args.fault:
            parse_fault(spec)
        choose_io(args.io)
    except (ScenarioError, FaultSpecError, ValueError) as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 2
    try:
        stats = trio.run(_serve, args, scenario)
    except KeyboardInterrupt:
        return 0  # a second signal while stopping
    except OSError as exc:
        print(f"emulator: cannot serve on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    if args.stats:
        Path(args.stats).write_text(json.dumps(stats, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
