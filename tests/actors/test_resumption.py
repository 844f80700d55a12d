"""Issue 16, resumption: a conversation goes on in another process from a stored handle,
and with transparent resumption (Vertex) what the server had not consumed when the
connection dropped is replayed (lastConsumedClientMessageIndex), tested with the
emulator's ``lose`` fault, which reads messages without consuming them, then drops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import trio
from trio.testing import MockClock

from actors.playout import CollectorSink
from actors.realtime import RealtimeModel
from actors.resumption import HANDLE_LIFETIME, FileHandleStore
from protocol import wire as w
from runtime import messages as m
from tests.actors.helpers import VERTEX_PATH, live_session, reply, three_turns, until

ROOT = Path(__file__).resolve().parents[2]


def first_process(url: str, store: Path) -> str:
    """A separate Python process holds the first turn and exits: what it printed."""
    script = textwrap.dedent(
        f"""
        import trio
        from actors.playout import CollectorSink
        from actors.realtime import RealtimeModel
        from actors.resumption import FileHandleStore
        from runtime import messages as m

        async def main():
            store = FileHandleStore({str(store)!r}, model="gemini-3.8-live")
            model = RealtimeModel(endpoint={url!r})
            async with model.session(resume=store, sink=CollectorSink()) as live:
                live.send_text("One?")
                said = ""
                async for event in live.events():
                    if isinstance(event, m.TranscriptCompleted) and event.role == "agent":
                        said = event.transcript
                    if isinstance(event, m.ResumptionUpdated) and event.resumable and said:
                        break  # the handle after the reply is saved
            print(said)

        trio.run(main)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_a_conversation_goes_on_in_a_new_process_from_a_stored_handle(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(
        json.dumps(
            {
                "turns": [
                    {"replies": [{"say": "First answer."}]},
                    {"replies": [{"say": "Second answer."}]},
                ],
                "behaviour": {"pace": "fast", "first_audio_delay_ms": 0},
            }
        )
    )
    emulator = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--scenario", str(scenario)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert emulator.stdout is not None
        url = emulator.stdout.readline().split()[1]
        store = tmp_path / "session.handle"
        assert first_process(url, store) == "First answer."
        assert os.stat(store).st_mode & 0o777 == 0o600  # a handle is kept like a credential

        async def second() -> list[m.InternalMessage | object]:
            model = RealtimeModel(endpoint=url)
            handles = FileHandleStore(store, model="gemini-3.8-live")
            async with model.session(resume=handles, sink=CollectorSink()) as live:
                live.send_text("Two?")
                with trio.fail_after(30):
                    return list(
                        await until(
                            live,
                            lambda e: isinstance(e, m.TranscriptCompleted) and e.role == "agent",
                        )
                    )

        events = trio.run(second)
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
        if emulator.stdout is not None:
            emulator.stdout.close()
    assert m.Connected(resumed=True) in events
    said = [e for e in events if isinstance(e, m.TranscriptCompleted) and e.role == "agent"]
    assert said[-1].transcript == "Second answer."  # the script went on: the same session


def test_a_stale_or_foreign_handle_is_not_offered(tmp_path: Path) -> None:
    now = [1000.0]
    store = FileHandleStore(tmp_path / "h", model="gemini-3.8-live", clock=lambda: now[0])
    assert store.load() is None  # nothing stored
    store.save("handle-1")
    assert store.load() == "handle-1"
    assert FileHandleStore(tmp_path / "h", model="gemini-2.5-x").load() is None
    now[0] += HANDLE_LIFETIME + 1
    assert store.load() is None
    (tmp_path / "h").write_bytes(b"{not json")
    assert store.load() is None
    (tmp_path / "h").write_bytes(b" " * (64 << 10) + b"{}")
    assert store.load() is None  # past the size bound: not read
    assert "handle-1" not in repr(store)


async def test_a_refused_stored_handle_starts_a_new_session(autojump_clock: MockClock) -> None:
    async with live_session(three_turns(), session_options={"resume": "no-such-handle"}) as (
        live,
        transport,
        _,
    ):
        live.send_text("One?")
        assert await reply(live) == "First answer."  # a new session: the script's start
    setups = [x for x in transport.sent if isinstance(x, w.Setup)]
    assert [s.session_resumption.handle for s in setups if s.session_resumption] == [
        "no-such-handle",
        None,
    ]


async def test_what_the_server_had_not_consumed_is_replayed_after_the_drop(
    autojump_clock: MockClock,
) -> None:
    async with live_session(
        three_turns(), faults=("lose:at=turn-end,count=1",), path=VERTEX_PATH
    ) as (live, transport, emu):
        live.send_text("One?")
        assert await reply(live) == "First answer."
        live.send_text("Two?")  # read by the server, never consumed; then the drop
        events = await until(
            live, lambda e: isinstance(e, m.TranscriptCompleted) and e.role == "agent"
        )
        assert emu.connections == 2
    assert m.Reconnected(restored=True) in events
    assert [e.transcript for e in events if isinstance(e, m.TranscriptCompleted)] == [
        "Second answer."
    ]
    setup = transport.sent[0]
    assert isinstance(setup, w.Setup)
    assert setup.session_resumption == w.SessionResumptionConfig(transparent=True)
    assert transport.sent.count(w.RealtimeInput(text="Two?")) == 2  # sent, lost, replayed


async def test_without_transparent_resumption_a_lost_message_is_reported_lost(
    autojump_clock: MockClock,
) -> None:
    async with live_session(three_turns(), faults=("lose:at=turn-end,count=1",)) as (
        live,
        transport,
        _,
    ):
        live.send_text("One?")
        assert await reply(live) == "First answer."
        live.send_text("Two?")
        events = await until(live, lambda e: isinstance(e, m.Reconnected))
    lost = [e for e in events if isinstance(e, m.TurnCompleted)]
    assert lost[-1].reason == "CONNECTION_LOST"  # the question went, and no reply came
    assert transport.sent.count(w.RealtimeInput(text="Two?")) == 1


def test_a_handle_file_at_its_size_bound_is_read(tmp_path: Path) -> None:
    from actors.resumption import MAX_HANDLE_FILE_BYTES

    record = b'{"handle":"h","saved_at":1000.0}'
    path = tmp_path / "h"
    path.write_bytes(record + b" " * (MAX_HANDLE_FILE_BYTES - len(record)))
    assert FileHandleStore(path, clock=lambda: 1000.0).load() == "h"
    path.write_bytes(record + b" " * (MAX_HANDLE_FILE_BYTES - len(record) + 1))
    assert FileHandleStore(path, clock=lambda: 1000.0).load() is None
