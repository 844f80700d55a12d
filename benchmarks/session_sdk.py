"""Session load, google-genai's side: N sessions of a minimal client on the SDK's own
``AsyncSession`` (the layer LiveKit's and Pipecat's Gemini integrations run on), measured
by ``peers/loadlib.py`` like the peers (``session_load`` describes what is measured).

Per session, one task sends ``send_realtime_input(audio=Blob)`` for each 20 ms frame at
its due time, and one iterates ``receive()`` and hands each audio part to a null sink.
One ``genai.Client`` for every session, as a server process would hold it.

``python -m benchmarks.session_sdk --load N --url ws://...`` (the parent runs it; the
handshake is in ``peers/loadlib.py``). Imports neither trio nor our pipeline.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from google import genai
from google.genai import types

from peers import loadlib

VARIANT = "google-genai"
_clients: dict[str, genai.Client] = {}


def _client(url: str) -> genai.Client:
    if url not in _clients:
        base = url.replace("ws://", "http://", 1)
        options = types.HttpOptions(base_url=base, api_version="v1beta")
        _clients[url] = genai.Client(api_key="load-test", http_options=options)
    return _clients[url]


CONFIG = types.LiveConnectConfig(
    response_modalities=[types.Modality.AUDIO],
    input_audio_transcription=types.AudioTranscriptionConfig(),
    output_audio_transcription=types.AudioTranscriptionConfig(),
    realtime_input_config=types.RealtimeInputConfig(
        automatic_activity_detection=types.AutomaticActivityDetection(
            silence_duration_ms=loadlib.SILENCE_DURATION_MS
        )
    ),
)


def null_sink(pcm: bytes) -> None:
    pass


async def sdk_session(probe: loadlib.SessionProbe, args: argparse.Namespace) -> None:
    """One session until cancelled: connect, stream the microphone, drain the replies."""
    connection: Any = _client(args.url).aio.live.connect(model=args.model, config=CONFIG)
    async with connection as live:

        async def receive() -> None:
            while True:  # receive() ends at each turnComplete
                async for message in live.receive():
                    content = message.server_content
                    if content is None or content.model_turn is None:
                        continue
                    for part in content.model_turn.parts or ():
                        if part.inline_data is not None and part.inline_data.data:
                            null_sink(part.inline_data.data)
                            probe.delivered()

        async with asyncio.TaskGroup() as group:
            group.create_task(receive())
            async for pcm in probe.microphone():
                blob = types.Blob(data=pcm, mime_type=f"audio/pcm;rate={loadlib.RATE}")
                await live.send_realtime_input(audio=blob)


def run_sdk(argv: list[str] | None = None) -> None:
    """The worker's entry point: runs, prints its report, exits."""
    loadlib.main(VARIANT, sdk_session, argv)


if __name__ == "__main__":
    run_sdk()
