"""Hostile clients, each a small peer written here, on loopback: whatever one connection
sends, or whatever bug it meets, the emulator ends that connection alone (a close code and
a reason, or an HTTP status) and keeps serving every other one; nothing a client holds
open or sends grows the emulator without bound."""

from __future__ import annotations

import contextlib
import tempfile
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket
from trio.testing import MockClock

from emulator import Behaviour, Reply, Scenario, Turn, open_emulator
from emulator.driver import CLOSE_WAIT_S
from emulator.handshake import INVALID_KEY_REASON, Handshake, parse_handshake
from emulator.limits import (
    MAX_CONNECTIONS,
    MAX_CONTENT_TURNS,
    MAX_FUNCTION_RESPONSES,
    MAX_PENDING_USER_TURNS,
    MAX_TEXT_CHARS,
    SETUP_TIMEOUT_S,
)
from emulator.player import ScriptPlayer
from protocol import encode
from protocol import wire as w
from protocol.limits import MAX_CLIENT_MESSAGE_BYTES, MAX_JSON_CONTAINERS, MAX_JSON_DEPTH
from tests.emulator.client import (
    GEMINI_PATH,
    MODEL,
    WEATHER_TURN,
    RawClient,
    audio_of,
    closed_with,
    connect,
    raw_close,
    raw_upgrade,
    setup,
    speech,
)

FAST = Behaviour(pace="fast", first_audio_delay_ms=0)
SETUP = encode(w.Setup(model="models/gemini-3.8-live"))


def nested(depth: int, inner: bytes = b"1") -> bytes:
    """A JSON value ``depth`` objects deep."""
    return b'{"a":' * depth + inner + b"}" * depth


async def still_serves(client: RawClient) -> None:
    """A whole exchange on a connection opened before the hostile one."""
    assert audio_of(await client.converse())


# --- one connection's input ends that connection only ---------------------------------


@pytest.mark.parametrize(
    "frames",
    [
        (b"[" * 1000,),
        (SETUP, b"[" * 1000),
        (SETUP, b'{"realtimeInput": {"text": "hi", "future": ' + b"[" * 5000 + b"]" * 5000 + b"}}"),
        (
            SETUP,
            b'{"toolResponse": {"functionResponses": [{"id": "x", "response": '
            + nested(1000)
            + b"}]}}",
        ),
    ],
    ids=["before-setup", "after-setup", "in-an-unknown-field", "in-a-function-response"],
)
async def test_deep_nesting_closes_that_connection_with_1007_and_others_go_on(
    frames: tuple[bytes, ...], virtual_clock: MockClock
) -> None:
    async with (
        open_emulator(scenario=Scenario(behaviour=FAST)) as emu,
        connect(emu.url) as healthy,
    ):
        reason = await raw_close(emu.url, *frames)
        assert reason.code == 1007
        assert f"deeper than the limit of {MAX_JSON_DEPTH}" in (reason.reason or "")
        await still_serves(healthy)
        assert emu.failures == 0


async def test_nesting_at_the_limit_is_accepted_and_one_past_it_is_not(
    virtual_clock: MockClock,
) -> None:
    # {"toolResponse": {"functionResponses": [{"response": ...}]}} is 4 deep around the
    # response's value.
    scenario = Scenario(turns=(WEATHER_TURN,), behaviour=FAST)

    def answer(call_id: str, depth: int) -> bytes:
        response = nested(depth - 4)
        return b'{"toolResponse": {"functionResponses": [{"id": "%s", "response": %s}]}}' % (
            call_id.encode(),
            response,
        )

    async with open_emulator(scenario=scenario) as emu, connect(emu.url) as client:
        await client.send(w.RealtimeInput(text="weather?"))
        got = await client.until(lambda m: m.tool_call is not None)
        call_id = got[-1].tool_call.function_calls[0].id  # type: ignore[union-attr,index]
        assert call_id is not None
        await client.ws.send_message(answer(call_id, MAX_JSON_DEPTH))
        assert audio_of(await client.until_turn_complete())
        reason = await closed_with(
            lambda: _send_and_read(client, answer(call_id, MAX_JSON_DEPTH + 1))
        )
    assert reason.code == 1007


