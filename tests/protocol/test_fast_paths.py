"""The per-message fast paths of the protocol layer give exactly what the general paths
give: WebSocket messages parsed straight from a read against the same bytes parsed a byte
at a time, client frames framed inline against ``encode_frame``, masking with numpy
against a byte-by-byte XOR, a realtimeInput encoded without the field list against the
envelope msgspec writes, cached audio rates against parsing, and a session's audio
bookkeeping against what the general path records. At the limits and one past them."""

from __future__ import annotations

import os

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import limits
from protocol import wire as w
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.session import LiveSession, State
from protocol.websocket import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_TEXT,
    Event,
    FrameParser,
    Message,
    ProtocolViolation,
    Role,
    WebSocket,
    _unmask,
    encode_frame,
)
from tests.protocol.test_websocket_state import frame  # a frame written by hand

# --- WebSocket frames in -------------------------------------------------------------------


def comparable(events: list[Event]) -> list[object]:
    """Events with a violation as its code and reason (each error is its own object)."""
    return [
        ("violation", e.code, e.reason) if isinstance(e, ProtocolViolation) else e for e in events
    ]


def parse_in_one_read(data: bytes, parser: FrameParser) -> list[object]:
    return comparable(parser.feed(data))


def parse_byte_by_byte(data: bytes, parser: FrameParser) -> list[object]:
    """Never more than one byte unparsed: the general path, always."""
    events: list[Event] = []
    for index in range(len(data)):
        events += parser.feed(data[index : index + 1])
    return comparable(events)


def parsers(masked: bool, max_size: int = 4096) -> tuple[FrameParser, FrameParser]:
    return (
        FrameParser(max_size, masked=masked, max_fragments=8),
        FrameParser(max_size, masked=masked, max_fragments=8),
    )


def assert_same_as_general_path(data: bytes, masked: bool, max_size: int = 4096) -> list[object]:
    fast, general = parsers(masked, max_size)
    events = parse_in_one_read(data, fast)
    assert events == parse_byte_by_byte(data, general)
    assert fast.buffered_bytes == general.buffered_bytes
    assert fast.feed(b"") == general.feed(b"") == []
    return events


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 4095, 4096])
def test_a_whole_message_read_at_once_is_what_the_general_path_reads(
    masked: bool, size: int
) -> None:
    payload = bytes(range(256)) * (size // 256 + 1)
    data = frame(OP_BINARY, payload[:size], masked=masked)
    assert assert_same_as_general_path(data, masked) == [Message(payload[:size])]


@pytest.mark.parametrize("masked", [False, True])
def test_a_message_one_past_the_size_limit_fails_as_on_the_general_path(masked: bool) -> None:
    data = frame(OP_BINARY, b"a", masked=masked) + frame(OP_BINARY, b"x" * 4097, masked=masked)
    events = assert_same_as_general_path(data, masked)
    assert events == [Message(b"a"), ("violation", 1009, "message larger than 4096 bytes")]


@pytest.mark.parametrize("size", [65535, 65536])
def test_messages_around_the_16_bit_length_read_as_on_the_general_path(size: int) -> None:
    # 65536 has a 64-bit length: the general path reads it.
    data = frame(OP_BINARY, b"z" * size, masked=False)
    assert assert_same_as_general_path(data, False, max_size=1 << 20) == [Message(b"z" * size)]


@pytest.mark.parametrize("masked", [False, True])
def test_several_messages_and_a_partial_one_in_one_read(masked: bool) -> None:
    whole = b"".join(frame(OP_BINARY, b"m%d" % i * 50, masked=masked) for i in range(5))
    text = frame(OP_TEXT, "héllo".encode(), masked=masked)
    partial = frame(OP_BINARY, b"p" * 300, masked=masked)
    for cut in (1, 2, 3, 4, 6, 8, 100):  # inside the header, the mask and the payload
        data = whole + text + partial[:cut]
        events = assert_same_as_general_path(data, masked)
        assert events == [Message(b"m%d" % i * 50) for i in range(5)] + [Message("héllo")]
        fast = FrameParser(4096, masked=masked)
        fast.feed(data)
        assert fast.feed(partial[cut:]) == [Message(b"p" * 300)]


@pytest.mark.parametrize("masked", [False, True])
def test_control_frames_and_fragments_between_whole_messages(masked: bool) -> None:
    data = (
        frame(OP_BINARY, b"one", masked=masked)
        + frame(OP_PING, b"p", masked=masked)
        + frame(OP_BINARY, b"two", masked=masked)
        + frame(OP_TEXT, b"fr", masked=masked, fin=False)
        + frame(OP_CONTINUATION, b"ag", masked=masked)
        + frame(OP_BINARY, b"three", masked=masked)
        + frame(OP_CLOSE, (1000).to_bytes(2, "big"), masked=masked)
        + frame(OP_BINARY, b"ignored", masked=masked)
    )
    events = assert_same_as_general_path(data, masked)
    assert [type(e).__name__ for e in events] == [
        "Message",
        "Ping",
        "Message",
        "Message",
        "Message",
        "Close",
    ]


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (frame(OP_TEXT, b"\xff\xfe", masked=False), 1007),  # not UTF-8
        (frame(OP_BINARY, b"r", masked=False, rsv=0x40), 1002),  # a reserved bit
        (frame(OP_BINARY, b"m", masked=True), 1002),  # a server must not mask
        (frame(0x3, b"u", masked=False), 1002),  # an unknown opcode
        (frame(OP_CONTINUATION, b"c", masked=False), 1002),  # nothing to continue
    ],
)
def test_a_bad_frame_after_good_ones_keeps_them_and_fails_as_on_the_general_path(
    bad: bytes, code: int
) -> None:
    good = frame(OP_BINARY, b"kept", masked=False)
    events = assert_same_as_general_path(good + good + bad + good, False)
    assert events[:2] == [Message(b"kept"), Message(b"kept")]
    assert len(events) == 3
    assert events[2][:2] == ("violation", code)  # type: ignore[index]


