"""Ephemeral tokens (issue 16): minted over HTTPS the way google-genai's
``client.auth_tokens.create()`` asks, spent on the constrained endpoint the way its live
client connects, with their expiry, use limits and locked setup; the HTTP path's limits
(size, time, count) at the limit and one past it."""

from __future__ import annotations

import datetime
import json
import time
import warnings
from typing import Any

import pytest
import trio
from google import genai
from google.genai import errors, types
from google.genai._common import ExperimentalWarning
from trio.testing import MockClock

from emulator import Behaviour, Emulator, Reply, Scenario, Turn, open_emulator
from emulator.handshake import INVALID_KEY_REASON
from emulator.limits import (
    MAX_FIELD_MASK_PATHS,
    MAX_TOKEN_LIFETIME_S,
    MAX_TOKEN_REQUEST_BYTES,
    MAX_TOKEN_USES,
    TOKEN_REQUEST_TIMEOUT_S,
)
from emulator.tokens import EXPIRED_REASON, USED_UP_REASON, TokenStore
from protocol import encode
from protocol import wire as w
from protocol.server_session import SetupConstraints, constrained_setup
from tests.emulator.client import (
    RawClient,
    closed_with,
    connect,
    raw_close,
    setup,
    transcript_of,
)
from tests.emulator.test_sdk_conversation import in_sdk_thread

CONSTRAINED = (
    "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained"
)
SCENARIO = Scenario(
    turns=(
        Turn(replies=(Reply(say="Hello from a token."),)),
        Turn(replies=(Reply(say="Still here."),)),
    ),
    behaviour=Behaviour(pace="fast", first_audio_delay_ms=0, connection_lifetime_s=7200),
)
SERVER_KEY = "server-key"


# --- with google-genai 3.6.1 (real clock: the SDK runs in a thread) -----------------------


def minting_client(emu: Emulator) -> genai.Client:
    options = types.HttpOptions(
        base_url=emu.https_base_url,
        api_version="v1alpha",
        client_args={"verify": emu.client_ssl_context},
    )
    return genai.Client(api_key=SERVER_KEY, http_options=options)


def token_client(emu: Emulator, token: str) -> genai.Client:
    options = types.HttpOptions(
        base_url=emu.https_base_url,
        api_version="v1alpha",
        async_client_args={"ssl": emu.client_ssl_context},
    )
    return genai.Client(api_key=token, http_options=options)


async def mint(emu: Emulator, config: types.CreateAuthTokenConfig) -> str:
    def create() -> str:
        client = minting_client(emu)  # kept: a dropped Client closes its HTTP client
        with warnings.catch_warnings():  # the SDK calls tokens experimental (once)
            warnings.simplefilter("ignore", ExperimentalWarning)
            token = client.auth_tokens.create(config=config)
        assert token.name is not None
        return str(token.name)

    return await trio.to_thread.run_sync(create)


async def converse(
    emu: Emulator, token: str, config: types.LiveConnectConfig, model: str
) -> tuple[str, list[str], str]:
    """One typed turn on a session opened with ``token``: (text, audio-or-text kinds,
    the last resumption handle)."""

    async def run() -> tuple[str, list[str], str]:
        said, kinds, handle = "", [], ""
        client = token_client(emu, token)
        with warnings.catch_warnings():  # the SDK calls tokens experimental
            warnings.simplefilter("ignore", ExperimentalWarning)
            async with client.aio.live.connect(model=model, config=config) as session:
                await session.send_realtime_input(text="hi")
                async for message in session.receive():
                    content = message.server_content
                    for part in (
                        content.model_turn.parts or [] if content and content.model_turn else []
                    ):
                        kinds.append("audio" if part.inline_data else "text")
                        said += part.text or ""
                    update = message.session_resumption_update
                    if update is not None and update.new_handle:
                        handle = update.new_handle
                # The update after turnComplete.
                async for message in session.receive():
                    update = message.session_resumption_update
                    if update is not None and update.new_handle:
                        handle = update.new_handle
                        break
        return said, kinds, handle

    return await in_sdk_thread(run)


