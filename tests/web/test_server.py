"""The page's server (Hypercorn's trio worker) on 127.0.0.1 port 0: what it serves over
HTTP, and WebSocket clients it turns away with a close code and a reason while it keeps
serving the others. Real clock, real sockets."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import trio
import trio_websocket

from actors import browser_limits as limits
from actors.browser_wire import AUDIO, HEADER
from tests.web.harness import closed_after, served
from web.server import SERVER_MAX_MESSAGE_BYTES


async def get(url: str, path: str, *extra: str) -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP/1.1 GET (with ``extra`` header lines): status, headers, body."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    async with stream:
        lines = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}", *extra]
        if not extra:
            lines.append("Connection: close")
        request = "\r\n".join(lines) + "\r\n\r\n"
        await stream.send_all(request.encode())
        response = bytearray()
        with trio.fail_after(10):
            while chunk := await stream.receive_some():
                response += chunk
    head, _, body = bytes(response).partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body


async def test_the_page_and_its_scripts_and_nothing_else() -> None:
    async with served() as web:
        status, headers, body = await get(web.url, "/")
        assert status == 200
        assert headers["content-type"] == "text/html; charset=utf-8"
        assert b'<script src="/static/app.js">' in body
        for name in ("app.js", "capture-worklet.js", "playback-worklet.js"):
            status, headers, _ = await get(web.url, f"/static/{name}")
            assert (status, headers["content-type"]) == (200, "text/javascript; charset=utf-8")
        for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/", "/app.py", "/nope"):
            assert (await get(web.url, path))[0] == 404, path
        status, _, body = await get(web.url, "/stats")
        assert (status, json.loads(body)) == (200, {"sessions": 0, "served": 0})


async def test_hostile_clients_get_close_reasons_and_a_good_one_still_talks() -> None:
    rate = HEADER.pack(AUDIO, 1, 0, 16000, 0)
    async with served() as web:
        async with trio_websocket.open_websocket_url(web.ws_url) as good:
            ready = json.loads(await good.get_message())
            assert ready["type"] == "ready"
            assert ready["backend"] == "emulator"
            assert await closed_after(web.ws_url, "{not json") == (
                1007,
                "invalid control message: JSON is malformed: object keys must be strings (byte 1)",
            )
            assert await closed_after(web.ws_url, '{"type": "shout"}') == (
                1007,
                "invalid control message: Invalid value 'shout' - at `$.type`",
            )
            assert await closed_after(
                web.ws_url, rate + bytes(limits.MAX_AUDIO_MESSAGE_BYTES + 2)
            ) == (
                1009,
                "audio message of 16386 bytes exceeds 16384",
            )
            wrong = HEADER.pack(AUDIO, 1, 0, 44000, 0) + bytes(640)
            code, reason = await closed_after(web.ws_url, wrong)
            assert code == 1003
            assert reason.startswith("unsupported sample rate 44000 Hz (takes 8000, 16000,")
            # Past Hypercorn's own ceiling the message is never buffered: 1009, no reason.
            huge = rate + bytes(SERVER_MAX_MESSAGE_BYTES)
            assert await closed_after(web.ws_url, huge) == (1009, "")
            # The good client was not disturbed: a typed turn gets its answer.
            await good.send_message('{"type": "text", "text": "Weather in Paris?"}')
            with trio.fail_after(20):
                while True:
                    message = await good.get_message()
                    if isinstance(message, str) and json.loads(message)["type"] == "tool_result":
                        break
        await good._stream.aclose()
        with trio.fail_after(10):
            await web.app.wait_sessions(0)
        assert web.app.served == 6


async def test_past_max_sessions_a_client_is_told_to_try_later() -> None:
    async with served(max_sessions=1) as web:
        async with trio_websocket.open_websocket_url(web.ws_url) as first:
            assert json.loads(await first.get_message())["type"] == "ready"
            assert await closed_after(web.ws_url) == (
                1013,
                "the server is busy: 1 sessions already; try again later",
            )
            assert web.app.sessions == 1
        await first._stream.aclose()
        with trio.fail_after(10):
            await web.app.wait_sessions(0)
        async with trio_websocket.open_websocket_url(web.ws_url) as later:  # room again
            assert json.loads(await later.get_message())["type"] == "ready"
        await later._stream.aclose()


async def test_a_websocket_on_another_path_is_refused() -> None:
    upgrade = (
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    )
    async with served() as web:
        status, _, _ = await get(web.url, "/other", *upgrade)
        assert status == 403
        assert web.app.served == 0


async def test_a_client_that_vanishes_without_a_close_frame_ends_its_session() -> None:
    async with served() as web:
        ws = await trio_websocket.connect_websocket_url(web.nursery, web.ws_url)
        assert json.loads(await ws.get_message())["type"] == "ready"
        assert web.app.sessions == 1
        await trio.aclose_forcefully(ws._stream)  # the TCP connection drops, no close frame
        with trio.fail_after(10):
            await web.app.wait_sessions(0)
