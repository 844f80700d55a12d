"""The emulator's WebSocket server: handshake, authentication, setup, and sessions.

``open_emulator()`` serves on loopback (port 0 by default) and yields an ``Emulator`` with
its ``url``; with ``tls=True`` it serves wss:// with a certificate from a throwaway trustme
CA whose PEM path is ``ca_path``. Each accepted connection runs an
``emulator.connection.Connection``. Conversation state lives here, keyed by resumption
handle, so a new connection with a valid handle continues where the old one stopped.
"""

from __future__ import annotations

import logging
import re
import secrets
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import trio

from emulator.faults import Fault, FaultPlan, parse_fault
from emulator.reactor import ReadReactor
from emulator.scenario import Scenario
from emulator.stats import EmulatorStats
from emulator.wsserver import accept, accept_upgrade, reject
from runtime.clock import Pacer

log = logging.getLogger("emulator")

MAX_CLIENT_FRAME = 16 << 20

_GEMINI_PATH = re.compile(
    r"^/ws/google\.ai\.generativelanguage\.(v1alpha|v1beta|v1)\.GenerativeService\."
    r"(BidiGenerateContent|BidiGenerateContentConstrained)$"
)
_VERTEX_PATH = re.compile(
    r"^/ws/google\.cloud\.aiplatform\.(v1beta1|v1)\.LlmBidiService/BidiGenerateContent$"
)
INVALID_KEY_REASON = "API key not valid. Please pass a valid API key."


@dataclass
class Handshake:
    """What the client's HTTP upgrade request said, checked."""

    api: str  # "gemini" or "vertex"
    version: str
    credential: str | None
    ephemeral: bool


@dataclass
class ConversationState:
    """What survives a connection: resumed by handle."""

    session_id: str
    next_turn: int = 0
    history: list[tuple[str, str]] = field(default_factory=list)
    audio_seconds: float = 0.0
    video_seen: bool = False
    call_counter: int = 0
    call_ids: set[str] = field(default_factory=set)


def parse_handshake(path: str, headers: Iterable[tuple[bytes, bytes]]) -> Handshake | None:
    """The API and credential of an upgrade request, or None for an unknown path."""
    parts = urlsplit("/" + path.lstrip("/"))  # "//ws/..." would otherwise parse as a host
    route = parts.path
    query = parse_qs(parts.query)
    header = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}
    credential = header.get("x-goog-api-key") or next(iter(query.get("key", [])), None)
    ephemeral = False
    authorization = header.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() in ("bearer", "token") and token:
        credential = credential or token.strip()
        ephemeral = scheme.lower() == "token"
    if not credential and query.get("access_token"):
        credential, ephemeral = query["access_token"][0], True
    if match := _GEMINI_PATH.match(route):
        return Handshake(
            "gemini",
            match.group(1),
            credential,
            ephemeral or match.group(2).endswith("Constrained"),
        )
    if match := _VERTEX_PATH.match(route):
        return Handshake("vertex", match.group(1), credential, False)
    return None


