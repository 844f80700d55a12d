"""The canonical codec: encode, decode_server and their errors."""

from __future__ import annotations

import json

import pytest

from protocol import LocalProtocolError, RemoteProtocolError, decode_server, encode
from protocol import wire as w


def test_encode_realtime_audio_is_canonical_camel_case_with_standard_base64() -> None:
    frame = encode(
        w.RealtimeInput(audio=w.Blob(mime_type="audio/pcm;rate=16000", data=b"\xff\xfe"))
    )
    assert frame == b'{"realtimeInput":{"audio":{"mimeType":"audio/pcm;rate=16000","data":"//4="}}}'


def test_encode_wraps_each_client_message_under_its_key() -> None:
    cases: list[tuple[w.ClientMessage, str]] = [
        (w.Setup(model="models/m"), "setup"),
        (w.ClientContent(turn_complete=True), "clientContent"),
        (w.RealtimeInput(text="hi"), "realtimeInput"),
        (w.ToolResponse(function_responses=[w.FunctionResponse(id="1", name="f")]), "toolResponse"),
        (w.ContextUpdate(system_instruction=w.Content(parts=[w.Part(text="x")])), "contextUpdate"),
    ]
    for message, key in cases:
        assert list(json.loads(encode(message))) == [key]
        assert w.envelope_key(message) == key


def test_encode_omits_none_but_keeps_empty_activity_signals() -> None:
    assert encode(w.RealtimeInput(activity_start=w.ActivityStart())) == (
        b'{"realtimeInput":{"activityStart":{}}}'
    )
    assert (
        encode(w.RealtimeInput(audio_stream_end=True))
        == b'{"realtimeInput":{"audioStreamEnd":true}}'
    )


def test_encode_never_rewrites_free_form_keys() -> None:
    call = w.FunctionCall(id="c", name="f", args={"snake_key": {"inner_key": 1}})
    frame = encode(
        w.ClientContent(turns=[w.Content(role="model", parts=[w.Part(function_call=call)])])
    )
    assert b'"snake_key":{"inner_key":1}' in frame


@pytest.mark.parametrize(
    "message",
    [w.RealtimeInput(), w.RealtimeInput(text="a", audio_stream_end=True)],
    ids=["none", "two"],
)
def test_encode_rejects_realtime_input_without_exactly_one_field(message: w.RealtimeInput) -> None:
    with pytest.raises(LocalProtocolError, match="exactly one field") as info:
        encode(message)
    assert info.value.field == "realtimeInput"


def test_encode_rejects_tool_response_without_id() -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode(w.ToolResponse(function_responses=[w.FunctionResponse(name="f", response={})]))
    assert info.value.field == "toolResponse.functionResponses[0].id"


def test_encode_rejects_empty_server_message_and_foreign_objects() -> None:
    with pytest.raises(LocalProtocolError):
        encode(w.ServerMessage())
    with pytest.raises(LocalProtocolError, match="not a wire message"):
        encode(w.Blob())  # type: ignore[arg-type]


def test_decode_server_reads_text_and_binary_frames_alike() -> None:
    blob = '{"mimeType":"audio/pcm;rate=24000","data":"AAEC"}'
    text = '{"serverContent":{"modelTurn":{"parts":[{"inlineData":' + blob + "}]}}}"
    assert decode_server(text) == decode_server(text.encode())
    parts = decode_server(text).server_content.model_turn.parts  # type: ignore[union-attr]
    assert parts is not None
    assert parts[0].inline_data == w.Blob(mime_type="audio/pcm;rate=24000", data=b"\x00\x01\x02")


def test_decode_server_keeps_several_top_level_keys_and_ignores_unknown_ones() -> None:
    frame = json.dumps(
        {
            "serverContent": {"turnComplete": True, "futureField": 1},
            "usageMetadata": {
                "totalTokenCount": 7,
                "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 3}],
            },
            "someNewMessage": {"x": 1},
        }
    )
    message = decode_server(frame)
    assert message.server_content == w.ServerContent(turn_complete=True)
    assert message.usage_metadata is not None
    assert message.usage_metadata.total_token_count == 7
    assert message.usage_metadata.prompt_tokens_details == [
        w.ModalityTokenCount(modality="AUDIO", token_count=3)
    ]


def test_usage_output_tokens_reads_either_name() -> None:
    assert w.UsageMetadata(response_token_count=4).output_tokens == 4
    assert w.UsageMetadata(candidates_token_count=5).output_tokens == 5
    assert w.UsageMetadata().output_tokens is None


@pytest.mark.parametrize(
    ("frame", "match", "field"),
    [
        (b"not json", "not valid JSON", None),
        (b"[1, 2]", "invalid server message", None),
        (b"{}", "no known top-level key", None),
        (b'{"somethingElse": {}}', "no known top-level key", None),
        (
            b'{"serverContent": {"turnComplete": "yes"}}',
            "Expected `bool",
            "$.serverContent.turnComplete",
        ),
        (b'{"goAway": {"timeLeft": 5}}', "Expected `str", "$.goAway.timeLeft"),
        (
            b'{"serverContent": {"modelTurn": {"parts": [{"inlineData": {"data": "***"}}]}}}',
            "base64",
            "$.serverContent.modelTurn.parts[0].inlineData.data",
        ),
    ],
)
def test_decode_server_errors_are_typed_and_name_the_field(
    frame: bytes, match: str, field: str | None
) -> None:
    with pytest.raises(RemoteProtocolError, match=match) as info:
        decode_server(frame)
    assert info.value.field == field
    if field is not None:
        assert field in str(info.value)


def test_durations() -> None:
    assert w.parse_duration("9.500s") == 9.5
    assert w.parse_duration("60s") == 60.0
    assert w.format_duration(9.5) == "9.500s"
    for bad in ("9.5", "-1s", "s", "abc", "nans"):
        with pytest.raises(RemoteProtocolError):
            w.parse_duration(bad)


def test_invalid_utf8_inside_a_string_is_a_protocol_error() -> None:
    # Found by the fuzzer: msgspec raises UnicodeDecodeError, not its DecodeError, for these.
    from protocol import decode_client

    with pytest.raises(RemoteProtocolError, match="not valid JSON"):
        decode_server(b'{"goAway": {"timeLeft": "\x80s"}}')
    with pytest.raises(RemoteProtocolError, match="not valid JSON"):
        decode_client(b'{"realtimeInput": {"audio": {"mimeType": "\x80", "data": "AAAA"}}}')
