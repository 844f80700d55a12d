"""One browser session (``serve_browser``) over an in-memory socket, against the emulator
through an in-memory transport, on the autojump clock: what the page is sent, and every
limit on what it may send at the limit and one past."""

from __future__ import annotations

import io
import json
import math
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing
from PIL import Image
from trio.testing import MockClock

from actors import LinkOptions, RealtimeModel
from actors import browser_limits as limits
from actors import browser_wire as wire
from actors.browser_capture import BrowserAudioSource, BrowserVideoSource
from actors.browser_session import BrowserClosed, serve_browser
from emulator import open_emulator
from protocol import wire as w
from tests.fakes import MemoryTransport
from tests.web.harness import SCENARIO, voiced
from web.demo import get_weather


@dataclass
class MemorySocket:
    """A ``BrowserSocket`` a test plays the browser on; each send takes ``send_delay``."""

    send_delay: float = 0.0
    sent: list[bytes | str] = field(default_factory=list)
    closed: tuple[int, str] | None = None

    def __post_init__(self) -> None:
        self.inbox, self._inbox = trio.open_memory_channel[bytes | str](math.inf)
        self.changed = trio.Event()  # set, and replaced, by each send and close
        self.ended = trio.Event()  # serve_browser has returned

    def _changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def receive(self) -> bytes | str:
        return await self._inbox.receive()

    async def send(self, message: bytes | str) -> None:
        await trio.sleep(self.send_delay)
        self.sent.append(message)
        self._changed()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self._changed()

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(message) for message in self.sent if isinstance(message, str)]

    def audio_frames(self) -> list[bytes]:
        return [message for message in self.sent if isinstance(message, bytes)]

    async def until(self, kind: str, **fields: object) -> dict[str, Any]:
        """The first JSON message of ``kind`` with ``fields``, waiting for it."""
        with trio.fail_after(120):
            while True:
                for message in self.json():
                    if message["type"] == kind and all(
                        message.get(k) == v for k, v in fields.items()
                    ):
                        return message
                await self.changed.wait()

    async def audio(self) -> None:
        """Wait for the first binary (audio) message."""
        with trio.fail_after(120):
            while not self.audio_frames():
                await self.changed.wait()

    async def finished(self) -> None:
        """Wait (bounded) for ``serve_browser`` to return."""
        with trio.fail_after(30):
            await self.ended.wait()


@asynccontextmanager
async def session(
    socket: MemorySocket, sent: list[w.ClientMessage] | None = None
) -> AsyncIterator[dict[str, BrowserClosed]]:
    """``serve_browser`` on ``socket``; the dict gets ``closed`` once it has returned;
    ``sent`` what the session sent the model."""
    result: dict[str, BrowserClosed] = {}
    async with open_emulator(scenario=SCENARIO) as emu, trio.open_nursery() as nursery:
        transport = MemoryTransport(emu, nursery, sent=[] if sent is None else sent)
        model = RealtimeModel(endpoint=emu.url, transport=transport)

        async def run() -> None:
            result["closed"] = await serve_browser(
                socket, model, tools=[get_weather], hello={"backend": "test"}
            )
            socket.ended.set()

        nursery.start_soon(run)
        await socket.until("ready")
        yield result
        socket.inbox.close()  # the browser goes
        await socket.finished()
        nursery.cancel_scope.cancel()


def pcm(samples: np.ndarray) -> bytes:
    return (samples * 32767).astype("<i2").tobytes()