async def _send_and_read(client: RawClient, frame: bytes) -> None:
    await client.ws.send_message(frame)
    while True:
        await client.receive()


@pytest.mark.parametrize(
    "frame",
    [
        b'{"realtimeInput": {"text": "' + b"x" * (MAX_TEXT_CHARS + 1) + b'"}}',
        encode(
            w.ClientContent(
                turns=[w.Content(role="user", parts=[w.Part(text="a")])] * (MAX_CONTENT_TURNS + 1)
            )
        ),
        encode(
            w.ToolResponse(
                function_responses=[w.FunctionResponse(id="x")] * (MAX_FUNCTION_RESPONSES + 1)
            )
        ),
        b'{"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=1", "data": ""}}}',
        b'{"usageMetadata": {"totalTokenCount": ' + b"9" * 10_000 + b"}}",
        b'{"setup": {"model": "m", "generationConfig": {"temperature": 1e999}}}',
    ],
    ids=["text", "content-turns", "function-responses", "audio-rate", "huge-int", "huge-float"],
)
async def test_input_past_a_limit_closes_with_1007_and_others_go_on(
    frame: bytes, virtual_clock: MockClock
) -> None:
    async with (
        open_emulator(scenario=Scenario(behaviour=FAST)) as emu,
        connect(emu.url) as healthy,
    ):
        frames = (frame,) if frame.startswith(b'{"setup"') else (SETUP, frame)
        assert (await raw_close(emu.url, *frames)).code == 1007
        await still_serves(healthy)


async def test_text_at_the_limit_is_answered(virtual_clock: MockClock) -> None:
    async with open_emulator(scenario=Scenario(behaviour=FAST)) as emu, connect(emu.url) as client:
        assert audio_of(await client.converse("x" * MAX_TEXT_CHARS))


async def test_a_message_at_the_size_limit_is_taken_and_one_byte_more_closes_1009(
    virtual_clock: MockClock,
) -> None:
    head, tail = b'{"realtimeInput": {"video": {"mimeType": "image/jpeg", "data": "', b'"}}}'
    filler = MAX_CLIENT_MESSAGE_BYTES - len(head) - len(tail)
    at_limit = head + b"A" * (filler - filler % 4) + b"=" * (filler % 4) + tail
    assert len(at_limit) == MAX_CLIENT_MESSAGE_BYTES
    async with open_emulator(scenario=Scenario(behaviour=FAST)) as emu, connect(emu.url) as client:
        await client.ws.send_message(at_limit)
        await still_serves(client)
        reason = await closed_with(lambda: _send_and_read(client, at_limit + b" "))
    assert reason.code == 1009


async def test_the_emulator_bounds_partial_messages_over_all_its_connections(
    virtual_clock: MockClock,
) -> None:
    """The process-wide budget (MAX_PARTIAL_MESSAGE_BYTES_TOTAL; exact arithmetic at the
    limit and one past in test_ws_hostile_client): a message whose unfinished part
    would take the emulator past it closes that connection with 1013."""
    video = b'{"realtimeInput": {"video": {"mimeType": "image/jpeg", "data": "%s"}}}'
    small, large = video % (b"A" * 200_000), video % (b"A" * 1_000_000)
    async with open_emulator(scenario=Scenario(behaviour=FAST), max_partial_bytes=256 << 10) as emu:
        async with connect(emu.url) as client:
            await client.ws.send_message(small)
            await still_serves(client)
            reason = await closed_with(lambda: _send_and_read(client, large))
        assert reason.code == 1013
        assert emu.partial_bytes.used == 0
        async with connect(emu.url) as client:  # the next connection is served
            await still_serves(client)


