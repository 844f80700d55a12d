"""Bounded hand-offs from a session to its application, which may never read them.

- ``EventQueue``: ``session.events()``. At most ``max_events`` events and ``max_bytes``
  of their payload (audio bytes, text characters) wait; past either, the oldest
  *low-value* event goes (model audio, text and transcript fragments, interim
  transcripts, playout progress and underruns, metrics, usage and resumption updates,
  media). Control events (turns, tool calls and results, final transcripts, connection
  and actor events, errors, drop reports) are never dropped. The application's next read
  starts with one ``Dropped`` counting what went since its last read.
- ``StreamFeed``: one reply's ``text_stream`` / ``audio_stream``; all of a session's
  together hold at most what its ``StreamBudget`` allows. Past it, the oldest replies'
  unread items go first, then the current reply's new items are refused; both counted
  and reported (the reply's audio also reaches the sink, its text the transcripts).

Both are O(1) per event whatever the application does.
"""

from __future__ import annotations

import collections
import math
from typing import Any, Generic, TypeVar

import trio

from actors import limits
from actors.events import Event, ResponseContent
from runtime import messages as m
from runtime.drops import DropCounter

T = TypeVar("T")

LOW_VALUE: tuple[type, ...] = (
    m.ModelAudio,
    m.ModelText,
    m.TranscriptFragment,
    m.TranscriptUpdated,
    m.InterimInputTranscript,
    m.PlayoutProgress,
    m.PlayoutUnderrun,
    m.MetricRecorded,
    m.UsageReported,
    m.ResumptionUpdated,
    m.AudioChunk,
    m.RawAudio,
    m.VideoFrame,
    m.RawVideo,
)


def payload_size(event: Event) -> int:
    """The bytes (audio, images) or characters (text) an event carries."""
    if isinstance(event, m.ModelAudio | m.AudioChunk | m.RawAudio | m.VideoFrame | m.RawVideo):
        return len(event.data)
    if isinstance(
        event, m.ModelText | m.TranscriptFragment | m.TranscriptUpdated | m.InterimInputTranscript
    ):
        return len(event.text)
    if isinstance(event, m.TranscriptCompleted):
        return len(event.transcript)
    return 0


class _Slot:
    __slots__ = ("event", "size")

    def __init__(self, event: Event, size: int) -> None:
        self.event: Event | None = event  # None once dropped
        self.size = size


class EventQueue:
    """See the module docstring. ``put`` never blocks; ``get`` waits for an event."""

    def __init__(
        self,
        max_events: int = limits.EVENT_QUEUE_EVENTS,
        max_bytes: int = limits.EVENT_QUEUE_BYTES,
    ) -> None:
        self.max_events, self.max_bytes = max_events, max_bytes
        self.dropped = 0  # in all
        self._slots: collections.deque[_Slot] = collections.deque()
        self._low: collections.deque[_Slot] = collections.deque()  # queued low-value, oldest first
        self._count = 0  # events queued (dropped ones excluded)
        self._bytes = 0
        self._holes = 0  # dropped slots still in _slots
        self._unreported = 0
        self._closed = False
        self._waiting = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return self._count

    def put(self, event: Event) -> None:
        slot = _Slot(event, payload_size(event))
        self._slots.append(slot)
        self._count += 1
        self._bytes += slot.size
        if isinstance(event, LOW_VALUE):
            self._low.append(slot)
        while (self._count > self.max_events or self._bytes > self.max_bytes) and self._low:
            self._drop(self._low.popleft())
        if self._holes > self._count + 64:  # never let dropped slots outgrow the queue
            self._slots = collections.deque(s for s in self._slots if s.event is not None)
            self._holes = 0
        self._waiting.unpark()

    def close(self) -> None:
        """No more events: ``get`` raises ``trio.EndOfChannel`` once the queue is empty."""
        self._closed = True
        self._waiting.unpark_all()

    async def get(self) -> Event:
        """The next event (first, a ``Dropped`` if any were dropped since the last read);
        waits for one. Raises ``trio.EndOfChannel`` after ``close`` and the last event.
        Cancelled, it takes nothing (a loop under ``move_on_after`` loses no event)."""
        while True:
            await trio.lowlevel.checkpoint_if_cancelled()
            event = self._next()
            if event is not None:
                await trio.lowlevel.cancel_shielded_checkpoint()  # taken: it must arrive
                return event
            if self._closed:
                raise trio.EndOfChannel
            await self._waiting.park()

    def _next(self) -> Event | None:
        if self._unreported:
            count, self._unreported = self._unreported, 0
            return m.Dropped(what="events the application did not read in time", count=count)
        while self._slots:
            slot = self._slots.popleft()
            if slot.event is None:
                self._holes -= 1
                continue
            if self._low and self._low[0] is slot:
                self._low.popleft()
            self._count -= 1
            self._bytes -= slot.size
            return slot.event
        return None

    def _drop(self, slot: _Slot) -> None:
        slot.event = None
        self._count -= 1
        self._bytes -= slot.size
        self._holes += 1
        self.dropped += 1
        self._unreported += 1