class Emulator:
    """A running emulator. Use ``open_emulator()`` to get one."""

    def __init__(
        self,
        *,
        scenario: Scenario,
        api_key: str | None,
        faults: list[Fault],
        ca_path: Path | None,
        client_ssl: ssl.SSLContext | None,
    ) -> None:
        self.scenario = scenario
        self.faults = FaultPlan(list(faults))
        self.ca_path = ca_path
        self.client_ssl_context = client_ssl
        self.url = ""
        self.port = 0
        self.stats = EmulatorStats()
        self.active_connections = 0
        self.max_active_connections = 0
        self._connections_changed = trio.Event()
        self._api_key = api_key
        self._reactor = ReadReactor()
        self.pacer = Pacer()
        self._states: dict[str, ConversationState] = {}

    def __repr__(self) -> str:  # never shows the key
        return f"<Emulator {self.url} connections={self.connections}>"

    @property
    def connections(self) -> int:
        """Connections accepted so far (a handshake with a known path)."""
        return self.stats.connections

    @property
    def https_base_url(self) -> str:
        """The base URL google-genai needs (it always dials wss://)."""
        return self.url.replace("wss://", "https://").replace("ws://", "http://")

    def _set_active(self, count: int) -> None:
        self.active_connections = count
        self.max_active_connections = max(self.max_active_connections, count)
        self._connections_changed.set()
        self._connections_changed = trio.Event()

    async def wait_until_idle(self) -> None:
        """Wait until no connection is open (each handler has finished)."""
        while self.active_connections:
            await self._connections_changed.wait()

    def key_accepted(self, credential: str | None) -> bool:
        return self._api_key is None or (
            credential is not None and secrets.compare_digest(credential, self._api_key)
        )

    def new_state(self) -> ConversationState:
        session_id = f"{self.scenario.behaviour.session_id_prefix}-{secrets.token_hex(6)}"
        return ConversationState(session_id=session_id)

    def issue_handle(self, state: ConversationState) -> str:
        handle = f"{state.session_id}.{secrets.token_urlsafe(12)}"
        self._states[handle] = state
        return handle

    def resume(self, handle: str) -> ConversationState | None:
        return self._states.get(handle)

    async def handle_stream(
        self, stream: trio.abc.Stream, server_ssl: ssl.SSLContext | None
    ) -> None:
        """Serve one TCP connection: TLS, the upgrade, then a ``Connection``; closes it."""
        from emulator.connection import Connection  # the connection module imports this one

        if server_ssl is not None:
            stream = trio.SSLStream(stream, server_ssl, server_side=True)
            try:
                with trio.fail_after(10):
                    await stream.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError):
                log.info("TLS handshake failed")
                await trio.aclose_forcefully(stream)
                return
        upgrade = await accept_upgrade(stream)
        if upgrade is None:
            return
        request, leftover = upgrade
        handshake = parse_handshake(request.target, request.headers)
        if handshake is None:
            log.info("rejected unknown path %s", urlsplit(request.target).path)
            await reject(stream, 404, b"unknown path")
            return
        reactor = self._reactor if server_ssl is None else None
        ws = await accept(
            stream, request, leftover, max_message_size=MAX_CLIENT_FRAME, reactor=reactor
        )
        self.stats.connections += 1
        self._set_active(self.active_connections + 1)
        index = self.connections
        try:
            if not self.key_accepted(handshake.credential):
                log.info("connection %d: refused credential", index)
                await ws.aclose(1007, INVALID_KEY_REASON)
                return
            await Connection(self, ws, handshake, index).run()
        finally:
            with trio.CancelScope(shield=True):
                await ws.abort()
            self._set_active(self.active_connections - 1)


def _tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext, Path]:
    import trustme

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost", "::1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    ca_file = Path(tempfile.mkdtemp(prefix="gemini-emulator-")) / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server_context, client_context, ca_file


@asynccontextmanager
async def open_emulator(
    *,
    scenario: Scenario | None = None,
    tls: bool = False,
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    faults: Iterable[str | Fault] = (),
) -> AsyncIterator[Emulator]:
    """Serve an emulator until the block exits; yields it once it accepts connections.

    On exit (or cancellation) the server stops and every open connection is dropped.
    Raises ``FaultSpecError`` for a bad fault spec before anything is served.
    """
    scenario = scenario or Scenario()
    parsed = [f if isinstance(f, Fault) else parse_fault(f) for f in faults]
    parsed += [parse_fault(entry.spec) for entry in scenario.faults]
    server_ssl, client_ssl, ca_path = _tls_contexts() if tls else (None, None, None)
    emulator = Emulator(
        scenario=scenario, api_key=api_key, faults=parsed, ca_path=ca_path, client_ssl=client_ssl
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(emulator._reactor.run)
        nursery.start_soon(emulator.pacer.run)
        listeners = await nursery.start(
            partial(
                trio.serve_tcp,
                partial(emulator.handle_stream, server_ssl=server_ssl),
                port,
                host=host,
                handler_nursery=nursery,
            )
        )
        emulator.port = listeners[0].socket.getsockname()[1]
        shown_host = f"[{host}]" if ":" in host else host
        emulator.url = f"{'wss' if tls else 'ws'}://{shown_host}:{emulator.port}"
        try:
            yield emulator
        finally:
            nursery.cancel_scope.cancel()
