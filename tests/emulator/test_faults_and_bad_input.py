"""Bad client input gets the real close codes; every injectable fault does what it says."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio_websocket
from trio.testing import MockClock

from emulator import Behaviour, FaultSpecError, Reply, Scenario, Turn, open_emulator, parse_fault
from emulator.handshake import INVALID_KEY_REASON
from protocol import RemoteProtocolError, decode_server
from protocol import wire as w
from tests.emulator.client import (
    GEMINI_PATH,
    audio_of,
    closed_with,
    connect,
    raw_close,
    setup,
    speech,
)

FAST = Scenario(
    turns=(Turn(replies=(Reply(say="one two three four five six seven eight"),)),),
    behaviour=Behaviour(pace="fast", first_audio_delay_ms=0),
)


@pytest.mark.parametrize(
    ("frames", "code", "words"),
    [
        ((b"not json",), 1007, "not valid JSON"),
        ((b'{"realtimeInput": {"text": "hi"}}',), 1007, "first message must be setup"),
        ((b'{"setup": {"model": "models/gemini-9-ultra"}}',), 1008, "not found"),
        (
            (
                b'{"setup": {"model": "models/gemini-3.8-live", "generation_config": {"response_modalities": ["AUDIO", "TEXT"]}}}',
            ),
            1008,
            "responseModalities",
        ),
        (
            (
                b'{"setup": {"model": "models/gemini-3.8-live", "sessionResumption": {"transparent": true}}}',
            ),
            1008,
            "Vertex",
        ),
        ((b'{"setup": {"model": "m"}}',), 1008, "not found"),
        (
            (
                b'{"setup": {"model": "models/gemini-3.8-live"}}',
                b'{"setup": {"model": "models/gemini-3.8-live"}}',
            ),
            1007,
            "sent once",
        ),
        (
            (
                b'{"setup": {"model": "models/gemini-3.8-live"}}',
                b'{"realtimeInput": {"audio": 5}}',
            ),
            1007,
            "$.realtimeInput.audio",
        ),
        (
            (
                b'{"setup": {"model": "models/gemini-3.8-live"}}',
                b'{"realtimeInput": {"activityStart": {}}}',
            ),
            1007,
            "activityStart",
        ),
        (
            (
                b'{"setup": {"model": "models/gemini-3.8-live"}}',
                b'{"toolResponse": {"functionResponses": [{"id": "x"}]}}',
            ),
            1007,
            "no pending call",
        ),
        (
            (
                b'{"setup": {"model": "models/gemini-3.8-live"}}',
                b'{"realtimeInput": {"audio": {"mimeType": "audio/mp3", "data": ""}}}',
            ),
            1007,
            "audio/pcm",
        ),
    ],
)
async def test_bad_client_input_closes_with_the_real_code(
    frames: tuple[bytes, ...], code: int, words: str, virtual_clock: MockClock
) -> None:
    async with open_emulator() as emu:
        reason = await raw_close(emu.url, *frames)
    assert reason.code == code
    assert words in (reason.reason or "")


async def test_oversized_frames_close_with_1009(virtual_clock: MockClock) -> None:
    async with open_emulator() as emu:
        reason = await raw_close(
            emu.url, b'{"setup": {"model": "models/gemini-3.8-live"}}', b"x" * (17 << 20)
        )
    assert reason.code == 1009


async def test_unknown_paths_are_refused_at_the_handshake(virtual_clock: MockClock) -> None:
    # A raw upgrade request: trio-websocket's client leaks its socket when rejected.
    upgrade = (
        b"GET /ws/nothing.here HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    async with open_emulator() as emu:
        stream = await trio.open_tcp_stream("127.0.0.1", emu.port)
        async with stream:
            await stream.send_all(upgrade)
            response = await stream.receive_some(1024)
    assert response.startswith(b"HTTP/1.1 404")


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (GEMINI_PATH + "?key=sekrit", []),
        ("/" + GEMINI_PATH, [(b"x-goog-api-key", b"sekrit")]),
        (
            "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent",
            [(b"authorization", b"Bearer sekrit")],
        ),
    ],
    ids=["query-key", "double-slash-header", "vertex-bearer"],
)
async def test_credentials_in_every_accepted_place(
    path: str, headers: list[tuple[bytes, bytes]], virtual_clock: MockClock
) -> None:
    async with open_emulator(api_key="sekrit") as emu:
        async with trio_websocket.open_websocket_url(emu.url + path, extra_headers=headers) as ws:
            await ws.send_message(b'{"setup": {"model": "models/gemini-3.8-live"}}')
            assert decode_server(await ws.get_message()).setup_complete is not None
        assert "sekrit" not in repr(emu)


async def test_a_wrong_key_is_refused(virtual_clock: MockClock) -> None:
    async with open_emulator(api_key="sekrit") as emu:
        reason = await raw_close(
            emu.url, b'{"setup": {"model": "m"}}', path=GEMINI_PATH + "?key=wrong"
        )
    assert (reason.code, reason.reason) == (1007, INVALID_KEY_REASON)


# --- faults ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["close:code=1011,after=3", "close:code=1011,at=mid-reply"])
async def test_close_fault(spec: str, virtual_clock: MockClock) -> None:
    async with open_emulator(scenario=FAST, faults=[spec]) as emu, connect(emu.url) as client:
        assert (await closed_with(client.converse)).code == 1011
        if "after" in spec:
            assert len(client.received) == 3  # setupComplete and two more
        else:
            assert (
                len(
                    [m for m in client.received if m.server_content and m.server_content.model_turn]
                )
                == 2
            )


async def test_close_while_a_tool_call_is_pending(virtual_clock: MockClock) -> None:
    from emulator import ToolCallSpec

    scenario = Scenario(
        turns=(Turn(replies=(Reply(tool_calls=(ToolCallSpec(name="f"),)),)),),
        behaviour=FAST.behaviour,
    )
    async with (
        open_emulator(scenario=scenario, faults=["close:code=1011,at=tool-pending"]) as emu,
        connect(emu.url) as client,
    ):
        assert (await closed_with(client.converse)).code == 1011
        assert client.received[-1].tool_call is not None


async def test_drop_fault_closes_without_a_close_frame(virtual_clock: MockClock) -> None:
    async with (
        open_emulator(scenario=FAST, faults=["drop:at=mid-reply"]) as emu,
        connect(emu.url) as client,
    ):
        assert (await closed_with(client.converse)).code == 1006


async def test_goaway_fault_then_close(virtual_clock: MockClock) -> None:
    async with (
        open_emulator(scenario=FAST, faults=["goaway:after=1,time_left=0.2"]) as emu,
        connect(emu.url) as client,
    ):
        assert (await client.receive()).go_away == w.GoAway(time_left="0.200s")
        assert (await closed_with(client.receive)).code == 1011


async def test_malformed_fault_sends_a_frame_that_is_not_json(virtual_clock: MockClock) -> None:
    async with (
        open_emulator(scenario=FAST, faults=["malformed:at=mid-reply"]) as emu,
        connect(emu.url) as client,
    ):
        await client.send(w.RealtimeInput(text="hi"))
        with pytest.raises(RemoteProtocolError, match="not valid JSON"):
            await client.until_turn_complete()


async def test_unknown_fault_mixes_unknown_fields_and_kinds_with_known_ones(
    virtual_clock: MockClock,
) -> None:
    async with open_emulator(scenario=FAST, faults=["unknown:every=1"]) as emu:
        async with trio_websocket.open_websocket_url(emu.url + GEMINI_PATH) as ws:
            await ws.send_message(b'{"setup": {"model": "models/gemini-3.8-live"}}')
            raw = json.loads(await ws.get_message())
            assert set(raw) == {"setupComplete", "emulatorFutureMessage"}
            assert "emulatorFutureField" in raw["setupComplete"]
            assert decode_server(json.dumps(raw)).setup_complete is not None


async def test_slow_and_stall_faults(virtual_clock: MockClock) -> None:
    slow = Scenario(turns=FAST.turns, behaviour=Behaviour(pace="fast", first_audio_delay_ms=100))
    async with (
        open_emulator(scenario=slow, faults=["slow:factor=5"]) as emu,
        connect(emu.url) as client,
    ):
        start = trio.current_time()
        await client.converse()
        assert trio.current_time() - start == pytest.approx(0.5, abs=0.01)  # 5 x 100 ms
    async with (
        open_emulator(scenario=FAST, faults=["stall:at=mid-reply"]) as emu,
        connect(emu.url) as client,
    ):
        await client.send(w.RealtimeInput(text="hi"))
        with pytest.raises(trio.TooSlowError):
            await client.until(
                lambda m: m.server_content is not None and m.server_content.turn_complete, limit=0.5
            )


async def test_refused_resumption_and_faults_firing_once(virtual_clock: MockClock) -> None:
    resumable = setup(session_resumption=w.SessionResumptionConfig())
    async with open_emulator(scenario=FAST, faults=["refuse-resume"]) as emu:
        async with connect(emu.url, resumable) as client:
            handle = (await client.receive()).session_resumption_update.new_handle  # type: ignore[union-attr]
        again = setup(session_resumption=w.SessionResumptionConfig(handle=handle))
        async with trio_websocket.open_websocket_url(emu.url + GEMINI_PATH) as ws:
            from protocol import encode

            await ws.send_message(encode(again))
            reason = await closed_with(ws.get_message)
            await ws._stream.aclose()
        assert reason.code == 1008
        async with connect(emu.url, again) as client:  # the fault fired once: now it resumes
            await client.send_audio(speech())
            assert audio_of(await client.until_turn_complete())


@pytest.mark.parametrize(
    "spec",
    [
        "explode",
        "close",
        "close:code=99,after=1",
        "close:code=1005,after=1",  # reserved: reports only what happened locally
        "close:code=1016,after=1",
        "close:after=x",
        "close:at=never",
        "slow:speed=2",
        "drop:after",
    ],
)
def test_bad_fault_specs_are_refused_clearly(spec: str) -> None:
    with pytest.raises(FaultSpecError):
        parse_fault(spec)


async def _setup_over_tls(url: str, ca_path: str) -> w.ServerMessage:
    context = ssl.create_default_context(cafile=ca_path)
    async with trio_websocket.open_websocket_url(url + GEMINI_PATH, ssl_context=context) as ws:
        await ws.send_message(b'{"setup": {"model": "models/gemini-3.8-live"}}')
        return decode_server(await ws.get_message())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_python_m_emulator_prints_one_ready_line_serves_tls_and_stops_cleanly(
    signum: int, tmp_path: Path, emulator_io: str
) -> None:
    stats = tmp_path / "stats.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator",
            "--tls",
            "--io",
            emulator_io,
            "--fault",
            "unknown:every=3",
            "--stats",
            str(stats),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        word, url, ca = process.stdout.readline().split()
        assert word == "ready"
        assert url.startswith("wss://127.0.0.1:")
        assert ca.startswith("ca=")
        assert trio.run(_setup_over_tls, url, ca.removeprefix("ca=")).setup_complete is not None
    finally:
        process.send_signal(signum)
        out, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert out == ""  # nothing after the one ready line
    assert not Path(ca.removeprefix("ca=")).parent.exists()  # the throwaway CA is gone
    summary = json.loads(stats.read_text())
    assert (summary["connections"], summary["messages_in"], summary["messages_out"]) == (1, 1, 1)


def test_python_m_emulator_rejects_a_bad_scenario(tmp_path: Path) -> None:

    bad = tmp_path / "bad.toml"
    bad.write_text('[behaviour]\npaec = "fast"\n')
    result = subprocess.run(
        [sys.executable, "-m", "emulator", "--scenario", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "paec" in result.stderr


async def test_a_client_leaving_mid_reply_leaves_the_emulator_serving(
    virtual_clock: MockClock,
) -> None:
    async with open_emulator(scenario=FAST) as emu:
        async with connect(emu.url) as client:
            await client.send(w.RealtimeInput(text="hi"))
            await client.until(
                lambda m: m.server_content is not None and m.server_content.model_turn is not None
            )
        with trio.fail_after(5):  # the server notices the close
            await emu.wait_until_idle()
        async with connect(emu.url) as client:
            assert audio_of(await client.converse())


async def test_a_server_message_over_1_mib_is_never_sent(virtual_clock: MockClock) -> None:
    # A scenario built in code skips load_scenario's chunk_ms check; the send path still
    # refuses: the SDK's client would fail on such a frame.
    huge = Scenario(
        turns=(Turn(replies=(Reply(say="word " * 200),)),),
        behaviour=Behaviour(pace="fast", chunk_ms=60000, first_audio_delay_ms=0),
    )
    async with open_emulator(scenario=huge) as emu, connect(emu.url) as client:
        reason = await closed_with(client.converse)
    assert reason.code == 1011
    assert "1 MiB" in (reason.reason or "")
