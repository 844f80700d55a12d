"""protocol.session: every transition of the table, the tolerated oddities, illegal sequences."""

from __future__ import annotations

import json
from typing import Any

import pytest

from protocol import LocalProtocolError, RemoteProtocolError
from protocol import wire as w
from protocol.session import TOLERATED, TRANSITIONS, LiveSession, State
from runtime import messages as m

AUDIO_PART = {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": "AAAAAAAA"}}  # 3 samples


def state(session: LiveSession) -> State:
    return session.state  # a call, so that mypy does not narrow across send/receive


def frame(**message: Any) -> bytes:
    return json.dumps(message).encode()


def content(**fields: Any) -> bytes:
    return frame(serverContent=fields)


def ready() -> LiveSession:
    session = LiveSession()
    session.send(w.Setup(model="models/m"))
    session.receive_frame(frame(setupComplete={"sessionId": "abc"}))
    return session


def in_turn() -> LiveSession:
    session = ready()
    session.receive_frame(content(modelTurn={"parts": [AUDIO_PART]}))
    return session


# --- setup ------------------------------------------------------------------------------


def test_setup_then_setup_complete() -> None:
    session = LiveSession()
    assert state(session) is State.IDLE
    setup_frame = session.send(w.Setup(model="models/m"))
    assert json.loads(setup_frame) == {"setup": {"model": "models/m"}}
    assert state(session) is State.SETUP_SENT
    assert session.receive_frame(frame(setupComplete={"sessionId": "abc"})) == [
        m.SessionReady(session_id="abc")
    ]
    assert state(session) is State.READY
    assert session.session_id == "abc"


def test_a_second_setup_is_local_misuse() -> None:
    session = ready()
    with pytest.raises(LocalProtocolError, match="second setup") as info:
        session.send(w.Setup(model="models/m"))
    assert info.value.field == "setup"


def test_input_before_setup_complete_is_local_misuse() -> None:
    session = LiveSession()
    with pytest.raises(LocalProtocolError, match="before setupComplete"):
        session.send(w.RealtimeInput(text="hi"))
    session.send(w.Setup(model="m"))
    with pytest.raises(LocalProtocolError, match="before setupComplete"):
        session.send(w.RealtimeInput(text="hi"))


def test_content_before_setup_complete_is_remote_misbehaviour() -> None:
    session = LiveSession()
    session.send(w.Setup(model="m"))
    with pytest.raises(RemoteProtocolError, match=r"serverContent\.modelTurn in state setup_sent"):
        session.receive_frame(content(modelTurn={"parts": [AUDIO_PART]}))


def test_setup_complete_twice_or_unasked_is_remote_misbehaviour() -> None:
    with pytest.raises(RemoteProtocolError, match="setupComplete in state idle"):
        LiveSession().receive_frame(frame(setupComplete={}))
    with pytest.raises(RemoteProtocolError, match="setupComplete in state ready"):
        ready().receive_frame(frame(setupComplete={}))


def test_info_messages_are_allowed_before_setup_complete() -> None:
    session = LiveSession()
    session.send(w.Setup(model="m"))
    out = session.receive_frame(
        frame(sessionResumptionUpdate={"newHandle": "h", "resumable": True})
    )
    assert out == [m.ResumptionUpdated(handle="h", resumable=True)]


# --- turns ------------------------------------------------------------------------------


def test_a_turn_opens_only_on_content() -> None:
    session = ready()
    assert session.receive_frame(frame(usageMetadata={"totalTokenCount": 1}))[0].turn_id is None  # type: ignore[union-attr]
    assert state(session) is State.READY
    out = session.receive_frame(content(modelTurn={"parts": [AUDIO_PART, {"text": "Hi"}]}))
    assert out == [
        m.TurnStarted(turn_id=1),
        m.ModelAudio(turn_id=1, data=b"\x00" * 6, offset=0),
        m.ModelText(turn_id=1, text="Hi"),
    ]
    assert state(session) is State.MODEL_TURN


def test_audio_offsets_count_samples_within_the_turn() -> None:
    session = in_turn()
    out = session.receive_frame(content(modelTurn={"parts": [AUDIO_PART]}))
    assert out == [m.ModelAudio(turn_id=1, data=b"\x00" * 6, offset=3)]


def test_full_turn_generation_complete_then_turn_complete() -> None:
    session = in_turn()
    assert session.receive_frame(content(generationComplete=True)) == [
        m.GenerationCompleted(turn_id=1)
    ]
    assert state(session) is State.GENERATION_DONE
    trailing = session.receive_frame(content(outputTranscription={"text": " there"}))
    assert trailing == [m.TranscriptFragment(role="agent", turn_id=1, text=" there")]
    assert session.receive_frame(content(turnComplete=True)) == [m.TurnCompleted(turn_id=1)]
    assert state(session) is State.READY
    second = session.receive_frame(content(modelTurn={"parts": [{"text": "again"}]}))
    assert second[0] == m.TurnStarted(turn_id=2)


def test_turn_complete_without_generation_complete() -> None:
    session = in_turn()
    assert session.receive_frame(
        content(turnComplete=True, turnCompleteReason="NEED_MORE_INPUT")
    ) == [m.TurnCompleted(turn_id=1, reason="NEED_MORE_INPUT")]


def test_one_frame_with_content_generation_complete_and_turn_complete() -> None:
    session = ready()
    out = session.receive_frame(
        content(modelTurn={"parts": [{"text": "x"}]}, generationComplete=True, turnComplete=True)
    )
    assert [type(e) for e in out] == [
        m.TurnStarted,
        m.ModelText,
        m.GenerationCompleted,
        m.TurnCompleted,
    ]


def test_interruption_ends_the_turn_early_and_drops_stale_output() -> None:
    session = in_turn()
    assert session.receive_frame(content(interrupted=True)) == [m.TurnInterrupted(turn_id=1)]
    assert state(session) is State.INTERRUPTED
    assert session.receive_frame(content(modelTurn={"parts": [AUDIO_PART]})) == []
    assert session.stale_messages_dropped == 1
    assert session.receive_frame(content(interrupted=True)) == []
    assert session.receive_frame(content(turnComplete=True)) == [
        m.TurnCompleted(turn_id=1, interrupted=True)
    ]
    assert state(session) is State.READY


def test_interrupted_after_generation_complete() -> None:
    session = in_turn()
    session.receive_frame(content(generationComplete=True))
    assert session.receive_frame(content(interrupted=True)) == [m.TurnInterrupted(turn_id=1)]


def test_barge_in_after_the_turn_completed_still_flushes_its_audio() -> None:
    session = in_turn()
    session.receive_frame(content(turnComplete=True))
    assert session.receive_frame(content(interrupted=True)) == [m.TurnInterrupted(turn_id=1)]
    assert session.anomalies == 1


def test_tolerated_oddities_change_nothing_and_are_counted() -> None:
    session = ready()
    assert session.receive_frame(content(generationComplete=True)) == []
    assert session.receive_frame(content(turnComplete=True)) == []
    assert session.receive_frame(content(interrupted=True)) == []  # no turn ever: nothing to flush
    assert state(session) is State.READY
    assert session.anomalies == 3


def test_transcripts_user_words_belong_to_the_turn_they_start() -> None:
    session = ready()
    out = session.receive_frame(content(inputTranscription={"text": "What's"}))
    assert out == [m.TranscriptFragment(role="user", turn_id=1, text="What's")]
    session.receive_frame(content(modelTurn={"parts": [AUDIO_PART]}))
    late = session.receive_frame(content(inputTranscription={"text": " up?", "finished": True}))
    assert late == [m.TranscriptFragment(role="user", turn_id=1, text=" up?", finished=True)]
    session.receive_frame(content(turnComplete=True))
    assert session.receive_frame(content(inputTranscription={"text": "Next"}))[0].turn_id == 2  # type: ignore[union-attr]


def test_output_transcription_opens_a_turn() -> None:
    session = ready()
    out = session.receive_frame(content(outputTranscription={"text": "Hello"}))
    assert out == [
        m.TurnStarted(turn_id=1),
        m.TranscriptFragment(role="agent", turn_id=1, text="Hello"),
    ]


def test_empty_transcriptions_and_parts_are_ignored() -> None:
    session = ready()
    assert (
        session.receive_frame(content(inputTranscription={}, outputTranscription={"text": ""}))
        == []
    )
    assert session.receive_frame(content(modelTurn={"parts": []})) == []
    assert state(session) is State.READY


def test_thoughts_and_sample_rate_are_carried() -> None:
    session = ready()
    out = session.receive_frame(
        content(
            modelTurn={
                "parts": [
                    {"text": "hmm", "thought": True},
                    {"inlineData": {"mimeType": "audio/pcm;rate=16000", "data": "AAA="}},
                    {"inlineData": {"mimeType": "image/png", "data": "AAA="}},
                ]
            }
        )
    )
    assert out[1:] == [
        m.ModelText(turn_id=1, text="hmm", thought=True),
        m.ModelAudio(turn_id=1, data=b"\0\0", offset=0, sample_rate=16000),
    ]


# --- tool calls -------------------------------------------------------------------------


def tool_call(*ids: str) -> bytes:
    return frame(
        toolCall={"functionCalls": [{"id": i, "name": "f", "args": {"x": 1}} for i in ids]}
    )


def response(call_id: str, **extra: Any) -> w.ToolResponse:
    return w.ToolResponse(
        function_responses=[
            w.FunctionResponse(id=call_id, name="f", response={"output": 1}, **extra)
        ]
    )


def test_tool_calls_open_a_turn_and_await_exactly_one_response() -> None:
    session = ready()
    out = session.receive_frame(tool_call("a", "b"))
    assert out == [
        m.TurnStarted(turn_id=1),
        m.ToolCallRequested(call_id="a", name="f", args={"x": 1}, turn_id=1),
        m.ToolCallRequested(call_id="b", name="f", args={"x": 1}, turn_id=1),
    ]
    assert set(session.pending_calls) == {"a", "b"}
    session.send(response("a"))
    assert set(session.pending_calls) == {"b"}
    with pytest.raises(LocalProtocolError, match="'a' was already answered"):
        session.send(response("a"))
    session.send(response("b"))
    assert session.pending_calls == {}


def test_a_response_for_an_unknown_call_id_is_local_misuse() -> None:
    session = ready()
    with pytest.raises(LocalProtocolError, match="'nope' is unknown") as info:
        session.send(response("nope"))
    assert info.value.field == "toolResponse.functionResponses[0].id"
    assert session.messages_sent == 1  # the rejected message was not counted as sent


def test_one_message_answering_a_call_twice_is_rejected_whole() -> None:
    session = ready()
    session.receive_frame(tool_call("a"))
    both = w.ToolResponse(
        function_responses=[
            w.FunctionResponse(id="a", name="f"),
            w.FunctionResponse(id="a", name="f"),
        ]
    )
    with pytest.raises(LocalProtocolError, match="answered twice"):
        session.send(both)
    assert session.is_pending("a")


def test_will_continue_keeps_a_non_blocking_call_pending() -> None:
    session = ready()
    session.receive_frame(tool_call("a"))
    session.send(response("a", will_continue=True, scheduling="SILENT"))
    assert session.is_pending("a")
    session.send(response("a", will_continue=False))
    assert not session.is_pending("a")


def test_cancellation_resolves_pending_calls_and_forbids_late_responses() -> None:
    session = ready()
    session.receive_frame(tool_call("a", "b"))
    out = session.receive_frame(frame(toolCallCancellation={"ids": ["a", "zzz"]}))
    assert out == [m.ToolCallsCancelled(call_ids=("a",))]
    with pytest.raises(LocalProtocolError, match="cancelled by the server"):
        session.send(response("a"))
    assert session.receive_frame(frame(toolCallCancellation={"ids": ["a"]})) == []


def test_a_reused_call_id_is_remote_misbehaviour() -> None:
    session = ready()
    session.receive_frame(tool_call("a"))
    with pytest.raises(RemoteProtocolError, match="reused"):
        session.receive_frame(tool_call("a"))


def test_a_call_without_a_name_is_remote_misbehaviour() -> None:
    with pytest.raises(RemoteProtocolError, match="needs a name") as info:
        ready().receive_frame(frame(toolCall={"functionCalls": [{"id": "c1"}]}))
    assert info.value.field == "toolCall.functionCalls[0]"


def test_a_call_without_an_id_gets_ours_and_is_answered_by_name() -> None:
    """Vertex may leave ids out (google-genai then answers by name, as Vertex takes it)."""
    session = ready()
    out = session.receive_frame(frame(toolCall={"functionCalls": [{"name": "f"}]}))
    assert out[-1] == m.ToolCallRequested(call_id="no-id-1", name="f", args={}, turn_id=1)
    sent = session.send(
        w.ToolResponse(
            function_responses=[w.FunctionResponse(id="no-id-1", name="f", response={"a": 1})]
        )
    )
    assert json.loads(sent) == {
        "toolResponse": {"functionResponses": [{"name": "f", "response": {"a": 1}}]}
    }
    assert not session.is_pending("no-id-1")


def test_a_tool_call_after_barge_in_is_still_tracked() -> None:
    session = in_turn()
    session.receive_frame(content(interrupted=True))
    out = session.receive_frame(tool_call("late"))
    assert out == [m.ToolCallRequested(call_id="late", name="f", args={"x": 1}, turn_id=1)]
    assert session.is_pending("late")


# --- resumption, goAway, usage, voice activity, connection loss ----------------------------


def test_resumption_keeps_the_latest_resumable_handle() -> None:
    session = ready()
    session.receive_frame(frame(sessionResumptionUpdate={"newHandle": "h1", "resumable": True}))
    out = session.receive_frame(frame(sessionResumptionUpdate={"resumable": False}))
    assert out == [m.ResumptionUpdated(handle="h1", resumable=False)]
    assert session.resumption_handle == "h1"
    assert not session.resumable
    session.receive_frame(
        frame(
            sessionResumptionUpdate={
                "newHandle": "h2",
                "resumable": True,
                "lastConsumedClientMessageIndex": "9",
            }
        )
    )
    assert session.resumption_handle == "h2"
    assert session.resumable


def test_go_away_records_time_left() -> None:
    session = in_turn()
    assert session.receive_frame(frame(goAway={"timeLeft": "9.500s"})) == [
        m.GoAwayReceived(time_left=9.5)
    ]
    assert session.go_away_time_left == 9.5
    assert state(session) is State.MODEL_TURN
    with pytest.raises(RemoteProtocolError, match="invalid duration"):
        session.receive_frame(frame(goAway={"timeLeft": "soon"}))


def test_usage_is_reported_per_turn_and_summed() -> None:
    session = in_turn()
    out = session.receive_frame(
        frame(usageMetadata={"promptTokenCount": 3, "responseTokenCount": 4, "totalTokenCount": 7})
    )
    assert out == [m.UsageReported(turn_id=1, prompt_tokens=3, response_tokens=4, total_tokens=7)]
    session.receive_frame(content(turnComplete=True))
    out = session.receive_frame(
        frame(usageMetadata={"candidatesTokenCount": 2, "totalTokenCount": 2})
    )
    assert out == [m.UsageReported(turn_id=1, response_tokens=2, total_tokens=2)]
    assert (
        session.usage.prompt_tokens,
        session.usage.response_tokens,
        session.usage.total_tokens,
    ) == (3, 6, 9)


def test_voice_activity_signals() -> None:
    session = ready()
    assert session.receive_frame(frame(voiceActivity={"type": "ACTIVITY_START"})) == [
        m.VoiceActivityDetected(kind="start")
    ]
    assert session.receive_frame(frame(voiceActivity={"type": "ACTIVITY_END"})) == [
        m.VoiceActivityDetected(kind="end")
    ]
    assert session.receive_frame(frame(voiceActivity={"type": "SOMETHING_NEW"})) == []


def test_several_keys_in_one_frame_are_applied_in_protocol_order() -> None:
    session = ready()
    out = session.receive_frame(
        frame(
            serverContent={"modelTurn": {"parts": [{"text": "a"}]}, "turnComplete": True},
            usageMetadata={"totalTokenCount": 5},
        )
    )
    assert [type(e) for e in out] == [m.TurnStarted, m.ModelText, m.TurnCompleted, m.UsageReported]


def test_connection_lost_mid_turn_closes_the_turn_and_keeps_what_outlives_it() -> None:
    session = in_turn()
    session.receive_frame(frame(sessionResumptionUpdate={"newHandle": "h", "resumable": True}))
    session.receive_frame(tool_call("a"))
    session.receive_frame(frame(goAway={"timeLeft": "1s"}))
    out = session.connection_lost()
    assert out == [
        m.TurnInterrupted(turn_id=1, connection_lost=True),
        m.TurnCompleted(turn_id=1, interrupted=True, reason="CONNECTION_LOST"),
    ]
    assert state(session) is State.IDLE
    assert session.resumption_handle == "h"
    assert session.is_pending("a")
    assert session.go_away_time_left is None
    session.send(w.Setup(model="m", session_resumption=w.SessionResumptionConfig(handle="h")))
    session.receive_frame(frame(setupComplete={}))
    session.send(response("a"))  # the held result goes out on the new connection
    assert session.receive_frame(content(modelTurn={"parts": [{"text": "b"}]}))[0] == m.TurnStarted(
        turn_id=2
    )


def test_connection_lost_between_turns_emits_nothing() -> None:
    assert ready().connection_lost() == []


@pytest.mark.parametrize(
    "question",
    [
        w.ClientContent(
            turns=[w.Content(role="user", parts=[w.Part(text="hi")])], turn_complete=True
        ),
        w.RealtimeInput(text="hi"),
    ],
    ids=["clientContent", "realtimeInput.text"],
)
def test_a_question_lost_before_any_reply_is_reported_lost(question: w.ClientMessage) -> None:
    # Found by the soak: a link crash right after a typed question left the application
    # waiting forever for a reply the old connection took with it.
    session = ready()
    session.send(question)
    assert session.connection_lost() == [
        m.TurnCompleted(turn_id=1, interrupted=True, reason="CONNECTION_LOST")
    ]
    assert session.connection_lost() == []  # reported once
    session.send(w.Setup(model="m"))
    session.receive_frame(frame(setupComplete={}))
    session.send(question)  # asked again: its reply is the next turn
    out = session.receive_frame(content(modelTurn={"parts": [{"text": "hello"}]}))
    assert out[0] == m.TurnStarted(turn_id=2)
    assert session.connection_lost()[-1] == m.TurnCompleted(
        turn_id=2, interrupted=True, reason="CONNECTION_LOST"
    )


def test_a_question_lost_while_an_older_tool_call_is_pending_is_reported_lost() -> None:
    # The soak's rare hang: the question went out while a call from an earlier turn
    # waited for its result; the lost connection took the question, and nothing said so.
    session = ready()
    session.receive_frame(tool_call("a"))
    session.receive_frame(content(turnComplete=True))
    session.send(w.RealtimeInput(text="and the weather?"))
    assert session.connection_lost() == [
        m.TurnCompleted(turn_id=2, interrupted=True, reason="CONNECTION_LOST")
    ]
    assert session.is_pending("a")  # the call outlives the connection: answered on the next
    assert session.connection_lost() == []  # reported once


def test_a_question_already_answered_or_context_without_a_turn_is_not_reported() -> None:
    session = ready()
    session.send(w.ClientContent(turns=[w.Content(role="user", parts=[w.Part(text="x")])]))
    session.send(w.RealtimeInput(audio=w.Blob(mime_type="audio/pcm;rate=16000", data=b"\0\0")))
    assert session.connection_lost() == []  # context and audio do not ask for a reply
    session.send(w.Setup(model="m"))
    session.receive_frame(frame(setupComplete={}))
    session.send(w.RealtimeInput(text="hi"))
    session.receive_frame(content(modelTurn={"parts": [{"text": "hello"}]}))
    session.receive_frame(content(turnComplete=True))
    assert session.connection_lost() == []  # answered


def test_the_table_is_what_the_tests_above_walk() -> None:
    # Every state is reachable and every legal pair is in exactly one of the two tables.
    assert {s for s, _ in TRANSITIONS} | set(TRANSITIONS.values()) == set(State)
    assert not set(TRANSITIONS) & TOLERATED


# --- what issue 16 added to the wire ------------------------------------------------------


def test_interaction_status_waiting_and_the_reason_come_with_the_turn() -> None:
    session = in_turn()
    events = session.receive_frame(
        content(
            turnComplete=True,
            interactionStatus="IN_PROGRESS",
            waitingForInput=True,
            turnCompleteReason="NEED_MORE_INPUT",
        )
    )
    assert events == [
        m.TurnCompleted(turn_id=1, reason="NEED_MORE_INPUT", waiting_for_input=True),
        m.InteractionStatusChanged(status="IN_PROGRESS", turn_id=1),
    ]
    # IDLE may also arrive on its own (Pipecat closes a held turn on it).
    assert session.receive_frame(content(interactionStatus="IDLE")) == [
        m.InteractionStatusChanged(status="IDLE", turn_id=None)
    ]


def test_grounding_and_url_context_are_reported_with_their_turn() -> None:
    session = in_turn()
    grounding = {"webSearchQueries": ["q"], "groundingChunks": [{"web": {"uri": "u"}}]}
    urls = {
        "urlMetadata": [{"retrievedUrl": "u", "urlRetrievalStatus": "URL_RETRIEVAL_STATUS_SUCCESS"}]
    }
    events = session.receive_frame(content(groundingMetadata=grounding, urlContextMetadata=urls))
    assert events == [
        m.GroundingReported(
            turn_id=1,
            grounding=w.GroundingMetadata(
                web_search_queries=["q"],
                grounding_chunks=[w.GroundingChunk(web=w.GroundingChunkWeb(uri="u"))],
            ),
            url_context=w.UrlContextMetadata(
                url_metadata=[
                    w.UrlMetadata(
                        retrieved_url="u", url_retrieval_status="URL_RETRIEVAL_STATUS_SUCCESS"
                    )
                ]
            ),
        )
    ]


def test_code_execution_parts_are_reported_in_order() -> None:
    session = ready()
    parts = [
        {"executableCode": {"code": "print(1)", "language": "PYTHON", "id": "x"}},
        {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": "1\n", "id": "x"}},
        {"text": "One."},
    ]
    events = session.receive_frame(content(modelTurn={"parts": parts}))
    assert events == [
        m.TurnStarted(turn_id=1),
        m.ModelCode(turn_id=1, code="print(1)", language="PYTHON", code_id="x"),
        m.ModelCodeResult(turn_id=1, outcome="OUTCOME_OK", output="1\n", code_id="x"),
        m.ModelText(turn_id=1, text="One."),
    ]


def test_usage_by_modality_and_tier() -> None:
    session = in_turn()
    usage = {
        "totalTokenCount": 9,
        "toolUsePromptTokenCount": 2,
        "promptTokensDetails": [
            {"modality": "AUDIO", "tokenCount": 3},
            {"modality": "TEXT", "tokenCount": 1},
        ],
        "candidatesTokensDetails": [{"modality": "AUDIO", "tokenCount": 5}],  # Vertex's name
        "trafficType": "ON_DEMAND",
    }
    [report] = session.receive_frame(frame(usageMetadata=usage))
    assert report == m.UsageReported(
        turn_id=1,
        total_tokens=9,
        tool_use_prompt_tokens=2,
        prompt_by_modality={"AUDIO": 3, "TEXT": 1},
        response_by_modality={"AUDIO": 5},
        traffic_type="ON_DEMAND",
    )
    [tier] = session.receive_frame(frame(usageMetadata={"serviceTier": "flex"}))
    assert isinstance(tier, m.UsageReported)
    assert (tier.service_tier, tier.prompt_by_modality) == ("flex", {})


def test_voice_activity_offsets_and_the_allowlisted_vad_signal() -> None:
    session = ready()
    assert session.receive_frame(
        frame(voiceActivity={"type": "ACTIVITY_END", "audioOffset": "2.5s"})
    ) == [m.VoiceActivityDetected(kind="end", audio_offset=2.5)]
    assert session.receive_frame(
        frame(voiceActivityDetectionSignal={"vadSignalType": "VAD_SIGNAL_TYPE_SOS"})
    ) == [m.VoiceActivityDetected(kind="start", signal=True)]
    assert (
        session.receive_frame(
            frame(voiceActivityDetectionSignal={"vadSignalType": "VAD_SIGNAL_TYPE_UNSPECIFIED"})
        )
        == []
    )


def test_interim_input_transcription_is_reported_as_such() -> None:
    session = in_turn()
    assert session.receive_frame(
        content(interimInputTranscription={"text": "wha", "languageCode": "en-US"})
    ) == [m.InterimInputTranscript(turn_id=1, text="wha", language_code="en-US")]
    assert session.receive_frame(content(interimInputTranscription={"text": ""})) == []
    assert state(session) is State.MODEL_TURN


@pytest.mark.parametrize(
    "typed",
    [
        w.RealtimeInput(text="what now?"),
        w.ClientContent(
            turns=[
                w.Content(role="model", parts=[w.Part(text="Earlier.")]),
                w.Content(role="user", parts=[w.Part(text="what now?")]),
            ],
            turn_complete=True,
        ),
    ],
    ids=["realtimeInput.text", "clientContent"],
)
def test_typed_text_is_the_users_transcript_of_the_turn_it_starts(typed: w.ClientMessage) -> None:
    """The service transcribes audio only (issue 15): the session reports what was typed,
    when the setup asks for input transcription."""
    session = LiveSession()
    session.send(w.Setup(model="m", input_audio_transcription=w.AudioTranscriptionConfig()))
    session.receive_frame(frame(setupComplete={}))
    session.send(typed)
    session.send(w.RealtimeInput(text=" "))  # a blank nudge adds nothing
    out = session.receive_frame(content(modelTurn={"parts": [{"text": "This."}]}))
    assert out[:2] == [
        m.TurnStarted(turn_id=1),
        m.TranscriptFragment(role="user", turn_id=1, text="what now?", finished=True),
    ]
    session.receive_frame(content(turnComplete=True))
    out = session.receive_frame(content(modelTurn={"parts": [{"text": "More."}]}))
    assert not any(isinstance(x, m.TranscriptFragment) for x in out)  # reported once
    untranscribed = ready()  # no input transcription asked for: nothing
    untranscribed.send(typed)
    out = untranscribed.receive_frame(content(modelTurn={"parts": [{"text": "This."}]}))
    assert out == [m.TurnStarted(turn_id=1), m.ModelText(turn_id=1, text="This.")]
