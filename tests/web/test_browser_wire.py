"""The browser socket's codec: every limit at the limit and one past, and what the page
is sent for each session event."""

from __future__ import annotations

import pytest

from actors import browser_limits as limits
from actors import browser_wire as wire
from runtime import messages as m


def audio(payload: bytes, rate: int = 48000, version: int = 1, kind: int = wire.AUDIO) -> bytes:
    return wire.HEADER.pack(kind, version, 0, rate, 7) + payload


def decode(data: bytes | str) -> object:
    return wire.decode_binary(data) if isinstance(data, bytes) else wire.decode_control(data)


def refused(data: bytes | str) -> wire.BrowserProtocolError:
    with pytest.raises(wire.BrowserProtocolError) as info:
        decode(data)
    return info.value


def test_audio_messages_up_to_the_limit_and_one_past() -> None:
    largest = bytes(limits.MAX_AUDIO_MESSAGE_BYTES)
    assert wire.decode_binary(audio(largest)) == wire.AudioIn(largest, 48000, 7)
    error = refused(audio(largest + b"\0\0"))
    assert error.code == wire.TOO_BIG
    assert str(error) == f"audio message of {len(largest) + 2} bytes exceeds 16384"


def test_every_listed_rate_is_taken_and_others_refused() -> None:
    for rate in limits.INPUT_RATES:
        assert wire.decode_binary(audio(bytes(4), rate)) == wire.AudioIn(bytes(4), rate, 7)
    for rate in (0, 7999, 11025, 96000, 2**32 - 1):
        error = refused(audio(bytes(4), rate))
        assert error.code == wire.UNSUPPORTED_DATA
        assert f"unsupported sample rate {rate} Hz" in str(error)


def test_malformed_binary_messages_say_what_is_wrong() -> None:
    short = refused(b"\x01" * (wire.HEADER_BYTES - 1))
    assert (short.code, str(short)) == (
        wire.INVALID_DATA,
        "binary message of 11 bytes is shorter than the 12-byte header",
    )
    assert refused(audio(bytes(3))).code == wire.INVALID_DATA  # half a sample
    assert refused(audio(bytes(2), version=2)).code == wire.UNSUPPORTED_DATA
    unknown = refused(audio(bytes(2), kind=9))
    assert "unknown binary message kind 9" in str(unknown)
    assert wire.decode_binary(audio(b"", 16000)) == wire.AudioIn(b"", 16000, 7)  # empty: fine


def test_video_messages_up_to_the_limit_and_one_past() -> None:
    largest = bytes(limits.MAX_VIDEO_MESSAGE_BYTES)
    assert wire.decode_binary(wire.encode_video(largest, 3)) == wire.VideoIn(largest, 3)
    assert refused(wire.encode_video(largest + b"\0", 3)).code == wire.TOO_BIG


def test_control_messages() -> None:
    assert wire.decode_control('{"type": "text", "text": "hello"}') == wire.TextTurn("hello")
    assert wire.decode_control('{"type": "interrupt"}') == wire.Interrupt()
    for garbage in (
        "{not json",
        "[]",
        '{"type": "shout"}',
        '{"type": "text"}',
        '{"type": "interrupt", "x": 1}',
    ):
        error = refused(garbage)
        assert error.code == wire.INVALID_DATA
        assert str(error).startswith("invalid control message: ")


def test_control_and_text_limits_at_the_limit_and_one_past() -> None:
    text = "a" * limits.MAX_TEXT_CHARS
    assert wire.decode_control(f'{{"type":"text","text":"{text}"}}') == wire.TextTurn(text)
    assert refused(f'{{"type":"text","text":"{text}a"}}').code == wire.TOO_BIG
    padding = limits.MAX_CONTROL_BYTES - len('{"type":"interrupt"}')
    at_limit = '{"type":"interrupt"}' + " " * padding
    assert wire.decode_control(at_limit) == wire.Interrupt()
    error = refused(at_limit + " ")
    assert (error.code, str(error)) == (wire.TOO_BIG, "control message of 8193 bytes exceeds 8192")


def test_what_the_server_sends() -> None:
    assert wire.encode_audio(b"\1\0", 5) == wire.HEADER.pack(1, 1, 0, 24000, 5) + b"\1\0"
    assert wire.encode_audio(b"", 2**32 + 1)[8:12] == (1).to_bytes(4, "little")  # wraps
    assert wire.event_message(m.TurnInterrupted(turn_id=3)) == {"type": "interrupted", "turn_id": 3}
    assert wire.event_message(
        m.TranscriptCompleted(
            role="agent", turn_id=2, item_id="i", transcript="Hi", interrupted=True
        )
    ) == {
        "type": "transcript",
        "role": "agent",
        "turn_id": 2,
        "text": "Hi",
        "final": True,
        "interrupted": True,
    }
    assert wire.event_message(
        m.ToolResult(call_id="c", name="get_weather", output={"sky": "sunny"})
    ) == {"type": "tool_result", "call_id": "c", "name": "get_weather", "result": {"sky": "sunny"}}
    assert wire.event_message(m.ToolResult(call_id="c", name="f", error="boom"))["error"] == "boom"  # type: ignore[index]
    assert wire.event_message(m.ModelAudio(turn_id=1, data=b"", offset=0)) is None  # sent as binary


def test_close_reasons_fit_a_close_frame() -> None:
    assert wire.reason("short") == "short"
    long = wire.reason("é" * 100)
    assert len(long.encode()) <= wire.MAX_REASON_BYTES
    assert long.endswith("...")
