"""The supervisor: starts actors in order, restarts what fails, stops them in reverse order.

Each child is a ``ChildSpec``: a name, an actor function taking an ``ActorContext``, a
restart policy (``PERMANENT``: always restarted; ``TRANSIENT``: restarted only after an
error; ``TEMPORARY``: never), and ``fatal``: the error types that mean the work cannot go
on. A fatal error is never restarted: it ends the supervisor and everything under it at
once, and ``run()`` raises it as itself (not in an exception group).

- **Start-up** is ordered: child N+1 starts once child N called ``ctx.ready()`` (or
  returned). A child whose first incarnation fails before it is ready fails the start-up:
  ``run()`` raises that error. So once ``run()`` reports started, every child is up.
- **Restarts**: with ``ONE_FOR_ONE`` only the failed child restarts; with ``ONE_FOR_ALL``
  every child is stopped and all restart in order. Restarts wait a capped, jittered
  exponential backoff (the random source is injected, so tests are exact).
- **Intensity**: ``SupervisorGaveUp`` ends the supervisor when there were more than
  ``max_restarts`` restarts within ``window`` seconds (over all children, as OTP counts),
  or more than ``max_restarts`` restarts of one child *in a row*. A restart counts in a
  row unless the incarnation that failed had been ready for a whole ``window``: a child
  that fails every 33 s against a 30 s window, never getting anywhere, is a crash loop
  too, and OTP's window alone never sees it.
- **Shutdown** (``stop()``), as OTP does it: in reverse start order, each child is told
  to stop (``ctx.stopping``) and waited for before the next one is told. An actor that
  reads a channel ends when the channel does (the pipeline closes its channels' original
  send ends on stop, so end-of-channel drains downstream); an actor fed by a cycle or a
  device watches ``ctx.stopping``. What has not ended ``shutdown_grace`` seconds after
  ``stop()`` is cancelled.

Lifecycle events (``ActorStarted``, ``ActorCrashed``, ``ActorRestarting``,
``ActorGaveUp``) go to the ``events`` channel (a clone of it, closed when ``run()`` ends).
"""

from __future__ import annotations

import enum
import logging
import math
import random as _random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import trio

from runtime import messages as m
from runtime.errors import GeminiLiveError, describe, unwrap, unwrapping

log = logging.getLogger("gemini_live.supervisor")


