"""Sans-IO core of gemini-live-trio: the Gemini Live wire codec, the internal actor
messages and the session state machine. Nothing here imports trio or opens a socket."""

from protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from protocol.lenient import decode_client
from protocol.wire import ClientMessage, ServerMessage, decode_server, encode

__all__ = [
    "ClientMessage",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "ServerMessage",
    "decode_client",
    "decode_server",
    "encode",
]
