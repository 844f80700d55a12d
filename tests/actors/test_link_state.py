"""The link's plain state, without I/O: the outbox bound, the reconnect rule, the history."""

from __future__ import annotations

import pytest

from actors import limits
from actors.gemini_link import Ended, History, LinkOptions, Outbox, Outcome, Reconnects
from protocol import wire
from runtime import messages as m
from runtime.supervisor import no_jitter

CHUNK = bytes(640)  # 20 ms of 16 kHz PCM16
OPTIONS = LinkOptions(random=no_jitter)


def chunk(sequence: int) -> m.AudioChunk:
    return m.AudioChunk(data=CHUNK, timestamp=0.0, sequence=sequence)


@pytest.mark.parametrize("extra", [0, 1])
def test_the_outbox_holds_its_audio_bound_and_drops_the_oldest_past_it(extra: int) -> None:
    outbox = Outbox()
    fits = limits.OUTGOING_AUDIO_BYTES // len(CHUNK)  # 10 s
    outbox.put(m.TextInput(text="first"), limits.OUTGOING_AUDIO_BYTES)
    for sequence in range(fits + extra):
        outbox.put(chunk(sequence), limits.OUTGOING_AUDIO_BYTES)
    assert outbox.audio_bytes == fits * len(CHUNK)
    assert outbox.dropped.total == extra
    audio = [p.sequence for p in outbox.pending if isinstance(p, m.AudioChunk)]
    assert audio == list(range(extra, fits + extra))  # the oldest went
    assert outbox.pending[0] == m.TextInput(text="first")  # control is never dropped


def test_a_half_written_head_is_never_dropped() -> None:
    outbox = Outbox()
    outbox.put(chunk(0), 2 * len(CHUNK))
    outbox.unsent_frame = b"chunk 0, encoded"  # the connection failed writing it
    outbox.put(chunk(1), 2 * len(CHUNK))
    outbox.put(chunk(2), 2 * len(CHUNK))
    assert [p.sequence for p in outbox.pending] == [0, 2]  # type: ignore[union-attr]
    outbox.pop()  # chunk 0 is written on the next connection
    assert [p.sequence for p in outbox.pending] == [2]  # type: ignore[union-attr]
    assert outbox.audio_bytes == len(CHUNK)


def test_a_lone_half_written_chunk_over_the_bound_stays() -> None:
    outbox = Outbox()
    outbox.put(chunk(0), 0)  # a bound smaller than one chunk drops it at once
    assert not outbox.pending
    outbox.unsent_frame = None
    outbox.put(chunk(1), len(CHUNK))
    outbox.unsent_frame = b"chunk 1"
    outbox.put(m.TextInput(text="x"), 0)
    assert len(outbox.pending) == 2  # nothing droppable: no endless loop, nothing lost


def failed(healthy: bool = False) -> Ended:
    return Ended(Outcome.CLOSED, "closed with 1011", healthy=healthy)


@pytest.mark.parametrize("failures", [limits.RECONNECT_ATTEMPTS, limits.RECONNECT_ATTEMPTS + 1])
def test_the_link_gives_up_past_its_failures_in_a_row(failures: int) -> None:
    rule = Reconnects()
    steps = [rule.after(failed(), float(n), OPTIONS) for n in range(failures)]
    if failures > limits.RECONNECT_ATTEMPTS:
        assert steps[-1] is None
        steps = steps[:-1]
    assert [step[0] for step in steps if step] == list(range(1, limits.RECONNECT_ATTEMPTS + 1))
    assert all(step is not None for step in steps)


def test_a_healthy_connection_starts_the_count_again_and_hands_over_at_once() -> None:
    rule = Reconnects()
    assert rule.after(failed(), 0.0, OPTIONS) == (1, 0.25)
    assert rule.after(failed(), 1.0, OPTIONS) == (2, 0.5)
    assert rule.after(failed(healthy=True), 2.0, OPTIONS) == (1, 0.25)
    handover = Ended(Outcome.HANDOVER, "goAway handover", healthy=True)
    assert rule.after(handover, 3.0, OPTIONS) == (0, 0.0)
    unhealthy_handover = Ended(Outcome.HANDOVER, "goAway handover")
    assert rule.after(unhealthy_handover, 4.0, OPTIONS) == (1, 0.25)  # no free pass


