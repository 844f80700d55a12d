"""The transcriber: assembly, spacing, one final per side, order by turn, truncation."""

from __future__ import annotations

import math
import re

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from actors.limits import TRANSCRIPT_TURNS
from actors.transcriber import Transcripts, assemble, transcriber
from runtime import messages as m
from runtime.supervisor import ActorContext
from runtime.wiring import Wiring, deliver


def user(turn: int, text: str, finished: bool = False) -> m.TranscriptFragment:
    return m.TranscriptFragment(role="user", turn_id=turn, text=text, finished=finished)


def agent(turn: int, text: str) -> m.TranscriptFragment:
    return m.TranscriptFragment(role="agent", turn_id=turn, text=text)


def audio(turn: int, offset: int, samples: int) -> m.ModelAudio:
    return m.ModelAudio(turn_id=turn, data=bytes(2 * samples), offset=offset)


def finals(events: list[m.InternalMessage]) -> list[m.TranscriptCompleted]:
    return [e for e in events if isinstance(e, m.TranscriptCompleted)]


@pytest.mark.parametrize(
    ("fragments", "text"),
    [
        (["What's", " the", " weather", "?"], "What's the weather?"),
        ([" Hello", "  there ", " "], "Hello there"),
        (["Sure.", "It is", " sunny."], "Sure. It is sunny."),
        (["3.5", " degrees"], "3.5 degrees"),
        (["こんにちは", "世界"], "こんにちは世界"),
    ],
)
def test_spacing_between_fragments(fragments: list[str], text: str) -> None:
    assert assemble(fragments) == text


def test_interim_updates_then_one_final_per_side() -> None:
    t = Transcripts()
    events = [
        e
        for f in (user(1, "Hi"), user(1, " there", finished=True), user(1, " again"))
        for e in t.feed(f)
    ]
    assert [e.text for e in events if isinstance(e, m.TranscriptUpdated)] == ["Hi", "Hi there"]
    assert finals(events) == [
        m.TranscriptCompleted(role="user", turn_id=1, item_id="turn-1-user", transcript="Hi there")
    ]
    events = [
        e for f in (agent(1, "Hello"), agent(1, "!"), m.TurnCompleted(turn_id=1)) for e in t.feed(f)
    ]
    assert finals(events) == [
        m.TranscriptCompleted(role="agent", turn_id=1, item_id="turn-1-agent", transcript="Hello!")
    ]
    assert finals(t.feed(m.TurnCompleted(turn_id=1))) == []  # one final per side


def test_the_users_words_come_first_even_when_they_arrive_after_the_reply() -> None:
    t = Transcripts(expect_playout=False)
    for message in (
        agent(1, "Sure, it is sunny."),
        user(1, "What's the weather?"),
        m.TurnCompleted(turn_id=1),
    ):
        t.feed(message)
    t.feed(user(2, "Thanks"))
    assert [(h.role, h.text, h.item_id) for h in t.history()] == [
        ("user", "What's the weather?", "turn-1-user"),
        ("agent", "Sure, it is sunny.", "turn-1-agent"),
        ("user", "Thanks", "turn-2-user"),
    ]


def test_an_interrupted_reply_keeps_only_what_was_heard() -> None:
    t = Transcripts()
    words = ["The", " weather", " today", " is", " sunny", " and", " warm."]
    for index, word in enumerate(words):  # each word comes with its 200 ms of audio
        t.feed(audio(1, index * 4800, 4800))
        t.feed(agent(1, word))
    assert finals(t.feed(m.TurnInterrupted(turn_id=1))) == []
    assert finals(t.feed(m.TurnCompleted(turn_id=1, interrupted=True))) == []  # waits for playout
    heard = finals(
        t.feed(m.PlayoutFinished(turn_id=1, samples_played=3 * 4800 + 100, interrupted=True))
    )
    assert heard == [
        m.TranscriptCompleted(
            role="agent",
            turn_id=1,
            item_id="turn-1-agent",
            transcript="The weather today",
            interrupted=True,
        )
    ]
    assert t.history()[-1] == m.ChatTurn(
        role="agent", text="The weather today", item_id="turn-1-agent", interrupted=True
    )


def test_playout_reporting_before_the_turn_completes_also_truncates() -> None:
    t = Transcripts()
    for index, word in enumerate(["One", " two", " three"]):
        t.feed(audio(1, index * 4800, 4800))
        t.feed(agent(1, word))
    t.feed(m.PlayoutFinished(turn_id=1, samples_played=4800, interrupted=True))
    assert [f.transcript for f in finals(t.feed(m.TurnCompleted(turn_id=1, interrupted=True)))] == [
        "One"
    ]


def test_text_replies_and_thoughts() -> None:
    t = Transcripts()
    t.feed(m.ModelText(turn_id=1, text="thinking...", thought=True))
    t.feed(m.ModelText(turn_id=1, text="Plain text reply."))
    assert [f.transcript for f in finals(t.feed(m.TurnCompleted(turn_id=1, interrupted=True)))] == [
        "Plain text reply."
    ]


