"""gemini-live-trio's public API: a Gemini Live session as supervised Trio actors.

    from actors import RealtimeModel, WavSource, WavSink, tool, GeminiLiveError

The facade is ``RealtimeModel`` / ``RealtimeSession`` (``actors.realtime``); audio and
video come from a ``Source`` (``actors.capture``) and model audio goes to a ``Sink``
(``actors.playout``); tools are plain functions decorated with ``@tool``. Every error the
library raises on purpose is a ``GeminiLiveError`` (``actors.errors`` draws the tree).
The network seam is ``actors.transport`` (the WebSocket clients) and ``actors.endpoint``
(where to connect, with which credentials). The actors themselves (capture, encoder,
gemini_link, router, tool_executor, transcriber, metrics, playout) are one module each and
are wired in ``actors.pipeline``; the client's limits on what a server can make it hold
are in ``actors.limits``; the runtime they run on (supervisor, wiring, clock, messages)
is the ``runtime`` package.
"""

from actors.browser_capture import BrowserAudioSource, BrowserVideoSource
from actors.browser_playout import BrowserSink
from actors.browser_session import BrowserSocket, serve_browser
from actors.capture import (
    ArraySource,
    AudioDeviceUnavailable,
    CallableSource,
    CaptureError,
    FrameSource,
    ImageFilesSource,
    MicrophoneSource,
    Source,
    WavSource,
)
from actors.encoder import EncoderError
from actors.endpoint import Endpoint, InvalidApiKey, InvalidEndpoint, MissingCredentials
from actors.errors import (
    ConnectFailed,
    CredentialsRefused,
    GeminiLiveError,
    HandshakeRejected,
    InvalidRequest,
    LinkError,
    ModelNotSupported,
    ReconnectGaveUp,
    SessionClosed,
    SinkError,
    SupervisorGaveUp,
    TransportError,
)
from actors.events import ResponseContent, event_name, event_record
from actors.gemini_link import LinkOptions
from actors.pipeline import Pipeline
from actors.playout import CollectorSink, NullSink, PlayoutOptions, Sink, SpeakerSink, WavSink
from actors.realtime import (
    Capabilities,
    EncodeOptions,
    RealtimeModel,
    RealtimeSession,
    TranscriptionOptions,
)
from actors.resumption import FileHandleStore, HandleStore
from actors.tokens import EphemeralToken, TokenMintError, mint_token
from actors.tools import (
    BuiltinTool,
    CodeExecution,
    ComputerUse,
    EnterpriseWebSearch,
    FileSearch,
    GoogleMaps,
    GoogleSearch,
    GoogleSearchRetrieval,
    McpServer,
    RawTool,
    Tool,
    ToolArgumentsError,
    ToolDefinitionError,
    ToolSet,
    UrlContext,
    VertexRagRetrieval,
    tool,
)
from actors.transport import (
    NativeTransport,
    Transport,
    TransportClosed,
    WebSocketTransport,
)
from protocol.client_rules import ModelRuleError
from runtime.gc_tuning import GcTuning, tune_gc

__all__ = [
    "ArraySource",
    "AudioDeviceUnavailable",
    "BrowserAudioSource",
    "BrowserSink",
    "BrowserSocket",
    "BrowserVideoSource",
    "BuiltinTool",
    "CallableSource",
    "Capabilities",
    "CaptureError",
    "CodeExecution",
    "CollectorSink",
    "ComputerUse",
    "ConnectFailed",
    "CredentialsRefused",
    "EncodeOptions",
    "EncoderError",
    "Endpoint",
    "EnterpriseWebSearch",
    "EphemeralToken",
    "FileHandleStore",
    "FileSearch",
    "FrameSource",
    "GcTuning",
    "GeminiLiveError",
    "GoogleMaps",
    "GoogleSearch",
    "GoogleSearchRetrieval",
    "HandleStore",
    "HandshakeRejected",
    "ImageFilesSource",
    "InvalidApiKey",
    "InvalidEndpoint",
    "InvalidRequest",
    "LinkError",
    "LinkOptions",
    "McpServer",
    "MicrophoneSource",
    "MissingCredentials",
    "ModelNotSupported",
    "ModelRuleError",
    "NativeTransport",
    "NullSink",
    "Pipeline",
    "PlayoutOptions",
    "RawTool",
    "RealtimeModel",
    "RealtimeSession",
    "ReconnectGaveUp",
    "ResponseContent",
    "SessionClosed",
    "Sink",
    "SinkError",
    "Source",
    "SpeakerSink",
    "SupervisorGaveUp",
    "TokenMintError",
    "Tool",
    "ToolArgumentsError",
    "ToolDefinitionError",
    "ToolSet",
    "TranscriptionOptions",
    "Transport",
    "TransportClosed",
    "TransportError",
    "UrlContext",
    "VertexRagRetrieval",
    "WavSink",
    "WavSource",
    "WebSocketTransport",
    "event_name",
    "event_record",
    "mint_token",
    "serve_browser",
    "tool",
    "tune_gc",
]