async def test_a_token_minted_with_google_genai_opens_a_constrained_session_once() -> None:
    locked = types.LiveConnectConstraints(
        model="gemini-3.8-live",
        config=types.LiveConnectConfig(
            response_modalities=[types.Modality.TEXT],
            session_resumption=types.SessionResumptionConfig(),
        ),
    )
    client_config = types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO])
    async with open_emulator(scenario=SCENARIO, tls=True, api_key=SERVER_KEY) as emu:
        with trio.fail_after(30):
            token = await mint(
                emu, types.CreateAuthTokenConfig(uses=1, live_connect_constraints=locked)
            )
            assert token.startswith("auth_tokens/")
            said, kinds, handle = await converse(
                emu, token, client_config, "gemini-2.5-flash-native-audio-latest"
            )
            # The token's setup, not the client's: TEXT, and its resumption.
            assert (said, set(kinds)) == ("Hello from a token.", {"text"})
            assert handle
            with pytest.raises(errors.APIError) as info:  # one use only: no second session
                await converse(emu, token, client_config, "gemini-3.8-live")
            assert (info.value.code, info.value.details) == (1008, USED_UP_REASON)
            # Resuming is not a use.
            resuming = types.LiveConnectConfig(
                session_resumption=types.SessionResumptionConfig(handle=handle)
            )
            said, _, _ = await converse(emu, token, resuming, "gemini-3.8-live")
            assert said == "Still here."


async def test_minting_needs_the_server_key() -> None:
    async with open_emulator(scenario=SCENARIO, tls=True, api_key=SERVER_KEY) as emu:

        def with_wrong_key() -> None:
            options = types.HttpOptions(
                base_url=emu.https_base_url,
                api_version="v1alpha",
                client_args={"verify": emu.client_ssl_context},
            )
            client = genai.Client(api_key="wrong", http_options=options)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                client.auth_tokens.create(config=types.CreateAuthTokenConfig())

        with pytest.raises(errors.ClientError) as info, trio.fail_after(30):
            await trio.to_thread.run_sync(with_wrong_key)
    assert info.value.code == 400
    assert info.value.message == "API key not valid. Please pass a valid API key."


# --- the constrained setup, sans-IO ---------------------------------------------------------

TOKEN_SETUP = w.Setup(
    model="models/gemini-3.8-live",
    generation_config=w.GenerationConfig(temperature=0.5),
    system_instruction=w.Content(role="user", parts=[w.Part(text="Be brief.")]),
)
CLIENT_SETUP = w.Setup(
    model="models/gemini-2.5-flash-native-audio-latest",
    generation_config=w.GenerationConfig(temperature=0.9, top_k=3),
    output_audio_transcription=w.AudioTranscriptionConfig(),
    session_resumption=w.SessionResumptionConfig(handle="h1"),
)


def test_a_whole_locked_setup_replaces_the_clients_but_keeps_its_handle() -> None:
    merged = constrained_setup(CLIENT_SETUP, SetupConstraints(TOKEN_SETUP))
    assert merged == w.Setup(
        model="models/gemini-3.8-live",
        generation_config=w.GenerationConfig(temperature=0.5),
        system_instruction=TOKEN_SETUP.system_instruction,
        session_resumption=w.SessionResumptionConfig(handle="h1"),
    )


def test_a_field_mask_locks_only_its_paths() -> None:
    mask = ("model", "generationConfig.temperature", "systemInstruction.parts", "tools")
    merged = constrained_setup(CLIENT_SETUP, SetupConstraints(TOKEN_SETUP, mask))
    assert merged == w.Setup(
        model="models/gemini-3.8-live",
        generation_config=w.GenerationConfig(temperature=0.5, top_k=3),  # top_k: the client's
        system_instruction=w.Content(parts=[w.Part(text="Be brief.")]),
        output_audio_transcription=w.AudioTranscriptionConfig(),
        session_resumption=w.SessionResumptionConfig(handle="h1"),
    )
    # A locked path the token leaves unset is cleared.
    bare = constrained_setup(
        CLIENT_SETUP, SetupConstraints(w.Setup(model=""), ("generationConfig.topK",))
    )
    assert bare.generation_config == w.GenerationConfig(temperature=0.9)


# --- the HTTP path, raw -----------------------------------------------------------------------


