"""The application's event queue and reply streams: bounded whatever the application does."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from actors import limits
from actors.event_queue import EventQueue, ReplyStreams, StreamBudget
from runtime import messages as m

AUDIO = bytes(1920)  # 40 ms at 24 kHz


def audio(n: int) -> m.ModelAudio:
    return m.ModelAudio(turn_id=1, data=AUDIO, offset=n)


def progress(n: int) -> m.PlayoutProgress:
    return m.PlayoutProgress(turn_id=1, samples_played=n)


def drain(queue: EventQueue) -> list[object]:
    out: list[object] = []
    while (event := queue._next()) is not None:
        out.append(event)
    return out


@pytest.mark.parametrize("extra", [0, 1])
def test_the_event_count_bound(extra: int) -> None:
    queue = EventQueue()
    queue.put(m.TurnStarted(turn_id=1))
    for n in range(limits.EVENT_QUEUE_EVENTS - 1 + extra):
        queue.put(progress(n))
    assert len(queue) == limits.EVENT_QUEUE_EVENTS
    got = drain(queue)
    if extra:  # the oldest low-value event went; the reader hears of it first
        assert got[0] == m.Dropped(what="events the application did not read in time", count=1)
        assert got[1] == m.TurnStarted(turn_id=1)
        assert got[2] == progress(1)
    else:
        assert got[0] == m.TurnStarted(turn_id=1)
        assert got[1] == progress(0)
    assert got[-1] == progress(limits.EVENT_QUEUE_EVENTS - 2 + extra)


@pytest.mark.parametrize("extra", [0, 1])
def test_the_payload_bound(extra: int) -> None:
    queue = EventQueue()
    fits = limits.EVENT_QUEUE_BYTES // len(AUDIO)
    for n in range(fits):
        queue.put(audio(n))
    queue.put(
        m.ModelText(turn_id=1, text="x" * (limits.EVENT_QUEUE_BYTES - fits * len(AUDIO) + extra))
    )
    assert queue.dropped == extra
    assert queue._bytes <= limits.EVENT_QUEUE_BYTES


def test_control_events_are_never_dropped() -> None:
    queue = EventQueue(max_events=10, max_bytes=100)
    calls = [m.ToolCallRequested(call_id=str(n), name="f", args={}, turn_id=1) for n in range(50)]
    for n, call in enumerate(calls):
        queue.put(call)
        queue.put(audio(n))
    got = drain(queue)
    assert [x for x in got if isinstance(x, m.ToolCallRequested)] == calls
    assert isinstance(got[0], m.Dropped)
    assert got[0].count == 50  # every audio event went: the calls alone fill the queue
    assert queue.dropped == 50


def test_a_queue_nobody_reads_stays_bounded_in_memory() -> None:
    queue = EventQueue(max_events=100, max_bytes=1 << 30)
    for n in range(100_000):
        queue.put(audio(n))
    assert len(queue) == 100
    assert len(queue._slots) <= 2 * 100 + 64  # dropped slots do not pile up either
    assert queue.dropped == 100_000 - 100


async def test_get_waits_then_ends_after_close(autojump_clock: MockClock) -> None:
    queue = EventQueue()
    got: list[object] = []

    async def reader() -> None:
        while True:
            try:
                got.append(await queue.get())
            except trio.EndOfChannel:
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.sleep(1)
        queue.put(m.TurnStarted(turn_id=1))
        await trio.sleep(1)
        queue.close()
    assert got == [m.TurnStarted(turn_id=1)]


@pytest.mark.parametrize("extra", [0, 1])
def test_a_reply_stream_holds_the_budgets_bytes_then_refuses(extra: int) -> None:
    reply = ReplyStreams(1, StreamBudget())
    fits = limits.RESPONSE_STREAMS_BYTES // len(AUDIO)
    for _ in range(fits + extra):
        reply.audio.put(AUDIO, len(AUDIO))
    assert reply.audio.dropped == extra
    for _ in range(10):  # the application reads some: room again
        reply.audio.receive.receive_nowait()
    reply.audio.put(AUDIO, len(AUDIO))
    assert reply.audio.dropped == extra


@pytest.mark.parametrize("extra", [0, 1])
def test_reply_streams_hold_the_budgets_items_then_refuse(extra: int) -> None:
    reply = ReplyStreams(1, StreamBudget())
    for _ in range(limits.RESPONSE_STREAMS_ITEMS + extra):
        reply.text.put("a", 1)
    assert reply.text.dropped == extra


def test_older_unread_replies_make_room_for_the_current_one() -> None:
    # An application that never reads its streams: each reply's audio is kept until the
    # budget is full, then the oldest replies' go, so memory stays bounded over any
    # number of turns and the newest reply is whole.
    budget = StreamBudget(max_bytes=10 * len(AUDIO))
    replies = []
    for turn in range(1, 101):
        reply = ReplyStreams(turn, budget)
        replies.append(reply)
        for _ in range(4):
            reply.audio.put(AUDIO, len(AUDIO))
        assert reply.close() == []  # the current reply never lost anything
        held = sum(r.audio.held()[1] for r in replies)
        assert held <= 10 * len(AUDIO)
    assert replies[-1].audio.held() == (4, 4 * len(AUDIO))
    kept = sum(r.audio.held()[0] for r in replies)
    assert budget.discarded.total == 100 * 4 - kept  # whole older replies went, oldest first
    assert kept >= 4
    assert len(budget._feeds) <= 2 * 4  # replies read or discarded are forgotten


def test_a_reply_stream_the_application_closed_takes_nothing_and_never_fails() -> None:
    streams = ReplyStreams(3, StreamBudget())
    content = streams.content()
    content.audio_stream.close()
    streams.audio.put(AUDIO, len(AUDIO))
    streams.text.put("hi", 2)
    for _ in range(limits.RESPONSE_STREAMS_ITEMS + 5):
        streams.text.put("x", 1)
    assert streams.close() == [m.Dropped(what="reply text stream not read (turn 3)", count=7)]


async def test_a_read_cancelled_by_a_timeout_loses_no_event(autojump_clock: MockClock) -> None:
    # A loop that reads events under move_on_after (to do something else now and then)
    # must not lose the event its cancelled read had already taken.
    queue = EventQueue()
    for n in range(100):
        queue.put(m.Dropped(what="x", count=n + 1))
    got: list[int] = []
    while len(got) < 100:
        with trio.move_on_at(trio.current_time()):  # cancelled at its first checkpoint
            event = await queue.get()
            got.append(event.count)  # type: ignore[union-attr]
        if len(got) < 100 and len(queue):
            event = await queue.get()
            got.append(event.count)  # type: ignore[union-attr]
        if not len(queue):
            break
    assert got == list(range(1, 101))
