"""The page in a real headless Chromium (Debian's, driven by Playwright; nothing is
downloaded), its microphone a WAV file through Chromium's fake media devices, against the
emulator: a spoken conversation with a tool call and a barge-in, two tabs at once beside
hostile socket clients, and closing tabs ending their sessions.

Playwright's sync API runs in a worker thread (it brings its own event loop); the server
runs in trio, and the thread asks it for its session count through ``trio.from_thread``.
Where Chromium cannot start, the tests are skipped saying why (.ci/run installs it).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from actors.browser_wire import AUDIO, HEADER
from emulator import Scenario
from tests.web.harness import LONG_REPLY, Served, closed_after, served, voice_wav

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "web.png"
LAST = Scenario().default_reply.say  # the emulator's answer past the script's end
WAIT_MS = 20_000  # generous: CI runs this on two busy cores


FLAGS = [
    "--use-fake-ui-for-media-stream",  # grant the microphone and camera
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--no-sandbox",  # root in a container has no user namespaces for the sandbox
    "--disable-dev-shm-usage",  # containers' /dev/shm is often too small
]


def fake_microphone(wav: Path) -> list[str]:
    return [f"--use-file-for-fake-audio-capture={wav}%noloop"]  # played once, not looped


@pytest.fixture(scope="module")
def chromium_starts() -> None:
    """Skip, saying why, where Chromium is missing or cannot start (checked once, here,
    outside trio: a skip raised inside the tests' nurseries would lose its reason)."""
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with playwright_sync.sync_playwright() as playwright:
        try:
            playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, timeout=30_000).close()
        except playwright_sync.Error as exc:
            pytest.skip(f"Chromium cannot start: {str(exc).splitlines()[0]}")


@contextmanager
def browser(wav: Path) -> Iterator[Any]:
    """Chromium with the WAV as its microphone. Call from the browser thread."""
    with playwright_sync.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*FLAGS, *fake_microphone(wav)], timeout=30_000
        )
        try:
            yield chromium
        finally:
            chromium.close()


def stats(page: Any) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate("() => JSON.parse(JSON.stringify(window.stats))")
    return result


def wait(page: Any, condition: str) -> None:
    """Wait until the JS ``condition`` on ``stats`` holds."""
    page.wait_for_function(
        f"() => {{ const s = window.stats; return {condition}; }}", timeout=WAIT_MS
    )


def start(page: Any, url: str) -> None:
    page.goto(url)
    page.click("#start")
    wait(page, "s.backend === 'emulator' && s.micRate !== null")


def on_trio(served: Served) -> Callable[[int], None]:
    """From the browser thread: wait (bounded) until the server has ``count`` sessions."""

    def sessions(count: int) -> None:
        async def until() -> None:
            with trio.fail_after(WAIT_MS / 1000):
                await served.app.wait_sessions(count)

        trio.from_thread.run(until)

    return sessions