def test_a_client_frame_without_a_mask_fails_as_on_the_general_path() -> None:
    data = frame(OP_BINARY, b"a", masked=True) + frame(OP_BINARY, b"b", masked=False)
    events = assert_same_as_general_path(data, True)
    assert events == [Message(b"a"), ("violation", 1002, "client frames must be masked")]


def test_an_empty_read_parses_nothing() -> None:
    assert FrameParser().feed(b"") == []


# --- WebSocket frames out --------------------------------------------------------------


def xor_byte_by_byte(payload: bytes, mask: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 929, 2664, 8191, 8192, 8193, 70001])
def test_masking_is_the_xor_of_the_repeated_mask_on_both_sides_of_the_numpy_threshold(
    size: int,
) -> None:
    payload, mask = os.urandom(size), os.urandom(4)
    masked = _unmask(payload, mask)
    assert type(masked) is bytes
    assert masked == xor_byte_by_byte(payload, mask)
    assert _unmask(masked, mask) == payload


@pytest.mark.parametrize("size", [0, 125, 126, 929, 65535, 65536])
@pytest.mark.parametrize("data_type", [bytes, str])
def test_a_clients_message_is_the_frame_encode_frame_makes_with_its_mask(
    size: int, data_type: type
) -> None:
    client = WebSocket(Role.CLIENT)
    data: bytes | str = "é" * (size // 2) + "x" * (size % 2) if data_type is str else b"y" * size
    payload = data.encode() if isinstance(data, str) else data
    sent = client.send_message(data)
    header = 2 if size < 126 else 4 if size < 65536 else 10
    mask = sent[header : header + 4]
    assert sent == encode_frame(OP_TEXT if data_type is str else OP_BINARY, payload, mask)
    server = WebSocket(Role.SERVER, max_message_size=1 << 20)
    assert server.receive_data(sent) == [Message(data)]


def test_a_servers_message_is_the_unmasked_frame() -> None:
    server = WebSocket(Role.SERVER)
    for size in (0, 125, 126, 65535, 65536):
        assert server.send_message(b"s" * size) == encode_frame(OP_BINARY, b"s" * size)


# --- wire ------------------------------------------------------------------------------

BLOB = w.Blob(mime_type="audio/pcm;rate=16000", data=b"\x01\x02" * 320)
ONE_FIELD = [
    w.RealtimeInput(audio=BLOB),
    w.RealtimeInput(video=w.Blob(mime_type="image/jpeg", data=b"jpg")),
    w.RealtimeInput(text=""),
    w.RealtimeInput(activity_start=w.ActivityStart()),
    w.RealtimeInput(activity_end=w.ActivityEnd()),
    w.RealtimeInput(audio_stream_end=False),
    w.RealtimeInput(media_chunks=[]),
]


@pytest.mark.parametrize("message", ONE_FIELD)
def test_a_realtime_input_is_its_envelope_as_msgspec_writes_it(message: w.RealtimeInput) -> None:
    envelope = w.ClientEnvelope(realtime_input=message)
    assert w.encode(message) == msgspec.json.encode(envelope)


@pytest.mark.parametrize(
    ("message", "count"),
    [
        (w.RealtimeInput(), 0),
        (w.RealtimeInput(audio=BLOB, text="hi"), 2),
        (w.RealtimeInput(audio=BLOB, audio_stream_end=False, activity_end=w.ActivityEnd()), 3),
    ],
)
def test_a_realtime_input_with_other_than_one_field_is_refused(
    message: w.RealtimeInput, count: int
) -> None:
    with pytest.raises(LocalProtocolError, match=f"exactly one field, got {count}"):
        w.encode(message)


def test_a_server_message_is_empty_only_with_no_key_set() -> None:
    assert w.ServerMessage().is_empty()
    for name in w.ServerMessage.__struct_fields__:
        value = w.UsageMetadata() if name == "usage_metadata" else w.GoAway()
        assert not w.ServerMessage(**{name: value}).is_empty()  # type: ignore[arg-type]


def test_audio_rates_come_from_the_cache_as_from_parsing() -> None:
    for _ in range(3):
        assert w.pcm_rate("audio/pcm;rate=24000", default=16000) == 24000
        assert w.pcm_rate("audio/pcm", default=16000) == 16000
        assert w.pcm_rate("audio/pcm", default=24000) == 24000  # the default is in the key
        assert w.pcm_rate("audio/pcm; RATE = 8000", default=24000) == 8000


@pytest.mark.parametrize(
    "mime_type",
    [
        f"audio/pcm;rate={limits.MIN_AUDIO_RATE - 1}",
        f"audio/pcm;rate={limits.MAX_AUDIO_RATE + 1}",
        "audio/pcm;rate=fast",
    ],
)
def test_a_bad_audio_rate_is_refused_every_time(mime_type: str) -> None:
    for _ in range(3):
        with pytest.raises(RemoteProtocolError, match="invalid audio rate"):
            w.pcm_rate(mime_type, default=24000)


def test_the_audio_rate_cache_is_bounded_and_skips_long_mime_types() -> None:
    for rate in range(limits.MIN_AUDIO_RATE, limits.MIN_AUDIO_RATE + 100):
        assert w.pcm_rate(f"audio/pcm;rate={rate}", default=24000) == rate
    assert len(w._pcm_rates) <= w._PCM_RATES_CACHED
    at_limit = "audio/pcm;rate=16000;" + "x" * (w._PCM_RATE_CACHED_CHARS - 21)
    past_it = at_limit + "x"
    w._pcm_rates.clear()
    assert w.pcm_rate(at_limit, default=24000) == w.pcm_rate(past_it, default=24000) == 16000
    assert list(w._pcm_rates) == [(at_limit, 24000)]


# --- the session's audio path ------------------------------------------------------------


def ready_session(*, transparent: bool) -> LiveSession:
    session = LiveSession()
    resumption = w.SessionResumptionConfig(transparent=True) if transparent else None
    session.send(w.Setup(model="models/m", session_resumption=resumption))
    session.receive_frame(b'{"setupComplete":{}}')
    return session


@pytest.mark.parametrize("state", [State.IDLE, State.SETUP_SENT])
def test_audio_before_setup_complete_is_refused_as_any_input(state: State) -> None:
    session = LiveSession(state=state)
    with pytest.raises(
        LocalProtocolError, match=f"input before setupComplete in state {state.value}"
    ):
        session.send(w.RealtimeInput(audio=BLOB))
    assert session.messages_sent == 0


@pytest.mark.parametrize(
    "state", [State.READY, State.MODEL_TURN, State.GENERATION_DONE, State.INTERRUPTED]
)
def test_audio_in_every_active_state_is_sent_and_logged_like_other_input(state: State) -> None:
    session = ready_session(transparent=True)
    session.state = state
    frame = session.send(w.RealtimeInput(audio=BLOB))
    assert frame == w.encode(w.RealtimeInput(audio=BLOB))
    text_frame = session.send(w.RealtimeInput(video=w.Blob(mime_type="image/jpeg", data=b"j")))
    assert session.state is state
    assert session.messages_sent == 3  # the setup, the audio, the video
    assert not session.awaiting_reply
    session.connection_lost()
    assert session.replay_pending == 2
    session.discard_unsent_audio()  # the audio is known as audio
    assert session.replay_frames() == [text_frame]


def test_audio_with_a_second_field_is_refused_and_records_nothing() -> None:
    session = ready_session(transparent=True)
    with pytest.raises(LocalProtocolError, match="exactly one field, got 2"):
        session.send(w.RealtimeInput(audio=BLOB, text="hi"))
    assert session.messages_sent == 1
    assert not session.awaiting_reply
    session.connection_lost()
    assert session.replay_pending == 0


def test_the_server_consuming_audio_forgets_it_up_to_the_index() -> None:
    session = ready_session(transparent=True)
    frames = [session.send(w.RealtimeInput(audio=BLOB)) for _ in range(5)]
    session.receive_frame(
        b'{"sessionResumptionUpdate":{"newHandle":"h","resumable":true,'
        b'"lastConsumedClientMessageIndex":"3"}}'
    )
    session.connection_lost()
    assert session.replay_frames() == frames[3:]


def test_the_replay_log_keeps_at_most_its_bound_of_audio() -> None:
    session = ready_session(transparent=True)
    frame_size = len(w.encode(w.RealtimeInput(audio=BLOB)))
    session.max_unconsumed_bytes = frame_size * 3
    for _ in range(3):
        session.send(w.RealtimeInput(audio=BLOB))
    assert session.unconsumed_forgotten == 0  # at the bound
    session.send(w.RealtimeInput(audio=BLOB))
    assert session.unconsumed_forgotten == 1  # one past it
    session.connection_lost()
    assert session.replay_pending == 3


# --- the session's receive path ------------------------------------------------------------

AUDIO_PART = w.Part(inline_data=w.Blob(mime_type="audio/pcm;rate=24000", data=b"\x01\x00" * 8))
PARTS = st.sampled_from(
    [
        AUDIO_PART,
        w.Part(inline_data=w.Blob(mime_type="audio/pcm;rate=16000", data=b"\x02\x00")),
        w.Part(inline_data=w.Blob(mime_type="audio/pcm;rate=5", data=b"\x02\x00")),  # refused
        w.Part(inline_data=w.Blob(mime_type="audio/pcm", data=b"")),
        w.Part(text="words"),
        w.Part(text="thinking", thought=True),
        w.Part(executable_code=w.ExecutableCode(code="1", id="c")),
    ]
)
CONTENTS = st.one_of(
    st.builds(lambda parts: w.ServerContent(model_turn=w.Content(parts=parts)), st.lists(PARTS)),
    st.builds(
        lambda parts, role: w.ServerContent(model_turn=w.Content(role=role, parts=parts)),
        st.lists(PARTS, max_size=2),
        st.sampled_from([None, "model"]),
    ),
    st.sampled_from(
        [
            w.ServerContent(model_turn=w.Content()),
            w.ServerContent(model_turn=w.Content(parts=[AUDIO_PART]), turn_complete=True),
            w.ServerContent(model_turn=w.Content(parts=[AUDIO_PART]), generation_complete=False),
            w.ServerContent(output_transcription=w.Transcription(text="said")),
            w.ServerContent(generation_complete=True),
            w.ServerContent(interrupted=True),
            w.ServerContent(turn_complete=True),
        ]
    ),
)
SERVER_MESSAGES = st.one_of(
    st.builds(lambda content: w.ServerMessage(server_content=content), CONTENTS),
    st.builds(
        lambda content: w.ServerMessage(
            server_content=content, usage_metadata=w.UsageMetadata(total_token_count=1)
        ),
        CONTENTS,
    ),
    st.sampled_from(
        [
            w.ServerMessage(setup_complete=w.SetupComplete()),
            w.ServerMessage(go_away=w.GoAway(time_left="1s")),
            w.ServerMessage(
                tool_call=w.ToolCall(function_calls=[w.FunctionCall(id="t", name="f")])
            ),
        ]
    ),
)


def _apply(session: LiveSession, message: w.ServerMessage, *, general: bool) -> object:
    try:
        return session._receive_any(message) if general else session.receive(message)
    except RemoteProtocolError as exc:
        return ("error", str(exc), exc.field)


QUESTION = w.ClientContent(turns=[w.Content(parts=[w.Part(text="q")])], turn_complete=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(SERVER_MESSAGES, st.just(QUESTION)), max_size=12))
def test_receiving_gives_what_the_general_path_gives_message_by_message(
    messages: list[w.ServerMessage | w.ClientContent],
) -> None:
    """Typed questions in between: a reply is then owed while a turn is open."""
    fast, general = ready_session(transparent=True), ready_session(transparent=True)
    for message in messages:
        if isinstance(message, w.ClientContent):
            assert fast.send(message) == general.send(message)
        else:
            assert _apply(fast, message, general=False) == _apply(general, message, general=True)
        assert fast == general  # every field of the state, private ones included
