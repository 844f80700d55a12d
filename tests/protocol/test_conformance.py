"""Conformance with google-genai, the reference implementation of the Gemini Live client.

Client side, for every client message kind: (1) the frames the SDK itself sends decode with
``decode_client`` to the message we expect, and (2) the frame we encode, parsed by the SDK's
``LiveClientMessage`` (which forbids unknown fields), equals the same message parsed from
the SDK's own frame. Server side, for every server message kind: ``decode_server`` and the
SDK's receive path read the same frames to the same content.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from google.genai import types

from protocol import decode_client, decode_server, encode
from protocol import wire as w
from tests.protocol.sdk import SdkAction, capture_client_frames, sdk_parse_server

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"

FULL_CONFIG = types.LiveConnectConfig(
    response_modalities=[types.Modality.AUDIO],
    temperature=0.5,
    top_p=0.9,
    top_k=40,
    max_output_tokens=100,
    seed=7,
    media_resolution=types.MediaResolution.MEDIA_RESOLUTION_LOW,
    speech_config=types.SpeechConfig(
        voice_config=types.VoiceConfig(
            prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name="Puck")
        ),
        language_code="en-US",
    ),
    thinking_config=types.ThinkingConfig(thinking_budget=100, include_thoughts=True),
    enable_affective_dialog=True,
    system_instruction="Be brief.",
    tools=[
        types.Tool(
            function_declarations=[
                types.FunctionDeclaration(
                    name="get_weather",
                    description="Weather for a city.",
                    parameters_json_schema={
                        "type": "object",
                        "properties": {"city_name": {"type": "string"}},
                        "required": ["city_name"],
                    },
                    behavior=types.Behavior.NON_BLOCKING,
                )
            ]
        ),
        types.Tool(google_search=types.GoogleSearch()),
    ],
    realtime_input_config=types.RealtimeInputConfig(
        automatic_activity_detection=types.AutomaticActivityDetection(
            disabled=False,
            start_of_speech_sensitivity=types.StartSensitivity.START_SENSITIVITY_LOW,
            end_of_speech_sensitivity=types.EndSensitivity.END_SENSITIVITY_HIGH,
            prefix_padding_ms=20,
            silence_duration_ms=100,
        ),
        activity_handling=types.ActivityHandling.NO_INTERRUPTION,
        turn_coverage=types.TurnCoverage.TURN_INCLUDES_ALL_INPUT,
    ),
    input_audio_transcription=types.AudioTranscriptionConfig(),
    output_audio_transcription=types.AudioTranscriptionConfig(),
    context_window_compression=types.ContextWindowCompressionConfig(
        trigger_tokens=1000, sliding_window=types.SlidingWindow(target_tokens=500)
    ),
    session_resumption=types.SessionResumptionConfig(handle="handle-1"),
    proactivity=types.ProactivityConfig(proactive_audio=True),
    history_config=types.HistoryConfig(initial_history_in_client_content=True),
)

FULL_SETUP = w.Setup(
    model=f"models/{MODEL}",
    generation_config=w.GenerationConfig(
        response_modalities=["AUDIO"],
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        max_output_tokens=100,
        seed=7,
        media_resolution="MEDIA_RESOLUTION_LOW",
        speech_config=w.SpeechConfig(
            voice_config=w.VoiceConfig(
                prebuilt_voice_config=w.PrebuiltVoiceConfig(voice_name="Puck")
            ),
            language_code="en-US",
        ),
        thinking_config=w.ThinkingConfig(thinking_budget=100, include_thoughts=True),
        enable_affective_dialog=True,
    ),
    system_instruction=w.Content(role="user", parts=[w.Part(text="Be brief.")]),
    tools=[
        w.Tool(google_search={}),
        w.Tool(
            function_declarations=[
                w.FunctionDeclaration(
                    name="get_weather",
                    description="Weather for a city.",
                    parameters_json_schema={
                        "type": "object",
                        "properties": {"city_name": {"type": "string"}},
                        "required": ["city_name"],
                    },
                    behavior="NON_BLOCKING",
                )
            ]
        ),
    ],
    realtime_input_config=w.RealtimeInputConfig(
        automatic_activity_detection=w.AutomaticActivityDetection(
            disabled=False,
            start_of_speech_sensitivity="START_SENSITIVITY_LOW",
            end_of_speech_sensitivity="END_SENSITIVITY_HIGH",
            prefix_padding_ms=20,
            silence_duration_ms=100,
        ),
        activity_handling="NO_INTERRUPTION",
        turn_coverage="TURN_INCLUDES_ALL_INPUT",
    ),
    input_audio_transcription=w.AudioTranscriptionConfig(),
    output_audio_transcription=w.AudioTranscriptionConfig(),
    context_window_compression=w.ContextWindowCompression(
        trigger_tokens=1000, sliding_window=w.SlidingWindow(target_tokens=500)
    ),
    session_resumption=w.SessionResumptionConfig(handle="handle-1"),
    proactivity=w.ProactivityConfig(proactive_audio=True),
    history_config=w.HistoryConfig(initial_history_in_client_content=True),
)

AUDIO = bytes(range(250, 256)) + b"\x00\x01"  # exercises '+' and '/' (URL-safe '-' and '_')
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\xfb\xff"


def _turns_action(session: Any) -> Any:
    return session.send_client_content(
        turns=[
            types.Content(
                role="user",
                parts=[
                    types.Part(text="hello"),
                    types.Part(inline_data=types.Blob(data=JPEG, mime_type="image/jpeg")),
                ],
            ),
            types.Content(
                role="model",
                parts=[
                    types.Part(
                        function_call=types.FunctionCall(id="c1", name="f", args={"snake_key": 1})
                    )
                ],
            ),
            types.Content(
                role="user",
                parts=[
                    types.Part(
                        function_response=types.FunctionResponse(
                            id="c1", name="f", response={"output": {"a_b": 2}}
                        )
                    )
                ],
            ),
        ],
        turn_complete=True,
    )


CLIENT_CASES: list[tuple[str, SdkAction, w.ClientMessage]] = [
    (
        "audio",
        lambda s: s.send_realtime_input(
            audio=types.Blob(data=AUDIO, mime_type="audio/pcm;rate=16000")
        ),
        w.RealtimeInput(audio=w.Blob(mime_type="audio/pcm;rate=16000", data=AUDIO)),
    ),
    (
        "video",
        lambda s: s.send_realtime_input(video=types.Blob(data=JPEG, mime_type="image/jpeg")),
        w.RealtimeInput(video=w.Blob(mime_type="image/jpeg", data=JPEG)),
    ),
    ("text", lambda s: s.send_realtime_input(text="what now?"), w.RealtimeInput(text="what now?")),
    (
        "activity_start",
        lambda s: s.send_realtime_input(activity_start=types.ActivityStart()),
        w.RealtimeInput(activity_start=w.ActivityStart()),
    ),
    (
        "activity_end",
        lambda s: s.send_realtime_input(activity_end=types.ActivityEnd()),
        w.RealtimeInput(activity_end=w.ActivityEnd()),
    ),
    (
        "audio_stream_end",
        lambda s: s.send_realtime_input(audio_stream_end=True),
        w.RealtimeInput(audio_stream_end=True),
    ),
    (
        "media_chunks",
        lambda s: s.send_realtime_input(media=types.Blob(data=AUDIO, mime_type="audio/pcm")),
        w.RealtimeInput(media_chunks=[w.Blob(mime_type="audio/pcm", data=AUDIO)]),
    ),
    (
        "client_content",
        _turns_action,
        w.ClientContent(
            turns=[
                w.Content(
                    role="user",
                    parts=[
                        w.Part(text="hello"),
                        w.Part(inline_data=w.Blob(mime_type="image/jpeg", data=JPEG)),
                    ],
                ),
                w.Content(
                    role="model",
                    parts=[
                        w.Part(
                            function_call=w.FunctionCall(id="c1", name="f", args={"snake_key": 1})
                        )
                    ],
                ),
                w.Content(
                    role="user",
                    parts=[
                        w.Part(
                            function_response=w.FunctionResponse(
                                id="c1", name="f", response={"output": {"a_b": 2}}
                            )
                        )
                    ],
                ),
            ],
            turn_complete=True,
        ),
    ),
    (
        "tool_response",
        lambda s: s.send_tool_response(
            function_responses=[
                types.FunctionResponse(
                    id="c1",
                    name="get_weather",
                    response={"output": {"temp_c": 21}},
                    scheduling=types.FunctionResponseScheduling.WHEN_IDLE,
                    will_continue=False,
                ),
                types.FunctionResponse(id="c2", name="lookup", response={"error": "no such place"}),
            ]
        ),
        w.ToolResponse(
            function_responses=[
                w.FunctionResponse(
                    id="c1",
                    name="get_weather",
                    response={"output": {"temp_c": 21}},
                    scheduling="WHEN_IDLE",
                    will_continue=False,
                ),
                w.FunctionResponse(id="c2", name="lookup", response={"error": "no such place"}),
            ]
        ),
    ),
    (
        "context_update",
        lambda s: s.send_context_update(
            system_instruction="Now be verbose.",
            tools=[
                types.Tool(
                    function_declarations=[types.FunctionDeclaration(name="g", description="G.")]
                )
            ],
        ),
        w.ContextUpdate(
            system_instruction=w.Content(role="user", parts=[w.Part(text="Now be verbose.")]),
            tools=w.ContextUpdateTools(
                tools=[
                    w.Tool(
                        function_declarations=[w.FunctionDeclaration(name="g", description="G.")]
                    )
                ]
            ),
        ),
    ),
]


def _sdk_client_message(frame: str | bytes) -> types.LiveClientMessage:
    return types.LiveClientMessage.model_validate_json(frame)


_FREE_FORM = {
    "args",
    "response",
    "parametersJsonSchema",
    "responseJsonSchema",
    "parameters",
    "googleSearch",
}


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _canonical(value: Any, key: str = "") -> Any:
    """The SDK's JSON in canonical form, written independently of protocol.lenient."""
    if key in _FREE_FORM:
        return value
    if isinstance(value, dict):
        return {_camel(k): _canonical(v, _camel(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v, key) for v in value]
    if key in {"data", "thoughtSignature"} and isinstance(value, str):
        value = value.replace("-", "+").replace("_", "/")
        return value + "=" * (-len(value) % 4)
    return value


def test_sdk_setup_decodes_to_our_setup_and_ours_parses_to_the_same_in_the_sdk() -> None:
    frames, uri, headers = capture_client_frames(config=FULL_CONFIG, model=MODEL)
    assert decode_client(frames[0]) == FULL_SETUP
    ours = json.loads(encode(FULL_SETUP))
    sdk = _canonical(json.loads(frames[0]))
    # The SDK writes tools in its own order; the order of tools carries no meaning.
    ours["setup"]["tools"].sort(key=json.dumps)
    sdk["setup"]["tools"].sort(key=json.dumps)
    assert ours == sdk
    # The SDK's LiveClientSetup type lacks realtimeInputConfig (its converter writes it
    # anyway), so that part is checked against the SDK's RealtimeInputConfig type.
    ours_ric = types.RealtimeInputConfig.model_validate(ours["setup"].pop("realtimeInputConfig"))
    sdk_ric = types.RealtimeInputConfig.model_validate(sdk["setup"].pop("realtimeInputConfig"))
    assert ours_ric == sdk_ric == FULL_CONFIG.realtime_input_config
    assert _sdk_client_message(json.dumps(ours)) == _sdk_client_message(json.dumps(sdk))
    assert uri.endswith(
        "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    )
    assert headers["x-goog-api-key"] == "test-key"


def test_setup_with_every_generation_option() -> None:
    generation = types.GenerationConfig(
        candidate_count=1, presence_penalty=0.25, frequency_penalty=0.5
    )
    config = types.LiveConnectConfig(generation_config=generation)
    with pytest.warns(DeprecationWarning, match="generation_config"):
        frames, _, _ = capture_client_frames(config=config, model=MODEL)
    expected = w.Setup(
        model=f"models/{MODEL}",
        generation_config=w.GenerationConfig(
            candidate_count=1, presence_penalty=0.25, frequency_penalty=0.5
        ),
    )
    assert decode_client(frames[0]) == expected
    assert json.loads(encode(expected)) == _canonical(json.loads(frames[0]))
    assert _sdk_client_message(encode(expected)) == _sdk_client_message(frames[0])


@pytest.mark.parametrize("vertexai", [False, True], ids=["gemini-api", "vertex"])
@pytest.mark.parametrize(
    ("kind", "action", "expected"), CLIENT_CASES, ids=[c[0] for c in CLIENT_CASES]
)
def test_client_message_kinds(
    kind: str, action: SdkAction, expected: w.ClientMessage, vertexai: bool
) -> None:
    frames, _, _ = capture_client_frames(action, model=MODEL, vertexai=vertexai)
    setup, sdk_frame = frames
    assert isinstance(decode_client(setup), w.Setup)
    assert decode_client(sdk_frame) == expected
    assert json.loads(encode(expected)) == _canonical(json.loads(sdk_frame))
    assert _sdk_client_message(encode(expected)) == _sdk_client_message(sdk_frame)


def _media(data: bytes) -> dict[str, str]:
    return {
        "mimeType": "audio/pcm;rate=24000",
        "data": __import__("base64").b64encode(data).decode(),
    }


SERVER_CASES: list[tuple[str, dict[str, Any]]] = [
    ("setup_complete", {"setupComplete": {}}),
    ("setup_complete_with_id", {"setupComplete": {"sessionId": "s-1"}}),
    (
        "model_audio_and_text",
        {
            "serverContent": {
                "modelTurn": {
                    "role": "model",
                    "parts": [
                        {"inlineData": _media(AUDIO * 100)},
                        {"text": "Hello"},
                        {"text": "pondering", "thought": True},
                    ],
                }
            }
        },
    ),
    ("generation_complete", {"serverContent": {"generationComplete": True}}),
    (
        "turn_complete",
        {
            "serverContent": {
                "turnComplete": True,
                "turnCompleteReason": "NEED_MORE_INPUT",
                "waitingForInput": True,
            }
        },
    ),
    ("interrupted", {"serverContent": {"interrupted": True}}),
    (
        "input_transcription",
        {"serverContent": {"inputTranscription": {"text": "what's the", "finished": False}}},
    ),
    (
        "output_transcription",
        {"serverContent": {"outputTranscription": {"text": "It is", "finished": True}}},
    ),
    (
        "grounding",
        {"serverContent": {"groundingMetadata": {"webSearchQueries": ["weather paris"]}}},
    ),
    ("interaction_status", {"serverContent": {"interactionStatus": "IN_PROGRESS"}}),
    (
        "tool_call",
        {
            "toolCall": {
                "functionCalls": [
                    {"id": "c1", "name": "get_weather", "args": {"city_name": "Paris"}},
                    {"id": "c2", "name": "get_time", "args": {}},
                ]
            }
        },
    ),
    ("tool_call_cancellation", {"toolCallCancellation": {"ids": ["c1", "c2"]}}),
    ("go_away", {"goAway": {"timeLeft": "9.500s"}}),
    (
        "session_resumption_update",
        {
            "sessionResumptionUpdate": {
                "newHandle": "h-2",
                "resumable": True,
                "lastConsumedClientMessageIndex": "42",
            }
        },
    ),
    (
        "usage_metadata",
        {
            "usageMetadata": {
                "promptTokenCount": 10,
                "responseTokenCount": 20,
                "totalTokenCount": 35,
                "cachedContentTokenCount": 2,
                "thoughtsTokenCount": 5,
                "toolUsePromptTokenCount": 1,
                "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 10}],
                "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 20}],
            }
        },
    ),
    ("voice_activity", {"voiceActivity": {"type": "ACTIVITY_START"}}),
    (
        "several_keys",
        {
            "serverContent": {
                "outputTranscription": {"text": "Hi"},
                "modelTurn": {"parts": [{"inlineData": _media(AUDIO)}]},
            },
            "usageMetadata": {"totalTokenCount": 3},
        },
    ),
    (
        "unknown_fields",
        {
            "serverContent": {"turnComplete": True, "brandNewField": {"x": 1}},
            "brandNewMessage": {"y": 2},
            "goAway": {"timeLeft": "1s", "extra": True},
        },
    ),
]

# Where the SDK names a field differently from the wire (its converters rename it).
_SDK_NAMES = {"type": "voiceActivityType"}


def _assert_same(ours: Any, sdk: Any, path: str) -> None:
    if isinstance(ours, dict):
        assert isinstance(sdk, dict), path
        for key, value in ours.items():
            sdk_key = _SDK_NAMES.get(key, key)
            assert sdk_key in sdk, f"{path}.{key} missing in the SDK's reading"
            _assert_same(value, sdk[sdk_key], f"{path}.{key}")
        extra = {k for k in sdk if k not in {_SDK_NAMES.get(o, o) for o in ours}}
        assert not extra, f"{path}: the SDK read fields we did not: {extra}"
    elif isinstance(ours, list):
        assert isinstance(sdk, list), path
        assert len(ours) == len(sdk), path
        for index, (a, b) in enumerate(zip(ours, sdk, strict=True)):
            _assert_same(a, b, f"{path}[{index}]")
    else:
        assert ours == sdk, f"{path}: ours {ours!r} != sdk {sdk!r}"


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
@pytest.mark.parametrize(("kind", "payload"), SERVER_CASES, ids=[c[0] for c in SERVER_CASES])
def test_server_message_kinds_read_the_same(
    kind: str, payload: dict[str, Any], binary: bool
) -> None:
    text = json.dumps(payload)
    frame: str | bytes = text.encode() if binary else text
    ours = msgspec.to_builtins(decode_server(frame), builtin_types=(bytes,))
    sdk = sdk_parse_server(frame).model_dump(by_alias=True, exclude_none=True)
    _assert_same(ours, sdk, "$")


@pytest.mark.parametrize(("kind", "payload"), SERVER_CASES, ids=[c[0] for c in SERVER_CASES])
def test_frames_we_encode_as_a_server_parse_in_the_sdk(kind: str, payload: dict[str, Any]) -> None:
    message = decode_server(json.dumps(payload))
    frame = encode(message)
    assert decode_server(frame) == message
    ours = msgspec.to_builtins(message, builtin_types=(bytes,))
    _assert_same(ours, sdk_parse_server(frame).model_dump(by_alias=True, exclude_none=True), "$")


# --- the fields google-genai 3.6.1 has beyond the seed's (issue 16) --------------------

NEW_GEMINI_CONFIG = types.LiveConnectConfig(
    response_modalities=[types.Modality.AUDIO],
    thinking_config=types.ThinkingConfig(thinking_level=types.ThinkingLevel.XHIGH),
    input_audio_transcription=types.AudioTranscriptionConfig(
        language_codes=["en-US", "fr-FR"],
        custom_vocabulary=["Gemini"],
        word_timestamp=True,
        diarization=True,
        mode=types.AudioTranscriptionConfigMode.SMART,
    ),
    output_audio_transcription=types.AudioTranscriptionConfig(language_codes=["en-US"]),
    proactivity=types.ProactivityConfig(proactive_audio=True, proactive_video=True),
    history_config=types.HistoryConfig(initial_history_in_client_content=True),
    tools=[
        types.Tool(google_search=types.GoogleSearch()),
        types.Tool(code_execution=types.ToolCodeExecution()),
        types.Tool(url_context=types.UrlContext()),
        types.Tool(google_maps=types.GoogleMaps()),
        types.Tool(file_search=types.FileSearch(file_search_store_names=["fileSearchStores/s"])),
    ],
)
NEW_GEMINI_SETUP = w.Setup(
    model=f"models/{MODEL}",
    generation_config=w.GenerationConfig(
        response_modalities=["AUDIO"], thinking_config=w.ThinkingConfig(thinking_level="XHIGH")
    ),
    input_audio_transcription=w.AudioTranscriptionConfig(
        language_codes=["en-US", "fr-FR"],
        custom_vocabulary=["Gemini"],
        word_timestamp=True,
        diarization=True,
        mode="SMART",
    ),
    output_audio_transcription=w.AudioTranscriptionConfig(language_codes=["en-US"]),
    proactivity=w.ProactivityConfig(proactive_audio=True, proactive_video=True),
    history_config=w.HistoryConfig(initial_history_in_client_content=True),
    tools=[
        w.Tool(google_search={}),
        w.Tool(code_execution={}),
        w.Tool(url_context={}),
        w.Tool(google_maps={}),
        w.Tool(file_search={"file_search_store_names": ["fileSearchStores/s"]}),
    ],
)
NEW_VERTEX_CONFIG = types.LiveConnectConfig(
    explicit_vad_signal=True,
    session_resumption=types.SessionResumptionConfig(transparent=True),
    tools=[
        types.Tool(
            enterprise_web_search=types.EnterpriseWebSearch(exclude_domains=["example.com"])
        ),
        types.Tool(
            retrieval=types.Retrieval(
                vertex_rag_store=types.VertexRagStore(
                    rag_resources=[types.VertexRagStoreRagResource(rag_corpus="projects/p/c")]
                )
            )
        ),
    ],
)
NEW_VERTEX_SETUP = w.Setup(
    model=f"projects/test-project/locations/us-central1/publishers/google/models/{MODEL}",
    explicit_vad_signal=True,
    session_resumption=w.SessionResumptionConfig(transparent=True),
    tools=[
        w.Tool(enterprise_web_search={"exclude_domains": ["example.com"]}),
        w.Tool(retrieval={"vertex_rag_store": {"rag_resources": [{"rag_corpus": "projects/p/c"}]}}),
    ],
)
_FREE_FORM_TOOLS = {"fileSearch", "enterpriseWebSearch", "retrieval", "codeExecution", "urlContext"}


def _canonical_setup(frame: str) -> dict[str, Any]:
    sdk = json.loads(frame)
    tools = sdk["setup"].pop("tools", None)
    canonical: dict[str, Any] = _canonical(sdk)
    if tools is not None:  # built-in tool configs are free-form: kept as the SDK wrote them
        canonical["setup"]["tools"] = [
            {_camel(k): v if _camel(k) in _FREE_FORM_TOOLS | _FREE_FORM else _canonical(v)}
            for tool in tools
            for k, v in tool.items()
        ]
    return canonical


@pytest.mark.parametrize(
    ("config", "setup", "vertexai"),
    [(NEW_GEMINI_CONFIG, NEW_GEMINI_SETUP, False), (NEW_VERTEX_CONFIG, NEW_VERTEX_SETUP, True)],
    ids=["gemini-api", "vertex"],
)
def test_the_newer_setup_fields_both_ways(
    config: types.LiveConnectConfig, setup: w.Setup, vertexai: bool
) -> None:
    frames, _, _ = capture_client_frames(config=config, model=MODEL, vertexai=vertexai)
    decoded = decode_client(frames[0])
    assert isinstance(decoded, w.Setup)
    if vertexai:  # the SDK names the project and location it found (or invented)
        decoded = msgspec.structs.replace(decoded, model=setup.model)
        frame = json.loads(frames[0])
        frame["setup"]["model"] = setup.model
        frames[0] = json.dumps(frame)
    assert decoded == setup
    ours, sdk = json.loads(encode(setup)), _canonical_setup(frames[0])
    ours["setup"]["tools"].sort(key=json.dumps)
    sdk["setup"]["tools"].sort(key=json.dumps)
    assert ours == sdk
    assert _sdk_client_message(encode(setup)) == _sdk_client_message(frames[0])


def test_a_multi_speaker_voice_config_parses_in_the_sdk() -> None:
    """google-genai refuses to send it to Live; what we encode is still its type."""
    voices = [
        w.SpeakerVoiceConfig(
            speaker=name,
            voice_config=w.VoiceConfig(prebuilt_voice_config=w.PrebuiltVoiceConfig(voice_name=v)),
        )
        for name, v in (("Joe", "Puck"), ("Jane", "Kore"))
    ]
    setup = w.Setup(
        model="models/m",
        generation_config=w.GenerationConfig(
            speech_config=w.SpeechConfig(
                multi_speaker_voice_config=w.MultiSpeakerVoiceConfig(speaker_voice_configs=voices)
            )
        ),
    )
    sdk = _sdk_client_message(encode(setup))
    assert sdk.setup is not None
    assert sdk.setup.generation_config is not None
    speech_config = sdk.setup.generation_config.speech_config
    assert speech_config is not None
    assert speech_config.multi_speaker_voice_config is not None
    speakers = speech_config.multi_speaker_voice_config.speaker_voice_configs or []
    assert [s.speaker for s in speakers] == ["Joe", "Jane"]
    assert decode_client(encode(setup)) == setup


@pytest.mark.parametrize("vertexai", [False, True], ids=["gemini-api", "vertex"])
def test_a_tool_response_with_media_parts_and_will_continue(vertexai: bool) -> None:
    async def action(session: Any) -> None:
        await session.send_tool_response(
            function_responses=[
                types.FunctionResponse(
                    id="c1",
                    name="snapshot",
                    response={"output": "see the image"},
                    will_continue=True,
                    scheduling=types.FunctionResponseScheduling.SILENT,
                    parts=[
                        types.FunctionResponsePart(
                            inline_data=types.FunctionResponseBlob(
                                mime_type="image/jpeg", data=JPEG
                            )
                        )
                    ],
                )
            ]
        )

    expected = w.ToolResponse(
        function_responses=[
            w.FunctionResponse(
                id="c1",
                name="snapshot",
                response={"output": "see the image"},
                will_continue=True,
                scheduling="SILENT",
                parts=[
                    w.FunctionResponsePart(inline_data=w.Blob(mime_type="image/jpeg", data=JPEG))
                ],
            )
        ]
    )
    frames, _, _ = capture_client_frames(action, model=MODEL, vertexai=vertexai)
    assert decode_client(frames[1]) == expected
    assert _sdk_client_message(encode(expected)) == _sdk_client_message(frames[1])


def test_a_vertex_tool_response_without_an_id_reaches_the_server() -> None:
    async def action(session: Any) -> None:
        await session.send_tool_response(
            function_responses=[types.FunctionResponse(name="f", response={"output": 1})]
        )

    frames, _, _ = capture_client_frames(action, model=MODEL, vertexai=True)
    assert decode_client(frames[1]) == w.ToolResponse(
        function_responses=[w.FunctionResponse(name="f", response={"output": 1})]
    )


NEW_SERVER_CASES: list[tuple[str, dict[str, Any]]] = [
    (
        "transcriptions_with_words_speakers_and_offsets",
        {
            "serverContent": {
                "interimInputTranscription": {"text": "what's th", "languageCode": "en-US"},
                "inputTranscription": {
                    "text": "what's the weather",
                    "finished": True,
                    "languageCode": "en-US",
                    "speakerLabel": "spk_1",
                    "startOffset": "1.200s",
                    "endOffset": "2.400s",
                    "words": [
                        {"word": "what's", "startOffset": "1.200s", "endOffset": "1.500s"},
                        {"word": "the", "startOffset": "1.500s", "endOffset": "1.600s"},
                    ],
                },
            }
        },
    ),
    (
        "grounding_in_full",
        {
            "serverContent": {
                "groundingMetadata": {
                    "webSearchQueries": ["weather paris"],
                    "groundingChunks": [
                        {"web": {"uri": "https://example.com/w", "title": "Weather", "domain": "x"}}
                    ],
                    "groundingSupports": [
                        {
                            "segment": {"startIndex": 0, "endIndex": 9, "text": "It is sunny"},
                            "groundingChunkIndices": [0],
                            "confidenceScores": [0.9],
                        }
                    ],
                    "searchEntryPoint": {"renderedContent": "<div>search</div>"},
                },
                "turnComplete": True,
            }
        },
    ),
    (
        "url_context",
        {
            "serverContent": {
                "urlContextMetadata": {
                    "urlMetadata": [
                        {
                            "retrievedUrl": "https://example.com/a",
                            "urlRetrievalStatus": "URL_RETRIEVAL_STATUS_SUCCESS",
                        }
                    ]
                }
            }
        },
    ),
    (
        "code_execution_parts",
        {
            "serverContent": {
                "modelTurn": {
                    "parts": [
                        {"executableCode": {"code": "print(2+2)", "language": "PYTHON", "id": "x"}},
                        {
                            "codeExecutionResult": {
                                "outcome": "OUTCOME_OK",
                                "output": "4",
                                "id": "x",
                            }
                        },
                    ]
                }
            }
        },
    ),
    (
        "server_tool_parts",
        {
            "serverContent": {
                "modelTurn": {
                    "parts": [
                        {
                            "toolCall": {
                                "id": "t1",
                                "toolType": "GOOGLE_SEARCH_WEB",
                                "args": {"query": "x"},
                            }
                        },
                        {"toolResponse": {"id": "t1", "toolType": "URL_CONTEXT", "response": {}}},
                    ]
                }
            }
        },
    ),
    (
        "interaction_status_and_waiting",
        {
            "serverContent": {
                "turnComplete": True,
                "interactionStatus": "IDLE",
                "waitingForInput": True,
                "turnCompleteReason": "NEED_MORE_INPUT",
            }
        },
    ),
    (
        "voice_activity_with_offset",
        {"voiceActivity": {"type": "ACTIVITY_END", "audioOffset": "3.5s"}},
    ),
    (
        "vad_signal",
        {"voiceActivityDetectionSignal": {"vadSignalType": "VAD_SIGNAL_TYPE_SOS"}},
    ),
    (
        "usage_with_service_tier",
        {
            "usageMetadata": {
                "totalTokenCount": 3,
                "serviceTier": "standard",
                "trafficType": "ON_DEMAND",
                "promptTokensDetails": [
                    {"modality": "AUDIO", "tokenCount": 2},
                    {"modality": "TEXT", "tokenCount": 1},
                ],
            }
        },
    ),
    (
        "streamed_function_call",
        {
            "toolCall": {
                "functionCalls": [
                    {
                        "id": "c9",
                        "name": "f",
                        "willContinue": True,
                        "partialArgs": [
                            {"jsonPath": "$.city", "stringValue": "Par", "willContinue": True},
                            {"jsonPath": "$.days", "numberValue": 3},
                            {"jsonPath": "$.ok", "boolValue": True},
                            {"jsonPath": "$.none", "nullValue": "NULL_VALUE"},
                        ],
                    }
                ]
            }
        },
    ),
]


@pytest.mark.parametrize(
    ("kind", "payload"), NEW_SERVER_CASES, ids=[c[0] for c in NEW_SERVER_CASES]
)
def test_the_newer_server_fields_read_the_same_and_round_trip(
    kind: str, payload: dict[str, Any]
) -> None:
    frame = json.dumps(payload)
    message = decode_server(frame)
    ours = msgspec.to_builtins(message, builtin_types=(bytes,))
    _assert_same(ours, sdk_parse_server(frame).model_dump(by_alias=True, exclude_none=True), "$")
    assert json.loads(encode(message)) == payload
