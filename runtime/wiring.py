"""The wiring: named memory channels whose original endpoints it owns.

Actors never receive the originals, only clones made for each incarnation
(``sender(name)``, ``receiver(name)``). A crashing actor closes its clones, not the
channel: its peers keep sending and receiving, and whatever was queued waits for the next
incarnation. The channels close when the wiring closes (``aclose``), at the end of the
session; receivers then see ``trio.EndOfChannel`` once the queue is drained.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import trio

T = TypeVar("T")


class Wake:
    """The type of ``WAKE``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "WAKE"


# An inline handler's third answer: handled, and wake the receiver with no message (it
# left work for the receiver's own task: ``receive_or_wake`` returns None to it once).
WAKE = Wake()


class _Handoff(Generic[T]):
    """One wiring channel's inline hand-off: the synchronous handler its receiver offers
    while it waits with nothing queued (``messages(channel, inline=...)``), which a sender
    runs in its own task (``deliver``) instead of queuing the message and waking the
    receiver: one task step less per message. At most one receiver offers one at a time."""

    __slots__ = ("error", "handler", "scope", "woken")

    def __init__(self) -> None:
        self.handler: Callable[[T], bool | Wake] | None = None  # only while its receiver waits
        self.scope: trio.CancelScope | None = None  # around that wait
        self.error: Exception | None = None  # the handler failed: its receiver raises it
        self.woken = False  # the handler answered WAKE: its receiver returns None

    async def receive(
        self, channel: trio.MemoryReceiveChannel[T], handler: Callable[[T], bool | Wake]
    ) -> T | None:
        """``channel.receive()``, offering ``handler`` while it waits; None when the
        handler answered ``WAKE``. Raises what the handler raised when a sender ran it
        (the receiver fails as if it had run it)."""
        if self.handler is not None:
            raise RuntimeError("another receiver already offers an inline handler here")
        self.woken, self.error = False, None  # (left by a wait cancelled from outside)
        with trio.CancelScope() as scope:
            self.handler, self.scope = handler, scope
            try:
                return await channel.receive()
            finally:
                self.handler = self.scope = None
        if self.woken:
            self.woken = False
            return None
        error, self.error = self.error, None
        assert error is not None  # only a failed or waking handler cancels this scope
        raise error

    def run(self, channel: trio.MemorySendChannel[T], message: T) -> bool:
        """Run the waiting receiver's handler on ``message`` in this (the sender's) task,
        if it waits with nothing queued; whether the message was handled. A handler
        that fails is the receiver's failure: it is woken with the error, and the
        message counts as taken (as by an actor that crashed handling it)."""
        handler = self.handler
        if handler is None or channel._closed:  # a closed sender raises, as send does
            return False
        # What ``statistics()`` says, read directly: that builds an object per call, and
        # this runs per message (tests/runtime/test_wiring.py pins these private fields).
        state = channel._state
        if state.data or not state.receive_tasks:
            return False  # queued messages go first; a receiver already woken takes it
        self.handler = None  # a message the handler sends to this channel is queued
        try:
            handled = handler(message)
        except Exception as exc:
            self.error = exc
            assert self.scope is not None
            self.scope.cancel()
            return True
        if handled is WAKE:  # nothing more inline until the receiver has run
            self.woken = True
            assert self.scope is not None
            self.scope.cancel()
            return True
        self.handler = handler
        return handled is True


# The hand-off of each channel the wiring made, by each endpoint clone it handed out.
_BY_SENDER: weakref.WeakKeyDictionary[Any, _Handoff[Any]] = weakref.WeakKeyDictionary()
_BY_RECEIVER: weakref.WeakKeyDictionary[Any, _Handoff[Any]] = weakref.WeakKeyDictionary()


class Wiring(Generic[T]):
    def __init__(self) -> None:
        self._channels: dict[
            str, tuple[trio.MemorySendChannel[T], trio.MemoryReceiveChannel[T]]
        ] = {}
        self._handoffs: dict[str, _Handoff[T]] = {}
        self._closed = False
        self._senders_closed = False

    def add(self, name: str, buffer: float = math.inf) -> None:
        """Create the channel ``name`` holding up to ``buffer`` queued messages."""
        if name in self._channels:
            raise ValueError(f"channel {name!r} exists already")
        self._channels[name] = trio.open_memory_channel[T](buffer)
        self._handoffs[name] = _Handoff()

    def sender(self, name: str) -> trio.MemorySendChannel[T]:
        """A new send endpoint of ``name``, for one actor incarnation to own and close.
        Raises ``trio.ClosedResourceError`` after ``close_senders()``."""
        if self._senders_closed:
            raise trio.ClosedResourceError(f"channel {name!r} takes no new senders: it is ending")
        clone = self._endpoints(name)[0].clone()
        _BY_SENDER[clone] = self._handoffs[name]
        return clone

    def receiver(self, name: str) -> trio.MemoryReceiveChannel[T]:
        """A new receive endpoint of ``name``, for one actor incarnation to own and close
        (``messages(..., inline=...)`` on it may offer an inline handler to senders)."""
        clone = self._endpoints(name)[1].clone()
        _BY_RECEIVER[clone] = self._handoffs[name]
        return clone

    def queued(self, name: str) -> int:
        """How many messages wait in ``name``."""
        return self._endpoints(name)[0].statistics().current_buffer_used

    def _endpoints(
        self, name: str
    ) -> tuple[trio.MemorySendChannel[T], trio.MemoryReceiveChannel[T]]:
        if self._closed:
            raise trio.ClosedResourceError("the wiring is closed")
        try:
            return self._channels[name]
        except KeyError:
            raise KeyError(f"no channel {name!r}; channels: {sorted(self._channels)}") from None

    def close_senders(self) -> None:
        """Close every original send endpoint: each channel ends once the clones made
        for its senders are closed too. The receive ends stay open (a late message from a
        sender that is still finishing is queued, not refused). Idempotent."""
        self._senders_closed = True
        for send, _ in self._channels.values():
            send.close()

    def close(self) -> None:
        """Close every original endpoint: once the clones are closed too, the channels end.
        Idempotent."""
        self.close_senders()
        self._closed = True
        for _, receive in self._channels.values():
            receive.close()

    async def aclose(self) -> None:
        """``close()``, as an async resource does it (a checkpoint)."""
        self.close()
        await trio.lowlevel.checkpoint()


