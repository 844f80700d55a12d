"""The supervisor: starts actors in order, restarts what fails, gives up loudly.

Each child is a ``ChildSpec``: a name, an actor function taking an ``ActorContext``, and a
restart policy (``PERMANENT``: always restarted; ``TRANSIENT``: restarted only after an
error; ``TEMPORARY``: never). With ``ONE_FOR_ONE`` only the failed child restarts; with
``ONE_FOR_ALL`` every child is stopped and all restart in order. Restarts wait a capped,
jittered exponential backoff (the random source is injected, so tests are exact), and one
restart-intensity window per supervisor bounds them: more than ``max_restarts`` within
``window`` seconds raises ``SupervisorGaveUp``, which ends the supervisor and everything
under it. Lifecycle events (``ActorStarted``, ``ActorCrashed``, ``ActorRestarting``,
``ActorGaveUp``) go to the ``events`` channel.

Start-up is ordered: child N+1 starts once child N called ``ctx.ready()`` (or returned).
Shutdown is graceful: ``Supervisor.stop()`` sets every context's ``stopping`` event, waits
up to ``shutdown_grace`` seconds for the actors to return, then cancels what is left.
"""

from __future__ import annotations

import enum
import random as _random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import trio

from runtime import messages as m


class Restart(enum.Enum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class Strategy(enum.Enum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"


class SupervisorGaveUp(Exception):
    """Restarts exceeded the supervisor's intensity limit; ``__cause__`` is the last error."""

    def __init__(self, actor: str, restarts: int, window: float) -> None:
        super().__init__(f"actor {actor!r} failed again: {restarts} restarts within {window:g} s")
        self.actor = actor


@dataclass
class ActorContext:
    """What one incarnation of an actor gets from its supervisor."""

    name: str
    incarnation: int
    stopping: trio.Event
    _ready: Callable[[], None]

    def ready(self) -> None:
        """Say start-up is done: the supervisor starts the next child. Idempotent."""
        self._ready()


Actor = Callable[[ActorContext], Awaitable[None]]


@dataclass(frozen=True)
class ChildSpec:
    name: str
    actor: Actor
    restart: Restart = Restart.PERMANENT


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
    attempt: int = 0  # consecutive restarts; reset once an incarnation runs a full window
    stopping: trio.Event = field(default_factory=trio.Event)


class _ChildFailed(Exception):
    def __init__(self, child: _Child, error: BaseException | None) -> None:
        super().__init__(child.spec.name)
        self.child = child
        self.error = error


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
        self._events = events
        self._strategy = strategy
        self._backoff = backoff
        self._intensity = intensity
        self._grace = shutdown_grace
        self._random = random
        self._restarts: deque[float] = deque()
        self._stopping = trio.Event()
        self._cancel_scope: trio.CancelScope | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the children until they all end, ``stop()`` is called or the supervisor
        gives up (``SupervisorGaveUp``). Reports started once every child is ready."""
        try:
            with trio.CancelScope() as scope:
                self._cancel_scope = scope
                if self._strategy is Strategy.ONE_FOR_ONE:
                    async with trio.open_nursery() as nursery:
                        for child in self._children:
                            await nursery.start(self._run_one_for_one, child)
                        task_status.started()
                else:
                    await self._run_one_for_all(task_status)
        except BaseExceptionGroup as group:
            gave_up = _only(group, SupervisorGaveUp)
            if gave_up is None:
                raise
            raise gave_up from gave_up.__cause__  # the documented error, not trio's group

    def stop(self) -> None:
        """Ask every actor to finish (their ``stopping`` event), cancelling any still
        running after the grace period. Returns at once; ``run()`` returns when done."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        for child in self._children:
            child.stopping.set()
        if self._cancel_scope is not None:
            self._cancel_scope.deadline = min(
                self._cancel_scope.deadline, trio.current_time() + self._grace
            )

    # --- one incarnation ------------------------------------------------------------------

    async def _incarnation(
        self, child: _Child, task_status: trio.TaskStatus[None]
    ) -> BaseException | None:
        """Run one incarnation; the error it raised, or None when it returned."""
        child.incarnation += 1
        started = False

        def ready() -> None:
            nonlocal started
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
        ready()  # an actor that ended without saying so must not hold up the others
        if error is not None:
            cause = _root_cause(error)
            await self._events.send(
                m.ActorCrashed(
                    actor=child.spec.name, error_type=type(cause).__name__, error=_describe(cause)
                )
            )
        return error

    def _wants_restart(self, child: _Child, error: BaseException | None) -> bool:
        if self._stopping.is_set():
            return False
        policy = child.spec.restart
        return policy is Restart.PERMANENT or (policy is Restart.TRANSIENT and error is not None)

    async def _count_restart(self, child: _Child, error: BaseException | None) -> float:
        """Record a restart against the intensity window; the backoff delay to wait."""
        now = trio.current_time()
        self._restarts.append(now)
        while self._restarts and self._restarts[0] <= now - self._intensity.window:
            self._restarts.popleft()
        if len(self._restarts) > self._intensity.max_restarts:
            reason = f"{type(error).__name__}: {error}" if error is not None else "exited"
            await self._events.send(m.ActorGaveUp(actor=child.spec.name, error=reason))
            raise SupervisorGaveUp(
                child.spec.name, len(self._restarts) - 1, self._intensity.window
            ) from error
        child.attempt += 1
        delay = self._backoff.delay(child.attempt, self._random)
        await self._events.send(
            m.ActorRestarting(actor=child.spec.name, attempt=child.attempt, delay=delay)
        )
        return delay

    # --- strategies -----------------------------------------------------------------------

    async def _run_one_for_one(self, child: _Child, task_status: trio.TaskStatus[None]) -> None:
        status: trio.TaskStatus[None] = task_status
        while True:
            began = trio.current_time()
            error = await self._incarnation(child, status)
            status = trio.TASK_STATUS_IGNORED  # only the first incarnation gates start-up
            if not self._wants_restart(child, error):
                return
            if trio.current_time() - began >= self._intensity.window:
                child.attempt = 0  # it ran well for a while: start the backoff over
            await trio.sleep(await self._count_restart(child, error))

    async def _run_one_for_all(self, task_status: trio.TaskStatus[None]) -> None:
        status: trio.TaskStatus[None] = task_status
        while True:
            began = trio.current_time()
            failed = await self._generation(status)
            status = trio.TASK_STATUS_IGNORED
            if failed is None:
                return
            if trio.current_time() - began >= self._intensity.window:
                for child in self._children:
                    child.attempt = 0  # they ran well for a while: start the backoff over
            await trio.sleep(await self._count_restart(failed.child, failed.error))

    async def _generation(self, task_status: trio.TaskStatus[None]) -> _ChildFailed | None:
        """Start every child in order; when one ends wanting a restart, stop them all."""
        failure: list[_ChildFailed] = []
        async with trio.open_nursery() as nursery:

            async def watch(child: _Child, task_status: trio.TaskStatus[None]) -> None:
                error = await self._incarnation(child, task_status)
                if self._wants_restart(child, error) and not failure:
                    failure.append(_ChildFailed(child, error))
                    nursery.cancel_scope.cancel()

            for child in self._children:
                if failure:  # one failed during start-up: the generation is over
                    break
                await nursery.start(watch, child)
            task_status.started()
        return failure[0] if failure else None


def _only(
    group: BaseExceptionGroup[BaseException], kind: type[SupervisorGaveUp]
) -> SupervisorGaveUp | None:
    """The one ``kind`` error in a (nested) group made only of such errors, if it is so."""
    matched, rest = group.split(kind)
    if matched is None or rest is not None:
        return None
    leaf: BaseException = matched
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf if isinstance(leaf, kind) else None


def no_jitter() -> float:
    """A random source for ``Backoff`` that gives the middle of the range: no jitter."""
    return 0.5


def _root_cause(error: BaseException) -> BaseException:
    """The one error inside nested exception groups (an actor's own nursery wraps what
    crashed it), so a crash is reported as ``OSError: ...``, not as a group."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _describe(error: BaseException) -> str:
    """The message, or for a group every leaf error with its type."""
    if not isinstance(error, BaseExceptionGroup):
        return str(error)
    leaves: list[BaseException] = []
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if isinstance(current, BaseExceptionGroup):
            pending.extend(reversed(current.exceptions))
        else:
            leaves.append(current)
    return "; ".join(f"{type(leaf).__name__}: {leaf}" for leaf in leaves)
