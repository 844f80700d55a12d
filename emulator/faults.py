"""Fault injection: what goes wrong, and when.

A fault is written ``KIND[:key=value,...]``, on the command line (``--fault``) or in a
scenario's ``faults`` list:

    close:code=1011,after=5        close with a code after the 5th server message
    close:code=1011,at=mid-reply   ... in the middle of a spoken reply
    close:code=1011,at=tool-pending  ... right after a tool call went out
    goaway:at=turn-end,time_left=1   ... at a turn boundary (after turnComplete)
    drop:after=3                   drop the TCP connection with no close frame
    goaway:after=2,time_left=1     an early goAway, then the close when time is up
    malformed:at=mid-reply         a frame that is not JSON
    unknown:every=2                unknown fields and message kinds beside known ones
    slow:factor=4                  replies paced 4x slower
    stall:at=mid-reply             stop sending, keep the socket open
    refuse-resume                  refuse the next resumption handle (close 1008)
    lose:at=turn-end,count=2       read the next 2 client messages without consuming
                                   them, then drop the TCP connection (resume and replay:
                                   lastConsumedClientMessageIndex says what was lost)

Triggers: ``after=N`` (server messages sent on the connection) or ``at=POINT``.
``connection=N`` picks the Nth connection the emulator accepted (default: the first one
where the trigger happens). A fault fires once unless ``repeat=true``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from protocol.websocket import sendable_close_code

FaultKind = Literal[
    "close", "drop", "goaway", "malformed", "unknown", "slow", "stall", "refuse-resume", "lose"
]
Point = Literal["message", "mid-reply", "tool-pending", "turn-end", "setup"]

_KINDS: tuple[FaultKind, ...] = (
    "close",
    "drop",
    "goaway",
    "malformed",
    "unknown",
    "slow",
    "stall",
    "refuse-resume",
    "lose",
)
_POINTS = ("mid-reply", "tool-pending", "turn-end")
_KEYS = {
    "code",
    "reason",
    "after",
    "at",
    "time_left",
    "every",
    "factor",
    "connection",
    "repeat",
    "count",
}


class FaultSpecError(ValueError):
    """A fault spec that cannot be parsed; the message says which part is wrong."""


@dataclass
class Fault:
    kind: FaultKind
    code: int = 1011
    reason: str = "injected fault"
    after: int | None = None
    at: str | None = None
    time_left: float = 1.0
    every: int = 1
    factor: float = 1.0
    connection: int | None = None
    repeat: bool = False
    count: int = 1  # "lose": client messages lost before the drop
    fired: int = field(default=0, compare=False)

    @property
    def spent(self) -> bool:
        return self.fired > 0 and not self.repeat

    def matches(self, point: Point, *, messages_sent: int, connection: int) -> bool:
        if self.spent or (self.connection is not None and self.connection != connection):
            return False
        if point == "message":
            return self.after is not None and messages_sent == self.after
        if point == "setup":
            return self.kind == "refuse-resume"
        return self.at == point


def parse_fault(spec: str) -> Fault:
    """Parse ``KIND[:key=value,...]``; raises ``FaultSpecError`` naming the bad part."""
    kind_text, _, params = spec.strip().partition(":")
    if kind_text not in _KINDS:
        raise FaultSpecError(
            f"unknown fault kind {kind_text!r} in {spec!r}; one of {', '.join(_KINDS)}"
        )
    fault = Fault(kind=kind_text)  # type: ignore[arg-type,unused-ignore]  # checked above
    for item in filter(None, params.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in _KEYS:
            raise FaultSpecError(f"bad fault parameter {item!r} in {spec!r}")
        try:
            if key in ("code", "after", "every", "connection", "count"):
                setattr(fault, key, int(value))
            elif key in ("time_left", "factor"):
                setattr(fault, key, float(value))
            elif key == "repeat":
                fault.repeat = value.lower() in ("1", "true", "yes")
            elif key == "at":
                if value not in _POINTS:
                    raise ValueError(value)
                fault.at = value
            else:
                fault.reason = value
        except ValueError as exc:
            raise FaultSpecError(f"bad value for {key!r} in {spec!r}") from exc
    if (
        fault.kind in ("close", "drop", "goaway", "malformed", "stall", "lose")
        and fault.after is None
        and fault.at is None
    ):
        raise FaultSpecError(
            f"fault {spec!r} needs a trigger: after=N or at=mid-reply|tool-pending|turn-end"
        )
    if fault.kind == "close" and not sendable_close_code(fault.code):
        raise FaultSpecError(
            f"close code {fault.code} in {spec!r} cannot be sent in a close frame (RFC 6455 7.4)"
        )
    return fault


@dataclass
class FaultPlan:
    """The faults of one emulator, shared by its connections."""

    faults: list[Fault] = field(default_factory=list)

    def due(self, point: Point, *, messages_sent: int, connection: int) -> list[Fault]:
        """Faults that fire now; each is marked as fired."""
        hits = [
            f
            for f in self.faults
            if f.matches(point, messages_sent=messages_sent, connection=connection)
        ]
        for fault in hits:
            fault.fired += 1
        return hits

    def active(self, kind: FaultKind, *, connection: int) -> Fault | None:
        """A standing fault (``slow``, ``unknown``) that applies to this connection; it
        counts as fired once it has applied."""
        for fault in self.faults:
            if fault.kind == kind and (fault.connection is None or fault.connection == connection):
                fault.fired = fault.fired or 1
                return fault
        return None


def with_unknown_fields(frame: bytes) -> bytes:
    """The same server message plus an unknown field and an unknown message kind beside it
    (the ``unknown`` fault): clients must ignore both."""
    data: dict[str, Any] = json.loads(frame)
    for value in data.values():
        if isinstance(value, dict):
            value["emulatorFutureField"] = {"note": "clients must ignore unknown fields"}
    data["emulatorFutureMessage"] = {"note": "clients must ignore unknown message kinds"}
    return json.dumps(data).encode()
