"""decode_client: what real clients send, read leniently, and bad frames rejected clearly."""

from __future__ import annotations

import json

import pytest

from protocol import RemoteProtocolError, decode_client
from protocol import wire as w


def test_snake_and_camel_keys_are_accepted_at_every_level() -> None:
    snake = {
        "setup": {
            "model": "models/m",
            "generation_config": {
                "response_modalities": ["AUDIO"],
                "speech_config": {
                    "voice_config": {"prebuilt_voice_config": {"voice_name": "Kore"}}
                },
            },
            "realtime_input_config": {"automatic_activity_detection": {"silence_duration_ms": 300}},
        }
    }
    camel = {
        "setup": {
            "model": "models/m",
            "generationConfig": {
                "responseModalities": ["AUDIO"],
                "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}},
            },
            "realtimeInputConfig": {"automaticActivityDetection": {"silenceDurationMs": 300}},
        }
    }
    expected = w.Setup(
        model="models/m",
        generation_config=w.GenerationConfig(
            response_modalities=["AUDIO"],
            speech_config=w.SpeechConfig(
                voice_config=w.VoiceConfig(
                    prebuilt_voice_config=w.PrebuiltVoiceConfig(voice_name="Kore")
                )
            ),
        ),
        realtime_input_config=w.RealtimeInputConfig(
            automatic_activity_detection=w.AutomaticActivityDetection(silence_duration_ms=300)
        ),
    )
    assert decode_client(json.dumps(snake)) == expected
    assert decode_client(json.dumps(camel).encode()) == expected


@pytest.mark.parametrize("data", ["__79AA==", "__79AA", "//79AA==", "//79AA"])
def test_url_safe_or_standard_base64_padded_or_not(data: str) -> None:
    frame = json.dumps({"realtime_input": {"audio": {"mime_type": "audio/pcm", "data": data}}})
    assert decode_client(frame) == w.RealtimeInput(
        audio=w.Blob(mime_type="audio/pcm", data=b"\xff\xfe\xfd\x00")
    )


def test_int64_as_number_or_string() -> None:
    for value in (5, "5"):
        frame = json.dumps(
            {"setup": {"model": "m", "context_window_compression": {"trigger_tokens": value}}}
        )
        message = decode_client(frame)
        assert isinstance(message, w.Setup)
        assert message.context_window_compression == w.ContextWindowCompression(trigger_tokens=5)


def test_free_form_json_keeps_its_keys() -> None:
    schema = {"type": "object", "properties": {"my_city": {"type": "string"}, "mimeType": {}}}
    frame = json.dumps(
        {
            "setup": {
                "model": "m",
                "tools": [
                    {"function_declarations": [{"name": "f", "parameters_json_schema": schema}]}
                ],
            }
        }
    )
    message = decode_client(frame)
    assert isinstance(message, w.Setup)
    assert message.tools is not None
    declarations = message.tools[0].function_declarations
    assert declarations is not None
    assert declarations[0].parameters_json_schema == schema
    response = {
        "tool_response": {
            "function_responses": [{"id": "1", "response": {"will_continue": {"a_b": 1}}}]
        }
    }
    decoded = decode_client(json.dumps(response))
    assert decoded == w.ToolResponse(
        function_responses=[w.FunctionResponse(id="1", response={"will_continue": {"a_b": 1}})]
    )


def test_unknown_fields_are_ignored_at_every_level() -> None:
    frame = json.dumps(
        {"realtimeInput": {"text": "hi", "futureThing": {"x": 1}}, "futureTopLevel": {}}
    )
    assert decode_client(frame) == w.RealtimeInput(text="hi")


@pytest.mark.parametrize(
    ("frame", "match", "field"),
    [
        (b"{not json", "not valid JSON", None),
        (b'"setup"', "must be a JSON object", "$"),
        (b"{}", "exactly one known top-level key, got 0", "$"),
        (b'{"hello": {}}', "exactly one known top-level key, got 0", "$"),
        (b'{"setup": {"model": "m"}, "realtimeInput": {"text": "x"}}', "got 2", "$"),
        (b'{"setup": {}}', "missing required field `model`", "$.setup"),
        (b'{"setup": {"model": 5}}', "Expected `str`", "$.setup.model"),
        (b'{"realtime_input": {"audio": {"data": "***"}}}', "base64", "$.realtimeInput.audio.data"),
        (
            b'{"setup": {"model": "m", "realtime_input_config": '
            b'{"activity_handling": "SOMETIMES"}}}',
            "Invalid enum value 'SOMETIMES'",
            "$.setup.realtimeInputConfig.activityHandling",
        ),
        (
            b'{"realtimeInput": {"audio": {"mimeType": "a", "mime_type": "b"}}}',
            "given twice",
            "$.realtimeInput.audio.mimeType",
        ),
        (b'{"realtimeInput": {"audio": []}}', "Expected `object", "$.realtimeInput.audio"),
    ],
)
def test_malformed_client_frames_raise_remote_errors_naming_the_field(
    frame: bytes, match: str, field: str | None
) -> None:
    with pytest.raises(RemoteProtocolError, match=match) as info:
        decode_client(frame)
    assert info.value.field == field


@pytest.mark.parametrize(
    "frame",
    [
        b'{"realtimeInput":{"audio":{"mimeType":"audio/pcm;rate=16000","data":"AAEC"}}}',
        b'{"realtimeInput":{"audio":{"mimeType":"audio/pcm","data":"AAEC","extra":1}}}',
        b'{"realtimeInput":{"audio":{"mime_type":"audio/pcm","data":"AAEC"}}}',
        b'{"realtimeInput":{"audio":{"mimeType":"audio/pcm","data":"AAE"}}}',
        b'{"realtime_input":{"audio":{"mime_type":"audio/pcm","data":"-_8"}}}',
    ],
    ids=["canonical", "extra-field", "snake", "unpadded", "sdk"],
)
def test_the_audio_fast_path_agrees_with_the_lenient_path(frame: bytes) -> None:
    from protocol.lenient import _decode_lenient

    assert decode_client(frame) == _decode_lenient(frame)


def test_the_fast_path_does_not_swallow_errors() -> None:
    with pytest.raises(RemoteProtocolError, match="base64"):
        decode_client(b'{"realtimeInput":{"audio":{"mimeType":"a","data":"***"}}}')
