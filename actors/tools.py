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

A tool's ``behavior`` is what it asked for, or the model family's choice
(``protocol.client_rules``): ``ToolSet.resolved(rules)`` fixes it for one model, and
``declarations(rules)`` writes each as that model accepts it. The server's own tools
(Google Search, code execution, URL context...) are ``BuiltinTool``s beside the functions
in the same ``ToolSet``; what they did arrives as events (grounding, code and its result).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_type_hints, overload

import msgspec

from protocol import wire
from protocol.client_rules import ClientRules
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
    behavior: Behavior  # how calls run: as asked, else BLOCKING until resolved for a model
    scheduling: Scheduling | None
    timeout: float
    is_async: bool
    behavior_asked: Behavior | None = None  # None: the model family's choice

    def declaration(self, rules: ClientRules | None = None) -> wire.FunctionDeclaration:
        """The function declaration, its ``behavior`` written as ``rules``' model takes it
        (without rules: NON_BLOCKING written out, BLOCKING left to the server's default)."""
        if rules is not None:
            behavior = rules.declared_behavior(self.behavior)
        else:
            behavior = "NON_BLOCKING" if self.behavior == "NON_BLOCKING" else None
        return wire.FunctionDeclaration(
            name=self.name,
            description=self.description or None,
            parameters_json_schema=self.parameters_schema,
            behavior=behavior,
        )

    def resolved(self, rules: ClientRules) -> Tool:
        """This tool with the behavior its calls have on ``rules``' model. Raises
        ``ModelRuleError`` for a behavior the model refuses."""
        behavior = rules.effective_behavior(self.name, self.behavior_asked)
        return self if behavior == self.behavior else dataclasses.replace(self, behavior=behavior)

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
    behavior: Behavior | None = None,
    scheduling: Scheduling | None = None,
    timeout: float = 30.0,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    behavior: Behavior | None = None,
    scheduling: Scheduling | None = None,
    timeout: float = 30.0,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a function a tool, bare (``@tool``) or with options (``@tool(timeout=5)``).

    ``behavior="NON_BLOCKING"`` lets the model go on talking while the tool runs; its
    result is then delivered with ``scheduling`` (SILENT, WHEN_IDLE or INTERRUPT).
    ``"BLOCKING"``: the model waits for the result. Unset: BLOCKING where the model has
    it (every model but 3.8 extended thinking, which runs NON_BLOCKING tools only).
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
    behavior: Behavior | None,
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
        behavior=behavior or "BLOCKING",
        scheduling=scheduling,
        timeout=timeout,
        is_async=inspect.iscoroutinefunction(fn),
        behavior_asked=behavior,
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


# --- the server's own tools -----------------------------------------------------------------


class BuiltinTool:
    """A tool the server runs itself: its ``wire.Tool`` field (``kind``) and configuration
    (camelCase keys, free-form JSON). The classes below build the kinds google-genai 3.6.1
    types; ``RawTool`` sends any other as given."""

    kind: ClassVar[str]

    def config(self) -> Any:
        return {}

    def wire(self) -> wire.Tool:
        return wire.Tool(**{self.kind: self.config()})


@dataclass(frozen=True)
class RawTool(BuiltinTool):
    """Any built-in tool kind ``wire.Tool`` has, with its configuration as sent."""

    wire_field: str  # snake_case, as wire.Tool names it: "google_maps"
    value: Any = field(default_factory=dict)

    def wire(self) -> wire.Tool:
        name = self.wire_field
        if name not in wire.Tool.__struct_fields__ or name == "function_declarations":
            raise ToolDefinitionError(f"no built-in tool kind {name!r}")
        return wire.Tool(**{name: self.value})


def _config(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value not in (None, (), [], {})}


@dataclass(frozen=True)
class GoogleSearch(BuiltinTool):
    """Google Search grounding; its results come as ``GroundingReported`` events.
    ``exclude_domains`` and ``blocking_confidence`` (a ``PhishBlockThreshold`` name) are
    Vertex AI only; ``start_time``/``end_time`` (RFC 3339) limit results to that range."""

    kind: ClassVar[str] = "google_search"
    exclude_domains: Sequence[str] = ()
    blocking_confidence: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    image_search: bool = False

    def config(self) -> Any:
        return _config(
            excludeDomains=list(self.exclude_domains),
            blockingConfidence=self.blocking_confidence,
            timeRangeFilter=_config(startTime=self.start_time, endTime=self.end_time),
            searchTypes={"webSearch": {}, "imageSearch": {}} if self.image_search else None,
        )


@dataclass(frozen=True)
class GoogleSearchRetrieval(BuiltinTool):
    """The older search grounding, with dynamic retrieval above ``dynamic_threshold``."""

    kind: ClassVar[str] = "google_search_retrieval"
    dynamic_threshold: float | None = None

    def config(self) -> Any:
        if self.dynamic_threshold is None:
            return {}
        dynamic = {"mode": "MODE_DYNAMIC", "dynamicThreshold": self.dynamic_threshold}
        return {"dynamicRetrievalConfig": dynamic}


