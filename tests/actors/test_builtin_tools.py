"""Issue 16, built-in tools through RealtimeModel: declared in the setup beside the
functions (each kind as google-genai 3.6.1 types it), and what they did surfaced as typed
events with seed-style names: grounding and URL-context metadata, the code the model ran
and its result."""

from __future__ import annotations

import datetime
import json

import pytest
from google.genai import types
from trio.testing import MockClock

from actors.events import event_name
from actors.realtime import RealtimeModel
from actors.tools import (
    CodeExecution,
    ComputerUse,
    EnterpriseWebSearch,
    FileSearch,
    GoogleMaps,
    GoogleSearch,
    GoogleSearchRetrieval,
    McpServer,
    RawTool,
    ToolDefinitionError,
    ToolSet,
    UrlContext,
    VertexRagRetrieval,
    tool,
)
from emulator import CodeSpec, Reply, Scenario, SearchResult, SearchSpec, Turn, UrlSpec
from protocol import encode
from protocol import wire as w
from protocol.client_rules import ModelRuleError
from runtime import messages as m
from tests.actors.helpers import FAST, VERTEX_PATH, live_session, until


@tool
async def get_weather(city: str) -> str:
    """Weather."""
    return "sunny"


SCENARIO = Scenario(
    turns=(
        Turn(
            replies=(
                Reply(
                    say="Paris is sunny, and two plus two is four.",
                    search=SearchSpec(
                        queries=("weather paris",),
                        results=(SearchResult(uri="https://example.com/w", title="Weather"),),
                    ),
                    code=CodeSpec(code="print(2 + 2)", output="4\n"),
                    urls=(UrlSpec(url="https://example.com/page"),),
                ),
            )
        ),
    ),
    behaviour=FAST,
)


async def test_built_in_tools_are_declared_and_what_they_did_arrives_as_events(
    autojump_clock: MockClock,
) -> None:
    tools = [get_weather, GoogleSearch(), CodeExecution(), UrlContext()]
    async with live_session(SCENARIO, session_options={"tools": tools}) as (live, transport, _):
        live.send_text("Weather in Paris, and 2 + 2?")
        events = await until(live, lambda e: isinstance(e, m.TurnCompleted))
    setup = transport.sent[0]
    assert isinstance(setup, w.Setup)
    assert setup.tools is not None
    assert [t for t in setup.tools if t.function_declarations is None] == [
        w.Tool(google_search={}),
        w.Tool(code_execution={}),
        w.Tool(url_context={}),
    ]
    names = [event_name(e) for e in events]
    assert names.index("executable_code_received") < names.index("code_execution_result_received")
    code = next(e for e in events if isinstance(e, m.ModelCode))
    result = next(e for e in events if isinstance(e, m.ModelCodeResult))
    assert (code.code, code.language) == ("print(2 + 2)", "PYTHON")
    assert (result.outcome, result.output, result.code_id) == ("OUTCOME_OK", "4\n", code.code_id)
    grounding = next(e for e in events if isinstance(e, m.GroundingReported))
    assert event_name(grounding) == "grounding_received"
    assert grounding.grounding is not None
    assert grounding.grounding.web_search_queries == ["weather paris"]
    chunks = grounding.grounding.grounding_chunks or []
    assert chunks[0].web == w.GroundingChunkWeb(uri="https://example.com/w", title="Weather")
    assert grounding.url_context == w.UrlContextMetadata(
        url_metadata=[
            w.UrlMetadata(
                retrieved_url="https://example.com/page",
                url_retrieval_status="URL_RETRIEVAL_STATUS_SUCCESS",
            )
        ]
    )


