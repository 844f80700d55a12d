"""Issue 16, ephemeral tokens: minted from a server key with google-genai's auth_tokens
(``actors.tokens.mint_token``), spent by RealtimeModel on the constrained endpoint as
google-genai sends it (``x-goog-api-key`` + ``Authorization: Token``) or as browsers do
(``?access_token=``), against the emulator's minting, locks, expiry and use limits. Real
clock and TLS: google-genai's HTTP client runs in a thread."""

from __future__ import annotations

import pytest
import trio

from actors import endpoint as ep
from actors.gemini_link import CredentialsRefused
from actors.playout import CollectorSink
from actors.realtime import RealtimeModel
from actors.tokens import EphemeralToken, TokenMintError, mint_token
from actors.tools import ToolSet
from actors.transport import NativeTransport
from emulator import Emulator, open_emulator
from protocol import wire as w
from tests.actors.helpers import caused_by, reply, three_turns

SERVER_KEY = "server-key-1234"


async def mint(emu: Emulator, **options: object) -> EphemeralToken:
    return await mint_token(
        SERVER_KEY,
        base_url=emu.https_base_url,
        ssl_context=emu.client_ssl_context,
        **options,  # type: ignore[arg-type]
    )


def client(emu: Emulator, token: str, **options: object) -> RealtimeModel:
    return RealtimeModel(
        ephemeral_token=token,
        endpoint=emu.url,
        transport=NativeTransport(ssl_context=emu.client_ssl_context),
        **options,  # type: ignore[arg-type]
    )


async def converse(model: RealtimeModel) -> str:
    async with model.session(sink=CollectorSink()) as live:
        live.send_text("Hi")
        with trio.fail_after(30):
            return await reply(live)


async def test_a_minted_token_opens_one_session_and_is_spent() -> None:
    async with open_emulator(scenario=three_turns(), tls=True, api_key=SERVER_KEY) as emu:
        locked = RealtimeModel(endpoint="ws://127.0.0.1:9", instructions="Be brief.")
        token = await mint(emu, uses=1, constraints=locked.setup(ToolSet()))
        assert token.name.startswith("auth_tokens/")
        assert token.name not in repr(token)
        assert await converse(client(emu, token.name)) == "First answer."
        with pytest.raises(BaseException) as refused:  # noqa: PT011  # checked below
            await converse(client(emu, token.name))
        error = caused_by(refused.value, CredentialsRefused)
        assert error is not None
        assert "no uses left" in str(error)
        assert token.name not in str(error)
        stored = emu.tokens.find(token.name)
        assert stored is not None
        assert stored.constraints is not None  # the locked setup, as google-genai sent it
        locked_setup = stored.constraints.setup
        assert locked_setup.system_instruction == w.Content(
            role="user", parts=[w.Part(text="Be brief.")]
        )
        assert locked_setup.model.endswith("gemini-3.8-live")


async def test_the_token_can_travel_in_the_query_and_as_the_api_key() -> None:
    async with open_emulator(scenario=three_turns(), tls=True, api_key=SERVER_KEY) as emu:
        token = await mint(emu, uses=0)  # unlimited
        assert await converse(client(emu, token.name, token_in_query=True)) == "First answer."
        as_key = RealtimeModel(
            api_key=token.name,  # a key starting with auth_tokens/ is a token, as in the SDK
            endpoint=emu.url,
            transport=NativeTransport(ssl_context=emu.client_ssl_context),
        )
        assert await converse(as_key) == "First answer."
    query = ep.ephemeral(token.name, "m", in_query=True)
    assert "access_token=" in query.url
    assert token.name not in repr(query)
    header = ep.ephemeral(token.name, "m")
    assert header.url.endswith(
        "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained"
    )
    assert ("Authorization", f"Token {token.name}") in await header.headers()


async def test_an_expired_token_is_refused() -> None:
    async with open_emulator(scenario=three_turns(), tls=True, api_key=SERVER_KEY) as emu:
        token = await mint(emu, new_session_expire_in=0.5)
        await trio.sleep(0.6)
        with pytest.raises(BaseException) as refused:  # noqa: PT011  # checked below
            await converse(client(emu, token.name))
        error = caused_by(refused.value, CredentialsRefused)
        assert error is not None
        assert "expired" in str(error)


async def test_minting_errors_are_typed_and_never_show_the_key() -> None:
    async with open_emulator(scenario=three_turns(), tls=True, api_key=SERVER_KEY) as emu:
        with pytest.raises(TokenMintError, match="refused") as refused:
            await mint_token(
                "wrong-key", base_url=emu.https_base_url, ssl_context=emu.client_ssl_context
            )
        assert refused.value.status == 400
        assert "wrong-key" not in str(refused.value)
    with pytest.raises(TokenMintError, match="could not reach"):
        await mint_token(SERVER_KEY, base_url="https://127.0.0.1:9")
    with pytest.raises(ValueError, match="a token cannot mint"):
        await mint_token("auth_tokens/abc")
    with pytest.raises(ValueError, match="20 hours"):
        await mint_token(SERVER_KEY, expire_in=21 * 3600)