async def deliver(channel: trio.MemorySendChannel[T], message: T) -> None:
    """Send ``message``; when the channel has room (every wiring channel is unbounded),
    without the scheduler round trip ``send`` always makes. When it is full, waits like
    ``send``. Unlike ``send`` it is not a checkpoint when there is room: actors' loops
    checkpoint where they receive. Raises what ``send`` raises on closed channels.

    On a wiring channel whose receiver waits, with nothing queued, offering an inline
    handler (``messages(..., inline=...)``), runs that handler here instead, in the
    sender's task: the message is handled exactly when the receiver would have taken it
    next, without waking it (if the handler declines it, it is queued as usual)."""
    try:
        deliver_nowait(channel, message)
    except trio.WouldBlock:
        await channel.send(message)


def deliver_nowait(channel: trio.MemorySendChannel[T], message: T) -> None:
    """``deliver`` without ever waiting, for synchronous code (inline handlers, clock
    callbacks): runs the receiver's inline handler or queues ``message``. Raises
    ``trio.WouldBlock`` when the channel is full (never on an unbounded one), and what
    ``send_nowait`` raises on closed channels."""
    handoff = _BY_SENDER.get(channel)
    if handoff is not None and handoff.handler is not None and handoff.run(channel, message):
        return
    channel.send_nowait(message)


class messages(Generic[T]):  # used like a function: ``async for x in messages(c)``
    """Iterate a receive channel, taking already-queued messages without the scheduler
    round trip ``receive`` always makes (under load, an actor then handles its whole
    backlog in one step). Waits like ``receive`` when nothing is queued, ends with the
    channel; does not close it.

    ``inline``: a synchronous handler that senders may run in their own task while this
    loop waits with nothing queued (on a channel from a ``Wiring``; see ``deliver``). It
    returns whether it handled the message (False: nothing done, the message is queued
    for this loop; ``WAKE`` is for ``receive_or_wake`` only: here it counts as handled).
    It must do exactly what the loop's body does for that message,
    without waiting (no checkpoint, nothing that blocks). Whatever it raises is raised
    here, by the loop, as if the body had raised it."""

    def __init__(
        self,
        channel: trio.MemoryReceiveChannel[T],
        inline: Callable[[T], bool | Wake] | None = None,
    ) -> None:
        self._channel = channel
        self._inline = inline
        self._handoff: _Handoff[T] | None = None
        if inline is not None:
            self._handoff = _BY_RECEIVER.get(channel)

    def __aiter__(self) -> messages[T]:
        return self

    async def __anext__(self) -> T:
        try:
            if self._handoff is None or self._inline is None:
                return await take(self._channel)
            while True:
                try:
                    return self._channel.receive_nowait()
                except trio.WouldBlock:
                    message = await self._handoff.receive(self._channel, self._inline)
                if message is not None:
                    return message
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


async def receive_or_wake(
    channel: trio.MemoryReceiveChannel[T], inline: Callable[[T], bool | Wake]
) -> T | None:
    """The next message of ``channel`` (a ``Wiring`` channel), offering ``inline`` to
    senders while it waits with nothing queued (as ``messages(..., inline=...)``); None
    when a sender ran ``inline`` and it answered ``WAKE``: it handled the message but
    left work for this task (e.g. the rest of a partial write). Raises
    ``trio.EndOfChannel`` when the channel ends, and what ``inline`` raised in a sender."""
    try:
        return channel.receive_nowait()
    except trio.WouldBlock:
        pass
    handoff = _BY_RECEIVER.get(channel)
    if handoff is None:
        return await channel.receive()
    return await handoff.receive(channel, inline)


async def take(channel: trio.MemoryReceiveChannel[T]) -> T:
    """``receive``, without its scheduler round trip when a message is already queued.
    Raises ``trio.EndOfChannel`` like ``receive`` (not a checkpoint when one is queued)."""
    try:
        return channel.receive_nowait()
    except trio.WouldBlock:
        return await channel.receive()