async def test_the_actor_with_fake_peers(autojump_clock: MockClock) -> None:
    inbox_send, inbox_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    out_send, out_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    transcripts = Transcripts()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: transcriber(
                ActorContext("t", 1, trio.Event(), lambda: None),
                inbox=inbox_receive,
                out=out_send,
                transcripts=transcripts,
            )
        )
        for message in (
            user(1, "Hi", finished=True),
            audio(1, 0, 480),
            agent(1, "Hello"),
            m.TurnCompleted(turn_id=1),
        ):
            await inbox_send.send(message)
        await inbox_send.aclose()
        got = [x async for x in out_receive]
    assert [f.role for f in finals(got)] == ["user", "agent"]
    assert [h.text for h in transcripts.history()] == ["Hi", "Hello"]


def test_completed_transcripts_carry_the_seeds_event_names() -> None:
    t = Transcripts(expect_playout=False)
    events = finals(
        [
            e
            for f in (user(1, "Hi", finished=True), agent(1, "Hello"), m.TurnCompleted(turn_id=1))
            for e in t.feed(f)
        ]
    )
    assert [e.event for e in events] == [
        "input_speech_transcription_completed",
        "agent_speech_transcription_completed",
    ]


def reference_assemble(fragments: list[str]) -> str:
    """The whole-text tidying the transcriber did before it went incremental."""
    text = re.sub(r"\s+", " ", "".join(fragments)).strip()
    return re.sub(r"([.!?,;:])(?=[^\W\d_])", r"\1 ", text)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.text(alphabet=" \t\n.,!?;:aZé3_-x", max_size=8), max_size=12))
def test_incremental_assembly_equals_assembling_the_whole_text(fragments: list[str]) -> None:
    assert assemble(fragments) == reference_assemble(fragments)


@pytest.mark.parametrize("turns", [TRANSCRIPT_TURNS, TRANSCRIPT_TURNS + 1])
def test_the_history_keeps_the_latest_turns_up_to_its_limit(turns: int) -> None:
    t = Transcripts(expect_playout=False)
    for turn in range(1, turns + 1):
        t.feed(agent(turn, f"reply {turn}"))
        t.feed(m.TurnCompleted(turn_id=turn))
    history = t.history()
    assert len(history) == TRANSCRIPT_TURNS
    assert history[-1].text == f"reply {turns}"
    assert history[0].text == f"reply {turns - TRANSCRIPT_TURNS + 1}"


def test_assembly_costs_each_fragment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # The quadratic case of issue 12: every fragment re-tidied the whole text so far.
    import actors.transcriber as module

    tidied = 0

    class Counting:
        def __init__(self, pattern: re.Pattern[str]) -> None:
            self.pattern = pattern

        def sub(self, replacement: str, text: str) -> str:
            nonlocal tidied
            tidied += len(text)
            return self.pattern.sub(replacement, text)

    monkeypatch.setattr(module, "_SPACES", Counting(module._SPACES))
    t = Transcripts()
    fragments = 2000
    for _ in range(fragments):
        t.feed(agent(1, " word"))
    updates = t.feed(agent(1, " end"))
    assert updates[-1].text.startswith("word word")  # type: ignore[union-attr]
    assert tidied <= fragments * len(" word") + len(" end")


def interrupted_reply() -> list[m.InternalMessage]:
    """A reply interrupted after 3 of its 7 words were heard, as observed reports it."""
    words = ["The", " weather", " today", " is", " sunny", " and", " warm."]
    out: list[m.InternalMessage] = [m.TurnStarted(turn_id=1), user(1, "Weather?", finished=True)]
    for index, word in enumerate(words):  # each word comes with its 200 ms of audio
        out += [audio(1, index * 4800, 4800), agent(1, word)]
    return [
        *out,
        m.TurnInterrupted(turn_id=1),
        m.TurnCompleted(turn_id=1, interrupted=True),
        m.PlayoutFinished(turn_id=1, samples_played=3 * 4800 + 100, interrupted=True),
    ]


@pytest.mark.parametrize("audio_events", [True, False])
async def test_the_actor_inline_passes_audio_on_only_when_asked(
    audio_events: bool, autojump_clock: MockClock
) -> None:
    wiring: Wiring[m.InternalMessage] = Wiring()
    wiring.add("observed")
    out_send, out_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
    transcripts = Transcripts()
    sent = interrupted_reply()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: transcriber(
                ActorContext("t", 1, trio.Event(), lambda: None),
                inbox=wiring.receiver("observed"),
                out=out_send,
                transcripts=transcripts,
                audio_events=audio_events,
            )
        )
        await trio.testing.wait_all_tasks_blocked()
        async with wiring.sender("observed") as router:
            for message in sent:
                await deliver(router, message)
                # Inline, in this task: the message is out before this task yields.
                assert out_receive.statistics().current_buffer_used > 0
        wiring.close()
    got = [x async for x in out_receive]
    passed = [x for x in sent if audio_events or not isinstance(x, m.ModelAudio)]
    assert [x for x in got if not isinstance(x, m.TranscriptUpdated | m.TranscriptCompleted)] == (
        passed
    )
    assert [(f.role, f.transcript, f.interrupted) for f in finals(got)] == [
        ("user", "Weather?", False),
        ("agent", "The weather today", True),  # only what was heard
    ]
    updates = [x.text for x in got if isinstance(x, m.TranscriptUpdated) and x.role == "agent"]
    assert updates[-1] == "The weather today is sunny and warm."  # one per fragment
    assert len(updates) == 7
