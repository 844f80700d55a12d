"""Both transports (native and trio-websocket) over real loopback sockets (ws and wss),
and the endpoints."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import trio

from actors import endpoint as ep
from actors.gemini_link import HandshakeRejected, LinkOptions, LinkState, gemini_link
from actors.realtime import RealtimeModel
from actors.transport import (
    ConnectFailed,
    Connection,
    NativeTransport,
    TransportClosed,
    WebSocketTransport,
)
from emulator import Behaviour, Reply, Scenario, Turn, open_emulator
from protocol import encode
from protocol import wire as w
from runtime import messages as m
from runtime.supervisor import ActorContext, no_jitter
from tests.hostile import Peer, hostile_server, setup_complete

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
SCENARIO = Scenario(
    turns=(Turn(replies=(Reply(say="Over real sockets."),)), Turn(replies=(Reply(say="Again."),))),
    behaviour=Behaviour(pace="fast", first_audio_delay_ms=0),
)
SETUP = w.Setup(model="", output_audio_transcription=w.AudioTranscriptionConfig())
TRANSPORTS = pytest.mark.parametrize(
    "transport_type", [NativeTransport, WebSocketTransport], ids=["native", "trio-websocket"]
)


@TRANSPORTS
async def test_transport_round_trip_and_close_codes(
    transport_type: type[NativeTransport | WebSocketTransport],
) -> None:
    async with open_emulator(scenario=SCENARIO, faults=["close:code=1011,at=mid-reply"]) as emu:
        target = ep.custom(emu.url, MODEL)
        async with transport_type().connect(target.url, await target.headers()) as conn:
            await conn.send(encode(w.Setup(model=target.model)))
            assert "setupComplete" in str(await conn.receive())
            await conn.send(encode(w.RealtimeInput(text="hi")))
            with pytest.raises(TransportClosed) as info, trio.fail_after(10):
                await _read_until_closed(conn)
            assert (info.value.code, info.value.reason) == (1011, "injected fault")


async def _read_until_closed(conn: Connection) -> None:
    while True:
        await conn.receive()


@TRANSPORTS
async def test_transport_connect_failures_are_translated(
    transport_type: type[NativeTransport | WebSocketTransport],
) -> None:
    async with open_emulator() as emu:
        with pytest.raises(ConnectFailed) as info:
            async with transport_type().connect(emu.url + "/ws/nothing", []):
                pass
        assert info.value.status == 404
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    with pytest.raises(ConnectFailed) as refused:
        async with transport_type(connect_timeout=5).connect(f"ws://127.0.0.1:{port}/x", []):
            pass
    assert str(refused.value) == f"cannot connect to 127.0.0.1:{port}: connection refused"
    assert (refused.value.host, refused.value.cause) == (f"127.0.0.1:{port}", "connection refused")


@TRANSPORTS
async def test_dns_and_tls_failures_say_so_and_name_the_host(
    transport_type: type[NativeTransport | WebSocketTransport],
) -> None:
    # Issue 14: these were "gaierror" with no host, and an empty BrokenResourceError.
    with pytest.raises(ConnectFailed) as dns:
        async with transport_type(connect_timeout=10).connect("wss://nonexistent.invalid/x", []):
            pass
    assert dns.value.host == "nonexistent.invalid:443"
    assert dns.value.cause.startswith("DNS lookup failed")
    async with open_emulator(tls=True) as emu:
        with pytest.raises(ConnectFailed) as tls:  # the emulator's CA is not trusted here
            async with transport_type(connect_timeout=10).connect(emu.url, []):
                pass
    assert tls.value.host == f"127.0.0.1:{emu.port}"
    assert tls.value.cause.startswith("TLS certificate verification failed (")
    assert str(tls.value).startswith(f"cannot connect to 127.0.0.1:{emu.port}: TLS certificate")


@TRANSPORTS
@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
async def test_the_link_over_real_sockets_survives_a_drop(
    tls: bool, transport_type: type[NativeTransport | WebSocketTransport]
) -> None:
    async with open_emulator(scenario=SCENARIO, tls=tls, faults=["drop:at=mid-reply"]) as emu:
        transport = transport_type(ssl_context=emu.client_ssl_context)
        outgoing_send, outgoing_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
        incoming_send, incoming_receive = trio.open_memory_channel[m.InternalMessage](math.inf)
        ctx = ActorContext("link", 1, trio.Event(), lambda: None)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: gemini_link(
                    ctx,
                    endpoint=ep.custom(emu.url, MODEL),
                    setup=SETUP,
                    transport=transport,
                    outgoing=outgoing_receive,
                    incoming=incoming_send,
                    state=LinkState(),
                    options=LinkOptions(random=no_jitter),
                )
            )
            seen: list[m.InternalMessage] = []
            with trio.fail_after(20):
                await outgoing_send.send(m.TextInput(text="one"))
                while not isinstance(message := await incoming_receive.receive(), m.Reconnected):
                    seen.append(message)
                await outgoing_send.send(m.TextInput(text="two"))
                while not isinstance(message := await incoming_receive.receive(), m.TurnCompleted):
                    seen.append(message)
            assert any(isinstance(x, m.Reconnecting) and "1006" in x.reason for x in seen)
            ctx.stopping.set()


@TRANSPORTS
async def test_a_wrong_path_over_real_sockets_is_fatal(
    transport_type: type[NativeTransport | WebSocketTransport],
) -> None:
    async with open_emulator() as emu:
        _outgoing_send, outgoing_receive = trio.open_memory_channel[m.InternalMessage](1)
        incoming_send, _incoming_receive = trio.open_memory_channel[m.InternalMessage](10)
        with pytest.raises(HandshakeRejected, match="HTTP 404"):
            await gemini_link(
                ActorContext("link", 1, trio.Event(), lambda: None),
                endpoint=ep.custom(emu.url + "/ws/wrong", MODEL),
                setup=SETUP,
                transport=transport_type(),
                outgoing=outgoing_receive,
                incoming=incoming_send,
                state=LinkState(),
            )


# --- endpoints --------------------------------------------------------------------------------


async def test_gemini_api_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    with pytest.raises(ep.MissingCredentials, match="GOOGLE_API_KEY"):
        ep.gemini_api(MODEL)
    monkeypatch.setenv("GEMINI_API_KEY", "from-env-secret")
    target = ep.gemini_api(MODEL)
    assert target.url == (
        "wss://generativelanguage.googleapis.com"
        "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    )
    assert target.model == f"models/{MODEL}"
    assert await target.headers() == [("x-goog-api-key", "from-env-secret")]
    assert "secret" not in repr(target)
    assert await ep.gemini_api(MODEL, "arg-secret").headers() == [("x-goog-api-key", "arg-secret")]


async def test_vertex_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.delenv("GOOGLE_CLOUD_LOCATION", raising=False)
    with pytest.raises(ep.MissingCredentials, match="GOOGLE_CLOUD_PROJECT"):
        ep.vertex_ai("gemini-live-2.5-flash-native-audio")
    target = ep.vertex_ai(
        "gemini-live-2.5-flash-native-audio", "proj", "us-central1", token=lambda: "tok-secret"
    )
    assert target.url == (
        "wss://us-central1-aiplatform.googleapis.com"
        "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"
    )
    assert (
        target.model
        == "projects/proj/locations/us-central1/publishers/google/models/gemini-live-2.5-flash-native-audio"
    )
    assert await target.headers() == [
        ("Authorization", "Bearer tok-secret"),
        ("x-goog-user-project", "proj"),
    ]
    assert "secret" not in repr(target)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "p2")
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "global")
    assert ep.vertex_ai("m", token=lambda: "t").url.startswith("wss://aiplatform.googleapis.com/")


async def test_custom_endpoint() -> None:
    target = ep.custom("ws://127.0.0.1:9", "models/m")
    assert (
        target.url
        == "ws://127.0.0.1:9/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    )
    assert target.model == "models/m"
    assert await target.headers() == []
    assert ep.custom("wss://gw.example/live", "m").url == "wss://gw.example/live"
    with pytest.raises(ValueError, match="ws:// or wss://"):
        ep.custom("http://127.0.0.1:9", "m")


def test_the_gemini_api_url_and_key_header_match_google_genai() -> None:
    from tests.protocol.sdk import capture_client_frames

    _, uri, headers = capture_client_frames(model=MODEL)
    ours = ep.gemini_api(MODEL, "test-key")
    assert ours.url == uri.replace("//ws/", "/ws/")  # the SDK's base URL ends in '/'
    assert headers["x-goog-api-key"] == "test-key"
    assert trio.run(ours.headers) == [("x-goog-api-key", "test-key")]


# --- keys: checked where they come in, never echoed, never sent where they do not belong ------

SECRET = "AIzaSyDUMMYsecret"


@pytest.mark.parametrize("padding", ["\n", "\r\n", " ", "\t", "  \n"])
async def test_surrounding_whitespace_is_stripped_from_a_key(padding: str) -> None:
    headers = await ep.gemini_api(MODEL, SECRET + padding).headers()
    assert headers == [("x-goog-api-key", SECRET)]
    headers = await ep.custom("ws://127.0.0.1:9", MODEL, api_key=padding + SECRET).headers()
    assert headers == [("x-goog-api-key", SECRET)]


@pytest.mark.parametrize(
    ("key", "words"),
    [
        (SECRET[:5] + "\r\n" + SECRET[5:], "control character at position 5"),
        (SECRET[:5] + "\x00" + SECRET[5:], "control character at position 5"),
        (SECRET[:5] + "\x7f" + SECRET[5:], "control character at position 5"),
        (SECRET[:5] + " " + SECRET[5:], "space or non-ASCII character at position 5"),
        (SECRET[:5] + "é" + SECRET[5:], "space or non-ASCII character at position 5"),
        (" \n ", "is empty"),
    ],
)
def test_a_key_with_control_characters_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, key: str, words: str
) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    attempts: list[Callable[[], object]] = [
        lambda: ep.gemini_api(MODEL, key),
        lambda: ep.custom("ws://127.0.0.1:9", MODEL, api_key=key),
        lambda: RealtimeModel(api_key=key),
        lambda: RealtimeModel(api_key=key, endpoint="ws://127.0.0.1:9"),
    ]
    for attempt in attempts:
        with pytest.raises(ValueError, match=words) as info:
            attempt()
        assert isinstance(info.value, ep.InvalidApiKey)
        assert "from api_key" in str(info.value)
        assert SECRET[:5] not in str(info.value)
        assert SECRET[6:] not in str(info.value)
    if "\x00" in key:
        return  # an environment variable cannot hold one
    monkeypatch.setenv("GOOGLE_API_KEY", key)
    with pytest.raises(ValueError, match="the API key from GOOGLE_API_KEY") as info:
        RealtimeModel()
    assert SECRET[6:] not in str(info.value)


async def test_an_environment_key_is_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", SECRET + "\n")  # as `export K=$(cat key.txt)` leaves it
    assert await ep.gemini_api(MODEL).headers() == [("x-goog-api-key", SECRET)]


async def test_an_environment_key_never_goes_to_a_custom_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", SECRET)
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    requests: list[bytes] = []

    async def script(peer: Peer) -> None:
        requests.append(peer.request)
        await setup_complete(peer)
        await peer.until_closed()

    async with hostile_server(script) as server:
        for model in (
            RealtimeModel(endpoint=server.url),
            RealtimeModel(endpoint=server.url, api_key="explicit-key"),
        ):
            with trio.fail_after(30):
                async with model.session():
                    pass
    assert len(requests) == 2
    assert SECRET.encode() not in requests[0]
    assert b"x-goog-api-key" not in requests[0].lower()
    assert b"x-goog-api-key: explicit-key" in requests[1].lower()
    assert SECRET.encode() not in requests[1]
