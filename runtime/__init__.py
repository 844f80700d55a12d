"""The actor runtime that the client's actors and the emulator both build on: the supervisor
(ordered start-up, restarts, escalation), the wiring that owns the channels, the shared clock
that paces real-time work, and the messages actors exchange. Imports ``protocol``, never
``actors`` or ``emulator``.

The channel helpers (``deliver``, ``messages``, ``take``) are in ``runtime.wiring``; the
message types in ``runtime.messages``; ``tune_gc`` (``runtime.gc_tuning``) is the
opt-in collector setting for processes holding many sessions.
"""

import logging

from runtime.clock import Pacer, paced_sleep_until, shared_pacer
from runtime.gc_tuning import GcTuning, tune_gc
from runtime.supervisor import (
    ActorContext,
    Backoff,
    ChildSpec,
    Intensity,
    Restart,
    Strategy,
    Supervisor,
    SupervisorGaveUp,
)
from runtime.wiring import Wiring

# The library logs under "gemini_live" and never prints: without the application's own
# logging set up, nothing is shown (not even warnings, which Python would print itself).
logging.getLogger("gemini_live").addHandler(logging.NullHandler())

__all__ = [
    "ActorContext",
    "Backoff",
    "ChildSpec",
    "GcTuning",
    "Intensity",
    "Pacer",
    "Restart",
    "Strategy",
    "Supervisor",
    "SupervisorGaveUp",
    "Wiring",
    "paced_sleep_until",
    "shared_pacer",
    "tune_gc",
]
