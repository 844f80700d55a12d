"""Emulator tests run on a virtual clock that jumps only when the process is really idle.

Real sockets are involved, so the clock must not jump while loopback data is in flight:
``autojump_threshold`` makes it wait for 50 ms of real idleness first. Pacing, goAway
timers, stalls and "nothing arrives for a while" checks then take virtual time, which
the tests can assert exactly.
"""

from __future__ import annotations

import pytest
from trio.testing import MockClock


@pytest.fixture
def virtual_clock() -> MockClock:
    return MockClock(autojump_threshold=0.05)
