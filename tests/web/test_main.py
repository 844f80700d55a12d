"""``python -m web`` (``make web``): without a key it starts the emulator, serves the page,
prints its URL, and stops on Ctrl+C with status 130."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import trio

from tests.web.test_server import get

ROOT = Path(__file__).resolve().parents[2]


async def test_make_web_prints_the_url_serves_the_page_and_stops_on_ctrl_c() -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}  # no key
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "web", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        output = b""
        with trio.fail_after(30):
            while b"press Start" not in output:
                chunk = await process.stdout.receive_some()
                assert chunk, output
                output += chunk
        lines = output.decode().splitlines()
        assert lines[0].startswith(
            "(no GOOGLE_API_KEY: each tab talks to the built-in emulator at ws://127.0.0.1:"
        )
        url = lines[1].split()[1]
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/")
        status, _, body = await get(url, "/")
        assert status == 200
        assert b"Talk to the agent" in body
        process.send_signal(signal.SIGINT)
        with trio.fail_after(20):
            status = await process.wait()
        assert status == 130
        assert await process.stderr.receive_some() == b""  # no traceback
    finally:
        process.kill()
        await process.wait()
        await process.stdout.aclose()
        await process.stderr.aclose()