class Restart(enum.Enum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class Strategy(enum.Enum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"


class SupervisorGaveUp(GeminiLiveError):
    """Restarts exceeded the supervisor's intensity limit; ``__cause__`` is the last error."""

    def __init__(self, actor: str, restarts: int, window: float, *, in_a_row: bool = False) -> None:
        how = (
            f"{restarts} restarts in a row, none of them up for {window:g} s"
            if in_a_row
            else f"{restarts} restarts within {window:g} s"
        )
        super().__init__(f"actor {actor!r} failed again: {how}")
        self.actor = actor


@dataclass
class ActorContext:
    """What one incarnation of an actor gets from its supervisor."""

    name: str
    incarnation: int
    stopping: trio.Event
    _ready: Callable[[], None]

    def ready(self) -> None:
        """Say start-up is done: the supervisor starts the next child (the first time),
        and counts the incarnation's health from now. Idempotent."""
        self._ready()

    async def cancel_when_stopping(self, scope: trio.CancelScope) -> None:
        """Wait for ``stopping``, then cancel ``scope``: run it beside the work that
        should end when the actor is told to stop."""
        await self.stopping.wait()
        scope.cancel()


Actor = Callable[[ActorContext], Awaitable[None]]


@dataclass(frozen=True)
class ChildSpec:
    name: str
    actor: Actor
    restart: Restart = Restart.PERMANENT
    fatal: tuple[type[BaseException], ...] = ()  # never restarted: raised by run() as itself


@dataclass(frozen=True)
class Backoff:
    """Delay before restart attempt n (1-based): initial * multiplier**(n-1), capped at
    ``maximum``, then scaled by a random factor in [1 - jitter, 1 + jitter]."""

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int, random: Callable[[], float]) -> float:
        base = min(self.maximum, self.initial * self.multiplier ** (attempt - 1))
        return base * (1.0 + self.jitter * (2.0 * random() - 1.0))


@dataclass(frozen=True)
class Intensity:
    max_restarts: int = 5
    window: float = 30.0


@dataclass
class _Child:
    spec: ChildSpec
    incarnation: int = 0
    in_a_row: int = 0  # restarts since an incarnation was last ready for a whole window
    ready_at: float | None = None  # when the current incarnation said it was ready
    stopping: trio.Event = field(default_factory=trio.Event)
    exited: trio.Event = field(default_factory=trio.Event)  # this generation's runner ended


@dataclass
class _Failed:
    child: _Child
    error: BaseException | None


class Supervisor:
    def __init__(
        self,
        children: Sequence[ChildSpec],
        *,
        events: trio.MemorySendChannel[m.InternalMessage],
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        backoff: Backoff = Backoff(),
        intensity: Intensity = Intensity(),
        shutdown_grace: float = 2.0,
        random: Callable[[], float] = _random.random,
    ) -> None:
        names = [c.name for c in children]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique: {names}")
        self._children = [_Child(spec) for spec in children]
        self._given_events = events
        self._events = events
        self._strategy = strategy
        self._backoff = backoff
        self._intensity = intensity
        self._grace = shutdown_grace
        self._random = random
        self._restarts: deque[float] = deque()
        self._stop_requested = trio.Event()
        self._stop_deadline = math.inf
        self._nursery: trio.Nursery | None = None  # the running generation's
        self._started: list[_Child] = []  # in this generation, in start order
        self._ran = False
        self._reported_started = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the children until they all end or ``stop()`` has stopped them.

        Reports started once every child is ready. Raises a child's fatal error as itself,
        the first incarnation's error when start-up fails, or ``SupervisorGaveUp``. A
        supervisor runs once."""
        if self._ran:
            raise RuntimeError("a supervisor runs once")
        self._ran = True
        with unwrapping():
            async with self._given_events.clone() as self._events:
                first = True
                while True:
                    failed = await self._generation(task_status, first)
                    first = False
                    if failed is None:
                        return
                    delay = await self._count_restart(failed.child, failed.error)
                    if not await self._pause(delay):
                        return

    def stop(self) -> None:
        """Stop every child in reverse start order (see the module docstring), cancelling
        what is still running ``shutdown_grace`` seconds from now. Returns at once;
        ``run()`` returns when done. Idempotent."""
        if self._stop_requested.is_set():
            return
        self._stop_requested.set()
        self._stop_deadline = trio.current_time() + self._grace
        if self._nursery is not None:
            self._nursery.start_soon(self._stop_in_order, self._nursery.cancel_scope)

    # --- generations ----------------------------------------------------------------------

    async def _generation(self, task_status: trio.TaskStatus[None], first: bool) -> _Failed | None:
        """Start every child in order and run them; with ONE_FOR_ALL, the first failure
        that wants a restart ends the generation (its other children are cancelled)."""
        failures: list[_Failed] = []
        self._started = []
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for child in self._children:
                    if failures or self._stop_requested.is_set():
                        break
                    child.exited = trio.Event()
                    self._started.append(child)
                    await nursery.start(self._run_child, child, failures, first)
                if not failures and not self._reported_started:
                    self._reported_started = True  # once: a later generation is a restart
                    task_status.started()
        finally:
            self._nursery = None
        return failures[0] if failures else None

    async def _run_child(
        self,
        child: _Child,
        failures: list[_Failed],
        first: bool,
        task_status: trio.TaskStatus[None],
    ) -> None:
        """Run ``child``'s incarnations: with ONE_FOR_ONE until it should not restart;
        with ONE_FOR_ALL one, recording a failure that wants a restart."""
        status: trio.TaskStatus[None] = task_status
        try:
            while True:
                error = await self._incarnation(child, status, startup=first)
                status, first = trio.TASK_STATUS_IGNORED, False
                if not self._wants_restart(child, error):
                    return
                if self._strategy is Strategy.ONE_FOR_ALL:
                    if not failures:
                        failures.append(_Failed(child, error))
                        assert self._nursery is not None
                        self._nursery.cancel_scope.cancel()
                    return
                if not await self._pause(await self._count_restart(child, error)):
                    return
        finally:
            child.exited.set()

    async def _stop_in_order(self, generation: trio.CancelScope) -> None:
        with trio.move_on_at(self._stop_deadline):
            for child in reversed(self._started):
                child.stopping.set()
                await child.exited.wait()
        generation.cancel()  # whatever did not stop within the grace period

    async def _pause(self, delay: float) -> bool:
        """Wait ``delay`` seconds before a restart; False if ``stop()`` came meanwhile."""
        with trio.move_on_after(delay):
            await self._stop_requested.wait()
        return not self._stop_requested.is_set()

    # --- one incarnation ------------------------------------------------------------------

    async def _incarnation(
        self, child: _Child, task_status: trio.TaskStatus[None], *, startup: bool
    ) -> BaseException | None:
        """Run one incarnation; the error it raised, or None when it returned. Raises the
        error instead when it is fatal, or when it is a start-up failure."""
        child.incarnation += 1
        child.ready_at = None
        started = False

        def ready() -> None:
            nonlocal started
            if child.ready_at is None:
                child.ready_at = trio.current_time()
            if not started:
                started = True
                task_status.started()

        ctx = ActorContext(child.spec.name, child.incarnation, child.stopping, ready)
        await self._events.send(
            m.ActorStarted(actor=child.spec.name, incarnation=child.incarnation)
        )
        try:
            await child.spec.actor(ctx)
        except Exception as exc:
            error: BaseException | None = exc
        else:
            error = None
        if error is not None:
            cause = unwrap(error)
            log.warning(
                "%s crashed: %s: %s", child.spec.name, type(cause).__name__, describe(cause)
            )
            await self._events.send(
                m.ActorCrashed(
                    actor=child.spec.name, error_type=type(cause).__name__, error=describe(cause)
                )
            )
            if isinstance(cause, child.spec.fatal) or (startup and not started):
                raise cause
        if not started:
            ready()  # it ended, cleanly or during a restart's start-up: do not hold the rest up
        return error

    def _wants_restart(self, child: _Child, error: BaseException | None) -> bool:
        if self._stop_requested.is_set():
            return False
        policy = child.spec.restart
        return policy is Restart.PERMANENT or (policy is Restart.TRANSIENT and error is not None)

    async def _count_restart(self, child: _Child, error: BaseException | None) -> float:
        """Record a restart against the intensity limits; the backoff delay to wait."""
        now = trio.current_time()
        window, most = self._intensity.window, self._intensity.max_restarts
        if child.ready_at is not None and now - child.ready_at >= window:
            child.in_a_row = 0  # it was up for a whole window: a fresh start
        child.in_a_row += 1
        self._restarts.append(now)
        while self._restarts and self._restarts[0] <= now - window:
            self._restarts.popleft()
        if len(self._restarts) > most or child.in_a_row > most:
            reason = f"{type(error).__name__}: {error}" if error is not None else "exited"
            log.error("%s failed too often; giving up: %s", child.spec.name, reason)
            await self._events.send(m.ActorGaveUp(actor=child.spec.name, error=reason))
            in_a_row = len(self._restarts) <= most
            restarts = (child.in_a_row if in_a_row else len(self._restarts)) - 1
            raise SupervisorGaveUp(child.spec.name, restarts, window, in_a_row=in_a_row) from error
        delay = self._backoff.delay(child.in_a_row, self._random)
        await self._events.send(
            m.ActorRestarting(actor=child.spec.name, attempt=child.in_a_row, delay=delay)
        )
        return delay


def no_jitter() -> float:
    """A random source for ``Backoff`` that gives the middle of the range: no jitter."""
    return 0.5
