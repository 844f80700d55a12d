"""Emulator tests run on a virtual clock that jumps only when the process is really idle,
and each of them twice: on the fast path (one epoll reads every socket, Linux) and on the
portable path (each connection reads its own stream through trio's public API, as on
macOS and Windows).

Real sockets are involved, so the clock must not jump while loopback data is in flight:
``autojump_threshold`` makes it wait for 50 ms of real idleness first. Pacing, goAway
timers, stalls and "nothing arrives for a while" checks then take virtual time, which
the tests can assert exactly.
"""

from __future__ import annotations

import pytest
from trio.testing import MockClock

import emulator.reactor
from emulator.reactor import epoll_available


@pytest.fixture
def virtual_clock() -> MockClock:
    return MockClock(autojump_threshold=0.05)


@pytest.fixture(autouse=True, params=["fast", "portable"])
def emulator_io(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The path ``open_emulator()`` takes (io="auto"): the portable one is what it picks
    where epoll is missing, which this fixture makes it believe."""
    io: str = request.param
    if io == "fast" and not epoll_available():
        pytest.skip("the fast path needs epoll (Linux)")
    if io == "portable":
        monkeypatch.setattr(emulator.reactor, "epoll_available", lambda: False)
    return io
