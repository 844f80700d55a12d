"""Fuzzing: malformed and mutated frames into the decoders, the session state machine and a
running emulator. Nothing may escape but the typed protocol errors (a decoder: only
``RemoteProtocolError``, deep nesting and huge numbers included), and nothing may hang."""

from __future__ import annotations

import contextlib
import json

import trio
import trio_websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator import Behaviour, Scenario, open_emulator
from protocol import ProtocolError, RemoteProtocolError, decode_client, decode_server, encode
from protocol import websocket as rfc6455
from protocol import wire as w
from protocol.limits import MAX_JSON_DEPTH
from protocol.session import LiveSession
from tests.emulator.client import GEMINI_PATH

SEEDS_SERVER = [
    b'{"setupComplete": {}}',
    b'{"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": "AAAA"}}]}}}',
    b'{"serverContent": {"turnComplete": true}, "usageMetadata": {"totalTokenCount": 3}}',
    b'{"toolCall": {"functionCalls": [{"id": "a", "name": "f", "args": {"x": 1}}]}}',
    b'{"goAway": {"timeLeft": "1.5s"}}',
    b'{"sessionResumptionUpdate": {"newHandle": "h", "resumable": true}}',
]
SEEDS_CLIENT = [
    encode(w.Setup(model="models/gemini-3.8-live")),
    encode(w.RealtimeInput(audio=w.Blob(mime_type="audio/pcm;rate=16000", data=b"\x00\x01" * 8))),
    b'{"realtime_input": {"audio": {"mime_type": "audio/pcm", "data": "__8"}}}',
    b'{"tool_response": {"function_responses": [{"id": "a", "response": {"output": 1}}]}}',
    encode(
        w.ClientContent(
            turns=[w.Content(role="user", parts=[w.Part(text="hi")])], turn_complete=True
        )
    ),
]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed frame with random byte edits: flips, insertions, deletions, truncation."""
    frame = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if not frame:
            break
        at = draw(st.integers(0, len(frame) - 1))
        if kind == "flip":
            frame[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            frame[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del frame[at]
        else:
            del frame[at:]
    return bytes(frame)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3)
    ),
    max_leaves=12,
)


@st.composite
def shaped(draw: st.DrawFn, keys: list[str]) -> bytes:
    """Well-formed JSON with real top-level keys and random values: wrong types everywhere."""
    chosen = draw(st.lists(st.sampled_from(keys), min_size=0, max_size=2, unique=True))
    return json.dumps({key: draw(json_values) for key in chosen}).encode()


SERVER_KEYS = [
    "setupComplete",
    "serverContent",
    "toolCall",
    "toolCallCancellation",
    "goAway",
    "sessionResumptionUpdate",
    "usageMetadata",
    "voiceActivity",
]
CLIENT_KEYS = [
    "setup",
    "clientContent",
    "realtimeInput",
    "toolResponse",
    "contextUpdate",
    "realtime_input",
    "tool_response",
]


@st.composite
def deep(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with a deeply nested value spliced in at a random place: nesting up to ten
    times the limit, of arrays, objects or both, closed or not."""
    frame = draw(st.sampled_from(seeds))
    depth = draw(st.integers(MAX_JSON_DEPTH - 2, 10 * MAX_JSON_DEPTH))
    kind = draw(st.sampled_from(["[", '{"k":', "mixed"]))
    opens = [
        kind if kind != "mixed" else draw(st.sampled_from(["[", '{"k":'])) for _ in range(depth)
    ]
    closes = "".join("]" if o == "[" else "}" for o in reversed(opens))
    if draw(st.booleans()):
        closes = closes[: draw(st.integers(0, len(closes)))]
    value = ("".join(opens) + "1" + closes).encode()
    at = draw(st.sampled_from([i for i, byte in enumerate(frame) if byte in b":["] or [0]))
    return frame[: at + 1] + value + frame[at + 1 :]


