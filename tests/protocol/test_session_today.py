"""The session state machine and what google-genai 3.6.1 added to the wire (issue 16):
transcription details, interim input transcription, built-in tools' parts, streamed
function-call arguments (Vertex), transparent resumption's replay, calls a new session
never issued, and text sent that the user did not type. Server frames are also read by the
SDK's own receive path, so both read them alike."""

from __future__ import annotations

import json
from typing import Any

import pytest

from protocol import RemoteProtocolError, limits
from protocol import wire as w
from protocol.events import (
    InterimInputTranscript,
    ServerToolCalled,
    ServerToolReturned,
    ToolCallRequested,
    TranscriptFragment,
    TurnStarted,
    Word,
)
from protocol.session import LiveSession
from tests.protocol.sdk import sdk_parse_server


def frame(**message: Any) -> bytes:
    return json.dumps(message).encode()


def ready(*, transparent: bool = False, transcribe: bool = False) -> LiveSession:
    session = LiveSession()
    session.send(
        w.Setup(
            model="models/m",
            session_resumption=w.SessionResumptionConfig(transparent=transparent or None),
            input_audio_transcription=w.AudioTranscriptionConfig() if transcribe else None,
        )
    )
    session.receive_frame(frame(setupComplete={}))
    return session


def test_transcription_details_reach_the_fragments_and_the_sdk_reads_them_alike() -> None:
    said = {
        "text": "Bonjour",
        "finished": True,
        "languageCode": "fr-FR",
        "speakerLabel": "spk_2",
        "words": [{"word": "Bonjour", "startOffset": "1.250s", "endOffset": "1.800s"}],
        "startOffset": "1.250s",
        "endOffset": "1.800s",
    }
    raw = frame(serverContent={"inputTranscription": said})
    session = ready()
    assert session.receive_frame(raw) == [
        TranscriptFragment(
            role="user",
            turn_id=1,
            text="Bonjour",
            finished=True,
            language_code="fr-FR",
            speaker_label="spk_2",
            words=(Word(word="Bonjour", start=1.25, end=1.8),),
            start_offset=1.25,
            end_offset=1.8,
        )
    ]
    sdk = sdk_parse_server(raw).server_content
    assert sdk is not None
    assert sdk.input_transcription is not None
    assert sdk.input_transcription.language_code == "fr-FR"
    assert sdk.input_transcription.speaker_label == "spk_2"
    assert sdk.input_transcription.words is not None
    assert sdk.input_transcription.words[0].word == "Bonjour"


def test_interim_input_transcription_is_reported_and_the_sdk_reads_it_alike() -> None:
    raw = frame(serverContent={"interimInputTranscription": {"text": "Bonj", "speakerLabel": "a"}})
    session = ready()
    assert session.receive_frame(raw) == [
        InterimInputTranscript(turn_id=1, text="Bonj", speaker_label="a")
    ]
    sdk = sdk_parse_server(raw).server_content
    assert sdk is not None
    assert sdk.interim_input_transcription is not None
    assert sdk.interim_input_transcription.text == "Bonj"


def test_built_in_tool_parts_are_reported() -> None:
    parts = [
        {"toolCall": {"id": "t1", "toolType": "GOOGLE_SEARCH_WEB", "args": {"q": "paris"}}},
        {"toolResponse": {"id": "t1", "toolType": "GOOGLE_SEARCH_WEB", "response": {"n": 3}}},
    ]
    session = ready()
    events = session.receive_frame(frame(serverContent={"modelTurn": {"parts": parts}}))
    assert events == [
        TurnStarted(turn_id=1),
        ServerToolCalled(
            turn_id=1, tool_id="t1", tool_type="GOOGLE_SEARCH_WEB", args={"q": "paris"}
        ),
        ServerToolReturned(
            turn_id=1, tool_id="t1", tool_type="GOOGLE_SEARCH_WEB", response={"n": 3}
        ),
    ]


def call(**fields: Any) -> bytes:
    return frame(toolCall={"functionCalls": [fields]})


def test_streamed_arguments_are_assembled_before_the_call_is_reported() -> None:
    session = ready()
    first = call(
        id="c1",
        name="book",
        willContinue=True,
        partialArgs=[
            {"jsonPath": "$.city", "stringValue": "Par", "willContinue": True},
            {"jsonPath": "$.seats", "numberValue": 2},
        ],
    )
    assert session.receive_frame(first) == [TurnStarted(turn_id=1)]
    assert not session.pending_calls
    sdk = sdk_parse_server(first).tool_call
    assert sdk is not None
    assert sdk.function_calls is not None
    assert sdk.function_calls[0].will_continue is True
    assert sdk.function_calls[0].partial_args is not None
    assert sdk.function_calls[0].partial_args[0].json_path == "$.city"
    second = call(
        id="c1",
        partialArgs=[
            {"jsonPath": "$.city", "stringValue": "is"},
            {"jsonPath": "$.options[1].vegan", "boolValue": True},
            {"jsonPath": "$['note']", "nullValue": "NULL_VALUE"},
        ],
    )
    assert session.receive_frame(second) == [
        ToolCallRequested(
            call_id="c1",
            name="book",
            args={"city": "Paris", "seats": 2.0, "options": [None, {"vegan": True}], "note": None},
            turn_id=1,
        )
    ]
    assert session.is_pending("c1")


@pytest.mark.parametrize(
    "path",
    ["city", "$", "$.a[x]", "$." + ".".join(["k"] * limits.MAX_JSON_PATH_SEGMENTS) + ".k"],
)
def test_bad_json_paths_are_the_servers_fault(path: str) -> None:
    session = ready()
    bad = call(id="c1", name="f", partialArgs=[{"jsonPath": path, "stringValue": "x"}])
    with pytest.raises(RemoteProtocolError, match="jsonPath"):
        session.receive_frame(bad)