async def post(
    emu: Emulator,
    body: bytes | dict[str, Any] = b"{}",
    *,
    path: str = "/v1alpha/auth_tokens",
    key: str | None = SERVER_KEY,
    length: int | None = None,
    chunked: bool = False,
) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    if chunked:  # in 64 KiB chunks: the server counts what arrives, not a header
        head += "Transfer-Encoding: chunked\r\n"
        pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
        data = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    else:
        head += f"Content-Length: {len(data) if length is None else length}\r\n"
    if key is not None:
        head += f"x-goog-api-key: {key}\r\n"
    stream = await trio.open_tcp_stream("127.0.0.1", emu.port)
    async with stream:
        await stream.send_all(head.encode() + b"\r\n" + data)
        response = b""
        while chunk := await stream.receive_some(65536):
            response += chunk
    status_line, _, rest = response.partition(b"\r\n")
    payload = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(payload)


async def minted(emu: Emulator, body: dict[str, Any] | None = None) -> str:
    status, answer = await post(emu, body or {})
    assert status == 200, answer
    return str(answer["name"])


def rfc3339(seconds_from_now: float) -> str:
    moment = datetime.datetime.fromtimestamp(time.time() + seconds_from_now, datetime.UTC)
    return moment.isoformat()


async def test_the_token_answer_and_errors_are_google_api_shaped(virtual_clock: MockClock) -> None:
    async with open_emulator(api_key=SERVER_KEY) as emu:
        status, answer = await post(emu, {"uses": 2})
        assert status == 200
        assert list(answer) == ["name"]
        assert answer["name"].startswith("auth_tokens/")
        cases = [
            (await post(emu, key=None), 403, "PERMISSION_DENIED"),
            (await post(emu, key="wrong"), 400, "INVALID_ARGUMENT"),
            (await post(emu, key=answer["name"]), 400, "INVALID_ARGUMENT"),  # a token is no key
            (await post(emu, path="/v1beta/auth_tokens"), 404, "NOT_FOUND"),
            (await post(emu, b"not json"), 400, "INVALID_ARGUMENT"),
            (await post(emu, {"uses": "many"}), 400, "INVALID_ARGUMENT"),
            (await post(emu, {"expireTime": "tomorrow"}), 400, "INVALID_ARGUMENT"),
            (await post(emu, {"bidiGenerateContentSetup": {"tools": 5}}), 400, "INVALID_ARGUMENT"),
        ]
    for (status, error), expected_status, expected_name in cases:
        assert (status, error["error"]["code"], error["error"]["status"]) == (
            expected_status,
            expected_status,
            expected_name,
        )


async def test_tokens_on_the_wrong_endpoint_and_unknown_tokens_are_refused(
    virtual_clock: MockClock,
) -> None:
    async with open_emulator(scenario=SCENARIO) as emu:
        token = await minted(emu)
        gemini = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
        for path, code in (
            (f"{gemini}?access_token={token}", 1008),  # "unregistered callers"
            (f"{gemini}?key={token}", 1007),  # a token used as an API key
            (f"{CONSTRAINED}?access_token=auth_tokens/unknown", 1007),
        ):
            reason = await raw_close(emu.url, encode(setup()), path=path)
            assert reason.code == code
        async with connect(emu.url, setup(), path=f"{CONSTRAINED}?access_token={token}") as client:
            got = await client.converse()  # the query form, as JS clients send it
    assert transcript_of(got, "output_transcription") == "Hello from a token."
    assert reason.reason == INVALID_KEY_REASON


async def test_uses_count_new_sessions_and_zero_is_unlimited(virtual_clock: MockClock) -> None:
    async with open_emulator(scenario=SCENARIO) as emu:
        twice = await minted(emu, {"uses": 2})
        unlimited = await minted(emu, {"uses": 0})
        for _ in range(2):
            async with connect(emu.url, setup(), path=f"{CONSTRAINED}?access_token={twice}"):
                pass
        async with connect(
            emu.url,
            setup(),
            path=f"{CONSTRAINED}?access_token={twice}",
            expect_setup_complete=False,
        ) as client:
            reason = await closed_with(client.receive)
        assert (reason.code, reason.reason) == (1008, USED_UP_REASON)
        for _ in range(5):
            async with connect(emu.url, setup(), path=f"{CONSTRAINED}?access_token={unlimited}"):
                pass


