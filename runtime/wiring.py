"""The wiring: named memory channels whose original endpoints it owns.

Actors never receive the originals, only clones made for each incarnation
(``sender(name)``, ``receiver(name)``). A crashing actor closes its clones, not the
channel: its peers keep sending and receiving, and whatever was queued waits for the next
incarnation. The channels close when the wiring closes (``aclose``), at the end of the
session; receivers then see ``trio.EndOfChannel`` once the queue is drained.
"""

from __future__ import annotations

import math
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class Wiring(Generic[T]):
    def __init__(self) -> None:
        self._channels: dict[
            str, tuple[trio.MemorySendChannel[T], trio.MemoryReceiveChannel[T]]
        ] = {}
        self._closed = False
        self._senders_closed = False

    def add(self, name: str, buffer: float = math.inf) -> None:
        """Create the channel ``name`` holding up to ``buffer`` queued messages."""
        if name in self._channels:
            raise ValueError(f"channel {name!r} exists already")
        self._channels[name] = trio.open_memory_channel[T](buffer)

    def sender(self, name: str) -> trio.MemorySendChannel[T]:
        """A new send endpoint of ``name``, for one actor incarnation to own and close.
        Raises ``trio.ClosedResourceError`` after ``close_senders()``."""
        if self._senders_closed:
            raise trio.ClosedResourceError(f"channel {name!r} takes no new senders: it is ending")
        return self._endpoints(name)[0].clone()

    def receiver(self, name: str) -> trio.MemoryReceiveChannel[T]:
        """A new receive endpoint of ``name``, for one actor incarnation to own and close."""
        return self._endpoints(name)[1].clone()

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
    checkpoint where they receive. Raises what ``send`` raises on closed channels."""
    try:
        channel.send_nowait(message)
    except trio.WouldBlock:
        await channel.send(message)


class messages(Generic[T]):  # used like a function: ``async for x in messages(c)``
    """Iterate a receive channel, taking already-queued messages without the scheduler
    round trip ``receive`` always makes (under load, an actor then handles its whole
    backlog in one step). Waits like ``receive`` when nothing is queued, ends with the
    channel; does not close it."""

    def __init__(self, channel: trio.MemoryReceiveChannel[T]) -> None:
        self._channel = channel

    def __aiter__(self) -> messages[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await take(self._channel)
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


async def take(channel: trio.MemoryReceiveChannel[T]) -> T:
    """``receive``, without its scheduler round trip when a message is already queued.
    Raises ``trio.EndOfChannel`` like ``receive`` (not a checkpoint when one is queued)."""
    try:
        return channel.receive_nowait()
    except trio.WouldBlock:
        return await channel.receive()