@dataclass(frozen=True)
class CodeExecution(BuiltinTool):
    """Python the model writes and runs; ``ModelCode`` / ``ModelCodeResult`` events."""

    kind: ClassVar[str] = "code_execution"


@dataclass(frozen=True)
class UrlContext(BuiltinTool):
    """Pages the model fetches by URL; which ones in ``GroundingReported.url_context``."""

    kind: ClassVar[str] = "url_context"


@dataclass(frozen=True)
class GoogleMaps(BuiltinTool):
    kind: ClassVar[str] = "google_maps"
    enable_widget: bool | None = None

    def config(self) -> Any:
        return _config(enableWidget=self.enable_widget)


@dataclass(frozen=True)
class ComputerUse(BuiltinTool):
    kind: ClassVar[str] = "computer_use"
    environment: str = "ENVIRONMENT_BROWSER"
    excluded_functions: Sequence[str] = ()

    def config(self) -> Any:
        return _config(
            environment=self.environment,
            excludedPredefinedFunctions=list(self.excluded_functions),
        )


@dataclass(frozen=True)
class FileSearch(BuiltinTool):
    """Search in File Search stores (Gemini API only)."""

    kind: ClassVar[str] = "file_search"
    store_names: Sequence[str] = ()
    top_k: int | None = None
    metadata_filter: str | None = None

    def config(self) -> Any:
        return _config(
            fileSearchStoreNames=list(self.store_names),
            topK=self.top_k,
            metadataFilter=self.metadata_filter,
        )


@dataclass(frozen=True)
class McpServer(BuiltinTool):
    """A remote MCP server the service calls itself, over streamable HTTP (Gemini API
    only); ``timeout`` a duration such as ``"30s"``. Headers often hold credentials: they
    are never shown in a repr."""

    kind: ClassVar[str] = "mcp_servers"
    name: str = ""
    url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: str | None = None

    def config(self) -> Any:
        transport = _config(url=self.url, headers=dict(self.headers), timeout=self.timeout)
        return [{"name": self.name, "streamableHttpTransport": transport}]


@dataclass(frozen=True)
class VertexRagRetrieval(BuiltinTool):
    """Retrieval from Vertex AI RAG Engine corpora (Vertex AI only)."""

    kind: ClassVar[str] = "retrieval"
    rag_corpora: Sequence[str] = ()
    similarity_top_k: int | None = None
    vector_distance_threshold: float | None = None

    def config(self) -> Any:
        store = _config(
            ragResources=[{"ragCorpus": corpus} for corpus in self.rag_corpora],
            similarityTopK=self.similarity_top_k,
            vectorDistanceThreshold=self.vector_distance_threshold,
        )
        return {"vertexRagStore": store}


@dataclass(frozen=True)
class EnterpriseWebSearch(BuiltinTool):
    """Web grounding for enterprise compliance (Vertex AI only)."""

    kind: ClassVar[str] = "enterprise_web_search"
    exclude_domains: Sequence[str] = ()
    blocking_confidence: str | None = None

    def config(self) -> Any:
        return _config(
            excludeDomains=list(self.exclude_domains),
            blockingConfidence=self.blocking_confidence,
        )


class ToolSet:
    """The tools of a session: functions by name, and the server's built-in tools."""

    def __init__(self, tools: Iterable[Tool | BuiltinTool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self.builtin: list[BuiltinTool] = []
        self.replace(tools)

    def replace(self, tools: Iterable[Tool | BuiltinTool]) -> None:
        """Make ``tools`` the session's tools, in place (the executor sees them at once).
        Raises ``ToolDefinitionError`` for two functions of one name; nothing changes."""
        functions: dict[str, Tool] = {}
        builtin: list[BuiltinTool] = []
        for item in tools:
            if isinstance(item, BuiltinTool):
                builtin.append(item)
                continue
            if item.name in functions:
                raise ToolDefinitionError(f"two tools are named {item.name!r}")
            functions[item.name] = item
        self._tools, self.builtin = functions, builtin

    def resolved(self, rules: ClientRules) -> ToolSet:
        """The same tools with the behavior their calls have on ``rules``' model. Raises
        ``ModelRuleError`` for a behavior the model refuses."""
        return ToolSet([*(t.resolved(rules) for t in self._tools.values()), *self.builtin])

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    @property
    def names(self) -> Sequence[str]:
        return sorted(self._tools)

    def all(self) -> list[Tool | BuiltinTool]:
        return [*self._tools.values(), *self.builtin]

    def declarations(self, rules: ClientRules | None = None) -> list[wire.Tool]:
        """The setup's ``tools`` entry: every function declaration (written as ``rules``'
        model takes them), then each built-in tool; empty if there are none."""
        declared = (
            [wire.Tool(function_declarations=[t.declaration(rules) for t in self._tools.values()])]
            if self._tools
            else []
        )
        return declared + [item.wire() for item in self.builtin]