async def test_new_sessions_end_at_new_session_expire_time_and_all_at_expire_time(
    virtual_clock: MockClock,
) -> None:
    resumable = setup(session_resumption=w.SessionResumptionConfig())
    async with open_emulator(scenario=SCENARIO) as emu:
        token = await minted(emu)  # defaults: new sessions for 60 s, sessions for 30 min
        path = f"{CONSTRAINED}?access_token={token}"
        async with connect(emu.url, resumable, path=path) as client:
            handle = (await client.receive()).session_resumption_update.new_handle  # type: ignore[union-attr]
        await trio.sleep(61)
        async with connect(emu.url, setup(), path=path, expect_setup_complete=False) as client:
            reason = await closed_with(client.receive)
        assert (reason.code, reason.reason) == (1008, EXPIRED_REASON)
        again = setup(session_resumption=w.SessionResumptionConfig(handle=handle))
        async with connect(emu.url, again, path=path) as client:  # a resume still may
            start = trio.current_time()
            reason = await closed_with(lambda: read_all(client))  # ...until it expires
            assert trio.current_time() - start == pytest.approx(30 * 60 - 61, abs=1)
        assert (reason.code, reason.reason) == (1008, EXPIRED_REASON)


async def read_all(client: RawClient) -> None:
    while True:
        await client.receive()


# --- limits at the limit and one past -----------------------------------------------------


async def test_the_request_body_at_its_limit_and_one_byte_past(virtual_clock: MockClock) -> None:
    async with open_emulator() as emu:
        padded = b"{}" + b" " * (MAX_TOKEN_REQUEST_BYTES - 2)
        assert (await post(emu, padded))[0] == 200
        assert (await post(emu, padded, chunked=True))[0] == 200
        status, error = await post(emu, padded + b" ", chunked=True)
        assert (status, error["error"]["code"]) == (413, 413)
        status, _ = await post(emu, b"{}", length=MAX_TOKEN_REQUEST_BYTES + 1)  # announced
        assert status == 413


async def test_a_request_is_dropped_at_its_time_limit(virtual_clock: MockClock) -> None:
    async with open_emulator() as emu:
        stream = await trio.open_tcp_stream("127.0.0.1", emu.port)
        async with stream:
            await stream.send_all(
                b"POST /v1alpha/auth_tokens HTTP/1.1\r\nHost: x\r\nx-goog-api-key: k\r\n"
                b"Content-Length: 10\r\n\r\n{"
            )
            start = trio.current_time()
            assert await stream.receive_some(1024) == b""  # dropped, no answer
            assert trio.current_time() - start == pytest.approx(TOKEN_REQUEST_TIMEOUT_S, abs=0.1)


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        ({"uses": MAX_TOKEN_USES}, True),
        ({"uses": MAX_TOKEN_USES + 1}, False),
        ({"uses": -1}, False),
        ({"fieldMask": ",".join(["model"] * MAX_FIELD_MASK_PATHS)}, True),
        ({"fieldMask": ",".join(["model"] * (MAX_FIELD_MASK_PATHS + 1))}, False),
    ],
)
async def test_token_fields_at_their_limits_and_one_past(
    body: dict[str, Any], ok: bool, virtual_clock: MockClock
) -> None:
    async with open_emulator() as emu:
        status, _ = await post(emu, body)
    assert status == (200 if ok else 400)


async def test_token_times_at_their_limit_and_past(virtual_clock: MockClock) -> None:
    async with open_emulator() as emu:
        for field in ("expireTime", "newSessionExpireTime"):
            ok, _ = await post(emu, {field: rfc3339(MAX_TOKEN_LIFETIME_S - 60)})
            past, _ = await post(emu, {field: rfc3339(MAX_TOKEN_LIFETIME_S + 60)})
            assert (ok, past) == (200, 400)


def test_the_token_store_at_its_limit_and_one_past_forgets_the_oldest() -> None:
    store = TokenStore(now=lambda: 0.0, max_tokens=3)
    names = [store.mint(b"{}")["name"] for _ in range(3)]
    assert all(store.find(name) for name in names)
    store.mint(b"{}")
    assert len(store) == 3
    assert store.find(names[0]) is None
    assert store.find(names[1]) is not None
    assert "auth_tokens" not in repr(store.find(names[1]))  # a token's repr hides its name
