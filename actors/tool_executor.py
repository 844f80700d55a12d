"""The tool-executor actor: runs the model's tool calls and answers each exactly once.

It reads ``ToolCallRequested``, ``ToolCallsCancelled`` and ``TurnInterrupted`` from
``calls`` and writes one ``ToolResult`` per call to ``results``, which must be unbounded
(the wiring's control channels are): a result is written with ``send_nowait`` in the same
step that records it as answered, so no crash can fall between the two.

- Calls run concurrently; async tools in the actor's nursery, sync tools in worker
  threads (a thread cannot be killed: on timeout or cancellation the answer goes out at
  once and the thread's eventual return is ignored). Tool threads take tokens from their
  own ``trio.CapacityLimiter`` (``actors.limits.TOOL_THREADS``), never from trio's
  default one: a thread that never returns keeps its token, and with the default limiter
  forty of them would leave none for the I/O threads (sinks, Vertex token refreshes).
  The limiter belongs to the session (its threads outlive an incarnation).
- An unknown tool, invalid arguments, an exception or a timeout becomes an error result
  for the model; nothing is raised into the pipeline.
- At most ``max_running`` calls run at once (``actors.limits.RUNNING_TOOL_CALLS``): a call
  past it is answered at once with an error, so a server cannot make the client start
  tasks or threads without bound.
- ``toolCallCancellation`` cancels the call and sends nothing (the server no longer
  wants an answer). An interruption cancels the turn's running BLOCKING calls and answers
  them with an error; NON_BLOCKING calls are meant to outlive the turn and go on.
- ``ExecutorState`` outlives incarnations (plain data: the cancel scopes of running calls
  are the incarnation's own): a call is never started twice, and calls that were running
  when an incarnation crashed are answered with an error by the next one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import msgspec
import trio

from actors import limits
from actors.tools import Tool, ToolArgumentsError, ToolSet
from runtime import messages as m
from runtime.supervisor import ActorContext


@dataclass
class _Running:
    """A call running in this incarnation."""

    call: m.ToolCallRequested
    scope: trio.CancelScope
    tool: Tool | None
    outcome: str = "running"  # or "cancelled" (by the server) or "interrupted"


@dataclass
class ExecutorState:
    """What the executor must remember across its own restarts (create one per session).
    Plain data: no trio primitive."""

    started: set[str] = field(default_factory=set)
    running: dict[str, m.ToolCallRequested] = field(default_factory=dict)  # not answered yet
    answered: set[str] = field(default_factory=set)


async def tool_executor(
    ctx: ActorContext,
    *,
    tools: ToolSet,
    calls: trio.MemoryReceiveChannel[m.InternalMessage],
    results: trio.MemorySendChannel[m.ToolResult],
    state: ExecutorState,
    max_running: int = limits.RUNNING_TOOL_CALLS,
    threads: trio.CapacityLimiter | None = None,
) -> None:
    """Serve tool calls until ``calls`` ends or ``ctx.stopping`` is set.

    Waits for messages on ``calls``; closes its own ``calls`` and ``results`` endpoints on
    exit. Calls still running when it stops are cancelled and answered with an error. Sync
    tools run in threads limited by ``threads`` (the session's; a new limiter of
    ``TOOL_THREADS`` when None).
    """
    threads = threads or trio.CapacityLimiter(limits.TOOL_THREADS)
    running: dict[str, _Running] = {}
    async with calls, results:
        for leftover in list(state.running.values()):  # a previous incarnation crashed
            _answer(state, results, leftover, error="the tool executor restarted during this call")
        ctx.ready()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ctx.cancel_when_stopping, nursery.cancel_scope)
            async for message in calls:
                if isinstance(message, m.ToolCallRequested):
                    if message.call_id in state.started:
                        continue
                    state.started.add(message.call_id)
                    if len(state.running) >= max_running:
                        busy = f"too many tool calls running ({max_running}); try again later"
                        _answer(state, results, message, error=busy)
                    else:
                        call = _Running(message, trio.CancelScope(), tools.get(message.name))
                        state.running[message.call_id] = message
                        running[message.call_id] = call
                        nursery.start_soon(_run, call, running, tools, results, state, threads)
                elif isinstance(message, m.ToolCallsCancelled):
                    for call_id in message.call_ids:
                        _cancel(running, call_id, "cancelled")
                elif isinstance(message, m.TurnInterrupted) and not message.connection_lost:
                    # A lost connection is not the user: running calls finish, and their
                    # results go out once the session is resumed.
                    for call in list(running.values()):
                        blocking = call.tool is None or call.tool.behavior == "BLOCKING"
                        if call.call.turn_id == message.turn_id and blocking:
                            _cancel(running, call.call.call_id, "interrupted")
            nursery.cancel_scope.cancel()  # calls ended: stop the watcher
        for leftover in list(state.running.values()):  # stopped with calls still running
            _answer(state, results, leftover, error="the session stopped during this call")


def _cancel(running: dict[str, _Running], call_id: str, outcome: str) -> None:
    call = running.get(call_id)
    if call is not None and call.outcome == "running":
        call.outcome = outcome
        call.scope.cancel()


async def _run(
    running: _Running,
    incarnation: dict[str, _Running],
    tools: ToolSet,
    results: trio.MemorySendChannel[m.ToolResult],
    state: ExecutorState,
    threads: trio.CapacityLimiter,
) -> None:
    call = running.call
    output: Any = None
    error: str | None = None
    try:
        with running.scope:
            output, error = await _execute(call, running.tool, tools, threads)
    finally:
        incarnation.pop(call.call_id, None)
    if running.outcome == "cancelled":
        state.running.pop(call.call_id, None)
        state.answered.add(call.call_id)  # the server withdrew it: no answer is wanted
        return
    if running.outcome == "interrupted":
        output, error = None, "the user interrupted; the call was cancelled"
    _answer(state, results, call, output=output, error=error, tool=running.tool)


async def _execute(
    call: m.ToolCallRequested, tool: Tool | None, tools: ToolSet, threads: trio.CapacityLimiter
) -> tuple[Any, str | None]:
    """Run one call; (output, None) or (None, error text)."""
    if tool is None:
        return None, f"unknown tool {call.name!r}; available: {', '.join(tools.names) or 'none'}"
    try:
        kwargs = tool.bind(call.args)
    except ToolArgumentsError as exc:
        return None, str(exc)
    with trio.move_on_after(tool.timeout) as deadline:
        try:
            if tool.is_async:
                value = await tool.function(**kwargs)
            else:
                value = await trio.to_thread.run_sync(
                    functools.partial(tool.function, **kwargs),
                    abandon_on_cancel=True,
                    limiter=threads,
                )
        except Exception as exc:
            return None, f"{type(exc).__name__}: {exc}"
    if deadline.cancelled_caught:
        return None, f"{tool.name} timed out after {tool.timeout:g} s"
    try:
        return msgspec.to_builtins(value), None
    except TypeError as exc:
        return None, f"{tool.name} returned a value that cannot be sent: {exc}"


def _answer(
    state: ExecutorState,
    results: trio.MemorySendChannel[m.ToolResult],
    call: m.ToolCallRequested,
    *,
    output: Any = None,
    error: str | None = None,
    tool: Tool | None = None,
) -> None:
    """Record and send the one answer to ``call``, in one step (no await in between)."""
    if call.call_id in state.answered:
        return
    state.running.pop(call.call_id, None)
    state.answered.add(call.call_id)
    non_blocking = tool is not None and tool.behavior == "NON_BLOCKING"
    results.send_nowait(
        m.ToolResult(
            call_id=call.call_id,
            name=call.name,
            output=output if error is None else None,
            error=error,
            scheduling=tool.scheduling if non_blocking and tool is not None else None,
        )
    )
