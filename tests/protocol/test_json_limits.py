"""Both decoders against hostile JSON: every limit at the limit and one past it, and bad
input of any shape only ever as ``RemoteProtocolError`` (never RecursionError,
ValueError, UnicodeError...)."""

from __future__ import annotations

import os

import pytest

from protocol import RemoteProtocolError, decode_client, decode_server, encode
from protocol import wire as w
from protocol.limits import (
    MAX_AUDIO_RATE,
    MAX_DURATION_SECONDS,
    MAX_JSON_CONTAINERS,
    MAX_JSON_DEPTH,
    MAX_JSON_INT_DIGITS,
    MIN_AUDIO_RATE,
)
from protocol.wire import check_json_limits, parse_duration, pcm_rate

# Wrappers whose free-form value sits at a known depth; each returns a whole frame.
SERVER_ARGS = (b'{"toolCall": {"functionCalls": [{"id": "a", "name": "f", "args": ', b"}]}}", 4)
CLIENT_RESPONSE = (
    b'{"toolResponse": {"functionResponses": [{"id": "a", "response": ',
    b"}]}}",
    4,
)


def objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def framed(wrapper: tuple[bytes, bytes, int], depth: int, value: bytes | None = None) -> bytes:
    """A frame nested ``depth`` deep in all, the innermost levels inside free-form JSON."""
    head, tail, around = wrapper
    return head + (value if value is not None else objects(depth - around)) + tail


@pytest.mark.parametrize(
    ("decode", "wrapper"),
    [(decode_server, SERVER_ARGS), (decode_client, CLIENT_RESPONSE)],
    ids=["server", "client"],
)
def test_depth_at_the_limit_and_one_past_it(
    decode: object, wrapper: tuple[bytes, bytes, int]
) -> None:
    decode(framed(wrapper, MAX_JSON_DEPTH))  # type: ignore[operator]
    with pytest.raises(RemoteProtocolError, match=f"deeper than the limit of {MAX_JSON_DEPTH}"):
        decode(framed(wrapper, MAX_JSON_DEPTH + 1))  # type: ignore[operator]


@pytest.mark.parametrize("decode", [decode_server, decode_client], ids=["server", "client"])
@pytest.mark.parametrize(
    "frame",
    [
        b"[" * 1000,
        arrays(1000),
        b"[" * 100_000 + b"]" * 100_000,
        b'{"setupComplete": {}, "future": ' + arrays(5000) + b"}",
        framed(SERVER_ARGS, 0, arrays(1000)),
        framed(CLIENT_RESPONSE, 0, objects(1000)),
        b'{"realtimeInput": {"text": "x", "x": ' + b"{" * 3000 + b"}",
    ],
    ids=["open", "closed", "huge", "unknown-field", "args", "response", "unclosed-objects"],
)
def test_deep_nesting_anywhere_is_a_remote_protocol_error(decode: object, frame: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match="deeper than the limit"):
        decode(frame)  # type: ignore[operator]


def test_containers_at_the_limit_and_one_past_it() -> None:
    def with_lists(count: int) -> bytes:  # frame, toolCall, functionCalls, call, args, x
        inner = b",".join([b"[]"] * (count - 6))
        return framed(SERVER_ARGS, 0, b'{"x": [' + inner + b"]}")

    assert decode_server(with_lists(MAX_JSON_CONTAINERS)).tool_call is not None
    with pytest.raises(RemoteProtocolError, match=f"over the limit of {MAX_JSON_CONTAINERS}"):
        decode_server(with_lists(MAX_JSON_CONTAINERS + 1))


def test_brackets_inside_strings_count_for_nothing() -> None:
    text = '[{"\\"' * 5000
    frame = encode(w.RealtimeInput(text=text))
    check_json_limits(frame)
    assert decode_client(frame) == w.RealtimeInput(text=text)


def test_brackets_that_do_not_pair_are_not_json() -> None:
    frame = b'{"setupComplete": {"x": ' + b"[" * 60 + b"}" * 60 + b"}}"
    with pytest.raises(RemoteProtocolError, match="not valid JSON"):
        decode_server(frame)