async def test_a_huge_setup_is_served_and_one_with_too_many_containers_is_not(
    virtual_clock: MockClock,
) -> None:
    instruction = w.Content(parts=[w.Part(text="be brief. " * 350_000)])  # 3.5 MB
    huge = setup(system_instruction=instruction)
    async with open_emulator(scenario=Scenario(behaviour=FAST)) as emu:
        async with connect(emu.url, huge) as client:
            await still_serves(client)
        declarations = [w.FunctionDeclaration(name=f"f{i}", parameters={}) for i in range(50_000)]
        crowded = encode(w.Setup(model=MODEL, tools=[w.Tool(function_declarations=declarations)]))
        reason = await raw_close(emu.url, crowded)
    assert reason.code == 1007
    assert f"over the limit of {MAX_JSON_CONTAINERS}" in (reason.reason or "")


async def test_thousands_of_late_tool_responses_are_ignored_and_cost_nothing(
    virtual_clock: MockClock,
) -> None:
    scenario = Scenario(turns=(WEATHER_TURN,), behaviour=FAST)
    async with open_emulator(scenario=scenario) as emu, connect(emu.url) as client:
        await client.send(w.RealtimeInput(text="weather?"))
        got = await client.until(lambda m: m.tool_call is not None)
        call_id = got[-1].tool_call.function_calls[0].id  # type: ignore[union-attr,index]
        await client.send_audio(speech(silence=0))  # barge-in: the call is cancelled
        rest = await client.until_turn_complete()
        assert any(m.tool_call_cancellation for m in rest)
        late = w.ToolResponse(function_responses=[w.FunctionResponse(id=call_id)] * 100)
        for _ in range(2000):
            await client.send(late)
        await client.send_audio(bytes(16000))  # silence ends the barge-in utterance
        assert audio_of(await client.until_turn_complete())
        assert emu.failures == 0


# --- credentials ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "header"),
    [
        ("?key=%C3%A9", b""),
        ("?key=%FF%FE", b""),
        ("?key=K%0A", b""),
        ("?key=K%00K", b""),
        ("?key=" + "K" * 8000, b""),
        ("", b"x-goog-api-key: \xc3\xa9\r\n"),
        ("", b"Authorization: Bearer \xff\r\n"),
    ],
    ids=["non-ascii", "bad-utf8", "newline", "nul", "huge", "header-non-ascii", "bearer-latin1"],
)
async def test_any_credential_shape_is_refused_cleanly_and_others_go_on(
    query: str, header: bytes, virtual_clock: MockClock
) -> None:
    async with (
        open_emulator(api_key="K", scenario=Scenario(behaviour=FAST)) as emu,
        connect(emu.url, path=GEMINI_PATH + "?key=K") as healthy,
    ):
        stream, status, rest = await raw_upgrade(emu.port, GEMINI_PATH + query, header)
        async with stream:
            assert status == b"HTTP/1.1 101 Switching Protocols"
            while data := await stream.receive_some(4096):
                rest += data
        # The server's close frame: 1007 and the service's wording (unmasked, 2-byte head).
        assert rest[:2] == bytes((0x88, 2 + len(INVALID_KEY_REASON)))
        assert rest[2:4] == (1007).to_bytes(2, "big")
        assert rest[4:] == INVALID_KEY_REASON.encode()
        await still_serves(healthy)
        assert emu.failures == 0


# --- connections that hold on -----------------------------------------------------------


async def test_a_connection_that_sends_no_setup_is_closed_at_the_deadline(
    virtual_clock: MockClock,
) -> None:
    async with (
        open_emulator() as emu,
        trio_websocket.open_websocket_url(emu.url + GEMINI_PATH) as ws,
    ):
        start = trio.current_time()
        reason = await closed_with(ws.get_message)
        await ws._stream.aclose()
    assert reason.code == 1011
    assert "no setup" in (reason.reason or "")
    assert trio.current_time() - start == pytest.approx(SETUP_TIMEOUT_S, abs=0.1)


async def test_a_setup_just_before_the_deadline_is_served(virtual_clock: MockClock) -> None:
    async with (
        open_emulator() as emu,
        trio_websocket.open_websocket_url(emu.url + GEMINI_PATH) as ws,
    ):
        await trio.sleep(SETUP_TIMEOUT_S - 0.2)
        await ws.send_message(SETUP)
        assert "setupComplete" in str(await ws.get_message())
        await ws.aclose()