class StreamFeed(Generic[T]):
    """The sending side of one reply stream; ``receive`` is what the application gets.
    What it may hold unread is decided by the session's ``StreamBudget``."""

    def __init__(self, budget: StreamBudget, reply: int) -> None:
        self.reply = reply  # the turn: a reply never makes room by discarding its own
        self.send, self.receive = trio.open_memory_channel[T](math.inf)
        self._own = self.receive.clone()  # to discard unread items when the budget says so
        self.dropped = 0  # new items refused for lack of room
        self._sizes: collections.deque[int] = collections.deque()  # of the items still queued
        self._bytes = 0
        self._budget = budget
        budget.register(self)

    def put(self, item: T, size: int) -> None:
        if not self._budget.make_room(self, size):
            self.dropped += 1
            return
        self.send.send_nowait(item)
        self._sizes.append(size)
        self._bytes += size
        self._budget.count(1, size)

    def held(self) -> tuple[int, int]:
        """(items, bytes) queued and not yet taken by the application; what the
        application took since the last look is given back to the budget."""
        queued = self.send.statistics().current_buffer_used
        taken = taken_bytes = 0
        while len(self._sizes) > queued:  # the application took these (first in, first out)
            size = self._sizes.popleft()
            taken, taken_bytes = taken + 1, taken_bytes + size
        self._bytes -= taken_bytes
        self._budget.count(-taken, -taken_bytes)
        return queued, self._bytes

    def discard(self) -> int:
        """Throw away everything queued; how many items that was."""
        queued, queued_bytes = self.held()
        for _ in range(queued):
            self._own.receive_nowait()
        self._sizes.clear()
        self._bytes = 0
        self._budget.count(-queued, -queued_bytes)
        return queued

    @property
    def closed(self) -> bool:
        return self.send.statistics().open_send_channels == 0

    def close(self) -> None:
        self.send.close()


class StreamBudget:
    """What all of a session's reply streams may hold unread, together: ``max_items``
    items and ``max_bytes`` bytes (audio) or characters (text). Past it, the oldest other
    reply's unread items are discarded first (counted in ``discarded``); when only the
    reply being written holds anything, its new items are refused (it keeps its start).

    It keeps running totals; the application's reading of older replies is noticed only
    when the totals say the budget is full (one pass over the streams then), so a put
    costs O(1) amortized."""

    def __init__(
        self,
        max_items: int = limits.RESPONSE_STREAMS_ITEMS,
        max_bytes: int = limits.RESPONSE_STREAMS_BYTES,
    ) -> None:
        self.max_items, self.max_bytes = max_items, max_bytes
        self.discarded = DropCounter(
            "unread reply streams (the oldest replies' text and audio)", limits.DROP_REPORT_INTERVAL
        )
        self._feeds: collections.deque[StreamFeed[Any]] = collections.deque()
        self._items = 0  # held, as last seen
        self._bytes = 0

    def register(self, feed: StreamFeed[Any]) -> None:
        self._feeds.append(feed)

    def count(self, items: int, size: int) -> None:
        self._items += items
        self._bytes += size

    def make_room(self, feed: StreamFeed[Any], size: int) -> bool:
        """Whether ``feed`` may queue one more item of ``size``, after discarding older
        replies' unread items if that makes room."""
        feed.held()
        if self._fits(size):
            return True
        for other in list(self._feeds):  # what has the application read meanwhile?
            if other.held() == (0, 0) and other.closed and other is not feed:
                self._feeds.remove(other)  # read to the end: no longer counted
        for oldest in list(self._feeds):
            if self._fits(size):
                return True
            if oldest.reply != feed.reply:
                self.discarded.add(oldest.discard())
        return self._fits(size)

    def _fits(self, size: int) -> bool:
        return self._items < self.max_items and self._bytes + size <= self.max_bytes


class ReplyStreams:
    """The streams of one reply, as the seed's ``ResponseContent`` hands them out."""

    def __init__(self, turn_id: int, budget: StreamBudget) -> None:
        self.turn_id = turn_id
        self.text: StreamFeed[str] = StreamFeed(budget, turn_id)
        self.audio: StreamFeed[bytes] = StreamFeed(budget, turn_id)

    def content(self) -> ResponseContent:
        item = f"turn-{self.turn_id}-agent"
        return ResponseContent(
            item, item, self.text.receive, self.audio.receive, turn_id=self.turn_id
        )

    def close(self) -> list[m.Dropped]:
        """End both streams; what could not be queued on them, if anything."""
        self.text.close()
        self.audio.close()
        return [
            m.Dropped(
                what=f"reply {kind} stream not read (turn {self.turn_id})", count=feed.dropped
            )
            for kind, feed in (("text", self.text), ("audio", self.audio))
            if feed.dropped
        ]
