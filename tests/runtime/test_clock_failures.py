"""The shared clock's callbacks (issue 17): whatever a callback raises
is its owner's failure, never the timer task's (a system task that raises crashes the
whole run with ``TrioInternalError``)."""

from __future__ import annotations

import trio
from trio.testing import MockClock

from runtime.clock import shared_pacer


class Abandoned(BaseException):
    """Not an ``Exception``: as ``SystemExit`` or ``KeyboardInterrupt`` raised by a
    source's or a sink's own code."""


async def test_a_callback_raising_a_base_exception_is_its_owners_failure(
    autojump_clock: MockClock,
) -> None:
    pacer = shared_pacer()
    failures: list[BaseException] = []
    calls: list[float] = []

    def boom() -> None:
        raise Abandoned("the source's own code gave up")

    pacer.call_at(trio.current_time() + 0.01, boom, failures.append)
    pacer.call_at(
        trio.current_time() + 0.02, lambda: calls.append(trio.current_time()), failures.append
    )
    await trio.sleep(0.05)
    assert [type(f) for f in failures] == [Abandoned]
    assert len(calls) == 1  # the timer went on
    await pacer.sleep_until(trio.current_time() + 0.01)  # and still serves sleepers