async def test_250_idle_connections_are_all_closed_after_the_setup_deadline(
    virtual_clock: MockClock,
) -> None:
    async with open_emulator() as emu:
        streams = []
        for _ in range(250):
            stream, status, _ = await raw_upgrade(emu.port)
            assert status.startswith(b"HTTP/1.1 101")
            streams.append(stream)
        await trio.testing.wait_all_tasks_blocked()
        assert emu.active_connections == 250
        # The deadline, then the close's wait for a close frame these clients never send.
        await trio.sleep(SETUP_TIMEOUT_S + CLOSE_WAIT_S + 0.5)
        assert emu.active_connections == 0
        for stream in streams:
            await stream.aclose()


async def test_connections_past_the_cap_get_503_at_the_upgrade(virtual_clock: MockClock) -> None:
    async with open_emulator(max_connections=3) as emu:
        held = [await raw_upgrade(emu.port) for _ in range(3)]
        assert [status for _, status, _ in held] == [b"HTTP/1.1 101 Switching Protocols"] * 3
        stream, status, _ = await raw_upgrade(emu.port)
        await stream.aclose()
        assert status.startswith(b"HTTP/1.1 503 ")
        token_request = await trio.open_tcp_stream("127.0.0.1", emu.port)  # POSTs count too
        async with token_request:
            await token_request.send_all(
                b"POST /v1alpha/auth_tokens HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
            )
            assert (await token_request.receive_some(1024)).startswith(b"HTTP/1.1 503 ")
        await held[0][0].aclose()
        with trio.fail_after(5):  # the server notices the close (no event to wait on)
            while emu.open_streams > 2:  # noqa: ASYNC110
                await trio.sleep(0.01)
        stream, status, _ = await raw_upgrade(emu.port)  # room again
        held.append((stream, status, b""))
        assert status.startswith(b"HTTP/1.1 101")
        for stream, _, _ in held[1:]:
            await stream.aclose()


async def test_the_default_cap(virtual_clock: MockClock) -> None:
    async with open_emulator() as emu:
        assert emu.max_connections == MAX_CONNECTIONS


# --- a bug meets one connection ---------------------------------------------------------


