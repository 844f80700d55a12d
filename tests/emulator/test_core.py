"""The emulator's sans-IO core without sockets or trio: turn-taking, the script player, the
conversation store, credentials, the choice of I/O path, the stats' bounded sample."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

import emulator.reactor
from emulator import Behaviour, Reply, Scenario, ToolCallSpec, Turn
from emulator.conversation import Conversation, ConversationStore
from emulator.handshake import credential_accepted, parse_handshake
from emulator.limits import (
    MAX_HISTORY_ENTRIES,
    MAX_PENDING_USER_TURNS,
    MAX_PENDING_VOICE_ACTIVITY,
    MAX_QUEUED_RESULT_REPLIES,
    MAX_RUNNING_CALL_GROUPS,
)
from emulator.player import (
    AwaitTools,
    Checkpoint,
    PaceUntil,
    Pause,
    ScriptPlayer,
    Send,
    Step,
    UpdateResumption,
)
from emulator.server import choose_io
from emulator.stats import EmulatorStats
from emulator.tool_results import ResultReply, ToolResults
from emulator.turn_taking import Reaction, TurnTaking, UserTurn
from emulator.vad import InputResampler
from protocol import wire as w
from protocol.server_session import (
    ActivityEnded,
    ActivityStarted,
    AudioReceived,
    ContentReceived,
    ServerSession,
    ServiceRules,
    SessionConfig,
    SessionRecord,
    SetupRequested,
    TextReceived,
)
from tests.emulator.client import GEMINI_PATH, speech


def config(**fields: object) -> SessionConfig:
    setup = w.Setup(model="m", **fields)  # type: ignore[arg-type]
    return SessionConfig.from_setup(setup)


# --- turn-taking ----------------------------------------------------------------------


def test_speech_makes_a_user_turn_and_barge_in_only_while_replying() -> None:
    turns = TurnTaking(config(), deque())
    pcm = speech(seconds=0.4, silence=0.6)
    reaction = turns.handle(AudioReceived(pcm, 16000))
    assert reaction == Reaction.USER_TURN | Reaction.VOICE_ACTIVITY  # start, then end
    assert [kind for kind, _ in turns.take_activity()] == ["start", "end"]
    assert turns.next_turn() == UserTurn(None, spoken=True)
    turns.replying = True
    assert Reaction.BARGE_IN in turns.handle(AudioReceived(pcm, 16000))


def test_no_interruption_means_no_barge_in() -> None:
    handling = w.RealtimeInputConfig(activity_handling="NO_INTERRUPTION")
    turns = TurnTaking(config(realtime_input_config=handling), deque())
    turns.replying = True
    assert turns.handle(TextReceived("hi")) == Reaction.USER_TURN


def test_manual_activity_and_content_turns() -> None:
    manual = w.RealtimeInputConfig(
        automatic_activity_detection=w.AutomaticActivityDetection(disabled=True)
    )
    history: deque[tuple[str, str]] = deque()
    turns = TurnTaking(config(realtime_input_config=manual), history)
    assert turns.handle(AudioReceived(speech(), 16000)) == Reaction.NONE  # no detector
    assert turns.handle(ActivityStarted()) == Reaction.NONE
    assert turns.handle(ActivityEnded()) == Reaction.USER_TURN
    assert turns.handle(ActivityEnded()) == Reaction.NONE  # nobody was speaking
    content = ContentReceived((("user", "first"), ("model", "ok"), ("user", "")), False)
    assert turns.handle(content) == Reaction.NONE
    assert turns.handle(ContentReceived((), True)) == Reaction.USER_TURN
    assert [turns.next_turn(), turns.next_turn(), turns.next_turn()] == [
        UserTurn(None, spoken=True),
        UserTurn("first"),  # the latest non-empty user text
        None,
    ]


def test_pending_turns_at_the_limit_and_past_it_merge_into_the_last() -> None:
    turns = TurnTaking(config(), deque())
    for i in range(MAX_PENDING_USER_TURNS):
        assert turns.handle(TextReceived(f"t{i}")) == Reaction.USER_TURN
    assert turns.pending == MAX_PENDING_USER_TURNS
    assert turns.handle(TextReceived("more")) == Reaction.USER_TURN | Reaction.MERGED
    assert turns.pending == MAX_PENDING_USER_TURNS
    assert turns.turns_merged == 1
    texts = [turn.text for turn in iter(turns.next_turn, None)]
    assert texts[-1] == f"t{MAX_PENDING_USER_TURNS - 1} more"


# --- the script player ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def kinds(steps: list[Step]) -> list[str]:
    out = []
    for step in steps:
        if isinstance(step, Send):
            message = step.message
            content = message.server_content
            if message.tool_call:
                out.append("toolCall")
            elif message.tool_call_cancellation:
                out.append("cancel")
            elif content and content.input_transcription:
                out.append("input")
            elif content and content.model_turn:
                out.append("audio")
            elif content and content.generation_complete:
                out.append("generationComplete")
            elif content and content.interrupted:
                out.append("interrupted")
            elif content and content.turn_complete:
                out.append("turnComplete")
        else:
            out.append(type(step).__name__)
    return out


def player(behaviour: Behaviour, **fields: object) -> tuple[ScriptPlayer, Conversation, Clock]:
    clock = Clock()
    conversation = Conversation(SessionRecord("s"))
    scenario = Scenario(behaviour=behaviour)
    return ScriptPlayer(scenario, config(**fields), conversation, now=clock), conversation, clock


def test_a_fast_reply_as_steps() -> None:
    play, conversation, _ = player(
        Behaviour(pace="fast", first_audio_delay_ms=100, chunk_ms=250),
        input_audio_transcription=w.AudioTranscriptionConfig(),
    )
    turn = Turn(
        user="one two three",
        replies=(Reply(tool_calls=(ToolCallSpec(name="f"),)), Reply(say="hello there")),
    )
    steps = list(play.reply(turn, turn.user))
    assert kinds(steps) == [
        "UpdateResumption",
        "input",
        "input",
        "Pause",
        "toolCall",
        "Checkpoint",
        "AwaitTools",
        "audio",
        "Pause",
        "audio",
        "Checkpoint",
        "Pause",
        "audio",
        "Pause",
        "generationComplete",
        "turnComplete",
        "UpdateResumption",
    ]
    assert steps[3] == Pause(0.1)
    assert steps[6] == AwaitTools(("call-s-1",))
    assert steps[-1] == UpdateResumption(resumable=True)
    assert list(conversation.history) == [("user", "one two three"), ("model", "hello there")]


def test_real_time_pacing_holds_each_chunk_for_its_slot() -> None:
    play, _, clock = player(Behaviour(pace="realtime", first_audio_delay_ms=0, chunk_ms=100))
    steps = play.reply(Turn(replies=(Reply(say="a b c"),)), "hi")
    paced = []
    for step in steps:
        if isinstance(step, PaceUntil):
            paced.append(step)
            clock.now = step.deadline + 0.01  # each wait ends 10 ms late
    assert [round(p.deadline, 3) for p in paced[:3]] == [0.1, 0.2, 0.3]
    # How far past the next slot the schedule is when a chunk went out (ahead: negative).
    assert [round(p.lag, 3) for p in paced[:3]] == [-0.1, -0.09, -0.09]


def test_an_interrupted_reply_ends_with_cancellation_and_turn_complete() -> None:
    play, _, _ = player(Behaviour())
    steps = list(play.interrupted(["call-1"]))
    assert kinds(steps) == ["interrupted", "cancel", "turnComplete", "UpdateResumption"]
    assert kinds(list(play.interrupted([]))) == ["interrupted", "turnComplete", "UpdateResumption"]


def test_text_mode_replies_in_text_fragments() -> None:
    play, _, _ = player(
        Behaviour(pace="fast", first_audio_delay_ms=0),
        generation_config=w.GenerationConfig(response_modalities=["TEXT"]),
    )
    steps = list(play.reply(Turn(replies=(Reply(say="one two three four"),)), "q"))
    texts = [
        part.text
        for step in steps
        if isinstance(step, Send) and step.message.server_content
        for part in (
            step.message.server_content.model_turn.parts or []
            if step.message.server_content.model_turn
            else []
        )
    ]
    assert "".join(t or "" for t in texts) == "one two three four"
    assert Checkpoint("mid-reply") not in steps


def test_the_script_advances_one_turn_per_user_turn_then_the_default() -> None:
    play, conversation, _ = player(Behaviour())
    scenario_turns = [play.next_turn() for _ in range(3)]
    assert scenario_turns[0] == Scenario().turns[0]
    assert scenario_turns[2].replies == (Scenario().default_reply,)
    assert conversation.next_turn == 3


# --- conversations --------------------------------------------------------------------


def test_history_keeps_the_latest_entries_only() -> None:
    conversation = Conversation(SessionRecord("s"))
    conversation.history.extend(("user", str(i)) for i in range(MAX_HISTORY_ENTRIES + 1))
    assert len(conversation.history) == MAX_HISTORY_ENTRIES
    assert conversation.history[0] == ("user", "1")


def test_handles_at_the_limit_and_one_past_it_forget_the_oldest() -> None:
    clock = Clock()
    store = ConversationStore(id_prefix="emu", now=clock, max_handles=3, handle_lifetime=10.0)
    conversation = store.new()
    handles = [store.issue_handle(conversation) for _ in range(3)]
    assert all(store.resume(h) is conversation for h in handles)
    newest = store.issue_handle(conversation)
    assert len(store) == 3
    assert store.resume(handles[0]) is None
    assert store.resume(newest) is conversation
    clock.now = 9.999
    assert store.resume(newest) is conversation
    clock.now = 10.0  # the lifetime is up
    assert store.resume(newest) is None
    assert store.resume("never-issued") is None


# --- credentials, I/O path, stats -----------------------------------------------------


@pytest.mark.parametrize(
    ("credential", "accepted"),
    [("K", True), ("k", False), ("é", False), ("K\n", False), ("\udcff", False), (None, False)],
)
def test_credentials_are_compared_as_bytes(credential: str | None, accepted: bool) -> None:
    assert credential_accepted(credential, "K") is accepted
    assert credential_accepted(credential, None) is True


def test_a_handshake_never_shows_its_credential() -> None:
    handshake = parse_handshake(GEMINI_PATH + "?key=sekrit", [])
    assert handshake is not None
    assert handshake.credential == "sekrit"
    assert "sekrit" not in repr(handshake)


def test_choosing_the_io_path(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_io("portable") == "portable"
    with pytest.raises(ValueError, match="one of"):
        choose_io("epoll")  # type: ignore[arg-type]
    monkeypatch.setattr(emulator.reactor, "epoll_available", lambda: False)
    assert choose_io("auto") == "portable"
    with pytest.raises(ValueError, match="needs epoll"):
        choose_io("fast")
    monkeypatch.setattr(emulator.reactor, "epoll_available", lambda: True)
    assert choose_io("auto") == "fast"


def test_lag_samples_at_the_limit_and_past_it_stay_a_bounded_fair_sample() -> None:
    stats = EmulatorStats(max_lag_samples=1000)
    for i in range(1000):
        stats.record_lag(i / 1000)
    assert len(stats.pacing_lags) == 1000
    for i in range(9000):
        stats.record_lag(1.0 + i / 1000)
    assert len(stats.pacing_lags) == 1000
    summary = stats.summary()
    assert summary["paced_chunks"] == 10_000
    assert summary["pacing_lag_ms"]["max"] == pytest.approx(9999.0)
    assert summary["chunks_late_over_20ms"] == 10_000 - 21
    # A fair sample of 0..10 s: its median is near 5 s.
    assert float(np.median(stats.pacing_lags)) == pytest.approx(5.0, abs=0.5)


# --- text turns, initial history, the placeholder (issue 15) ----------------------------


def test_a_blank_nudge_joins_an_owed_reply_and_starts_one_otherwise() -> None:
    history: deque[tuple[str, str]] = deque()
    turns = TurnTaking(config(), history)
    greet = ContentReceived((("user", "Greet the user."),), True)
    assert turns.handle(greet) == Reaction.USER_TURN
    assert turns.handle(TextReceived(" ")) == Reaction.NONE  # a reply is owed: joins it
    assert turns.nudges_joined == 1
    assert turns.next_turn() == UserTurn("Greet the user.")
    turns.replying = True
    assert turns.handle(TextReceived("  ")) == Reaction.NONE  # ...or playing: joins it
    turns.replying = False
    assert turns.handle(TextReceived(" ")) == Reaction.USER_TURN  # nothing owed: a turn
    assert turns.next_turn() == UserTurn(" ")
    turns.replying = True
    assert turns.handle(TextReceived("stop")) == Reaction.BARGE_IN | Reaction.USER_TURN
    assert not turns.user_speaking  # typed text is no speech


def test_initial_history_only_fills_the_history() -> None:
    history: deque[tuple[str, str]] = deque()
    turns = TurnTaking(config(), history)
    seed = ContentReceived((("user", "hi"), ("model", "hello")), True, history_only=True)
    assert turns.handle(seed) == Reaction.NONE
    assert list(history) == [("user", "hi"), ("model", "hello")]
    assert turns.pending == 0


def test_a_dot_placeholder_is_an_empty_turn_for_the_families_that_say_so() -> None:
    dot = ContentReceived((("model", "Greet."), ("user", ".")), True)
    on_38 = TurnTaking(config_for("models/gemini-3.8-live"), deque())
    assert on_38.handle(dot) == Reaction.USER_TURN
    assert on_38.next_turn() == UserTurn(".", empty=True)
    on_25 = TurnTaking(config(), deque())
    on_25.handle(dot)
    assert on_25.next_turn() == UserTurn(".")


def config_for(model: str) -> SessionConfig:
    session = ServerSession(ServiceRules())
    event = session.receive(w.Setup(model=model))
    assert isinstance(event, SetupRequested)
    return event.config


# --- audio at any rate -------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_the_input_resampler_streams_any_rate_to_16_khz(rate: int) -> None:
    t = np.arange(rate) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()
    whole = InputResampler().to_16k(pcm, rate)
    streaming = InputResampler()
    pieces = [streaming.to_16k(pcm[i : i + 1001], rate) for i in range(0, len(pcm), 1001)]
    chunked = b"".join(pieces)  # odd-sized chunks: bytes split inside samples
    assert 16000 - 1200 < len(chunked) // 2 <= 16000  # the filter holds back a little
    out = np.frombuffer(chunked, dtype="<i2").astype(np.float64)
    reference = np.frombuffer(whole, dtype="<i2").astype(np.float64)
    common = min(out.size, reference.size)
    assert np.max(np.abs(out[:common] - reference[:common])) <= 2  # streaming == one shot
    peak_hz = np.argmax(np.abs(np.fft.rfft(out))) * 16000 / out.size
    assert peak_hz == pytest.approx(220, abs=3)


def test_the_resampler_passes_16_khz_through_and_follows_a_rate_change() -> None:
    resampler = InputResampler()
    assert resampler.to_16k(b"\x01\x02" * 160, 16000) == b"\x01\x02" * 160
    first = resampler.to_16k(bytes(960), 48000)
    after = resampler.to_16k(b"\x05\x00" * 10, 16000)  # the 48 kHz tail comes out first
    assert len(first) + len(after) >= 320 + 20 - 2
    assert after.endswith(b"\x05\x00" * 10)


# --- NON_BLOCKING results ----------------------------------------------------------------


def result(call_id: str, **fields: object) -> w.FunctionResponse:
    fields.setdefault("response", {})
    return w.FunctionResponse(id=call_id, name="f", **fields)  # type: ignore[arg-type]


def test_results_are_said_as_scheduled() -> None:
    results = ToolResults()
    results.defer(("a", "b"), (Reply(say="both done"),), {"a": "a moves"})
    assert results.busy
    assert results.running == {"a", "b"}
    assert results.on_responses([result("a", will_continue=True)]) is False
    assert results.next_reply() == ResultReply((Reply(say="a moves"),))
    assert not results.on_responses([result("a")])
    assert results.next_reply() is None  # b still runs
    assert results.on_responses([result("b", scheduling="INTERRUPT")]) is True
    assert results.next_reply() == ResultReply((Reply(say="both done"),), interrupt=True)
    assert not busy(results)
    results.defer(("c",), (Reply(say="c done"),), {})
    results.on_responses([result("c", response={"scheduling": "SILENT"})])
    assert (results.next_reply(), busy(results)) == (None, False)
    assert results.on_responses([result("zzz")]) is False  # a BLOCKING call's: not ours


def busy(results: ToolResults) -> bool:
    return results.busy  # a call: mypy would keep the property narrowed


def test_queued_result_replies_at_the_limit_and_one_past() -> None:
    results = ToolResults()
    results.defer(("a",), (), {"a": "again"})
    for _ in range(MAX_QUEUED_RESULT_REPLIES):
        results.on_responses([result("a", will_continue=True)])
    assert results.dropped == 0
    results.on_responses([result("a", will_continue=True)])
    assert results.dropped == 1
    assert len(list(iter(results.next_reply, None))) == MAX_QUEUED_RESULT_REPLIES


def test_running_call_groups_at_the_limit_and_one_past_forget_the_oldest() -> None:
    results = ToolResults()
    for i in range(MAX_RUNNING_CALL_GROUPS):
        results.defer((f"c{i}",), (Reply(say=str(i)),), {})
    assert len(results.running) == MAX_RUNNING_CALL_GROUPS
    results.defer(("new",), (Reply(say="new"),), {})
    assert len(results.running) == MAX_RUNNING_CALL_GROUPS
    assert "c0" not in results.running
    assert "new" in results.running


@pytest.mark.parametrize(
    "utterances", [MAX_PENDING_VOICE_ACTIVITY // 2, MAX_PENDING_VOICE_ACTIVITY // 2 + 1]
)
def test_unreported_voice_activity_at_the_limit_and_past_it_keeps_the_newest(
    utterances: int,
) -> None:
    turns = TurnTaking(config(), deque())
    pcm = speech(seconds=0.4, silence=0.6)  # a start and an end each
    for _ in range(utterances):
        assert Reaction.VOICE_ACTIVITY in turns.handle(AudioReceived(pcm, 16000))
    activity = turns.take_activity()
    assert len(activity) == MAX_PENDING_VOICE_ACTIVITY
    assert activity[-1][1] == pytest.approx(utterances - 0.6 + 0.0, abs=0.02)  # the newest end
    first_start = 0.0 if utterances * 2 == MAX_PENDING_VOICE_ACTIVITY else 1.0
    assert activity[0][0] == "start"
    assert activity[0][1] == pytest.approx(first_start, abs=0.03)
    assert turns.take_activity() == []