@pytest.mark.usefixtures("chromium_starts")
async def test_a_spoken_conversation_with_a_tool_call_and_a_barge_in(tmp_path: Path) -> None:
    wav = voice_wav(tmp_path / "voice.wav")
    async with served() as web:
        sessions = on_trio(web)

        def drive() -> dict[str, Any]:
            with browser(wav) as chromium:
                page = chromium.new_page(viewport={"width": 1100, "height": 660})
                start(page, web.url)
                sessions(1)
                page.click("#camera")  # Chromium's fake camera, a frame a second
                # The question is heard, the tool called and answered, the reply plays...
                wait(page, "s.toolResults.length === 1 && s.playedSamples > 0")
                # ...until the second utterance barges in: the page flushes its buffer.
                wait(page, "s.interruptions >= 1 && s.flushes >= 1")
                wait(
                    page, "s.transcripts.some(t => t.role === 'agent' && t.final && t.turn_id > 1)"
                )
                wait(page, "s.ttfa !== null && s.videoFrames >= 2")
                page.fill("#text", "And in London?")  # a typed turn
                page.press("#text", "Enter")
                wait(page, f"s.transcripts.some(t => t.final && t.text === {json.dumps(LAST)})")
                shot = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") else tmp_path / "web.png"
                page.screenshot(path=str(shot), full_page=True)
                seen = stats(page)
                seen["text"] = page.inner_text("#transcript")
                seen["tools"] = page.inner_text("#tools")
                seen["ttfa_shown"] = page.inner_text("#ttfa")
                page.close()
                sessions(0)  # closing the tab ended its session
                return seen

        seen = await trio.to_thread.run_sync(drive)
    assert "What's the weather like in Paris today?" in seen["text"]
    assert 'get_weather({"city":"Paris"})' in seen["tools"]
    assert '"sky":"sunny"' in seen["tools"]
    assert seen["playedSamples"] > 0
    assert seen["receivedSamples"] > 0
    assert seen["ttfa_shown"].endswith(" ms")
    # The barge-in stopped the reply: the server's playout finished it interrupted, short
    # of its whole length, and the agent's transcript is cut to what was heard.
    cut = [p for p in seen["playouts"] if p["interrupted"]]
    assert cut, seen["playouts"]
    agent = [t for t in seen["transcripts"] if t["role"] == "agent" and t["final"]]
    assert agent[0]["interrupted"] is True
    assert 0 < len(agent[0]["text"]) < len(LONG_REPLY)
    assert "[interrupted]" in seen["text"]
    assert "Sure, I will stop there." in seen["text"]  # the turn after the barge-in
    assert "you (typed)And in London?" in seen["text"]
    assert seen["videoFrames"] >= 2
    assert seen["closeCode"] is None  # the camera's frames were all taken
    assert seen["bufferedSamples"] < 24000  # nothing of the cut reply left queued


@pytest.mark.usefixtures("chromium_starts")
async def test_two_tabs_talk_at_once_while_hostile_clients_are_turned_away(tmp_path: Path) -> None:
    wav = voice_wav(tmp_path / "voice.wav")
    async with served() as web:
        sessions = on_trio(web)
        hostile: dict[str, tuple[int, str]] = {}

        async def turned_away(name: str, message: bytes | str) -> None:
            hostile[name] = await closed_after(web.ws_url, message)

        def drive() -> list[dict[str, Any]]:
            with browser(wav) as chromium:
                context = chromium.new_context()
                pages = [context.new_page(), context.new_page()]
                for page in pages:
                    start(page, web.url)
                sessions(2)
                # While both tabs talk, hostile clients come and are turned away.
                trio.from_thread.run(hostile_clients)
                for page in pages:
                    wait(page, "s.toolResults.length === 1 && s.playedSamples > 0")
                    wait(page, "s.transcripts.some(t => t.role === 'agent' && t.final)")
                seen = [stats(page) for page in pages]
                pages[0].close()
                sessions(1)
                pages[1].close()
                sessions(0)
                return seen

        async def hostile_clients() -> None:
            header = HEADER.pack(AUDIO, 1, 0, 7000, 0)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(turned_away, "garbage", "{not json")
                nursery.start_soon(
                    turned_away,
                    "oversized",
                    HEADER.pack(AUDIO, 1, 0, 16000, 0) + bytes(16 * 1024 + 2),
                )
                nursery.start_soon(turned_away, "wrong rate", header + bytes(640))

        seen = await trio.to_thread.run_sync(drive)
    assert hostile["garbage"][0] == 1007
    assert "invalid control message" in hostile["garbage"][1]
    assert hostile["oversized"] == (1009, "audio message of 16386 bytes exceeds 16384")
    assert hostile["wrong rate"][0] == 1003
    assert "7000 Hz" in hostile["wrong rate"][1]
    for tab in seen:
        assert tab["toolCalls"][0]["name"] == "get_weather"
        assert tab["playedSamples"] > 0
        assert tab["closeCode"] is None  # neither tab was disturbed
    assert web.app.sessions == 0
    assert web.app.served == 5