@pytest.mark.parametrize(
    "starts", [limits.CONNECTIONS_PER_WINDOW - 1, limits.CONNECTIONS_PER_WINDOW]
)
def test_connections_per_window(starts: int) -> None:
    rule = Reconnects()
    for n in range(starts):
        rule.started(float(n))
    _, delay = rule.after(failed(healthy=True), float(starts), OPTIONS) or (0, 0.0)
    if starts < limits.CONNECTIONS_PER_WINDOW:  # one more fits in the window
        assert delay == 0.25
    else:  # the next would be one too many: wait until the first leaves the window
        assert delay == pytest.approx(limits.CONNECTION_WINDOW - starts)


def test_the_history_is_kept_as_fragments_within_its_budget_and_turns() -> None:
    history = History()
    assert history.admit(1, "user", "Hello", budget=8, turns=2) == "Hello"
    assert history.admit(1, "agent", "Hi there", budget=8, turns=2) == "Hi there"
    assert history.admit(1, "agent", " friend", budget=8, turns=2) == ""
    assert history.dropped_chars == 7
    assert history.admit(2, "user", "More", budget=8, turns=2) == "More"
    history.admit(3, "user", "Even more", budget=8, turns=2)  # "Even mor": over budget by 1
    texts = [(c.role, c.parts[0].text) for c in history.contents(turns=2) if c.parts]
    assert texts == [
        ("user", "Hello"),
        ("model", "Hi there"),
        ("user", "More"),
        ("user", "Even mor"),
    ]
    history.admit(4, "agent", "Last", budget=8, turns=2)  # 2 turns = 4 sides: the oldest goes
    texts = [(c.role, c.parts[0].text) for c in history.contents(turns=2) if c.parts]
    assert texts == [("user", "Hello"), ("user", "More"), ("user", "Even mor"), ("model", "Last")]


@pytest.mark.parametrize("turns", [limits.RESEED_TURNS, limits.RESEED_TURNS + 1])
def test_the_link_reseeds_at_most_its_latest_turns(turns: int) -> None:
    history = History()
    for turn in range(1, turns + 1):
        for role in ("user", "agent"):
            history.admit(
                turn,
                role,
                f"{role} {turn}",
                budget=limits.TRANSCRIPT_CHARS,
                turns=limits.RESEED_TURNS,
            )
    contents = history.contents(limits.RESEED_TURNS)
    assert len(contents) == 2 * limits.RESEED_TURNS
    assert contents[0].parts is not None
    assert contents[0].parts[0].text == f"user {turns - limits.RESEED_TURNS + 1}"


def test_what_the_link_gave_the_model_is_kept_in_its_turn_within_its_bound() -> None:
    from protocol.client_rules import folded_call, folded_result

    history = History()
    initial = [wire.Content(role="user", parts=[wire.Part(text="Before")])]
    history.add(0, initial, turns=1)
    history.admit(1, "user", "Weather?", budget=100, turns=1)
    history.admit(1, "agent", "Sunny.", budget=100, turns=1)
    history.add(1, [folded_call("w", {})], turns=1, where=History.IN_TURN)
    history.add(1, [folded_result("w", 1)], turns=1, where=History.IN_TURN)
    history.add(1, [wire.Content(role="user", parts=[wire.Part(text="After")])], turns=1)
    texts = [(c.parts or [wire.Part()])[0].text for c in history.contents(turns=1)]
    assert texts == [
        "Before",
        "Weather?",
        "[Called function w with args {}]",
        "[Function w returned 1]",
        "Sunny.",
        "After",
    ]
    # Besides the initial ones, 4 entries per turn of the bound: at it all are kept, one
    # past it the oldest goes.
    history.add(1, [wire.Content(role="user", parts=[wire.Part(text="Fourth")])], turns=1)
    texts = [(c.parts or [wire.Part()])[0].text for c in history.contents(turns=1)]
    assert "[Called function w with args {}]" in texts
    history.add(1, [wire.Content(role="user", parts=[wire.Part(text="Fifth")])], turns=1)
    texts = [(c.parts or [wire.Part()])[0].text for c in history.contents(turns=1)]
    assert texts[:2] == ["Before", "Weather?"]
    assert "[Called function w with args {}]" not in texts
    assert texts[-1] == "Fifth"
