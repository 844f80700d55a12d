"""Serve a ``WebApp`` with Hypercorn's trio worker.

Hypercorn takes care of HTTP/1.1, the WebSocket handshake and framing (wsproto); its own
bound on a WebSocket message sits a little above the largest message the browser socket
takes (``MAX_VIDEO_MESSAGE_BYTES``), so what is merely too big for its kind gets the
app's close reason, and only what is far too big is cut off by Hypercorn (1009, no
reason) before it is buffered.
"""

from __future__ import annotations

import logging

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from actors import browser_limits
from actors.browser_wire import HEADER_BYTES
from web.app import WebApp

# Hypercorn's own ceiling on a WebSocket message: twice the largest the app accepts.
SERVER_MAX_MESSAGE_BYTES = 2 * (browser_limits.MAX_VIDEO_MESSAGE_BYTES + HEADER_BYTES)
WEBSOCKET_PING_INTERVAL = 20.0  # s: keeps idle tabs' connections alive through proxies
GRACEFUL_TIMEOUT = 3.0  # s sessions get to end when the server stops


def config(host: str, port: int) -> Config:
    cfg = Config()
    cfg.bind = [f"{host}:{port}"]
    cfg.websocket_max_message_size = SERVER_MAX_MESSAGE_BYTES
    cfg.websocket_ping_interval = WEBSOCKET_PING_INTERVAL
    cfg.graceful_timeout = GRACEFUL_TIMEOUT
    cfg.accesslog = None
    cfg.errorlog = logging.getLogger("web.server")
    return cfg


async def serve(
    app: WebApp,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` (0: any free port) until cancelled; reports the
    page's URL (``http://host:port/``) once listening. Raises ``OSError`` when the port
    cannot be bound. Cancelled, it gives live sessions ``GRACEFUL_TIMEOUT`` to end."""

    async def listening(
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await hypercorn_serve(app, config(host, port), task_status=task_status)  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(listening)
        task_status.started(binds[0].rstrip("/") + "/")
