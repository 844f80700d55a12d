"""The emulator's server: listening, TLS, the upgrade, credentials, and containment.

``open_emulator()`` serves on loopback (port 0 by default) and yields an ``Emulator`` with
its ``url``; with ``tls=True`` it serves wss:// with a certificate from a throwaway trustme
CA whose PEM path is ``ca_path`` (deleted when the emulator stops). Each accepted
connection runs an ``emulator.driver.SessionDriver``, or answers the one REST call
(``emulator.rest``: minting ephemeral tokens). Whatever one connection does, or whatever
bug it meets, ends that connection only (closed 1011 and logged); the accept loop and
every other session keep going. An error raised in an ``open_emulator()`` block comes out
as itself, not wrapped in an exception group.

Two ways to read sockets (``io=``): "fast", one epoll for every plain-TCP connection
(``emulator.reactor``, Linux only), and "portable", each connection's task reading its own
stream through trio's public API (any platform). "auto" takes the fast one where epoll
exists. TLS connections always read their own stream.
"""

from __future__ import annotations

import logging
import shutil
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit

import trio

from emulator import reactor, rest
from emulator.conversation import ConversationStore
from emulator.driver import CLOSE_WAIT_S, SessionDriver, SessionServices
from emulator.faults import Fault, FaultPlan, parse_fault
from emulator.handshake import INVALID_KEY_REASON, Handshake, credential_accepted, parse_handshake
from emulator.limits import (
    MAX_CONNECTIONS,
    MAX_PARTIAL_MESSAGE_BYTES_TOTAL,
    TLS_HANDSHAKE_TIMEOUT_S,
)
from emulator.scenario import Scenario
from emulator.stats import EmulatorStats
from emulator.tokens import TOKEN_PREFIX, Token, TokenStore
from emulator.wsserver import ByteBudget, PostStart, ServerWebSocket, accept, read_request, reject
from protocol.limits import MAX_CLIENT_MESSAGE_BYTES
from runtime.clock import Pacer

log = logging.getLogger("emulator")

IoMode = Literal["auto", "fast", "portable"]


def choose_io(io: IoMode) -> Literal["fast", "portable"]:
    """The way of reading sockets ``io`` asks for. Raises ``ValueError`` for "fast" where
    epoll does not exist, or for an unknown mode."""
    if io not in get_args(IoMode):
        raise ValueError(f"io must be one of {', '.join(get_args(IoMode))}, not {io!r}")
    if io == "portable" or (io == "auto" and not reactor.epoll_available()):
        return "portable"
    if not reactor.epoll_available():
        raise ValueError("io='fast' needs epoll (Linux); use io='portable' or 'auto'")
    return "fast"