@st.composite
def huge_number(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with one of its numbers (or a value) replaced by a huge or odd number."""
    frame = draw(st.sampled_from(seeds))
    number = draw(
        st.one_of(
            st.tuples(st.sampled_from([b"", b"-"]), st.integers(1, 10_000)).map(
                lambda sign_digits: sign_digits[0] + b"7" * sign_digits[1]
            ),
            st.sampled_from([b"1e999", b"-1e999", b"NaN", b"Infinity", b"1e-999", b"-0", b"1E+2"]),
            st.floats(allow_nan=False).map(lambda f: repr(f).encode()),
            st.text("0123456789.eE+-", min_size=1, max_size=30).map(str.encode),
        )
    )
    spots = [i for i, byte in enumerate(frame) if byte == ord(":")] or [0]
    at = draw(st.sampled_from(spots))
    end = at + 1
    while end < len(frame) and frame[end] not in b",}]":
        end += 1
    quoted = draw(st.booleans())
    value = b'"' + number + b'"' if quoted else number
    return frame[: at + 1] + value + frame[end:]


SERVER_FRAMES = st.one_of(
    mutated(SEEDS_SERVER),
    shaped(SERVER_KEYS),
    st.binary(max_size=64),
    deep(SEEDS_SERVER),
    huge_number(SEEDS_SERVER),
    st.text(max_size=64),
)
CLIENT_FRAMES = st.one_of(
    mutated(SEEDS_CLIENT),
    shaped(CLIENT_KEYS),
    st.binary(max_size=64),
    deep(SEEDS_CLIENT),
    huge_number(SEEDS_CLIENT),
    st.text(max_size=64),
)


@settings(max_examples=600, deadline=None)
@given(SERVER_FRAMES)
def test_decode_server_raises_only_protocol_errors(frame: bytes | str) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_server(frame)


@settings(max_examples=600, deadline=None)
@given(CLIENT_FRAMES)
def test_decode_client_raises_only_protocol_errors(frame: bytes | str) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_client(frame)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.sampled_from([None, "model"]), st.text(max_size=20))
def test_the_audio_fast_path_and_the_checked_path_agree(
    data: bytes, role: str | None, said: str
) -> None:
    message = w.ServerMessage(
        server_content=w.ServerContent(
            model_turn=w.Content(
                role=role,
                parts=[w.Part(inline_data=w.Blob(mime_type="audio/pcm;rate=24000", data=data))],
            ),
            output_transcription=w.Transcription(text=said) if said else None,
        )
    )
    frame = encode(message)
    with_unknown = frame[:-1] + b', "future": 1}'  # never the fast path
    assert decode_server(frame) == decode_server(with_unknown) == message


def _ws_frame(opcode: int, payload: bytes, masked: bool, fin: bool, rsv: int) -> bytes:
    bit, size = (0x80 if masked else 0), len(payload)
    first = (0x80 if fin else 0) | rsv | opcode
    if size < 126:
        header = bytes((first, bit | size))
    else:
        header = bytes((first, bit | 126)) + size.to_bytes(2, "big")
    if not masked:
        return header + payload
    mask = b"\x11\x22\x33\x44"
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


WS_FRAMES = st.lists(
    st.builds(
        _ws_frame,
        st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA]),
        st.one_of(
            st.binary(max_size=140),
            st.sampled_from([b"\xff", "é".encode(), b"x" * 200, b"x" * 201, b"x" * 300]),
        ),
        st.booleans(),
        st.booleans(),
        st.sampled_from([0, 0, 0, 0x40]),
    ),
    max_size=8,
)


def _ws_events(events: list[rfc6455.Event]) -> list[object]:
    return [(e.code, e.reason) if isinstance(e, rfc6455.ProtocolViolation) else e for e in events]


@settings(max_examples=400, deadline=None)
@given(WS_FRAMES, st.booleans(), st.lists(st.integers(1, 400), max_size=6))
def test_websocket_frames_read_whole_or_in_pieces_give_the_same_events(
    frames: list[bytes], masked: bool, cuts: list[int]
) -> None:
    """Whole reads take the parser's fast path; one byte at a time never does."""
    data = b"".join(frames)
    whole = rfc6455.FrameParser(200, masked=masked, max_fragments=3)
    pieces = rfc6455.FrameParser(200, masked=masked, max_fragments=3)
    bytewise = rfc6455.FrameParser(200, masked=masked, max_fragments=3)
    expected = _ws_events([e for i in range(len(data)) for e in bytewise.feed(data[i : i + 1])])
    assert _ws_events(whole.feed(data)) == expected
    got: list[rfc6455.Event] = []
    start = 0
    for cut in [*cuts, len(data)]:
        got += pieces.feed(data[start : start + cut])
        start += cut
    got += pieces.feed(data[start:])
    assert _ws_events(got) == expected
    assert whole.buffered_bytes == bytewise.buffered_bytes


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(mutated(SEEDS_SERVER), shaped(SERVER_KEYS), st.sampled_from(SEEDS_SERVER)),
        max_size=12,
    )
)
def test_the_session_state_machine_raises_only_protocol_errors(frames: list[bytes]) -> None:
    session = LiveSession()
    session.send(w.Setup(model="m"))
    for frame in frames:
        with contextlib.suppress(ProtocolError):
            session.receive_frame(frame)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.one_of(mutated(SEEDS_CLIENT), shaped(CLIENT_KEYS)), min_size=1, max_size=6))
def test_the_running_emulator_answers_garbage_with_close_codes_and_keeps_serving(
    frames: list[bytes],
) -> None:
    async def main() -> None:
        fast = Scenario(behaviour=Behaviour(pace="fast", first_audio_delay_ms=0))
        async with open_emulator(scenario=fast) as emu:
            with trio.fail_after(10):  # nothing hangs
                async with trio_websocket.open_websocket_url(
                    emu.url + GEMINI_PATH, message_queue_size=1024
                ) as ws:
                    try:
                        await ws.send_message(b'{"setup": {"model": "models/gemini-3.8-live"}}')
                        await ws.get_message()
                        for frame in frames:
                            await ws.send_message(frame)
                        await ws.send_message(b'{"realtimeInput": {"text": "still there?"}}')
                        while "turnComplete" not in str(await ws.get_message()):
                            pass  # until the reply is over (still serving), or a close
                    except trio_websocket.ConnectionClosed as exc:
                        codes.append(exc.reason.code if exc.reason else None)
                await ws._stream.aclose()
                # The emulator still serves a well-behaved client afterwards.
                async with trio_websocket.open_websocket_url(emu.url + GEMINI_PATH) as fresh:
                    await fresh.send_message(b'{"setup": {"model": "models/gemini-3.8-live"}}')
                    assert "setupComplete" in str(await fresh.get_message())
                await fresh._stream.aclose()

    codes: list[int | None] = []
    trio.run(main)
    assert set(codes) <= {1000, 1007, 1008, 1009}  # only the real close codes