# Each kind as google-genai builds it, and ours: the SDK reads both to the same Tool.
KINDS = [
    (GoogleSearch(), types.Tool(google_search=types.GoogleSearch())),
    (
        GoogleSearch(
            exclude_domains=["example.com"],
            blocking_confidence="BLOCK_LOW_AND_ABOVE",
            start_time="2026-01-01T00:00:00Z",
            end_time="2026-02-01T00:00:00Z",
            image_search=True,
        ),
        types.Tool(
            google_search=types.GoogleSearch(
                exclude_domains=["example.com"],
                blocking_confidence=types.PhishBlockThreshold.BLOCK_LOW_AND_ABOVE,
                time_range_filter=types.Interval(
                    start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
                    end_time=datetime.datetime(2026, 2, 1, tzinfo=datetime.UTC),
                ),
                search_types=types.SearchTypes(
                    web_search=types.WebSearch(), image_search=types.ImageSearch()
                ),
            )
        ),
    ),
    (
        GoogleSearchRetrieval(dynamic_threshold=0.3),
        types.Tool(
            google_search_retrieval=types.GoogleSearchRetrieval(
                dynamic_retrieval_config=types.DynamicRetrievalConfig(
                    mode=types.DynamicRetrievalConfigMode.MODE_DYNAMIC, dynamic_threshold=0.3
                )
            )
        ),
    ),
    (CodeExecution(), types.Tool(code_execution=types.ToolCodeExecution())),
    (UrlContext(), types.Tool(url_context=types.UrlContext())),
    (GoogleMaps(enable_widget=True), types.Tool(google_maps=types.GoogleMaps(enable_widget=True))),
    (
        ComputerUse(excluded_functions=["drag_and_drop"]),
        types.Tool(
            computer_use=types.ComputerUse(
                environment=types.Environment.ENVIRONMENT_BROWSER,
                excluded_predefined_functions=["drag_and_drop"],
            )
        ),
    ),
    (
        FileSearch(store_names=["fileSearchStores/a"], top_k=3, metadata_filter="x = 1"),
        types.Tool(
            file_search=types.FileSearch(
                file_search_store_names=["fileSearchStores/a"], top_k=3, metadata_filter="x = 1"
            )
        ),
    ),
    (
        McpServer(name="m", url="https://mcp.example.com", headers={"Authorization": "s3cret"}),
        types.Tool(
            mcp_servers=[
                types.McpServer(
                    name="m",
                    streamable_http_transport=types.StreamableHttpTransport(
                        url="https://mcp.example.com", headers={"Authorization": "s3cret"}
                    ),
                )
            ]
        ),
    ),
    (
        VertexRagRetrieval(rag_corpora=["projects/p/ragCorpora/1"], similarity_top_k=4),
        types.Tool(
            retrieval=types.Retrieval(
                vertex_rag_store=types.VertexRagStore(
                    rag_resources=[
                        types.VertexRagStoreRagResource(rag_corpus="projects/p/ragCorpora/1")
                    ],
                    similarity_top_k=4,
                )
            )
        ),
    ),
    (
        EnterpriseWebSearch(exclude_domains=["a.com"]),
        types.Tool(enterprise_web_search=types.EnterpriseWebSearch(exclude_domains=["a.com"])),
    ),
    (
        RawTool("parallel_ai_search", {"apiKey": "k"}),
        types.Tool(parallel_ai_search=types.ToolParallelAiSearch(api_key="k")),
    ),
]


@pytest.mark.parametrize(("ours", "theirs"), KINDS, ids=lambda x: type(x).__name__)
def test_every_tool_kind_reads_in_google_genai_as_its_own(ours: object, theirs: types.Tool) -> None:
    tool_set = ToolSet([ours])  # type: ignore[list-item]
    (declared,) = tool_set.declarations()
    frame = encode(w.Setup(model="m", tools=[declared]))
    parsed = types.LiveClientMessage.model_validate_json(frame).setup
    assert parsed is not None
    assert parsed.tools == [theirs]


def test_mcp_headers_are_never_shown() -> None:
    server = McpServer(name="m", url="https://mcp.example.com", headers={"Authorization": "s3cret"})
    assert "s3cret" not in repr(server)
    assert "s3cret" not in repr(ToolSet([server]).all())


def test_tools_an_api_refuses_are_errors_before_connecting() -> None:
    gemini = RealtimeModel(endpoint="ws://127.0.0.1:9")
    with pytest.raises(ModelRuleError, match="retrieval tool is supported on Vertex"):
        gemini.setup(ToolSet([VertexRagRetrieval(rag_corpora=["c"])]))
    vertex = RealtimeModel(endpoint="ws://127.0.0.1:9" + VERTEX_PATH)
    assert vertex.rules.api == "vertex"
    with pytest.raises(ModelRuleError, match="fileSearch tool is supported on the Gemini API"):
        vertex.setup(ToolSet([FileSearch(store_names=["s"])]))
    with pytest.raises(ToolDefinitionError, match="no built-in tool kind"):
        ToolSet([RawTool("function_declarations")]).declarations()
    assert json.loads(encode(w.Setup(model="m", tools=ToolSet([UrlContext()]).declarations()))) == {
        "setup": {"model": "m", "tools": [{"urlContext": {}}]}
    }
