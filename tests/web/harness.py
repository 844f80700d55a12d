"""What the web tests share: the emulator's script, a voice WAV for Chromium's fake
microphone, the page's server on 127.0.0.1 port 0, and a browser socket client."""

from __future__ import annotations

import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trio
import trio_websocket

from actors import RealtimeModel
from emulator import Behaviour, Emulator, Reply, Scenario, ToolCallSpec, Turn, open_emulator
from web.app import WebApp
from web.demo import get_weather
from web.server import serve

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
LONG_REPLY = (
    "It is twenty-one degrees and sunny in Paris today, with a light breeze from the west. "
    "The afternoon stays bright and warm, and the evening should be clear and mild, "
    "so it is a lovely day for a long walk along the river and a coffee outside."
)
SCENARIO = Scenario(
    turns=(
        Turn(
            user="What's the weather like in Paris today?",
            replies=(
                Reply(tool_calls=(ToolCallSpec(name="get_weather", args={"city": "Paris"}),)),
                Reply(say=LONG_REPLY),
            ),
        ),
        Turn(user="Stop, thanks.", replies=(Reply(say="Sure, I will stop there."),)),
    ),
    behaviour=Behaviour(pace="realtime", first_audio_delay_ms=100),
)
RATE = 48000
# Where the voice starts and stops in the WAV (seconds): a question, then, while the
# agent's long reply plays, a second utterance that barges in.
QUESTION = (0.3, 1.1)
BARGE_IN = (5.5, 6.3)
WAV_SECONDS = 9.0


def voiced(seconds: float, rate: int = RATE) -> np.ndarray:
    """Speech-like sound: a gliding 180 Hz voice with harmonics, syllable-modulated (an
    energy detector hears it; a noise suppressor does not take it for stationary noise)."""
    t = np.arange(int(rate * seconds)) / rate
    pitch = 180 + 30 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum((0.5 / k) * np.sin(k * phase) for k in range(1, 6))
    syllables = 0.6 + 0.4 * np.abs(np.sin(2 * np.pi * 4 * t))
    return np.asarray(0.4 * voice * syllables)


def voice_wav(path: Path) -> Path:
    """A mono 16-bit WAV: silence, the question, silence, the barge-in, silence."""
    signal = np.zeros(int(RATE * WAV_SECONDS))
    for start, end in (QUESTION, BARGE_IN):
        signal[int(RATE * start) : int(RATE * start) + int(RATE * (end - start))] = voiced(
            end - start
        )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((np.clip(signal, -1, 1) * 32767).astype("<i2").tobytes())
    return path


@dataclass
class Served:
    app: WebApp
    url: str  # http://127.0.0.1:PORT/
    emulator: Emulator
    nursery: trio.Nursery  # runs the server, until the block ends

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "ws"


@asynccontextmanager
async def served(scenario: Scenario = SCENARIO, **options: object) -> AsyncIterator[Served]:
    """The emulator and the page's server, both on 127.0.0.1 port 0."""
    async with open_emulator(scenario=scenario) as emu, trio.open_nursery() as nursery:
        model = RealtimeModel(endpoint=emu.url, model=MODEL)
        app = WebApp(model=model, tools=[get_weather], hello={"backend": "emulator"}, **options)  # type: ignore[arg-type]
        url = await nursery.start(serve, app, "127.0.0.1", 0)
        yield Served(app, url, emu, nursery)
        nursery.cancel_scope.cancel()


async def closed_after(url: str, *messages: bytes | str) -> tuple[int, str]:
    """Connect as a (hostile) client, send ``messages``, and return the close code and
    reason the server answers with (reading anything it sends before)."""
    async with trio_websocket.open_websocket_url(url) as ws:
        try:
            with trio.fail_after(10):
                for message in messages:
                    await ws.send_message(message)
                while True:
                    await ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            reason = exc.reason
            closed = (reason.code, reason.reason or "") if reason else (0, "no close frame")
    await ws._stream.aclose()  # trio-websocket leaves it open when the server closes
    return closed