def test_json_path_depth_and_index_at_their_limits_and_one_past() -> None:
    at = "$" + ".k" * limits.MAX_JSON_PATH_SEGMENTS
    ready().receive_frame(call(id="c1", name="f", partialArgs=[{"jsonPath": at, "boolValue": 1}]))
    index = f"$.a[{limits.MAX_JSON_PATH_INDEX}]"
    ready().receive_frame(call(id="c1", name="f", partialArgs=[{"jsonPath": index}]))
    past = f"$.a[{limits.MAX_JSON_PATH_INDEX + 1}]"
    with pytest.raises(RemoteProtocolError, match="index"):
        ready().receive_frame(call(id="c1", name="f", partialArgs=[{"jsonPath": past}]))


def test_streaming_calls_and_their_size_at_the_limit_and_one_past() -> None:
    session = ready()
    for index in range(limits.MAX_STREAMING_CALLS):
        session.receive_frame(call(id=f"c{index}", name="f", willContinue=True))
    with pytest.raises(RemoteProtocolError, match="streaming"):
        session.receive_frame(call(id="one-more", name="f", willContinue=True))
    session = ready()
    chars = limits.MAX_STREAMED_ARGS_CHARS
    piece = {"jsonPath": "$.s", "stringValue": "x" * (chars - 1), "willContinue": True}
    session.receive_frame(call(id="c1", name="f", willContinue=True, partialArgs=[piece]))
    last = {"jsonPath": "$.s", "stringValue": "y", "willContinue": True}
    session.receive_frame(call(id="c1", willContinue=True, partialArgs=[last]))
    with pytest.raises(RemoteProtocolError, match="characters"):
        session.receive_frame(call(id="c1", partialArgs=[{"jsonPath": "$.s", "stringValue": "z"}]))


def audio(n: int) -> w.RealtimeInput:
    return w.RealtimeInput(audio=w.Blob(mime_type="audio/pcm;rate=16000", data=bytes([n]) * 4))


def test_unconsumed_messages_are_replayed_after_a_resume_and_consumed_ones_are_not() -> None:
    session = ready(transparent=True)
    frames = [session.send(audio(n)) for n in range(4)]  # indexes 1-4
    session.receive_frame(
        frame(
            sessionResumptionUpdate={
                "newHandle": "h1",
                "resumable": True,
                "lastConsumedClientMessageIndex": "2",
            }
        )
    )
    session.connection_lost()
    assert session.replay_pending == 2
    session.send(
        w.Setup(
            model="models/m",
            session_resumption=w.SessionResumptionConfig(handle="h1", transparent=True),
        )
    )
    session.receive_frame(frame(setupComplete={}))
    assert session.replay_frames() == frames[2:]
    # The replayed frames are this connection's messages 1 and 2: consumed by index.
    session.receive_frame(
        frame(sessionResumptionUpdate={"resumable": True, "lastConsumedClientMessageIndex": 1})
    )
    session.connection_lost()
    assert session.replay_frames() == frames[3:]


def test_the_replay_buffer_at_its_bound_and_one_past_forgets_the_oldest() -> None:
    session = ready(transparent=True)
    one = len(session.send(audio(0)))
    session.max_unconsumed_bytes = 3 * one
    session.send(audio(1))
    session.send(audio(2))
    assert session.unconsumed_forgotten == 0
    session.send(audio(3))
    assert session.unconsumed_forgotten == 1
    session.connection_lost()
    assert session.replay_pending == 3
    assert session.discard_unsent_audio() == 3
    assert session.replay_pending == 0


def test_without_transparent_nothing_is_kept_for_replay() -> None:
    session = ready()
    session.send(audio(0))
    session.connection_lost()
    assert session.replay_pending == 0
    assert session.replay_frames() == []


def test_calls_of_a_session_that_was_not_resumed_are_orphaned_not_answered() -> None:
    session = ready()
    session.receive_frame(call(id="c1", name="get_weather", args={"city": "Paris"}))
    session.connection_lost()
    orphans = session.orphan_pending_calls()
    assert [(o.call_id, o.name, o.args) for o in orphans] == [
        ("c1", "get_weather", {"city": "Paris"})
    ]
    assert not session.is_pending("c1")
    taken = session.take_orphan("c1")
    assert taken is not None
    assert taken.name == "get_weather"
    assert session.take_orphan("c1") is None


def test_text_that_was_not_typed_is_not_reported_as_the_users() -> None:
    session = ready(transcribe=True)
    session.send(w.RealtimeInput(text="<instructions>\nBe nice\n</instructions>"), typed=False)
    events = session.receive_frame(frame(serverContent={"modelTurn": {"parts": [{"text": "Hi"}]}}))
    assert not [e for e in events if isinstance(e, TranscriptFragment) and e.role == "user"]
    session.receive_frame(frame(serverContent={"turnComplete": True}))
    session.send(w.RealtimeInput(text="typed"))
    events = session.receive_frame(frame(serverContent={"modelTurn": {"parts": [{"text": "Yo"}]}}))
    assert TranscriptFragment(role="user", turn_id=2, text="typed", finished=True) in events


def test_initial_history_asks_for_no_reply() -> None:
    session = ready()
    seed = w.ClientContent(
        turns=[w.Content(role="user", parts=[w.Part(text="Earlier")])], turn_complete=True
    )
    session.send(seed, typed=False, history=True)
    assert not session.awaiting_reply
    session.send(w.ClientContent(turn_complete=True))
    assert session.awaiting_reply
