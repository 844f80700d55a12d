"""Helpers that drive google-genai's own live client without a network, for conformance tests.

``capture_client_frames`` runs ``client.aio.live.connect`` over a fake websocket (as the
SDK's own tests under google/genai/tests/live/ do) and returns every frame it sent.
``sdk_parse_server`` reads a server frame exactly as ``AsyncSession.receive`` does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from unittest import mock

from google import genai
from google.genai import _live_converters, live, types

SdkAction = Callable[[live.AsyncSession], Awaitable[None]]


class _FakeWebSocket:
    def __init__(self, sent: list[str]) -> None:
        self._sent = sent

    async def send(self, message: str) -> None:
        self._sent.append(message)

    async def recv(self, decode: bool = False) -> bytes:
        return b'{"setupComplete": {}}'

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> _FakeWebSocket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


def capture_client_frames(
    action: SdkAction | None = None,
    *,
    config: types.LiveConnectConfig | None = None,
    model: str = "gemini-2.5-flash-native-audio-preview-12-2025",
    vertexai: bool = False,
) -> tuple[list[str], str, dict[str, str]]:
    """Frames the SDK sent (setup first), the URL it dialled and its headers."""
    sent: list[str] = []
    dialled: dict[str, Any] = {}

    def fake_connect(
        uri: str, additional_headers: dict[str, str] | None = None, **_: Any
    ) -> _FakeWebSocket:
        dialled["uri"] = uri
        dialled["headers"] = dict(additional_headers or {})
        return _FakeWebSocket(sent)

    if vertexai:
        client = genai.Client(vertexai=True, api_key="test-key")
    else:
        client = genai.Client(api_key="test-key", http_options={"api_version": "v1beta"})

    async def run() -> None:
        with mock.patch.object(live, "ws_connect", fake_connect):
            async with client.aio.live.connect(model=model, config=config) as session:
                if action is not None:
                    await action(session)

    asyncio.run(run())
    return sent, dialled["uri"], dialled["headers"]


def sdk_parse_server(frame: str | bytes) -> types.LiveServerMessage:
    """Parse a server frame the way the SDK's ``AsyncSession._receive`` does (Gemini API)."""
    response = json.loads(frame)
    response_dict = _live_converters._LiveServerMessage_from_mldev(response)
    return types.LiveServerMessage._from_response(response=response_dict, kwargs={})


def sdk_parse_client(frame: str | bytes) -> types.LiveClientMessage:
    """Parse a client frame with the SDK's own types, which forbid unknown fields (a
    misspelt key fails). The SDK's ``LiveClientSetup`` lacks ``realtimeInputConfig`` (its
    converter writes it in): that part is checked as a ``RealtimeInputConfig``."""
    message = json.loads(frame)
    setup = message.get("setup")
    if isinstance(setup, dict) and "realtimeInputConfig" in setup:
        types.RealtimeInputConfig.model_validate(setup.pop("realtimeInputConfig"))
    return types.LiveClientMessage.model_validate(message)
