"""``python -m emulator`` tells a user how to point a client at it, and what it prints runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CONNECT_BOTH = """
import asyncio
import trio

async def google_genai() -> None:
    async with client.aio.live.connect(
        model="gemini-3.8-live", config={"response_modalities": ["AUDIO"]}
    ):
        print("google-genai connected")

async def ours() -> None:
    async with model.session():
        print("gemini-live-trio connected")

asyncio.run(google_genai())
trio.run(ours)
"""


def _hint(*args: str) -> tuple[str, str, subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    ready = process.stdout.readline()
    lines: list[str] = []
    while not lines or not lines[-1].startswith(("# then:", "# start the emulator with --tls")):
        line = process.stderr.readline()
        assert line, "".join(lines)
        lines.append(line)
    return ready, "".join(lines), process


@pytest.mark.parametrize("tls", [True, False], ids=["wss", "ws"])
def test_the_printed_snippet_connects_google_genai_and_ours(tmp_path: Path, tls: bool) -> None:
    ready, hint, process = _hint(*(["--tls"] if tls else []))
    try:
        url = ready.split()[1]
        assert f'endpoint="{url}"' in hint
        if not tls:
            assert "--tls" in hint  # google-genai cannot dial ws://: the hint says so
            script = (
                hint + CONNECT_BOTH.split("asyncio.run(google_genai())")[0] + "trio.run(ours)\n"
            )
        else:
            ca = ready.split()[2].removeprefix("ca=")
            assert f'cafile="{ca}"' in hint
            assert url.replace("wss:", "https:") in hint
            script = hint + CONNECT_BOTH
        (tmp_path / "snippet.py").write_text(script)
        result = subprocess.run(
            [sys.executable, "-W", "ignore", str(tmp_path / "snippet.py")],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        )
        assert result.returncode == 0, result.stderr
        assert "gemini-live-trio connected" in result.stdout
        assert ("google-genai connected" in result.stdout) == tls
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_quiet_prints_no_snippet() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    assert process.stdout.readline().startswith("ready ws://127.0.0.1:")
    process.terminate()
    _, err = process.communicate(timeout=10)
    assert err == ""