class _PublicStream(trio.abc.Stream):
    """A trio stream seen through the public ``Stream`` interface only, so that the
    WebSocket reads and writes it with ``receive_some``/``send_all`` on every platform
    (it reaches for the socket underneath a ``SocketStream``, a Linux-tuned shortcut)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self._stream.aclose()


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
        io: Literal["fast", "portable"] = "portable",
        max_connections: int = MAX_CONNECTIONS,
        max_partial_bytes: int = MAX_PARTIAL_MESSAGE_BYTES_TOTAL,
    ) -> None:
        self.scenario = scenario
        self.faults = FaultPlan(list(faults))
        self.ca_path = ca_path
        self.client_ssl_context = client_ssl
        self.io = io
        self.max_connections = max_connections
        self.url = ""
        self.port = 0
        self.stats = EmulatorStats()
        self.active_connections = 0  # WebSocket sessions open now
        self.max_active_connections = 0
        self.open_streams = 0  # TCP connections being served (any stage), for the cap
        self.failures = 0  # connections ended by a bug of ours (closed 1011, logged)
        self._connections_changed = trio.Event()
        self._api_key = api_key
        self._reactor = reactor.ReadReactor() if io == "fast" else None
        self.pacer = Pacer()
        self.conversations = ConversationStore(
            id_prefix=scenario.behaviour.session_id_prefix, now=trio.current_time
        )
        # Tokens carry wall-clock times; trio's clock (virtual in tests) moves them.
        epoch, start = time.time(), trio.current_time()
        self.tokens = TokenStore(now=lambda: epoch + trio.current_time() - start)
        self.partial_bytes = ByteBudget(max_partial_bytes)  # over every connection
        self._services = SessionServices(
            scenario, self.faults, self.stats, self.pacer, self.conversations, self.tokens
        )

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
        return credential_accepted(credential, self._api_key)

    def _admit(self, handshake: Handshake) -> tuple[Token | None, tuple[int, str] | None]:
        """The token a connection opens with, or why its credential is refused (a close
        code and reason). The constrained endpoint takes tokens this emulator minted;
        the others take the API key, never a token."""
        credential = handshake.credential
        if handshake.constrained:
            token = self.tokens.find(credential)
            return token, None if token is not None else (1007, INVALID_KEY_REASON)
        if credential is not None and credential.startswith(TOKEN_PREFIX):
            if handshake.ephemeral and not handshake.key_given:  # ?access_token=
                return None, (1008, rest.NO_KEY)
            return None, (1007, INVALID_KEY_REASON)
        if not self.key_accepted(credential):
            return None, (1007, INVALID_KEY_REASON)
        return None, None

    async def run_reactor(self) -> None:
        """Serve the fast path's reads until cancelled (returns at once on the portable one)."""
        if self._reactor is not None:
            await self._reactor.run()

    async def handle_stream(
        self, stream: trio.abc.Stream, server_ssl: ssl.SSLContext | None
    ) -> None:
        """Serve one TCP connection: TLS, the upgrade, then a session; closes the stream.

        Never raises but cancellation: a bug met while serving is logged and ends this
        connection only.
        """
        self.open_streams += 1
        try:
            await self._serve(stream, server_ssl)
        except* Exception:
            self.failures += 1
            log.exception("a connection failed on an emulator bug; it alone is closed")
        finally:
            self.open_streams -= 1
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async def _serve(self, stream: trio.abc.Stream, server_ssl: ssl.SSLContext | None) -> None:
        direct = isinstance(stream, trio.SocketStream) and self._reactor is not None
        if isinstance(stream, trio.SocketStream) and self._reactor is None:
            stream = _PublicStream(stream)
        if server_ssl is not None:
            direct = False
            stream = trio.SSLStream(stream, server_ssl, server_side=True)
            try:
                with trio.fail_after(TLS_HANDSHAKE_TIMEOUT_S):
                    await stream.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError):
                log.info("TLS handshake failed")
                return
        upgrade = await read_request(stream)
        if isinstance(upgrade, PostStart):
            if self.open_streams > self.max_connections:
                await reject(stream, 503, b"too many connections")
                return
            await rest.serve_post(stream, upgrade.data, self.tokens, self.key_accepted)
            return
        if upgrade is None:
            return
        request, leftover = upgrade
        if self.open_streams > self.max_connections:
            log.warning("refused a connection: %d open, the limit", self.max_connections)
            await reject(stream, 503, b"too many connections")
            return
        handshake = parse_handshake(request.target, request.headers)
        if handshake is None:
            log.info("rejected unknown path %r", urlsplit(request.target).path[:200])
            await reject(stream, 404, b"unknown path")
            return
        ws = await accept(
            stream,
            request,
            leftover,
            max_message_size=MAX_CLIENT_MESSAGE_BYTES,
            reactor=self._reactor if direct else None,
            budget=self.partial_bytes,
        )
        await self._run_session(ws, handshake)

    async def _run_session(self, ws: ServerWebSocket, handshake: Handshake) -> None:
        self.stats.connections += 1
        self._set_active(self.active_connections + 1)
        index = self.connections
        try:
            token, refusal = self._admit(handshake)
            if refusal is not None:
                log.info("connection %d: refused credential", index)
                await ws.aclose(*refusal)
                return
            try:
                await SessionDriver(self._services, ws, handshake, index, token).run()
            except* Exception:
                with trio.move_on_after(CLOSE_WAIT_S):
                    await ws.aclose(1011, "internal error")
                raise
        finally:
            with trio.CancelScope(shield=True):
                await ws.abort()
            self._set_active(self.active_connections - 1)


@asynccontextmanager
async def _one_error_as_itself() -> AsyncIterator[None]:
    """Let a lone exception out of a nursery as itself: the error raised in the
    ``open_emulator`` block, not an ExceptionGroup around it (trio's strict groups)."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) != 1 or isinstance(group.exceptions[0], BaseExceptionGroup):
            raise
        error = group.exceptions[0]
        raise error from error.__cause__


def _tls_contexts(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext, Path]:
    import trustme

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost", "::1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    ca_file = directory / "ca.pem"
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
    io: IoMode = "auto",
    max_connections: int = MAX_CONNECTIONS,
    max_partial_bytes: int = MAX_PARTIAL_MESSAGE_BYTES_TOTAL,
) -> AsyncIterator[Emulator]:
    """Serve an emulator until the block exits; yields it once it accepts connections.

    On exit (or cancellation, or an error) the server stops, every open connection is
    dropped and the TLS CA's temporary directory is deleted. An exception raised in the
    block propagates as itself (not inside an ExceptionGroup). Raises ``FaultSpecError``
    for a bad fault spec and ``ValueError`` for an ``io`` this platform lacks, before
    anything is served.
    """
    scenario = scenario or Scenario()
    parsed = [f if isinstance(f, Fault) else parse_fault(f) for f in faults]
    parsed += [parse_fault(entry.spec) for entry in scenario.faults]
    chosen = choose_io(io)
    tls_dir = Path(tempfile.mkdtemp(prefix="gemini-emulator-")) if tls else None
    try:
        server_ssl, client_ssl, ca_path = _tls_contexts(tls_dir) if tls_dir else (None, None, None)
        emulator = Emulator(
            scenario=scenario,
            api_key=api_key,
            faults=parsed,
            ca_path=ca_path,
            client_ssl=client_ssl,
            io=chosen,
            max_connections=max_connections,
            max_partial_bytes=max_partial_bytes,
        )
        # Bound before the nursery, so that a port in use is a plain OSError.
        listeners = await trio.open_tcp_listeners(port, host=host)
        async with _one_error_as_itself(), trio.open_nursery() as nursery:
            nursery.start_soon(emulator.run_reactor)
            nursery.start_soon(emulator.pacer.run)
            await nursery.start(
                partial(
                    trio.serve_listeners,
                    partial(emulator.handle_stream, server_ssl=server_ssl),
                    listeners,
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
    finally:
        if tls_dir is not None:
            shutil.rmtree(tls_dir, ignore_errors=True)
