"""Ephemeral tokens: minted from a server key with google-genai's ``auth_tokens``, spent by
a client that must not hold the key (a browser, a phone, a customer's process).

    token = await mint_token(SERVER_KEY, uses=1, constraints=model.setup(ToolSet()))
    # hand token.name to the client, which connects with it:
    RealtimeModel(api_key=token.name)          # or ephemeral_token=token.name

``mint_token`` runs google-genai's ``client.auth_tokens.create`` in a worker thread
(``POST /v1alpha/auth_tokens`` with the key in ``x-goog-api-key``) and returns an
``EphemeralToken``. ``constraints`` locks the session's setup: the whole of it, or with
``lock_fields`` only the fields set in it plus those named (google-genai's
``lock_additional_fields``). The service's rules, as google-genai documents them:
``expire_in`` (default 30 min, at most 20 h) ends every session of the token;
``new_session_expire_in`` (default 60 s) ends new sessions, not resumptions; ``uses``
(default 1; 0 is unlimited) counts new sessions, not resumptions: a session that must
reconnect without resuming needs a token with a use left.

Errors are a ``TokenMintError`` with the HTTP status; neither the key nor the token ever
appears in a repr, an error or a log.
"""

from __future__ import annotations

import datetime
import importlib
import ssl
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import trio
from google import genai
from google.genai import errors, types

from actors.endpoint import TOKEN_API_VERSION, TOKEN_PREFIX, check_api_key
from protocol import wire
from runtime.errors import GeminiLiveError

MAX_TOKEN_LIFETIME = 20 * 3600.0  # seconds: the service's limit on both expiry times


def _network_errors() -> tuple[type[BaseException], ...]:
    """What google-genai's HTTP client raises when the service is not reached: its
    ``HTTPError`` (httpx2 in google-genai 3.x, httpx before), and OS errors."""
    found: list[type[BaseException]] = [OSError]
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).HTTPError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


_NETWORK_ERRORS = _network_errors()


class TokenMintError(GeminiLiveError):
    """Minting failed: ``status`` is the HTTP status (None when the service was not
    reached), the message says why in the service's words."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class EphemeralToken:
    """A minted token. ``name`` (``auth_tokens/...``) is the credential: give it to the
    client; it is never shown in a repr."""

    name: str = field(repr=False)
    expire_time: datetime.datetime
    new_session_expire_time: datetime.datetime
    uses: int  # new sessions it opens; 0: unlimited


async def mint_token(
    api_key: str,
    *,
    uses: int = 1,
    expire_in: float = 30 * 60.0,
    new_session_expire_in: float = 60.0,
    constraints: wire.Setup | None = None,
    lock_fields: Sequence[str] | None = None,
    base_url: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    api_version: str = TOKEN_API_VERSION,
) -> EphemeralToken:
    """Mint a token with google-genai from ``api_key`` (the server's key).

    Waits for the service's answer (in a worker thread; cancelling abandons the thread,
    whose request ends with its own timeout). ``base_url`` (``https://HOST:PORT``) and
    ``ssl_context`` point it elsewhere than Google (the emulator). Raises ``ValueError``
    for a bad argument and ``TokenMintError`` when the service refuses or is not reached.
    """
    key = check_api_key(api_key, "api_key")
    if key.startswith(TOKEN_PREFIX):
        raise ValueError("a token cannot mint tokens: pass the server's API key")
    if uses < 0:
        raise ValueError("uses must be 0 (unlimited) or more")
    times = (("expire_in", expire_in), ("new_session_expire_in", new_session_expire_in))
    for name, seconds in times:
        if not 0 < seconds <= MAX_TOKEN_LIFETIME:
            raise ValueError(f"{name} must be more than 0 and at most 20 hours")
    now = datetime.datetime.now(datetime.UTC)
    expires = now + datetime.timedelta(seconds=expire_in)
    new_sessions = min(expires, now + datetime.timedelta(seconds=new_session_expire_in))
    config = types.CreateAuthTokenConfig(
        uses=uses,
        expire_time=expires,
        new_session_expire_time=new_sessions,
        live_connect_constraints=_constraints(constraints) if constraints is not None else None,
        lock_additional_fields=list(lock_fields) if lock_fields is not None else None,
    )
    options = types.HttpOptions(
        api_version=api_version,
        base_url=base_url,
        client_args={"verify": ssl_context} if ssl_context is not None else None,
    )

    def create() -> str:
        with warnings.catch_warnings():  # google-genai calls tokens experimental
            warnings.simplefilter("ignore", errors.ExperimentalWarning)
            with genai.Client(api_key=key, http_options=options) as client:
                return str(client.auth_tokens.create(config=config).name or "")

    try:
        name = await trio.to_thread.run_sync(create, abandon_on_cancel=True)
    except errors.APIError as exc:
        said = f"{exc.status or 'error'}: {exc.message}" if exc.message else str(exc.status)
        raise TokenMintError(f"the service refused to mint a token ({said})", exc.code) from exc
    except _NETWORK_ERRORS as exc:
        raise TokenMintError(f"could not reach the token service: {type(exc).__name__}") from exc
    if not name or not name.startswith(TOKEN_PREFIX):
        raise TokenMintError("the service answered without a token name")
    return EphemeralToken(name, expires, new_sessions, uses)


def _constraints(setup: wire.Setup) -> types.LiveConnectConstraints:
    """google-genai's form of a setup to lock: the model, and the rest as its
    ``LiveConnectConfig`` (whose fields are the setup's, the generation config nested)."""
    fields: dict[str, Any] = msgspec.to_builtins(setup)
    model = fields.pop("model", "") or None
    return types.LiveConnectConstraints(
        model=model, config=types.LiveConnectConfig.model_validate(fields)
    )
