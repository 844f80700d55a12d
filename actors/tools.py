"""Tools the model can call: plain Python functions, sync or async, declared by a decorator.

    @tool
    async def get_weather(city: str, unit: Literal["C", "F"] = "C") -> dict[str, float]:
        '''Current weather for a city.

        Args:
            city: The city name, e.g. "Paris".
            unit: Temperature unit.
        '''

The declaration's JSON schema and the argument validation come from one msgspec Struct
derived from the type hints (msgspec's own schema generator), so what the model is told
and what is checked cannot disagree. Descriptions come from the docstring: its text
before ``Args:`` describes the tool, and the ``Args:`` lines describe the parameters.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_type_hints, overload

import msgspec

from protocol import wire
from protocol.wire import Scheduling
from runtime.errors import GeminiLiveError

Behavior = Literal["BLOCKING", "NON_BLOCKING"]


class ToolDefinitionError(GeminiLiveError, TypeError):
    """A function cannot be a tool as written (the message says why)."""


class ToolArgumentsError(GeminiLiveError, ValueError):
    """The model's arguments do not match the tool's declaration."""


@dataclass(frozen=True)
class Tool:
    name: str
    function: Callable[..., Any]
    description: str
    arguments: type[msgspec.Struct]
    parameters_schema: dict[str, Any]
    behavior: Behavior
    scheduling: Scheduling | None
    timeout: float
    is_async: bool

    def declaration(self) -> wire.FunctionDeclaration:
        return wire.FunctionDeclaration(
            name=self.name,
            description=self.description or None,
            parameters_json_schema=self.parameters_schema,
            behavior="NON_BLOCKING" if self.behavior == "NON_BLOCKING" else None,
        )

    def bind(self, args: dict[str, Any]) -> dict[str, Any]:
        """Validate the model's arguments; the keyword arguments to call the function with.

        Raises ``ToolArgumentsError`` naming the offending argument.
        """
        try:
            bound = msgspec.convert(args, self.arguments, strict=False)
        except msgspec.ValidationError as exc:
            raise ToolArgumentsError(f"invalid arguments for {self.name}: {exc}") from exc
        return {name: getattr(bound, name) for name in self.arguments.__struct_fields__}


@overload
def tool(function: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    behavior: Behavior = "BLOCKING",
    scheduling: Scheduling | None = None,
    timeout: float = 30.0,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    behavior: Behavior = "BLOCKING",
    scheduling: Scheduling | None = None,
    timeout: float = 30.0,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a function a tool, bare (``@tool``) or with options (``@tool(timeout=5)``).

    ``behavior="NON_BLOCKING"`` lets the model go on talking while the tool runs; its
    result is then delivered with ``scheduling`` (SILENT, WHEN_IDLE or INTERRUPT).
    ``timeout`` bounds a call; past it the model gets an error. Raises
    ``ToolDefinitionError`` for a parameter without a type hint, ``*args``/``**kwargs``,
    or a type msgspec cannot describe.
    """

    def make(fn: Callable[..., Any]) -> Tool:
        return _make_tool(fn, name, description, behavior, scheduling, timeout)

    return make(function) if function is not None else make


def _make_tool(
    fn: Callable[..., Any],
    name: str | None,
    description: str | None,
    behavior: Behavior,
    scheduling: Scheduling | None,
    timeout: float,
) -> Tool:
    tool_name = name or fn.__name__
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", tool_name):
        raise ToolDefinitionError(f"tool name {tool_name!r} is not a valid function name")
    if timeout <= 0:
        raise ToolDefinitionError(f"tool {tool_name}: timeout must be positive")
    summary, arg_docs = _parse_docstring(inspect.getdoc(fn) or "")
    try:
        hints = get_type_hints(fn)
    except NameError as exc:
        raise ToolDefinitionError(
            f"tool {tool_name}: cannot resolve the type hints of {fn.__name__} ({exc}); "
            "types used by tools must be importable from the function's module"
        ) from exc
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for parameter in inspect.signature(fn).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise ToolDefinitionError(f"tool {tool_name}: *args and **kwargs cannot be declared")
        if parameter.name not in hints:
            raise ToolDefinitionError(
                f"tool {tool_name}: parameter {parameter.name!r} needs a type hint"
            )
        if parameter.default is parameter.empty:
            fields.append((parameter.name, hints[parameter.name]))
        else:
            fields.append((parameter.name, hints[parameter.name], parameter.default))
    arguments = msgspec.defstruct(
        f"{tool_name}_arguments", fields, kw_only=True, forbid_unknown_fields=True
    )
    try:
        schemas, components = msgspec.json.schema_components(
            [arguments], ref_template="#/$defs/{name}"
        )
    except TypeError as exc:
        raise ToolDefinitionError(f"tool {tool_name}: {exc}") from exc
    parameters = dict(components.pop(schemas[0]["$ref"].rsplit("/", 1)[-1]))
    parameters.pop("title", None)
    parameters.setdefault("properties", {})
    for param, text in arg_docs.items():
        if param in parameters["properties"]:
            parameters["properties"][param] = {
                **parameters["properties"][param],
                "description": text,
            }
    if components:
        parameters["$defs"] = components
    return Tool(
        name=tool_name,
        function=fn,
        description=description if description is not None else summary,
        arguments=arguments,
        parameters_schema=parameters,
        behavior=behavior,
        scheduling=scheduling,
        timeout=timeout,
        is_async=inspect.iscoroutinefunction(fn),
    )


_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?):\s*$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The description before the first section, and ``name: text`` lines under ``Args:``."""
    summary: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in doc.splitlines():
        header = _SECTION.match(line.strip())
        if header and not line.startswith((" ", "\t")):
            section, current = header.group(1), None
            continue
        if section is None:
            summary.append(line)
        elif section in ("Args", "Arguments", "Parameters") and line.strip():
            match = re.match(r"^\s{0,8}(\w+)\s*(?:\([^)]*\))?:\s*(.*)$", line)
            if match and (current is None or len(line) - len(line.lstrip()) <= 8):
                current = match.group(1)
                args[current] = match.group(2).strip()
            elif current is not None:
                args[current] = f"{args[current]} {line.strip()}".strip()
    return "\n".join(summary).strip(), args


class ToolSet:
    """The tools of a session, by name."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for item in tools:
            if item.name in self._tools:
                raise ToolDefinitionError(f"two tools are named {item.name!r}")
            self._tools[item.name] = item

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    @property
    def names(self) -> Sequence[str]:
        return sorted(self._tools)

    def declarations(self) -> list[wire.Tool]:
        """The setup's ``tools`` entry: every function declaration (none if no tools)."""
        if not self._tools:
            return []
        return [wire.Tool(function_declarations=[t.declaration() for t in self._tools.values()])]
