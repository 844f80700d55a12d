"""A small raw client for emulator tests: trio-websocket plus our codec, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import numpy as np
import pytest
import trio
import trio_websocket

from emulator import Reply, ToolCallSpec, Turn
from protocol import decode_server, encode
from protocol import wire as w

GEMINI_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
WEATHER_TURN = Turn(
    user="What's the weather in Paris?",
    replies=(
        Reply(tool_calls=(ToolCallSpec(name="get_weather", args={"city": "Paris"}),)),
        Reply(say="It is sunny in Paris today."),
    ),
)
"""A turn with a tool call and a spoken answer, shared by the emulator tests."""

# trio-websocket's client default (1) deadlocks aclose() while the server streams: its
# reader blocks on the full queue and never reads the close reply (60 s timeout).
QUEUE = 4096
MODEL = "models/gemini-2.5-flash-native-audio-preview-12-2025"


def speech(seconds: float = 0.4, silence: float = 0.3, level: float = 0.3) -> bytes:
    """A 220 Hz tone (clearly speech to an energy detector) followed by silence, 16 kHz."""
    t = np.arange(int(16000 * seconds)) / 16000
    tone = level * np.sin(2 * np.pi * 220 * t)
    signal = np.concatenate([tone, np.zeros(int(16000 * silence))])
    return (signal * 32767).astype("<i2").tobytes()


def setup(**overrides: object) -> w.Setup:
    fields: dict[str, object] = {
        "model": MODEL,
        "input_audio_transcription": w.AudioTranscriptionConfig(),
        "output_audio_transcription": w.AudioTranscriptionConfig(),
        "realtime_input_config": w.RealtimeInputConfig(
            automatic_activity_detection=w.AutomaticActivityDetection(silence_duration_ms=200)
        ),
    }
    fields.update(overrides)
    return w.Setup(**fields)  # type: ignore[arg-type]


class RawClient:
    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.received: list[w.ServerMessage] = []

    async def send(self, message: w.ClientMessage) -> None:
        await self.ws.send_message(encode(message))

    async def send_audio(self, pcm: bytes, chunk: int = 640) -> None:
        for i in range(0, len(pcm), chunk):
            await self.send(
                w.RealtimeInput(
                    audio=w.Blob(mime_type="audio/pcm;rate=16000", data=pcm[i : i + chunk])
                )
            )

    async def receive(self) -> w.ServerMessage:
        message = decode_server(await self.ws.get_message())
        self.received.append(message)
        return message

    async def until(self, predicate: object, limit: float = 10.0) -> list[w.ServerMessage]:
        """Messages up to and including the first one that satisfies ``predicate``."""
        got: list[w.ServerMessage] = []
        with trio.fail_after(limit):
            while True:
                message = await self.receive()
                got.append(message)
                if predicate(message):  # type: ignore[operator]
                    return got

    async def until_turn_complete(self) -> list[w.ServerMessage]:
        return await self.until(
            lambda m: m.server_content is not None and m.server_content.turn_complete
        )

    async def converse(self, text: str = "hi") -> list[w.ServerMessage]:
        """Type one user turn and read up to its turnComplete."""
        await self.send(w.RealtimeInput(text=text))
        return await self.until_turn_complete()


@asynccontextmanager
async def connect(
    url: str,
    first: w.ClientMessage | None = None,
    *,
    path: str = GEMINI_PATH,
    expect_setup_complete: bool = True,
) -> AsyncIterator[RawClient]:
    async with trio_websocket.open_websocket_url(url + path, message_queue_size=QUEUE) as ws:
        client = RawClient(ws)
        try:
            await client.send(first if first is not None else setup())
            if expect_setup_complete:
                message = await client.receive()
                assert message.setup_complete is not None
            yield client
        finally:
            # When the server closes first, trio-websocket's client stops reading before
            # the server's TCP close arrives and never closes its socket: close it here.
            await ws._stream.aclose()


def audio_of(messages: list[w.ServerMessage]) -> bytes:
    out = b""
    for message in messages:
        content = message.server_content
        for part in (content.model_turn.parts or []) if content and content.model_turn else []:
            if part.inline_data and part.inline_data.data:
                out += part.inline_data.data
    return out


def transcript_of(messages: list[w.ServerMessage], kind: str) -> str:
    texts = []
    for message in messages:
        content = message.server_content
        transcription = getattr(content, kind, None) if content else None
        if transcription is not None and transcription.text:
            texts.append(transcription.text)
    return "".join(texts)


async def closed_with(action: Callable[[], Awaitable[object]]) -> trio_websocket.CloseReason:
    """The close reason the server gave while ``action`` ran (which must end in a close)."""
    with pytest.raises(trio_websocket.ConnectionClosed) as info:
        await action()
    assert info.value.reason is not None
    return info.value.reason


async def raw_close(
    url: str, *frames: bytes | str, path: str = GEMINI_PATH
) -> trio_websocket.CloseReason:
    """Send ``frames`` as they are, then read until the server closes: its close reason."""
    async with trio_websocket.open_websocket_url(url + path, message_queue_size=QUEUE) as ws:
        try:

            async def send_then_read() -> None:
                for frame in frames:
                    await ws.send_message(frame)
                while True:
                    await ws.get_message()

            return await closed_with(send_then_read)
        finally:
            await ws._stream.aclose()


UPGRADE = (
    "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
)


async def raw_upgrade(
    port: int, target: str = GEMINI_PATH, extra: bytes = b""
) -> tuple[trio.SocketStream, bytes, bytes]:
    """A TCP connection that sends an upgrade request (plus ``extra`` header lines, as raw
    bytes) and reads the response head: the stream, the status line, and what followed."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(UPGRADE.format(target=target).encode() + extra + b"\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        more = await stream.receive_some(4096)
        if not more:
            break
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    return stream, head.split(b"\r\n", 1)[0], rest
