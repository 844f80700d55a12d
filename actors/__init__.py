"""The actors of gemini-live-trio, their supervisor and the wiring of their channels."""

from actors.supervisor import (
    ActorContext,
    Backoff,
    ChildSpec,
    Intensity,
    Restart,
    Strategy,
    Supervisor,
    SupervisorGaveUp,
)
from actors.wiring import Wiring

__all__ = [
    "ActorContext",
    "Backoff",
    "ChildSpec",
    "Intensity",
    "Restart",
    "Strategy",
    "Supervisor",
    "SupervisorGaveUp",
    "Wiring",
]
