"""RFC 6455's opening handshake, sans-IO, for both ends: one HTTP/1.1 head read with h11.

A server reads the upgrade request (``HandshakeReader``) and answers ``accept_response``
or ``reject_response``; a client writes ``ClientHandshake.request`` and feeds it the
answer. Both share the reading: a head of at most ``MAX_HANDSHAKE_BYTES``
(protocol/limits.py), EOF as an error, and whatever follows the head kept as
``trailing_data`` (the peer's first frames, when it was quick). Time limits are the I/O
layer's (``HANDSHAKE_TIMEOUT``, the client's connect timeout).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Final

import h11

from protocol import limits
from protocol.errors import LocalProtocolError, RemoteProtocolError

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HandshakeError(RemoteProtocolError):
    """The peer's opening handshake is not a valid WebSocket upgrade. A server answers
    with ``status``; a client reports the status the server answered (0 if not HTTP)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class UpgradeRequest:
    target: str
    headers: list[tuple[bytes, bytes]]
    key: bytes


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


class _HeadReader:
    """The part both roles share: the head of one HTTP/1.1 message read with h11, at most
    ``max_size`` bytes, and whatever follows it kept."""

    def __init__(self, role: type[h11.CLIENT] | type[h11.SERVER], max_size: int) -> None:
        self._http = h11.Connection(role, max_incomplete_event_size=max_size)
        self._max_size = max_size
        self._received = 0
        self._server = role is h11.SERVER

    def _read_head(
        self, data: bytes
    ) -> h11.Request | h11.InformationalResponse | h11.Response | None:
        """Feed bytes (``b""`` at EOF); the head once complete. Raises ``HandshakeError``:
        a server's status is the one to answer, a client's is 0."""
        bad, what = (400, "request") if self._server else (0, "response")
        if not data:
            raise HandshakeError(bad, "connection closed during the handshake")
        self._received += len(data)
        self._http.receive_data(data)
        try:
            event = self._http.next_event()
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint == 431:
                raise self._too_long(what) from exc
            raise HandshakeError(bad, f"bad HTTP {what}: {exc}") from exc
        if event is h11.NEED_DATA:
            return None
        if not isinstance(event, h11.Request | h11.InformationalResponse | h11.Response):
            raise HandshakeError(bad, f"expected an HTTP {what}")
        # h11 bounds only an incomplete head: a whole one that came in one read may be longer.
        if self._received - len(self.trailing_data) > self._max_size:
            raise self._too_long(what)
        return event

    def _too_long(self, what: str) -> HandshakeError:
        return HandshakeError(
            431 if self._server else 0, f"HTTP {what} head over {self._max_size} bytes"
        )

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the head (the peer's first frames, if it was quick)."""
        data, _closed = self._http.trailing_data
        return bytes(data)


class HandshakeReader(_HeadReader):
    """A server's side: reads one upgrade request."""

    def __init__(self, max_size: int = limits.MAX_HANDSHAKE_BYTES) -> None:
        super().__init__(h11.SERVER, max_size)

    def feed(self, data: bytes) -> UpgradeRequest | None:
        """Feed bytes (``b""`` at EOF); the request once complete. Raises ``HandshakeError``
        (with the status to answer) when it is not a valid upgrade."""
        event = self._read_head(data)
        if event is None:
            return None
        if not isinstance(event, h11.Request):
            raise HandshakeError(400, "expected an HTTP request")
        headers = [(name.lower(), value) for name, value in event.headers]
        found = dict(headers)
        if event.method != b"GET":
            raise HandshakeError(405, "a WebSocket handshake is a GET")
        if (
            found.get(b"upgrade", b"").lower() != b"websocket"
            or b"upgrade" not in found.get(b"connection", b"").lower()
        ):
            raise HandshakeError(426, "expected Upgrade: websocket")
        if found.get(b"sec-websocket-version") != b"13":
            raise HandshakeError(426, "unsupported Sec-WebSocket-Version (13 is required)")
        key = found.get(b"sec-websocket-key", b"")
        if len(base64.b64decode(key, validate=False) if key else b"") != 16:
            raise HandshakeError(400, "missing or malformed Sec-WebSocket-Key")
        return UpgradeRequest(event.target.decode("latin-1"), headers, key)


class ClientHandshake(_HeadReader):
    """A client's side: ``request`` to write, then ``feed`` the server's answer. ``key`` is
    16 random bytes, base64-encoded. Raises ``LocalProtocolError`` (naming the header, never
    its value, which may be a secret) when a header or the resource cannot be sent."""

    def __init__(
        self,
        host: str,
        resource: str,
        headers: list[tuple[bytes, bytes]],
        key: bytes,
        max_size: int = limits.MAX_HANDSHAKE_BYTES,
    ) -> None:
        super().__init__(h11.CLIENT, max_size)
        self._key = key
        check_request(resource, headers)
        request = h11.Request(
            method="GET",
            target=resource.encode(),
            headers=[
                (b"Host", host.encode()),
                (b"Upgrade", b"websocket"),
                (b"Connection", b"Upgrade"),
                (b"Sec-WebSocket-Version", b"13"),
                (b"Sec-WebSocket-Key", key),
                *headers,
            ],
        )
        try:
            self.request: bytes = self._http.send(request) or b""
        except h11.LocalProtocolError as exc:  # the host: nothing secret in its text
            raise LocalProtocolError(f"cannot write the upgrade request: {exc}") from exc

    def feed(self, data: bytes) -> bool:
        """Feed bytes (``b""`` at EOF); True once the upgrade is accepted. Raises
        ``HandshakeError`` (``status`` 0 when the server did not answer with HTTP)."""
        event = self._read_head(data)
        if event is None:
            return False
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            found = {name.lower(): value for name, value in event.headers}
            if found.get(b"upgrade", b"").lower() != b"websocket":
                raise HandshakeError(101, "the server did not upgrade to websocket")
            if found.get(b"sec-websocket-accept") != accept_key(self._key):
                raise HandshakeError(101, "wrong Sec-WebSocket-Accept")
            return True
        if isinstance(event, h11.Request):
            raise HandshakeError(0, "expected an HTTP response")
        raise HandshakeError(event.status_code, f"the server answered HTTP {event.status_code}")


# What h11 accepts, checked first so that its errors (which quote the value) never arise.
_TOKEN: Final = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_FIELD_VALUE: Final = re.compile(rb"(?:[\x21-\x7e\x80-\xff](?:[ \t]*[\x21-\x7e\x80-\xff])*)?")
_TARGET: Final = re.compile(r"[\x21-\x7e]+")


def check_request(resource: str, headers: list[tuple[bytes, bytes]]) -> None:
    """Raise ``LocalProtocolError`` if a header or the resource cannot go in a request.
    The message names the header but never shows a value: values are often secrets."""
    if not _TARGET.fullmatch(resource):
        raise LocalProtocolError("the URL's path or query has characters HTTP cannot carry")
    for name, value in headers:
        if not _TOKEN.fullmatch(name):
            raise LocalProtocolError("a header name is not an HTTP token", field=_shown(name))
        if not _FIELD_VALUE.fullmatch(value):
            raise LocalProtocolError(
                f"header {_shown(name)} has an invalid value (control characters, or "
                "whitespace around it); the value is not shown",
                field=_shown(name),
            )


def _shown(name: bytes) -> str:
    return repr(name.decode("ascii", "replace")[:40])


def accept_response(request: UpgradeRequest) -> bytes:
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(request.key) + b"\r\n\r\n"
    )


def reject_response(status: int, body: bytes) -> bytes:
    reason = {
        400: b"Bad Request",
        404: b"Not Found",
        405: b"Method Not Allowed",
        426: b"Upgrade Required",
        431: b"Request Header Fields Too Large",
    }
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n" % (status, reason.get(status, b"Error"), len(body)) + body
    )
