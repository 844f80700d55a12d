"""The emulator's one REST call: minting ephemeral tokens, ``POST /v1alpha/auth_tokens``.

One request per connection, parsed by h11 (sans-IO HTTP/1.1), answered with JSON and
``Connection: close``: the body at most ``MAX_TOKEN_REQUEST_BYTES`` (413 past it), the
whole request within ``TOKEN_REQUEST_TIMEOUT_S`` (then the connection is dropped).
Errors are Google API errors: ``{"error": {"code", "message", "status"}}``. The key goes
in ``x-goog-api-key`` (or ``?key=``), as google-genai sends it; a token is no key.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from typing import Final
from urllib.parse import parse_qs, urlsplit

import h11
import trio

from emulator.limits import MAX_TOKEN_REQUEST_BYTES, TOKEN_REQUEST_TIMEOUT_S
from emulator.tokens import TOKEN_PREFIX, TokenRequestError, TokenStore
from protocol import limits

log = logging.getLogger("emulator")

AUTH_TOKENS_PATH: Final = "/v1alpha/auth_tokens"
INVALID_KEY: Final = "API key not valid. Please pass a valid API key."
NO_KEY: Final = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
_STREAM_ERRORS: Final = (trio.BrokenResourceError, trio.ClosedResourceError)


class _Refused(Exception):
    def __init__(self, status: int, status_name: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.status_name = status_name


async def serve_post(
    stream: trio.abc.Stream,
    first: bytes,
    tokens: TokenStore,
    key_accepted: Callable[[str | None], bool],
) -> None:
    """Read one POST (``first`` is what was read of it already), answer it, close nothing:
    the caller closes the stream."""
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.MAX_HANDSHAKE_BYTES)
    with trio.move_on_after(TOKEN_REQUEST_TIMEOUT_S) as waiting:
        try:
            status, answer = await _handle(stream, connection, first, tokens, key_accepted)
        except _Refused as exc:
            status, answer = exc.status, _error(exc.status, exc.status_name, str(exc))
        except h11.RemoteProtocolError as exc:
            status, answer = 400, _error(400, "INVALID_ARGUMENT", f"bad HTTP request: {exc}")
    if waiting.cancelled_caught:
        log.info("a token request was not complete in time; dropped")
        return
    await _respond(stream, status, answer)


async def _handle(
    stream: trio.abc.Stream,
    connection: h11.Connection,
    data: bytes,
    tokens: TokenStore,
    key_accepted: Callable[[str | None], bool],
) -> tuple[int, bytes]:
    request: h11.Request | None = None
    body = bytearray()
    while True:
        connection.receive_data(data)
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                break
            if isinstance(event, h11.Request):
                request = event
                _check_request(request, key_accepted)
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_TOKEN_REQUEST_BYTES:
                    raise _too_large()
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                try:
                    return 200, json.dumps(tokens.mint(bytes(body))).encode()
                except TokenRequestError as exc:
                    raise _Refused(exc.status, exc.status_name, str(exc)) from exc
            else:  # the client went away
                raise _Refused(400, "INVALID_ARGUMENT", "the request ended early")
        data = await _receive(stream)


def _check_request(request: h11.Request, key_accepted: Callable[[str | None], bool]) -> None:
    target = urlsplit("/" + request.target.decode("latin-1").lstrip("/"))
    if request.method != b"POST" or target.path != AUTH_TOKENS_PATH:
        raise _Refused(
            404, "NOT_FOUND", f"no such method: {request.method.decode()} {target.path[:80]}"
        )
    headers = {name.decode("latin-1").lower(): value for name, value in request.headers}
    length = headers.get("content-length", b"0")
    if length.isdigit() and int(length) > MAX_TOKEN_REQUEST_BYTES:
        raise _too_large()
    key = headers.get("x-goog-api-key")
    credential = key.decode("latin-1") if key else None
    credential = credential or next(iter(parse_qs(target.query).get("key", [])), None)
    if not credential:
        raise _Refused(403, "PERMISSION_DENIED", NO_KEY)
    if credential.startswith(TOKEN_PREFIX) or not key_accepted(credential):
        raise _Refused(400, "INVALID_ARGUMENT", INVALID_KEY)


def _too_large() -> _Refused:
    return _Refused(413, "INVALID_ARGUMENT", f"request body over {MAX_TOKEN_REQUEST_BYTES} bytes")


def _error(code: int, status_name: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "status": status_name}}).encode()


_REASONS: Final = {
    200: b"OK",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    413: b"Payload Too Large",
}


async def _respond(stream: trio.abc.Stream, status: int, body: bytes) -> None:
    head = (
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=UTF-8\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n"
        % (status, _REASONS.get(status, b"Error"), len(body))
    )
    with contextlib.suppress(*_STREAM_ERRORS):
        await stream.send_all(head + body)


async def _receive(stream: trio.abc.Stream) -> bytes:
    try:
        return bytes(await stream.receive_some(limits.READ_SIZE))
    except _STREAM_ERRORS:
        return b""
