"""Protocol errors, split by whose fault they are (h11's convention).

``LocalProtocolError``: this program misused the protocol (built an invalid message, sent
something the session state forbids). ``RemoteProtocolError``: the peer sent something
invalid (a malformed frame, an unknown call id). Both carry ``field``, the JSON path of the
offending value when one is known, and the message always names it.
"""

from __future__ import annotations


class GeminiLiveError(Exception):
    """The root of the library's typed errors: catch it to handle every one of them.
    (Defined here, in the lowest layer, so the protocol's own typed errors can be one;
    ``runtime.errors`` and ``actors`` re-export it.)"""


class ProtocolError(Exception):
    """Base of every error raised by :mod:`protocol`."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class LocalProtocolError(ProtocolError):
    """Our own side broke the protocol: a bug or misuse in the calling code."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol: its frame or its sequence of messages is invalid."""


def validation_path(detail: str) -> str | None:
    """The JSON path (``$.a.b``) at the end of a msgspec validation message, if any."""
    index = detail.rfind("at `$")
    if index < 0:
        return None
    return detail[index + 4 :].rstrip("`")
