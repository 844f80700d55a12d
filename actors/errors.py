"""The errors a session can end with, under the library's one root, ``GeminiLiveError``.

    GeminiLiveError                    (runtime.errors; catch it to handle them all)
    ├── LinkError                      the Live session cannot go on
    │   ├── CredentialsRefused         the key or token was refused (HTTP 401/403, 1007)
    │   ├── ModelNotSupported          1008: unknown model, or an option it does not take
    │   ├── InvalidRequest             1007 (and 1002/1003/1009): what we sent was refused
    │   ├── HandshakeRejected          HTTP 4xx on the handshake: wrong URL or API version
    │   ├── ReconnectGaveUp            the connection was lost and could not be restored
    │   └── ConnectFailed              never connected: ``host`` and ``cause`` say why
    ├── TransportError                 the network (ConnectFailed is one too)
    ├── SupervisorGaveUp               an actor kept crashing (runtime.supervisor)
    ├── SessionClosed                  pushing input into a session that has ended
    ├── SinkError                      the sink cannot be opened or written
    ├── CaptureError, AudioDeviceUnavailable, EncoderError      (actors.capture, .encoder)
    ├── ToolDefinitionError, ToolArgumentsError                 (actors.tools)
    └── MissingCredentials, InvalidApiKey, InvalidEndpoint      (actors.endpoint)

Errors that are also a built-in kind keep it as a second base (``CaptureError`` is a
``ValueError``, ``SessionClosed`` a ``trio.ClosedResourceError``...), so code written
against those goes on working.
"""

from __future__ import annotations

import trio

from runtime.errors import GeminiLiveError
from runtime.supervisor import SupervisorGaveUp


class LinkError(GeminiLiveError):
    """The session cannot go on; the message says the likely cause."""


class InvalidRequest(LinkError):
    """1007 (or 1002/1003/1009): the server rejected what we sent."""


class ModelNotSupported(LinkError):
    """1008: the model is unknown to this API, or an option is not supported."""


class CredentialsRefused(LinkError):
    """The key or token was refused."""


class HandshakeRejected(LinkError):
    """The server refused the WebSocket handshake (wrong URL or API version)."""


class ReconnectGaveUp(LinkError):
    """Reconnecting failed too many times in a row."""


class TransportError(GeminiLiveError):
    """The network failed the link (not a protocol problem)."""


class ConnectFailed(TransportError, LinkError):
    """Connecting failed. ``host`` is ``host:port``; ``cause`` says why in a few words
    ("DNS lookup failed", "connection refused", "TLS certificate verification failed",
    "timed out", "the server answered HTTP 503"...); ``status`` is the HTTP status when
    the server answered one. Raised by a session that could not connect within its
    deadline (``LinkOptions.connect_timeout``), and by a transport for one attempt."""

    def __init__(
        self,
        reason: str,
        status: int | None = None,
        *,
        host: str = "",
        cause: str = "",
        retryable: bool = True,
    ) -> None:
        where = f" to {host}" if host else ""
        http = f" (HTTP {status})" if status and f"HTTP {status}" not in reason else ""
        super().__init__(f"cannot connect{where}: {reason}{http}")
        self.status = status
        self.host = host
        self.cause = cause or reason
        self.retryable = retryable  # False: trying again cannot help (a certificate)


class SessionClosed(GeminiLiveError, trio.ClosedResourceError):
    """Input pushed into a session that has ended."""


class SinkError(GeminiLiveError, OSError):
    """The sink cannot be opened or written (a WAV path that is a folder, a full disk)."""


__all__ = [
    "ConnectFailed",
    "CredentialsRefused",
    "GeminiLiveError",
    "HandshakeRejected",
    "InvalidRequest",
    "LinkError",
    "ModelNotSupported",
    "ReconnectGaveUp",
    "SessionClosed",
    "SinkError",
    "SupervisorGaveUp",
    "TransportError",
]