@pytest.mark.parametrize("decode", [decode_server, decode_client], ids=["server", "client"])
def test_integers_at_the_digit_limit_and_one_past_it(decode: object) -> None:
    wrapper = SERVER_ARGS if decode is decode_server else CLIENT_RESPONSE
    decode(framed(wrapper, 0, b'{"n": ' + b"9" * MAX_JSON_INT_DIGITS + b"}"))  # type: ignore[operator]
    with pytest.raises(RemoteProtocolError):
        decode(framed(wrapper, 0, b'{"n": ' + b"9" * (MAX_JSON_INT_DIGITS + 1) + b"}"))  # type: ignore[operator]
    with pytest.raises(RemoteProtocolError):
        decode(b'{"usageMetadata": {"totalTokenCount": "' + b"9" * 10_000 + b'"}}')  # type: ignore[operator]


@pytest.mark.parametrize("decode", [decode_server, decode_client], ids=["server", "client"])
@pytest.mark.parametrize(
    "number", [b"1e309", b"-1e999", b"NaN", b"Infinity", b"-Infinity", b"1e99999999999"]
)
def test_floats_must_be_finite(decode: object, number: bytes) -> None:
    wrapper = SERVER_ARGS if decode is decode_server else CLIENT_RESPONSE
    with pytest.raises(RemoteProtocolError):
        decode(framed(wrapper, 0, b'{"x": ' + number + b"}"))  # type: ignore[operator]


@pytest.mark.parametrize("decode", [decode_server, decode_client], ids=["server", "client"])
@pytest.mark.parametrize(
    "frame",
    [
        '{"setupComplete": {"sessionId": "\ud800"}}',
        '{"realtimeInput": {"text": "\udfff"}}',
        "\ud800",
    ],
)
def test_text_frames_with_lone_surrogates(decode: object, frame: str) -> None:
    with pytest.raises(RemoteProtocolError):
        decode(frame)  # type: ignore[operator]


def test_huge_strings_are_only_bounded_by_the_message_size() -> None:
    text = "x" * (4 << 20)
    assert decode_client(encode(w.RealtimeInput(text=text))) == w.RealtimeInput(text=text)


# --- the canonical audio fast path agrees with the checked path ------------------------


def test_the_server_audio_fast_path_decodes_exactly_as_the_checked_path() -> None:
    data = os.urandom(1920)
    message = w.ServerMessage(
        server_content=w.ServerContent(
            model_turn=w.Content(
                role="model",
                parts=[w.Part(inline_data=w.Blob(mime_type="audio/pcm;rate=24000", data=data))],
            ),
            output_transcription=w.Transcription(text=" hi", finished=True),
        )
    )
    frame = encode(message)
    assert decode_server(frame) == message
    # The same frame with an unknown field takes the checked path, to the same message.
    assert decode_server(frame[:-1] + b', "future": [[1]]}') == message


# --- durations and rates --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("9.500s", 9.5), ("0s", 0.0), (" 1.5s ", 1.5), (f"{MAX_DURATION_SECONDS}s", 3.15576e11)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        f"{MAX_DURATION_SECONDS + 1}s",
        "9" * 13 + "s",
        "1e3s",
        "-1s",
        "NaNs",
        "infs",
        "1_0s",
        "1.0000000001s",
        "1.5",
        "",
        "\u0661s",
    ],
)
def test_durations_past_the_limit_or_malformed(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_duration(text)


def test_audio_rates_at_the_limits_and_past_them() -> None:
    assert pcm_rate("audio/pcm", default=24000) == 24000
    assert pcm_rate(f"audio/pcm;rate={MIN_AUDIO_RATE}", default=0) == MIN_AUDIO_RATE
    assert pcm_rate(f"audio/pcm; Rate = {MAX_AUDIO_RATE}", default=0) == MAX_AUDIO_RATE
    for bad in (
        MIN_AUDIO_RATE - 1,
        MAX_AUDIO_RATE + 1,
        "x",
        "",
        "16k",
        "\u0663\u0662\u0660\u0660\u0660",
        "9" * 5000,
    ):
        with pytest.raises(RemoteProtocolError):
            pcm_rate(f"audio/pcm;rate={bad}", default=0)
