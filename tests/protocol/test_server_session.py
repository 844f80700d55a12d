"""The server's side of a session, without I/O: what client messages mean, what the
service refuses and with which close code, and what the server may send (the client's
own turn table, checked against the client's state machine)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import LocalProtocolError, RemoteProtocolError, decode_server, encode
from protocol import wire as w
from protocol.server_session import (
    ActivityStarted,
    AudioReceived,
    AudioStreamEnded,
    ClientRejected,
    ContentReceived,
    ContextUpdated,
    ServerSession,
    ServiceRules,
    SessionRecord,
    SetupRequested,
    TextReceived,
    ToolResponsesReceived,
    VideoReceived,
)
from protocol.session import LiveSession, State

MODEL = "models/gemini-2.5-flash-native-audio-preview-12-2025"
RULES = ServiceRules(models=("gemini-2.5-flash-native-audio-preview-12-2025",))


def accepted(setup: w.Setup | None = None, rules: ServiceRules = RULES) -> ServerSession:
    session = ServerSession(rules)
    event = session.receive(setup or w.Setup(model=MODEL))
    assert isinstance(event, SetupRequested)
    session.accept(SessionRecord("s1"))
    return session


def state(session: ServerSession) -> State:
    return session.state  # a call: mypy would keep an attribute narrowed across calls


def pending(session: ServerSession) -> tuple[str, ...]:
    return session.pending_calls


def rejected(session: ServerSession, message: w.ClientMessage) -> ClientRejected:
    with pytest.raises(ClientRejected) as info:
        session.receive(message)
    return info.value


def audio(data: bytes = b"\0\0" * 320, mime: str = "audio/pcm;rate=16000") -> w.RealtimeInput:
    return w.RealtimeInput(audio=w.Blob(mime_type=mime, data=data))


# --- setup ----------------------------------------------------------------------------


def test_setup_then_accept_answers_with_setup_complete_and_the_session_id() -> None:
    session = ServerSession(RULES)
    event = session.receive(
        w.Setup(
            model=MODEL,
            generation_config=w.GenerationConfig(response_modalities=["TEXT"]),
            realtime_input_config=w.RealtimeInputConfig(
                automatic_activity_detection=w.AutomaticActivityDetection(disabled=True),
                activity_handling="NO_INTERRUPTION",
            ),
            session_resumption=w.SessionResumptionConfig(handle="h"),
        )
    )
    assert isinstance(event, SetupRequested)
    config = event.config
    assert (config.model, config.text_mode, config.automatic_activity_detection) == (
        "gemini-2.5-flash-native-audio-preview-12-2025",
        True,
        False,
    )
    assert (config.interruptible, config.resumption, config.resume_handle) == (False, True, "h")
    assert state(session) is State.SETUP_SENT
    frame = session.accept(SessionRecord("s1"))
    assert decode_server(frame).setup_complete == w.SetupComplete(session_id="s1")
    assert state(session) is State.READY


@pytest.mark.parametrize(
    ("setup", "code", "words"),
    [
        (w.Setup(model="models/gemini-9-ultra"), 1008, "not found for API version v1beta"),
        (w.Setup(model=""), 1008, "not found"),
        (
            w.Setup(
                model=MODEL, generation_config=w.GenerationConfig(response_modalities=["IMAGE"])
            ),
            1008,
            "responseModalities",
        ),
        (
            w.Setup(
                model=MODEL,
                generation_config=w.GenerationConfig(response_modalities=["AUDIO", "TEXT"]),
            ),
            1008,
            "responseModalities",
        ),
        (
            w.Setup(model=MODEL, session_resumption=w.SessionResumptionConfig(transparent=True)),
            1008,
            "Vertex",
        ),
    ],
)
def test_setups_the_service_refuses(setup: w.Setup, code: int, words: str) -> None:
    session = ServerSession(RULES)
    error = rejected(session, setup)
    assert (error.close_code, words in str(error)) == (code, True)
    assert session.state is State.IDLE  # nothing changed


def test_transparent_resumption_on_vertex_and_any_model_when_unknown_names_are_served() -> None:
    vertex = ServerSession(ServiceRules(api="vertex", unknown_models="any"))
    setup = w.Setup(
        model="projects/p/locations/l/publishers/google/models/anything",
        session_resumption=w.SessionResumptionConfig(transparent=True),
    )
    assert isinstance(vertex.receive(setup), SetupRequested)


def test_input_before_setup_and_a_second_setup_are_refused_with_1007() -> None:
    error = rejected(ServerSession(RULES), w.RealtimeInput(text="hi"))
    assert (error.close_code, str(error)) == (
        1007,
        "the first message must be setup, not realtimeInput",
    )
    waiting = ServerSession(RULES)
    waiting.receive(w.Setup(model=MODEL))
    assert "before setupComplete" in str(rejected(waiting, w.RealtimeInput(text="hi")))
    error = rejected(accepted(), w.Setup(model=MODEL))
    assert (error.close_code, "sent once" in str(error)) == (1007, True)


def test_accept_without_a_setup_is_our_bug() -> None:
    with pytest.raises(LocalProtocolError):
        ServerSession(RULES).accept(SessionRecord("s"))


def test_a_malformed_frame_is_refused_with_1007_naming_the_field() -> None:
    session = accepted()
    with pytest.raises(ClientRejected) as info:
        session.receive_frame(b'{"realtimeInput": {"audio": 5}}')
    assert info.value.close_code == 1007
    assert info.value.field == "$.realtimeInput.audio"
    assert str(info.value).startswith("Invalid client message: ")


# --- what input means -----------------------------------------------------------------


def test_realtime_input_events() -> None:
    session = accepted()
    assert session.receive(audio(b"\1\0" * 8)) == AudioReceived(b"\1\0" * 8, 16000)
    assert session.receive(audio(b"", "audio/pcm;rate=48000")) == AudioReceived(b"", 48000)
    assert session.receive(audio(b"", "audio/pcm")) == AudioReceived(b"", 16000)
    assert session.receive(w.RealtimeInput(text="hi")) == TextReceived("hi")
    assert session.receive(w.RealtimeInput(video=w.Blob(mime_type="image/jpeg"))) == (
        VideoReceived()
    )
    assert session.record is not None
    assert session.record.video_seen
    assert session.receive(w.RealtimeInput(audio_stream_end=True)) == AudioStreamEnded()
    assert session.receive(w.RealtimeInput()) is None
    update = w.ContextUpdate(system_instruction=w.Content(parts=[w.Part(text="x")]))
    assert session.receive(update) == ContextUpdated(update)
    assert session.messages_received == 9  # the setup too


def test_deprecated_media_chunks_take_the_first_audio_and_note_video() -> None:
    session = accepted()
    chunks = [w.Blob(mime_type="image/jpeg"), w.Blob(mime_type="audio/pcm", data=b"\0\0")]
    assert session.receive(w.RealtimeInput(media_chunks=chunks)) == AudioReceived(b"\0\0", 16000)
    assert session.record is not None
    assert session.record.video_seen


def test_activity_signals_need_manual_detection() -> None:
    error = rejected(accepted(), w.RealtimeInput(activity_start=w.ActivityStart()))
    assert (error.close_code, error.field) == (1007, "realtimeInput.activityStart")
    manual = accepted(
        w.Setup(
            model=MODEL,
            realtime_input_config=w.RealtimeInputConfig(
                automatic_activity_detection=w.AutomaticActivityDetection(disabled=True)
            ),
        )
    )
    assert manual.receive(w.RealtimeInput(activity_start=w.ActivityStart())) == ActivityStarted()
    assert manual.receive(w.RealtimeInput(audio_stream_end=True)) is None  # ignored


@pytest.mark.parametrize(
    "mime", ["audio/mp3", "audio/pcm;rate=7999", "audio/pcm;rate=192001", "audio/pcm;rate=x"]
)
def test_audio_the_service_cannot_take_is_refused_with_1007(mime: str) -> None:
    session = accepted()
    assert rejected(session, audio(b"", mime)).close_code == 1007
    assert session.receive(audio(b"", "audio/pcm;rate=8000")) == AudioReceived(b"", 8000)
    assert session.receive(audio(b"", "audio/pcm;rate=192000")) == AudioReceived(b"", 192000)


def test_the_session_audio_limit_at_the_limit_and_one_chunk_past_it() -> None:
    rules = ServiceRules(session_audio_limit_s=1.0, session_audio_video_limit_s=0.5)
    session = accepted(w.Setup(model=MODEL), rules)
    half = audio(b"\0" * 16000)  # 0.5 s at 16 kHz
    session.receive(half)
    session.receive(half)  # exactly at the limit: fine
    error = rejected(session, audio(b"\0\0"))
    assert (error.close_code, "contextWindowCompression" in str(error)) == (1000, True)
    assert session.record is not None
    assert session.record.audio_seconds == 1.0  # the refused chunk changed nothing
    video = accepted(w.Setup(model=MODEL), rules)
    video.receive(w.RealtimeInput(video=w.Blob(mime_type="image/jpeg")))
    video.receive(half)
    assert rejected(video, audio(b"\0\0")).close_code == 1000  # the audio+video limit
    compressed = accepted(
        w.Setup(model=MODEL, context_window_compression=w.ContextWindowCompression()), rules
    )
    for _ in range(4):
        compressed.receive(half)


def test_text_and_content_at_their_limits_and_one_past() -> None:
    rules = ServiceRules(max_text_chars=5, max_content_turns=2)
    session = accepted(w.Setup(model=MODEL), rules)
    assert session.receive(w.RealtimeInput(text="12345")) == TextReceived("12345")
    assert rejected(session, w.RealtimeInput(text="123456")).close_code == 1007
    turn = w.Content(role="user", parts=[w.Part(text="ab"), w.Part(text="c")])
    assert session.receive(w.ClientContent(turns=[turn, turn], turn_complete=True)) == (
        ContentReceived((("user", "ab c"), ("user", "ab c")), True)
    )
    assert rejected(session, w.ClientContent(turns=[turn] * 3)).close_code == 1007
    long_turn = w.Content(parts=[w.Part(text="abc"), w.Part(text="de")])  # "abc de": 6
    error = rejected(session, w.ClientContent(turns=[long_turn]))
    assert error.field == "clientContent.turns[0]"


# --- tool responses -------------------------------------------------------------------


def with_calls(*names: str, rules: ServiceRules = RULES) -> tuple[ServerSession, list[str]]:
    session = accepted(rules=rules)
    assert session.record is not None
    calls = [w.FunctionCall(id=session.record.new_call_id(), name=n) for n in names]
    session.send(w.ServerMessage(tool_call=w.ToolCall(function_calls=calls)))
    return session, [call.id or "" for call in calls]


def test_tool_responses_answer_pending_calls_once() -> None:
    session, (a, b) = with_calls("f", "g")
    assert pending(session) == (a, b)
    partial = w.FunctionResponse(id=a, response={"n": 1}, will_continue=True)
    event = session.receive(w.ToolResponse(function_responses=[partial]))
    assert event == ToolResponsesReceived((), (partial,))
    assert pending(session) == (a, b)
    done = [w.FunctionResponse(id=a), w.FunctionResponse(id=b)]
    event = session.receive(w.ToolResponse(function_responses=done))
    assert event == ToolResponsesReceived((a, b), tuple(done))
    assert pending(session) == ()
    # A second answer to an answered call answers nothing, as one to a cancelled call:
    # it is passed on as late (a NON_BLOCKING call's result may still be spoken about).
    again = session.receive(w.ToolResponse(function_responses=done))
    assert again == ToolResponsesReceived((), (), tuple(done))


def test_late_answers_to_earlier_connections_calls_are_ignored_unknown_ids_refused() -> None:
    record = SessionRecord("s1")
    earlier = record.new_call_id()
    session = ServerSession(RULES)
    session.receive(w.Setup(model=MODEL))
    session.accept(record)
    late = w.ToolResponse(function_responses=[w.FunctionResponse(id=earlier)])
    assert session.receive(late) == ToolResponsesReceived((), (), (w.FunctionResponse(id=earlier),))
    for unknown in ("call-s1-2", "call-s2-1", "x", "", "call-s1-0", "call-s1-\u0661"):
        error = rejected(
            session, w.ToolResponse(function_responses=[w.FunctionResponse(id=unknown)])
        )
        assert (error.close_code, "matches no pending call" in str(error)) == (1007, True)


def test_function_responses_at_the_limit_and_one_past() -> None:
    rules = ServiceRules(max_function_responses=3)
    session, (a,) = with_calls("f", rules=rules)
    responses = [w.FunctionResponse(id=a)] * 3
    assert session.receive(w.ToolResponse(function_responses=responses)).answered == (a,)  # type: ignore[union-attr]
    error = rejected(session, w.ToolResponse(function_responses=responses + responses[:1]))
    assert (error.close_code, error.field) == (1007, "toolResponse.functionResponses")


def test_a_refused_tool_response_answers_nothing() -> None:
    session, (a,) = with_calls("f")
    mixed = [w.FunctionResponse(id=a), w.FunctionResponse(id="nope")]
    rejected(session, w.ToolResponse(function_responses=mixed))
    assert session.pending_calls == (a,)


def test_session_records_number_their_calls() -> None:
    record = SessionRecord("abc")
    assert [record.new_call_id(), record.new_call_id()] == ["call-abc-1", "call-abc-2"]
    assert record.issued("call-abc-2")
    assert not record.issued("call-abc-3")
    assert not record.issued("call-abcd-1")


# --- what the server may send ----------------------------------------------------------


def content(**fields: object) -> w.ServerMessage:
    return w.ServerMessage(server_content=w.ServerContent(**fields))  # type: ignore[arg-type]


def test_sending_steps_the_turn_table_and_refuses_what_the_client_would() -> None:
    session = ServerSession(RULES)
    with pytest.raises(LocalProtocolError):
        session.send(content(turn_complete=True))  # before any setup
    session = accepted()
    audio_part = w.Part(inline_data=w.Blob(mime_type="audio/pcm;rate=24000", data=b"\0\0"))
    session.send(content(model_turn=w.Content(parts=[audio_part])))
    assert state(session) is State.MODEL_TURN
    session.send(content(generation_complete=True))
    assert state(session) is State.GENERATION_DONE
    session.send(content(turn_complete=True))
    assert state(session) is State.READY
    session.send(content(interrupted=True))  # barge-in before content: tolerated
    assert (state(session), session.anomalies) == (State.READY, 1)
    with pytest.raises(LocalProtocolError, match="setupComplete"):
        session.send(w.ServerMessage(setup_complete=w.SetupComplete()))
    assert session.messages_sent == 5


def test_tool_calls_need_ids_and_names_and_fresh_ids() -> None:
    session, (a,) = with_calls("f")
    for calls in (
        [w.FunctionCall(id=a, name="f")],
        [w.FunctionCall(name="f")],
        [w.FunctionCall(id="n1", name="f"), w.FunctionCall(id="n1", name="g")],
    ):
        with pytest.raises(LocalProtocolError):
            session.send(w.ServerMessage(tool_call=w.ToolCall(function_calls=calls)))
    assert pending(session) == (a,)
    cancel = w.ToolCallCancellation(ids=[a, "unknown"])
    session.send(w.ServerMessage(tool_call_cancellation=cancel))
    assert pending(session) == ()


def test_a_server_message_at_the_size_limit_goes_and_one_byte_more_does_not() -> None:
    message = content(model_turn=w.Content(parts=[w.Part(text="x" * 100)]))
    size = len(encode(message))
    fits = accepted(rules=ServiceRules(max_server_message_bytes=size))
    fits.send(message)
    tight = accepted(rules=ServiceRules(max_server_message_bytes=size - 1))
    with pytest.raises(LocalProtocolError, match="MiB clients accept"):
        tight.send(message)
    assert tight.state is State.READY  # nothing changed


# The server's view and the client's agree: what one may send, the other accepts, and both
# end in the same state.
_AUDIO = w.Part(inline_data=w.Blob(mime_type="audio/pcm;rate=24000", data=b"\0\0"))
VOCABULARY = [
    content(model_turn=w.Content(parts=[_AUDIO])),
    content(model_turn=w.Content(parts=[_AUDIO]), output_transcription=w.Transcription(text="a")),
    content(output_transcription=w.Transcription(text="a")),
    content(input_transcription=w.Transcription(text="hi", finished=True)),
    content(generation_complete=True),
    content(interrupted=True),
    content(turn_complete=True),
    content(generation_complete=True, turn_complete=True),
    content(interrupted=True, turn_complete=True),
    w.ServerMessage(
        server_content=w.ServerContent(turn_complete=True),
        usage_metadata=w.UsageMetadata(total_token_count=1),
    ),
    w.ServerMessage(go_away=w.GoAway(time_left="1.000s")),
    w.ServerMessage(session_resumption_update=w.SessionResumptionUpdate(resumable=False)),
    w.ServerMessage(setup_complete=w.SetupComplete()),
    "tool-call",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(range(len(VOCABULARY))), max_size=20))
def test_the_server_sends_exactly_what_the_client_accepts(choices: list[int]) -> None:
    server = ServerSession(RULES)
    server.receive(w.Setup(model=MODEL))
    client = LiveSession()
    client.send(w.Setup(model=MODEL))
    client.receive_frame(server.accept(SessionRecord("s")))
    for choice in choices:
        entry = VOCABULARY[choice]
        if entry == "tool-call":
            assert server.record is not None
            call = w.FunctionCall(id=server.record.new_call_id(), name="f")
            message = w.ServerMessage(tool_call=w.ToolCall(function_calls=[call]))
        else:
            assert isinstance(entry, w.ServerMessage)
            message = entry
        try:
            frame = server.send(message)
        except LocalProtocolError:
            with pytest.raises(RemoteProtocolError):
                client.receive(message)
            continue
        client.receive_frame(frame)
        assert client.state is server.state
        assert client.anomalies == server.anomalies
