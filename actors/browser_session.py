"""One voice session per browser socket: the browser's sources and sink on a pipeline.

    async def handler(socket: BrowserSocket) -> None:      # any WebSocket library
        await serve_browser(socket, model, tools=[get_weather])

``serve_browser`` builds a session the way any application does (``RealtimeModel.session``
with a source, a video source and a sink), with the browser transport actors in the
places of the microphone, the camera and the speaker: ``BrowserAudioSource``,
``BrowserVideoSource`` (``actors.browser_capture``) and ``BrowserSink``
(``actors.browser_playout``). It reads the socket (media to the sources, typed turns and
interruptions to the session), sends the session's events as JSON and the agent's voice as
binary (``actors.browser_wire`` describes both), and ends the session when the browser
goes, breaks the protocol, stops reading, or the session fails or runs out of time. The
socket is closed with a code and a reason saying which (``BrowserClosed``).

The socket is anything with ``receive`` (the next message, bytes or str;
``trio.EndOfChannel`` once the peer has closed), ``send`` and ``close``: ``web.app``
adapts an ASGI WebSocket (Hypercorn's), a test a memory channel pair.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import trio

from actors import browser_limits as limits
from actors import browser_wire as wire
from actors.browser_capture import BrowserAudioSource, BrowserVideoSource
from actors.browser_playout import BrowserSink
from actors.errors import GeminiLiveError
from actors.realtime import RealtimeModel, RealtimeSession
from actors.tools import Tool
from runtime.audio import OUTPUT_RATE
from runtime.errors import unwrapping


class BrowserSocket(Protocol):
    async def receive(self) -> bytes | str:
        """The next message; ``trio.EndOfChannel`` once the peer has closed."""

    async def send(self, message: bytes | str) -> None:
        """Send one message; ``trio.BrokenResourceError`` when the peer has gone."""

    async def close(self, code: int, reason: str) -> None:
        """Close with ``code`` and ``reason`` (nothing when already closed)."""


@dataclass(frozen=True)
class BrowserClosed:
    """How a browser session ended: the close code and reason the browser was sent."""

    code: int
    reason: str


@dataclass
class _Connection:
    socket: BrowserSocket
    model: RealtimeModel
    tools: tuple[Tool, ...]
    hello: dict[str, Any]
    audio: BrowserAudioSource = field(default_factory=BrowserAudioSource)
    video: BrowserVideoSource = field(default_factory=BrowserVideoSource)
    closed: BrowserClosed | None = None

    def __post_init__(self) -> None:
        self._outbox, self._outgoing = trio.open_memory_channel[bytes | str](limits.OUTBOX_MESSAGES)
        self.sink = BrowserSink(self.send)
        self._scope = trio.CancelScope()
        self._window_start = trio.current_time()
        self._window_messages = 0

    def note(self, code: int, reason: str) -> None:
        """Say how the session ended (the first reason given is the one the browser gets)."""
        if self.closed is None:
            self.closed = BrowserClosed(code, wire.reason(reason))

    def end(self, code: int, reason: str) -> None:
        """End the session now, saying why."""
        self.note(code, reason)
        self._scope.cancel()

    async def send(self, message: bytes | str) -> None:
        """Queue a message for the browser (waits while ``OUTBOX_MESSAGES`` wait); once
        the connection is closing, what is sent is discarded."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._outbox.send(message)

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.send(msgspec.json.encode(message).decode())

    async def run(self) -> BrowserClosed:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write)
                try:
                    with self._scope, trio.move_on_after(limits.MAX_SESSION_SECONDS) as timer:
                        await self._session()
                    if timer.cancelled_caught:
                        limit = limits.MAX_SESSION_SECONDS
                        self.note(wire.NORMAL, f"the session reached its {limit:g} s limit")
                finally:
                    self._outbox.close()  # the writer sends what is queued, then returns
                    nursery.cancel_scope.deadline = trio.current_time() + limits.DRAIN_SECONDS
        finally:
            self.note(wire.NORMAL, "session over")
            assert self.closed is not None
            with trio.CancelScope(shield=True), trio.move_on_after(limits.SEND_TIMEOUT):
                await self.socket.close(self.closed.code, self.closed.reason)
        return self.closed

    async def _session(self) -> None:
        try:
            session = self.model.session(
                tools=self.tools, source=self.audio, video=self.video, sink=self.sink
            )
            async with session as live:
                await self.send_json(
                    {
                        **self.hello,
                        "type": "ready",
                        "protocol": wire.VERSION,
                        "output_rate": OUTPUT_RATE,
                        "input_rates": list(limits.INPUT_RATES),
                    }
                )
                with unwrapping():  # the browser's fault is raised as itself
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._forward, live)
                        await self._read(live)
                        nursery.cancel_scope.cancel()
        except wire.BrowserProtocolError as exc:
            self.end(exc.code, str(exc))
        except GeminiLiveError as exc:
            await self.send_json({"type": "error", "message": str(exc)})
            self.end(wire.INTERNAL_ERROR, f"session failed: {exc}")

    async def _read(self, live: RealtimeSession) -> None:
        """Take the browser's messages until it closes; ``BrowserProtocolError`` for
        anything it must not send."""
        while True:
            try:
                message = await self.socket.receive()
            except trio.EndOfChannel:
                self.note(wire.NORMAL, "the browser closed the session")
                return
            self._count()
            if isinstance(message, bytes):
                media = wire.decode_binary(message)
                if isinstance(media, wire.AudioIn):
                    await self.audio.feed(media)
                else:
                    await self.video.feed(media)
                continue
            control = wire.decode_control(message)
            if isinstance(control, wire.TextTurn):
                live.send_text(control.text)
            else:
                live.interrupt()

    def _count(self) -> None:
        now = trio.current_time()
        if now - self._window_start >= limits.RATE_WINDOW:
            self._window_start, self._window_messages = now, 0
        self._window_messages += 1
        if self._window_messages > limits.MAX_MESSAGES_PER_WINDOW:
            raise wire.BrowserProtocolError(
                f"more than {limits.MAX_MESSAGES_PER_WINDOW} messages in {limits.RATE_WINDOW:g} s",
                wire.POLICY_VIOLATION,
            )

    async def _forward(self, live: RealtimeSession) -> None:
        async for event in live.events():
            message = wire.event_message(event)
            if message is not None:
                await self.send_json(message)

    async def _write(self) -> None:
        """Send the outbox to the browser in order, each message within ``SEND_TIMEOUT``;
        a browser that does not take one, or has gone, ends the session."""
        async with self._outgoing:
            async for message in self._outgoing:
                with trio.move_on_after(limits.SEND_TIMEOUT) as timer:
                    try:
                        await self.socket.send(message)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        self.end(wire.GOING_AWAY, "the browser went away")
                        return
                if timer.cancelled_caught:
                    self.end(
                        wire.POLICY_VIOLATION,
                        f"the browser took no message for {limits.SEND_TIMEOUT:g} s",
                    )
                    return


async def serve_browser(
    socket: BrowserSocket,
    model: RealtimeModel,
    *,
    tools: Iterable[Tool] = (),
    hello: dict[str, Any] | None = None,
) -> BrowserClosed:
    """Run one session for one connected browser socket and close the socket.

    Waits until the browser closes, breaks the protocol (closed with 1003, 1007, 1008 or
    1009 and a reason naming the limit), stops taking messages for ``SEND_TIMEOUT``
    (1008), the session fails (an ``error`` message, then 1011 with the error), or
    ``MAX_SESSION_SECONDS`` pass (1000). The session's actors have stopped when it
    returns how the socket was closed. ``hello``'s fields are added to the ``ready``
    message (``web`` says which backend the session talks to).
    Cancelled, it stops the session and closes the socket (1000) before the
    cancellation goes on."""
    connection = _Connection(socket, model, tuple(tools), dict(hello or {}))
    return await connection.run()