async def test_a_bug_in_one_session_closes_it_1011_and_is_logged_and_others_go_on(
    monkeypatch: pytest.MonkeyPatch, virtual_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    original = ScriptPlayer.reply

    def reply(self: ScriptPlayer, turn: Turn, transcript: str, **kw: bool):  # type: ignore[no-untyped-def]
        if transcript == "explode":
            raise RuntimeError("a bug")
        return original(self, turn, transcript, **kw)

    monkeypatch.setattr(ScriptPlayer, "reply", reply)
    async with (
        open_emulator(scenario=Scenario(behaviour=FAST)) as emu,
        connect(emu.url) as healthy,
    ):
        async with connect(emu.url) as victim:
            reason = await closed_with(lambda: victim.converse("explode"))
        assert (reason.code, reason.reason) == (1011, "internal error")
        await still_serves(healthy)
        assert emu.failures == 1
    assert "RuntimeError: a bug" in caplog.text


async def test_a_bug_during_the_handshake_ends_that_connection_only(
    monkeypatch: pytest.MonkeyPatch, virtual_clock: MockClock
) -> None:
    def parse(path: str, headers: Iterable[tuple[bytes, bytes]]) -> Handshake | None:
        if "explode" in path:
            raise RuntimeError("a bug")
        return parse_handshake(path, headers)

    monkeypatch.setattr("emulator.server.parse_handshake", parse)
    async with open_emulator(scenario=Scenario(behaviour=FAST)) as emu:
        stream, status, _ = await raw_upgrade(emu.port, GEMINI_PATH + "?explode")
        assert status == b""  # closed with no response
        await stream.aclose()
        async with connect(emu.url) as client:
            await still_serves(client)
        assert emu.failures == 1


# --- clients faster than real time ------------------------------------------------------


async def test_text_turns_faster_than_replies_merge_past_the_pending_limit(
    virtual_clock: MockClock,
) -> None:
    slow_replies = Scenario(
        turns=(),
        default_reply=Reply(say="one two three four five six"),
        behaviour=Behaviour(pace="realtime", chunk_ms=500, first_audio_delay_ms=100),
    )
    uninterrupted = setup(
        realtime_input_config=w.RealtimeInputConfig(activity_handling="NO_INTERRUPTION")
    )
    async with (
        open_emulator(scenario=slow_replies) as emu,
        connect(emu.url, uninterrupted) as client,
    ):
        await client.send(w.RealtimeInput(text="question 0"))
        await client.until(lambda m: m.server_content is not None and m.server_content.model_turn)
        for i in range(1, 50):  # while the first reply plays
            await client.send(w.RealtimeInput(text=f"question {i}"))
        completes = 0
        with trio.move_on_after(30):
            while True:
                message = await client.receive()
                if message.server_content and message.server_content.turn_complete:
                    completes += 1
        assert emu.stats.user_turns_merged == 49 - MAX_PENDING_USER_TURNS
    assert completes == 1 + MAX_PENDING_USER_TURNS  # the first reply, then one per pending turn


async def test_audio_at_100x_real_time_does_not_grow_the_emulator(
    virtual_clock: MockClock,
) -> None:
    realtime = Scenario(
        turns=(),
        default_reply=Reply(say="a reply that takes a while to speak, word by word"),
        behaviour=Behaviour(pace="realtime", first_audio_delay_ms=150),
    )
    cycle = speech(seconds=0.5, silence=0.5)  # one user turn a second of audio
    compressed = setup(  # no audio limit, and replies that play out: turns pile up
        context_window_compression=w.ContextWindowCompression(sliding_window=w.SlidingWindow()),
        realtime_input_config=w.RealtimeInputConfig(activity_handling="NO_INTERRUPTION"),
    )

    async def stream_audio(client: RawClient, seconds: int) -> None:
        for _ in range(seconds):
            await client.send_audio(cycle)

    async with open_emulator(scenario=realtime) as emu, connect(emu.url, compressed) as client:
        tracemalloc.start()
        try:
            await stream_audio(client, 10)
            before = tracemalloc.take_snapshot()
            await stream_audio(client, 50)  # 50 s of audio, in far less virtual time
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        emulator_growth = sum(
            stat.size_diff
            for stat in after.compare_to(before, "filename")
            if "/emulator/" in stat.traceback[0].filename
            or "/protocol/" in stat.traceback[0].filename
        )
        assert emu.stats.user_turns_merged > 0  # the turns came faster than replies
        assert emulator_growth < 64 * 1024
        assert emu.failures == 0


# --- TLS leaves nothing behind ----------------------------------------------------------


class BlockError(Exception):
    pass


async def test_an_error_in_the_block_comes_out_as_itself_not_in_a_group() -> None:
    async def converse_then_fail() -> None:
        scenario = Scenario(behaviour=FAST)
        async with open_emulator(scenario=scenario) as emu, connect(emu.url) as client:
            await client.converse()
            raise BlockError("mine")

    with pytest.raises(BlockError) as info:
        await converse_then_fail()
    assert not isinstance(info.value, BaseExceptionGroup)
    assert str(info.value) == "mine"
    assert info.traceback[-1].name == "converse_then_fail"  # its own traceback


@pytest.mark.parametrize("ending", ["normal", "error", "cannot-listen"])
async def test_the_tls_ca_directory_is_removed_however_the_emulator_ends(
    ending: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    busy = trio.socket.socket()
    await busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1] if ending == "cannot-listen" else 0
    expected: Any = {
        "normal": contextlib.nullcontext(),
        "error": pytest.raises(RuntimeError, match="the block failed"),  # as itself
        "cannot-listen": pytest.raises(OSError, match="in use"),
    }[ending]
    served = []
    with expected:
        async with open_emulator(tls=True, port=port) as emu:
            assert emu.ca_path is not None
            assert emu.ca_path.exists()
            served.append(emu.ca_path)
            if ending == "error":
                raise RuntimeError("the block failed")
    busy.close()
    assert list(await trio.Path(tmp_path).iterdir()) == []
    assert len(served) == (0 if ending == "cannot-listen" else 1)
