"""The tool executor with fake peers under the autojump clock."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import msgspec
import pytest
import trio
from trio.testing import MockClock

from actors.limits import RUNNING_TOOL_CALLS
from actors.tool_executor import ExecutorState, tool_executor
from actors.tools import Tool, ToolDefinitionError, ToolSet, tool
from runtime import messages as m
from runtime.supervisor import ActorContext

runs: list[str] = []


@tool
async def add(a: int, b: int = 1) -> int:
    """Add two numbers.

    Args:
        a: The first.
        b: The second.
    """
    runs.append("add")
    return a + b


@tool(timeout=2.0)
async def slow(seconds: float) -> str:
    runs.append("slow")
    await trio.sleep(seconds)
    return "done"


@tool
def blocking_io(text: str) -> dict[str, str]:
    """A sync tool: runs in a worker thread."""
    time.sleep(0.05)
    return {"upper": text.upper()}


@tool
async def broken() -> None:
    raise LookupError("no such thing")


@tool
async def unsendable() -> object:
    return object()


@tool(behavior="NON_BLOCKING", scheduling="WHEN_IDLE")
async def background(seconds: float) -> str:
    await trio.sleep(seconds)
    return "background done"


TOOLS = ToolSet([add, slow, blocking_io, broken, unsendable, background])


def call(call_id: str, name: str, turn_id: int = 1, **args: object) -> m.ToolCallRequested:
    return m.ToolCallRequested(call_id=call_id, name=name, args=dict(args), turn_id=turn_id)


@dataclass
class Harness:
    calls: trio.MemorySendChannel[m.InternalMessage]
    results: trio.MemoryReceiveChannel[m.ToolResult]
    ctx: ActorContext
    state: ExecutorState

    async def result(self) -> m.ToolResult:
        with trio.fail_after(60):
            return await self.results.receive()

    def pending(self) -> list[m.ToolResult]:
        out = []
        while True:
            try:
                out.append(self.results.receive_nowait())
            except trio.WouldBlock:
                return out


@asynccontextmanager
async def executor(
    state: ExecutorState | None = None, tools: ToolSet = TOOLS
) -> AsyncIterator[Harness]:
    calls_send, calls_receive = trio.open_memory_channel[m.InternalMessage](100)
    results_send, results_receive = trio.open_memory_channel[m.ToolResult](100)
    ctx = ActorContext("tools", 1, trio.Event(), lambda: None)
    harness = Harness(calls_send, results_receive, ctx, state or ExecutorState())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: tool_executor(
                ctx, tools=tools, calls=calls_receive, results=results_send, state=harness.state
            )
        )
        yield harness
        ctx.stopping.set()


async def test_results_for_async_tools(autojump_clock: MockClock) -> None:
    async with executor() as h:
        await h.calls.send(call("c1", "add", a=2, b=3))
        assert await h.result() == m.ToolResult(call_id="c1", name="add", output=5)


async def test_results_for_sync_tools_run_in_a_thread() -> None:
    # The real clock: under the autojump clock, time would jump while the thread works.
    async with executor() as h:
        await h.calls.send(call("c2", "blocking_io", text="hi"))
        assert await h.result() == m.ToolResult(
            call_id="c2", name="blocking_io", output={"upper": "HI"}
        )


async def test_calls_run_concurrently(autojump_clock: MockClock) -> None:
    async with executor() as h:
        start = trio.current_time()
        await h.calls.send(call("a", "slow", seconds=1.0))
        await h.calls.send(call("b", "slow", seconds=1.0))
        got = {(await h.result()).call_id, (await h.result()).call_id}
        assert got == {"a", "b"}
        assert trio.current_time() - start == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        (call("x", "nope"), "unknown tool 'nope'; available: add, background, blocking_io"),
        (
            call("x", "add", a="three"),
            "invalid arguments for add: Expected `int`, got `str` - at `$.a`",
        ),
        (call("x", "add"), "invalid arguments for add: Object missing required field `a`"),
        (
            call("x", "add", a=1, c=2),
            "invalid arguments for add: Object contains unknown field `c`",
        ),
        (call("x", "broken"), "LookupError: no such thing"),
        (call("x", "unsendable"), "unsendable returned a value that cannot be sent"),
        (call("x", "slow", seconds=5), "slow timed out after 2 s"),
    ],
    ids=["unknown", "bad-type", "missing", "extra", "raises", "unsendable", "timeout"],
)
async def test_every_failure_is_an_error_result_for_the_model(
    autojump_clock: MockClock, request_: m.ToolCallRequested, error: str
) -> None:
    async with executor() as h:
        await h.calls.send(request_)
        result = await h.result()
    assert result.output is None
    assert result.error is not None
    assert result.error.startswith(error)


async def test_a_timeout_answers_on_time(autojump_clock: MockClock) -> None:
    async with executor() as h:
        start = trio.current_time()
        await h.calls.send(call("x", "slow", seconds=60))
        await h.result()
        assert trio.current_time() - start == pytest.approx(2.0)


async def test_server_cancellation_sends_nothing_and_nothing_runs_twice(
    autojump_clock: MockClock,
) -> None:
    runs.clear()
    async with executor() as h:
        await h.calls.send(call("c", "slow", seconds=1.0))
        await trio.sleep(0.5)
        await h.calls.send(m.ToolCallsCancelled(call_ids=("c",)))
        await h.calls.send(call("c", "slow", seconds=1.0))  # a duplicate delivery
        await trio.sleep(5)
        assert h.pending() == []
    assert runs == ["slow"]


async def test_interruption_cancels_blocking_calls_of_the_turn_only(
    autojump_clock: MockClock,
) -> None:
    async with executor() as h:
        await h.calls.send(call("blocking", "slow", turn_id=1, seconds=1.5))
        await h.calls.send(call("other-turn", "slow", turn_id=2, seconds=1.0))
        await h.calls.send(call("bg", "background", turn_id=1, seconds=1.0))
        await trio.sleep(0.5)
        await h.calls.send(m.TurnInterrupted(turn_id=1))
        first = await h.result()
        assert first.call_id == "blocking"
        assert first.error == "the user interrupted; the call was cancelled"
        rest = {r.call_id: r for r in (await h.result(), await h.result())}
    assert rest["other-turn"].output == "done"
    assert rest["bg"] == m.ToolResult(
        call_id="bg", name="background", output="background done", scheduling="WHEN_IDLE"
    )


async def test_a_lost_connection_does_not_cancel_calls(autojump_clock: MockClock) -> None:
    # Found by the soak: the cut turn's running call was answered "the user interrupted"
    # though nobody did; it must finish, its result going out after the resume.
    async with executor() as h:
        await h.calls.send(call("blocking", "slow", turn_id=1, seconds=1.5))
        await trio.sleep(0.5)
        await h.calls.send(m.TurnInterrupted(turn_id=1, connection_lost=True))
        result = await h.result()
    assert (result.call_id, result.output, result.error) == ("blocking", "done", None)
    assert trio.current_time() == pytest.approx(1.5)


async def test_a_restarted_executor_answers_what_the_crashed_one_left_once(
    autojump_clock: MockClock,
) -> None:
    runs.clear()
    state = ExecutorState()
    calls_send, calls_receive = trio.open_memory_channel[m.InternalMessage](10)
    results_send, _results_receive = trio.open_memory_channel[m.ToolResult](10)
    ctx = ActorContext("tools", 1, trio.Event(), lambda: None)
    with trio.move_on_after(0.5):  # the first incarnation dies mid-call
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: tool_executor(
                    ctx,
                    tools=TOOLS,
                    calls=calls_receive.clone(),
                    results=results_send.clone(),
                    state=state,
                )
            )
            await calls_send.send(call("mid", "slow", seconds=1.0))
            await trio.sleep_forever()
    assert "mid" in state.running
    async with executor(state) as h:  # the next incarnation, same state
        result = await h.result()
        assert result == m.ToolResult(
            call_id="mid", name="slow", error="the tool executor restarted during this call"
        )
        await h.calls.send(call("mid", "slow", seconds=1.0))  # redelivered: must not run again
        await trio.sleep(3)
        assert h.pending() == []
    assert runs == ["slow"]


async def test_stopping_answers_running_calls(autojump_clock: MockClock) -> None:
    async with executor() as h:
        await h.calls.send(call("c", "slow", seconds=1.5))
        await trio.sleep(0.1)
        h.ctx.stopping.set()
        result = await h.result()
    assert result.error == "the session stopped during this call"


class Place(msgspec.Struct):
    city: str


def test_declarations_come_from_type_hints_and_docstrings() -> None:
    @tool(name="where", behavior="NON_BLOCKING")
    def where(place: Place, unit: Literal["C", "F"] = "C") -> str:
        """Look a place up.

        Args:
            place: Which place.
            unit: Which unit.
        """
        return ""

    declaration = where.declaration()
    assert declaration.name == "where"
    assert declaration.description == "Look a place up."
    assert declaration.behavior == "NON_BLOCKING"
    schema = declaration.parameters_json_schema
    assert schema["required"] == ["place"]
    assert schema["properties"]["unit"] == {
        "enum": ["C", "F"],
        "default": "C",
        "description": "Which unit.",
    }
    assert schema["properties"]["place"]["$ref"] == "#/$defs/Place"
    assert schema["$defs"]["Place"]["properties"] == {"city": {"type": "string"}}
    assert add.declaration().behavior is None  # BLOCKING is the default: not written
    assert ToolSet([add]).declarations()[0].function_declarations == [add.declaration()]
    assert ToolSet().declarations() == []


def test_the_sdk_accepts_our_declarations() -> None:
    from google.genai import types

    for item in (add, slow, blocking_io, background):
        parsed = types.FunctionDeclaration.model_validate(msgspec.to_builtins(item.declaration()))
        assert parsed.name == item.name


def test_functions_that_cannot_be_tools() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    def variadic(*args: int) -> None:
        return None

    with pytest.raises(ToolDefinitionError, match="needs a type hint"):
        tool(untyped)
    with pytest.raises(ToolDefinitionError, match=r"\*args"):
        tool(variadic)
    with pytest.raises(ToolDefinitionError, match="not a valid function name"):
        tool(name="bad name!")(add.function)
    with pytest.raises(ToolDefinitionError, match="two tools"):
        ToolSet([add, add])


def test_a_type_that_cannot_be_resolved_is_a_clear_error() -> None:
    class Local(msgspec.Struct):
        x: int

    def uses_local(value: Local) -> None:
        return None

    with pytest.raises(ToolDefinitionError, match="cannot resolve the type hints of uses_local"):
        tool(uses_local)


def test_tools_are_tools() -> None:
    assert isinstance(add, Tool)


@pytest.mark.parametrize("calls", [RUNNING_TOOL_CALLS, RUNNING_TOOL_CALLS + 1])
async def test_running_calls_are_bounded_and_the_one_past_is_answered_at_once(
    autojump_clock: MockClock, calls: int
) -> None:
    async with executor() as h:
        for index in range(calls):
            await h.calls.send(call(f"c{index}", "slow", seconds=1.0))
        await trio.sleep(0.5)
        early = h.pending()
        await trio.sleep(1.0)
        late = h.pending()
    busy = f"too many tool calls running ({RUNNING_TOOL_CALLS}); try again later"
    if calls > RUNNING_TOOL_CALLS:
        assert early == [m.ToolResult(call_id=f"c{RUNNING_TOOL_CALLS}", name="slow", error=busy)]
    else:
        assert early == []
    assert len(late) == RUNNING_TOOL_CALLS
    assert {r.output for r in late} == {"done"}
