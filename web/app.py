"""The ASGI app: the page, its scripts, and one voice session per WebSocket.

    GET  /              the page (static/index.html)
    GET  /static/NAME   its scripts (only the files shipped in static/, by exact name)
    GET  /stats         {"sessions": live sessions, "served": sessions since start}
    WS   /ws            one session (``actors.browser_session.serve_browser``)

A WebSocket past ``max_sessions`` is accepted and closed at once with 1013 (try again
later) and a reason, so the page can say why. Hypercorn serves it (``web.server``); any
ASGI server would.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from actors import browser_wire as wire
from actors.browser_session import serve_browser
from actors.realtime import RealtimeModel
from actors.tools import Tool

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

STATIC = Path(__file__).resolve().parent / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
MAX_SESSIONS = 16  # live sessions per server; each holds a model connection
log = logging.getLogger(__name__)


class AsgiSocket:
    """An ASGI WebSocket (accepted) as a ``BrowserSocket``."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive, self._send = receive, send
        self._closed = False

    async def receive(self) -> bytes | str:
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            self._closed = True
            raise trio.EndOfChannel
        data = message.get("bytes")
        if data is not None:
            return bytes(data)
        return str(message.get("text") or "")

    async def send(self, message: bytes | str) -> None:
        if self._closed:
            raise trio.ClosedResourceError
        key = "bytes" if isinstance(message, bytes) else "text"
        await self._send({"type": "websocket.send", key: message})

    async def close(self, code: int, reason: str) -> None:
        if not self._closed:
            self._closed = True
            await self._send({"type": "websocket.close", "code": code, "reason": reason})


@dataclass
class WebApp:
    """The app, with the model every session talks to and the tools it may call."""

    model: RealtimeModel
    tools: Sequence[Tool] = ()
    hello: dict[str, Any] = field(default_factory=dict)  # added to each "ready" message
    max_sessions: int = MAX_SESSIONS
    sessions: int = 0  # live now
    served: int = 0  # since start
    sessions_changed: trio.Event = field(default_factory=trio.Event)
    files: dict[str, bytes] = field(default_factory=dict)  # static/, read once

    def __post_init__(self) -> None:
        self.files = self.files or {
            p.name: p.read_bytes() for p in STATIC.iterdir() if p.suffix in TYPES
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "http":
            await self._http(scope, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        if scope["path"] != "/ws":
            await send({"type": "websocket.close", "code": wire.POLICY_VIOLATION})  # a 403
            return
        await send({"type": "websocket.accept"})
        socket = AsgiSocket(receive, send)
        if self.sessions >= self.max_sessions:
            busy = f"the server is busy: {self.max_sessions} sessions already; try again later"
            await socket.close(wire.TRY_AGAIN_LATER, busy)
            return
        self._count(+1)
        try:
            closed = await serve_browser(socket, self.model, tools=self.tools, hello=self.hello)
            log.info("session closed: %d %s", closed.code, closed.reason)
        finally:
            self._count(-1)

    def _count(self, step: int) -> None:
        self.sessions += step
        self.served += max(step, 0)
        self.sessions_changed.set()
        self.sessions_changed = trio.Event()

    async def wait_sessions(self, count: int) -> None:
        """Wait until exactly ``count`` sessions are live."""
        while self.sessions != count:
            await self.sessions_changed.wait()

    async def _http(self, scope: Scope, send: Send) -> None:
        path = scope["path"]
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed\n", "text/plain")
        elif path == "/stats":
            body = json.dumps({"sessions": self.sessions, "served": self.served}).encode()
            await _respond(send, 200, body, "application/json")
        elif path in ("/", "/index.html"):
            await _respond(send, 200, self.files["index.html"], TYPES[".html"])
        elif path.startswith("/static/") and path[8:] in self.files:
            name = path[8:]
            await _respond(send, 200, self.files[name], TYPES[Path(name).suffix])
        else:
            await _respond(send, 404, b"not found\n", "text/plain")


async def _respond(send: Send, status: int, body: bytes, content_type: str) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