async def test_a_spoken_turn_gets_a_tool_call_and_a_spoken_reply(autojump_clock: MockClock) -> None:
    socket = MemorySocket()
    async with session(socket) as result:
        ready = await socket.until("ready")
        assert ready["backend"] == "test"
        assert ready["output_rate"] == 24000
        voice = np.concatenate([voiced(0.6), np.zeros(48000)])
        for start in range(0, len(voice), 960):  # 20 ms messages, in real time
            await socket.inbox.send(
                wire.encode_audio(pcm(voice[start : start + 960]), start // 960, 48000)
            )
            await trio.sleep(0.02)
        call = await socket.until("tool_call", name="get_weather")
        assert call["args"] == {"city": "Paris"}
        result_ = await socket.until("tool_result", call_id=call["call_id"])
        assert result_["result"]["sky"] == "sunny"
        await socket.until("transcript", role="user", final=True)
        await socket.until("metric", name="time_to_first_audio")
        frames = socket.audio_frames()
        assert frames
        kind, version, _, rate, sequence = wire.HEADER.unpack_from(frames[0])
        assert (kind, version, rate, sequence) == (wire.AUDIO, 1, 24000, 0)
        assert len(frames[0]) == wire.HEADER_BYTES + 960  # a 20 ms playout frame
    assert result["closed"] == BrowserClosed(1000, "the browser closed the session")
    assert socket.closed == (1000, "the browser closed the session")


async def test_a_typed_turn_and_an_interrupt_from_the_page(autojump_clock: MockClock) -> None:
    socket = MemorySocket()
    async with session(socket):
        await socket.inbox.send('{"type": "text", "text": "What is the weather in Paris?"}')
        await socket.until("tool_result")
        await socket.until("turn_started", turn_id=1)
        await socket.audio()
        await socket.inbox.send('{"type": "interrupt"}')
        finished = await socket.until("playout_finished")
        assert finished["interrupted"] is True
        played = len(socket.audio_frames())
        await trio.sleep(1)
        assert len(socket.audio_frames()) == played  # nothing more of that reply is sent


async def test_audio_ahead_of_real_time_at_the_limit_and_past_it(autojump_clock: MockClock) -> None:
    socket = MemorySocket()
    tenth = wire.encode_audio(bytes(9600), 0, 48000)  # 100 ms at 48 kHz
    async with session(socket) as result:
        for _ in range(int(limits.MAX_AUDIO_AHEAD_SECONDS * 10)):  # at once: 2.0 s ahead
            await socket.inbox.send(tenth)
        await trio.testing.wait_all_tasks_blocked()  # all taken, no time passed
        assert socket.closed is None
        await socket.inbox.send(tenth)  # 2.1 s ahead
        await socket.finished()
    assert result["closed"] == BrowserClosed(1008, "audio 2.1 s ahead of real time (at most 2 s)")


async def test_messages_per_window_at_the_limit_and_past_it(autojump_clock: MockClock) -> None:
    socket = MemorySocket()
    async with session(socket) as result:
        await trio.sleep(limits.RATE_WINDOW)  # a fresh window
        for _ in range(limits.MAX_MESSAGES_PER_WINDOW):
            await socket.inbox.send('{"type": "interrupt"}')
        await trio.sleep(0.05)
        assert socket.closed is None
        await socket.inbox.send('{"type": "interrupt"}')
        await socket.finished()
    assert result["closed"] == BrowserClosed(1008, "more than 400 messages in 2 s")


@pytest.mark.parametrize("delay", [limits.SEND_TIMEOUT - 0.5, limits.SEND_TIMEOUT + 0.5])
async def test_a_browser_that_does_not_read(autojump_clock: MockClock, delay: float) -> None:
    socket = MemorySocket(send_delay=delay)
    result: dict[str, BrowserClosed] = {}
    async with open_emulator(scenario=SCENARIO) as emu, trio.open_nursery() as nursery:
        model = RealtimeModel(endpoint=emu.url, transport=MemoryTransport(emu, nursery))

        async def run() -> None:
            result["closed"] = await serve_browser(socket, model)

        nursery.start_soon(run)
        await trio.sleep(3 * limits.SEND_TIMEOUT)
        if delay < limits.SEND_TIMEOUT:
            assert socket.json()[0]["type"] == "ready"
            assert "closed" not in result
            socket.inbox.close()
        await trio.sleep(3 * limits.SEND_TIMEOUT)
        nursery.cancel_scope.cancel()
    if delay > limits.SEND_TIMEOUT:
        assert result["closed"] == BrowserClosed(1008, "the browser took no message for 10 s")
    else:
        assert result["closed"] == BrowserClosed(1000, "the browser closed the session")


async def test_a_session_that_cannot_start_says_why(autojump_clock: MockClock) -> None:
    socket = MemorySocket()
    model = RealtimeModel(endpoint="ws://127.0.0.1:9", link_options=LinkOptions(connect_timeout=5))
    closed = await serve_browser(socket, model)
    assert closed.code == 1011
    assert closed.reason.startswith("session failed: ")
    assert "127.0.0.1:9" in closed.reason
    assert socket.json()[0]["type"] == "error"
    assert socket.closed == (closed.code, closed.reason)


async def test_a_session_ends_at_its_time_limit(
    autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_SESSION_SECONDS", 30.0)
    socket = MemorySocket()
    async with session(socket) as result:
        await trio.sleep(29)
        assert "closed" not in result
        await trio.sleep(2)
        assert result["closed"] == BrowserClosed(1000, "the session reached its 30 s limit")


def jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "JPEG")
    return out.getvalue()


async def test_camera_frames_are_decoded_for_the_encoder(
    autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_VIDEO_PIXELS", 64 * 48)
    camera = BrowserVideoSource()
    async with aclosing(camera.frames()) as frames:
        await camera.feed(wire.VideoIn(jpeg(64, 48), 0))  # at the limit
        frame = await anext(frames)
    assert (frame.width, frame.height, frame.pixel_format) == (64, 48, "rgb24")
    assert len(frame.data) == 64 * 48 * 3
    await trio.sleep(1 / limits.MAX_VIDEO_FPS)
    with pytest.raises(wire.BrowserProtocolError) as too_big:
        await camera.feed(wire.VideoIn(jpeg(65, 48), 1))  # one past
    assert too_big.value.code == 1009
    assert str(too_big.value) == "camera frame of 65x48 exceeds 3072 pixels"
    await trio.sleep(1 / limits.MAX_VIDEO_FPS)
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    with pytest.raises(wire.BrowserProtocolError) as not_jpeg:
        await camera.feed(wire.VideoIn(png.getvalue(), 2))
    assert not_jpeg.value.code == 1007


async def test_camera_frames_faster_than_the_limit_are_dropped(autojump_clock: MockClock) -> None:
    camera = BrowserVideoSource()
    async with aclosing(camera.frames()) as frames:
        await camera.feed(wire.VideoIn(jpeg(8, 8), 0))
        await trio.sleep(1 / limits.MAX_VIDEO_FPS - 0.01)
        await camera.feed(wire.VideoIn(jpeg(8, 8), 1))  # too soon: dropped
        assert camera.dropped == 1
        await anext(frames)
        await trio.sleep(0.01)
        await camera.feed(wire.VideoIn(jpeg(8, 8), 2))  # 1 / MAX_VIDEO_FPS after the first
        await anext(frames)
    assert camera.dropped == 1


async def test_the_microphone_source_waits_when_its_inbox_is_full(
    autojump_clock: MockClock,
) -> None:
    microphone = BrowserAudioSource(inbox=2)
    async with aclosing(microphone.frames()) as frames:
        for sequence in range(2):
            await microphone.feed(wire.AudioIn(bytes(640), 16000, sequence))
        with trio.move_on_after(1) as blocked:
            await microphone.feed(wire.AudioIn(bytes(640), 16000, 2))
        assert blocked.cancelled_caught  # backpressure, nothing dropped
        first = await anext(frames)
        assert (first.sample_rate, first.channels, first.sample_format) == (16000, 1, "s16")
        microphone.end()
        assert len([frame async for frame in frames]) == 1  # the second; then the end


async def test_a_camera_frame_reaches_the_model_as_video() -> None:
    # On the real clock: the autojump clock would run the session's timers far ahead
    # while the frame is decoded in a thread.
    socket = MemorySocket()
    sent: list[w.ClientMessage] = []
    async with session(socket, sent):
        await socket.inbox.send(wire.encode_video(jpeg(640, 480), 0))
        await trio.sleep(1.5)
        assert socket.closed is None
    videos = [m.video for m in sent if isinstance(m, w.RealtimeInput) and m.video is not None]
    assert len(videos) == 1
    assert videos[0].mime_type == "image/jpeg"
