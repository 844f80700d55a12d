"""The wiring's channel helpers: ``deliver``, ``messages`` and the inline hand-off (a
waiting receiver's synchronous handler run in the sender's task), with its ordering,
declines, failures, cancellation and restarts."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from runtime.wiring import WAKE, Wake, Wiring, deliver, deliver_nowait, messages, receive_or_wake


def wired(buffer: float = math.inf) -> Wiring[int]:
    wiring: Wiring[int] = Wiring()
    wiring.add("c", buffer)
    return wiring


class Receiver:
    """An actor's loop over ``messages(channel, inline=...)`` noting, for each message,
    whether the loop or the inline handler took it, and in which task."""

    def __init__(self, decline: frozenset[int] | None = None, fail_on: int | None = None) -> None:
        self.handled: list[tuple[int, str]] = []
        self.decline, self.fail_on = decline, fail_on
        self.loop_task: trio.lowlevel.Task | None = None
        self.inline_tasks: set[trio.lowlevel.Task] = set()
        self.error: Exception | None = None

    def inline(self, message: int) -> bool:
        if message == self.fail_on:
            raise ValueError(f"cannot handle {message}")
        if self.decline is None or message in self.decline:
            return False
        self.inline_tasks.add(trio.lowlevel.current_task())
        self.handled.append((message, "inline"))
        return True

    async def run(self, channel: trio.MemoryReceiveChannel[int]) -> None:
        self.loop_task = trio.lowlevel.current_task()
        async with channel:
            try:
                async for message in messages(channel, inline=self.inline):
                    self.handled.append((message, "loop"))
            except (ValueError, RuntimeError) as exc:  # the actor failed
                self.error = exc


async def test_a_waiting_receivers_handler_runs_in_the_senders_task() -> None:
    wiring = wired()
    receiver = Receiver(frozenset())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver.run, wiring.receiver("c"))
        await trio.testing.wait_all_tasks_blocked()
        sender = wiring.sender("c")
        for i in range(5):
            await deliver(sender, i)
        assert receiver.handled == [(i, "inline") for i in range(5)]
        assert receiver.inline_tasks == {trio.lowlevel.current_task()}
        wiring.close()
        await sender.aclose()
    assert wiring is not None


async def test_queued_messages_go_first_and_the_order_is_kept() -> None:
    wiring = wired()
    receiver = Receiver(decline=frozenset({10}))
    sender = wiring.sender("c")
    for i in range(3):  # queued before the receiver waits: the loop takes them
        await deliver(sender, i)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver.run, wiring.receiver("c"))
        await deliver(sender, 3)  # it has not run yet: queued behind
        await trio.testing.wait_all_tasks_blocked()
        await deliver(sender, 4)  # now it waits with nothing queued: inline
        await deliver(sender, 10)  # declined: queued, which wakes the loop...
        await deliver(sender, 11)  # ...so this one is queued behind it, not run ahead
        await trio.testing.wait_all_tasks_blocked()
        await deliver(sender, 12)
        wiring.close()
        await sender.aclose()
    assert receiver.handled == [
        (0, "loop"),
        (1, "loop"),
        (2, "loop"),
        (3, "loop"),
        (4, "inline"),
        (10, "loop"),
        (11, "loop"),
        (12, "inline"),
    ]


async def test_a_message_the_handler_declines_is_queued_for_the_loop() -> None:
    wiring = wired()
    receiver = Receiver()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver.run, wiring.receiver("c"))
        await trio.testing.wait_all_tasks_blocked()
        sender = wiring.sender("c")
        await deliver(sender, 7)
        await trio.testing.wait_all_tasks_blocked()
        assert receiver.handled == [(7, "loop")]
        wiring.close()
        await sender.aclose()


async def test_a_failing_handler_fails_the_receiver_not_the_sender() -> None:
    wiring = wired()
    receiver = Receiver(frozenset(), fail_on=2)
    sender = wiring.sender("c")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver.run, wiring.receiver("c"))
        await trio.testing.wait_all_tasks_blocked()
        await deliver(sender, 1)
        await deliver(sender, 2)  # returns: the failure is the receiver's
        await deliver(sender, 3)  # the receiver is failing: queued for the next one
    assert isinstance(receiver.error, ValueError)
    assert str(receiver.error) == "cannot handle 2"
    assert receiver.handled == [(1, "inline")]
    # A restarted receiver (a new incarnation, a new clone) gets what was queued, then
    # offers its handler again.
    again = Receiver(frozenset())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(again.run, wiring.receiver("c"))
        await trio.testing.wait_all_tasks_blocked()
        await deliver(sender, 4)
        wiring.close()
        await sender.aclose()
    assert again.handled == [(3, "loop"), (4, "inline")]


async def test_a_cancelled_receiver_is_not_handed_messages() -> None:
    wiring = wired()
    receiver = Receiver(frozenset())
    sender = wiring.sender("c")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver.run, wiring.receiver("c"))
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()  # its cancellation is pending: it has not run yet
        await deliver(sender, 1)
    assert receiver.handled == []
    assert wiring.queued("c") == 1  # for the next incarnation


async def test_a_closed_sender_still_raises_and_hands_nothing() -> None:
    wiring = wired()
    receiver = Receiver(frozenset())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver.run, wiring.receiver("c"))
        await trio.testing.wait_all_tasks_blocked()
        sender = wiring.sender("c")
        await sender.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await deliver(sender, 1)
        wiring.close()
    assert receiver.handled == []


async def test_a_full_bounded_channel_still_waits_for_room() -> None:
    wiring = wired(buffer=1)
    sender = wiring.sender("c")
    receive = wiring.receiver("c")
    await deliver(sender, 1)
    with trio.move_on_after(0.01) as waited:
        await deliver(sender, 2)
    assert waited.cancelled_caught
    assert [await receive.receive()] == [1]


async def test_only_one_receiver_offers_a_handler_at_a_time() -> None:
    wiring = wired()
    first, second = Receiver(frozenset()), Receiver(frozenset())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first.run, wiring.receiver("c"))
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(second.run, wiring.receiver("c"))
        await trio.testing.wait_all_tasks_blocked()
        assert isinstance(second.error, RuntimeError)
        assert "already offers" in str(second.error)
        nursery.cancel_scope.cancel()


async def test_channels_not_from_a_wiring_and_loops_without_a_handler_queue_as_ever() -> None:
    send, receive = trio.open_memory_channel[int](math.inf)
    seen: list[int] = []

    def never(message: int) -> bool:
        raise AssertionError("not a wiring channel: never run inline")

    async def loop() -> None:
        async for message in messages(receive, inline=never):
            seen.append(message)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(loop)
        await trio.testing.wait_all_tasks_blocked()
        await deliver(send, 1)
        await send.aclose()
    assert seen == [1]


async def test_deliver_nowait_runs_the_handler_or_queues_and_never_waits() -> None:
    wiring = wired()
    send, receive = wiring.sender("c"), wiring.receiver("c")
    handled: list[int] = []

    def inline(message: int) -> bool:
        handled.append(message)
        return True

    deliver_nowait(send, 1)  # nobody waits: queued
    async with trio.open_nursery() as nursery:

        async def loop() -> None:
            async for message in messages(receive, inline=inline):
                handled.append(-message)

        nursery.start_soon(loop)
        await trio.testing.wait_all_tasks_blocked()
        deliver_nowait(send, 2)  # the loop waits: run here
        assert handled == [-1, 2]
        send.close()
        wiring.close()
    bounded = wired(buffer=1)
    full = bounded.sender("c")
    deliver_nowait(full, 1)
    with pytest.raises(trio.WouldBlock):
        deliver_nowait(full, 2)


async def test_a_handler_answering_wake_wakes_the_receiver_with_no_message() -> None:
    wiring = wired()
    send, receive = wiring.sender("c"), wiring.receiver("c")
    got: list[int | None] = []
    inline_calls: list[int] = []

    def inline(message: int) -> bool | Wake:
        inline_calls.append(message)
        return WAKE if message == 2 else True

    async with trio.open_nursery() as nursery:

        async def loop() -> None:
            while True:
                try:
                    message = await receive_or_wake(receive, inline)
                except trio.EndOfChannel:
                    return
                got.append(message)

        nursery.start_soon(loop)
        await trio.testing.wait_all_tasks_blocked()
        await deliver(send, 1)
        assert got == []
        assert inline_calls == [1]
        await deliver(send, 2)  # handled, and the receiver is woken
        await deliver(send, 3)  # nothing inline until the receiver has run: queued
        assert inline_calls == [1, 2]
        await trio.testing.wait_all_tasks_blocked()
        assert got == [None, 3]
        await deliver(send, 4)
        assert inline_calls == [1, 2, 4]
        send.close()
        wiring.close()
    assert got == [None, 3]


async def test_a_wake_left_by_a_wait_cancelled_from_outside_is_not_seen_by_the_next() -> None:
    wiring = wired()
    send, receive = wiring.sender("c"), wiring.receiver("c")
    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as outer:

            def wake_and_cancel(message: int) -> bool | Wake:
                outer.cancel()  # the receiver is cancelled from outside as well
                return WAKE

            nursery.start_soon(lambda: deliver_after_blocked(send, 1))
            await receive_or_wake(receive, wake_and_cancel)
        assert outer.cancelled_caught

        def fail(message: int) -> bool | Wake:
            raise ValueError(f"cannot handle {message}")

        nursery.start_soon(lambda: deliver_after_blocked(send, 2))
        with pytest.raises(ValueError, match="cannot handle 2"):  # not a stale WAKE's None
            await receive_or_wake(receive, fail)


async def deliver_after_blocked(send: trio.MemorySendChannel[int], message: int) -> None:
    await trio.testing.wait_all_tasks_blocked()
    deliver_nowait(send, message)


def test_the_hand_off_reads_what_statistics_says_from_the_channels_state() -> None:
    # _Handoff.run reads trio's private channel state per message (statistics() builds
    # an object per call): pin the fields it reads to what statistics() reports.
    send, receive = trio.open_memory_channel[int](math.inf)
    send.send_nowait(1)
    state = send._state
    assert len(state.data) == send.statistics().current_buffer_used == 1
    assert len(state.receive_tasks) == send.statistics().tasks_waiting_receive == 0
    receive.close()
    send.close()
