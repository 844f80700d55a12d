"""Ephemeral tokens, sans-IO: minted from a server key, spent by Live sessions.

As google-genai's ``client.auth_tokens.create()`` calls it: ``POST /v1alpha/auth_tokens``
with the key in ``x-goog-api-key`` and a JSON body ``{expireTime, newSessionExpireTime,
uses, bidiGenerateContentSetup, fieldMask}`` (all optional); the answer is
``{"name": "auth_tokens/..."}`` (the other fields are input only in the SDK's types). A
client then opens ``...BidiGenerateContentConstrained`` with the token as its credential.

Semantics (google-genai's docs): ``expireTime`` (default now + 30 min, at most 20 h)
ends every session of the token; ``newSessionExpireTime`` (default now + 60 s, at most
20 h) ends new sessions, not resumptions; ``uses`` (default 1; 0: unlimited) counts new
sessions, not resumptions. A ``bidiGenerateContentSetup`` locks the session's setup
(``protocol.server_session.constrained_setup``).

What the service answers for a spent token is not documented; the emulator closes with
1008 and says which limit was hit (``TokenRefused``). Time is wall-clock seconds from
``now``. At most ``MAX_TOKENS`` tokens are kept (the oldest is forgotten first).
"""

from __future__ import annotations

import datetime
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from emulator.limits import (
    MAX_FIELD_MASK_PATHS,
    MAX_TOKEN_LIFETIME_S,
    MAX_TOKEN_USES,
    MAX_TOKENS,
)
from protocol import wire
from protocol.errors import RemoteProtocolError
from protocol.lenient import decode_client
from protocol.server_session import SetupConstraints

TOKEN_PREFIX: Final = "auth_tokens/"
DEFAULT_EXPIRE_S: Final = 30 * 60.0
DEFAULT_NEW_SESSION_EXPIRE_S: Final = 60.0
EXPIRED_REASON: Final = "The auth token has expired."
USED_UP_REASON: Final = "The auth token has no uses left."


class TokenRequestError(Exception):
    """A token request the service refuses: an HTTP ``status`` and its Google-style
    ``status_name`` (INVALID_ARGUMENT...)."""

    def __init__(self, status: int, status_name: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.status_name = status_name


class TokenRefused(Exception):
    """A token that cannot open (or keep) a session: close with ``code`` and the text."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass
class Token:
    name: str
    expire_time: float
    new_session_expire_time: float
    uses_left: int | None  # None: unlimited
    constraints: SetupConstraints | None

    def __repr__(self) -> str:  # the name is a credential
        return f"<Token expires={self.expire_time:.0f} uses_left={self.uses_left}>"


class _TokenRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    expire_time: str | None = None
    new_session_expire_time: str | None = None
    uses: int | None = None
    bidi_generate_content_setup: dict[str, Any] | None = None
    field_mask: str | None = None


class TokenStore:
    def __init__(self, *, now: Callable[[], float], max_tokens: int = MAX_TOKENS) -> None:
        self._now = now
        self._max_tokens = max_tokens
        self._tokens: OrderedDict[str, Token] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tokens)

    def mint(self, body: bytes) -> dict[str, str]:
        """A new token for a request body; the JSON answer. Raises ``TokenRequestError``
        (400) for a body that is not such a request or asks past the limits."""
        try:
            request = msgspec.json.decode(body or b"{}", type=_TokenRequest)
        except msgspec.DecodeError as exc:
            raise TokenRequestError(
                400, "INVALID_ARGUMENT", f"Invalid JSON payload: {exc}"
            ) from exc
        now = self._now()
        expire = self._time(request.expire_time, now, DEFAULT_EXPIRE_S, "expireTime")
        new_session = self._time(
            request.new_session_expire_time,
            now,
            DEFAULT_NEW_SESSION_EXPIRE_S,
            "newSessionExpireTime",
        )
        uses = 1 if request.uses is None else request.uses
        if not 0 <= uses <= MAX_TOKEN_USES:
            raise TokenRequestError(
                400, "INVALID_ARGUMENT", f"uses must be 0 (unlimited) to {MAX_TOKEN_USES}"
            )
        token = Token(
            name=TOKEN_PREFIX + secrets.token_urlsafe(24),
            expire_time=expire,
            new_session_expire_time=min(new_session, expire),
            uses_left=uses or None,
            constraints=self._constraints(request),
        )
        self._tokens[token.name] = token
        while len(self._tokens) > self._max_tokens:
            self._tokens.popitem(last=False)
        return {"name": token.name}

    def find(self, name: str | None) -> Token | None:
        """The token called ``name``, or None."""
        return self._tokens.get(name or "")

    def admit(self, token: Token, *, resuming: bool) -> None:
        """Spend one use of ``token`` on a new session (a resumption spends none). Raises
        ``TokenRefused`` (1008) for an expired or used-up token."""
        now = self._now()
        if now >= token.expire_time or (not resuming and now >= token.new_session_expire_time):
            raise TokenRefused(1008, EXPIRED_REASON)
        if resuming:
            return
        if token.uses_left is not None:
            if token.uses_left <= 0:
                raise TokenRefused(1008, USED_UP_REASON)
            token.uses_left -= 1

    def seconds_left(self, token: Token) -> float:
        """Until ``token``'s sessions end."""
        return max(0.0, token.expire_time - self._now())

    @staticmethod
    def _time(value: str | None, now: float, default: float, field: str) -> float:
        if value is None:
            return now + default
        try:
            moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError as exc:
            raise TokenRequestError(
                400, "INVALID_ARGUMENT", f"{field}: not an RFC 3339 time: {value[:40]!r}"
            ) from exc
        if moment - now > MAX_TOKEN_LIFETIME_S:
            raise TokenRequestError(
                400,
                "INVALID_ARGUMENT",
                f"{field} is more than {MAX_TOKEN_LIFETIME_S / 3600:g} hours away",
            )
        return moment

    @staticmethod
    def _constraints(request: _TokenRequest) -> SetupConstraints | None:
        locked = request.bidi_generate_content_setup
        mask = None
        if request.field_mask is not None:
            mask = tuple(path.strip() for path in request.field_mask.split(",") if path.strip())
            if len(mask) > MAX_FIELD_MASK_PATHS:
                raise TokenRequestError(
                    400, "INVALID_ARGUMENT", f"fieldMask has more than {MAX_FIELD_MASK_PATHS} paths"
                )
        if locked is None:
            return None
        try:
            setup = decode_client(msgspec.json.encode({"setup": {"model": "", **locked}}))
        except RemoteProtocolError as exc:
            raise TokenRequestError(
                400, "INVALID_ARGUMENT", f"bidiGenerateContentSetup: {exc}"
            ) from exc
        assert isinstance(setup, wire.Setup)
        return SetupConstraints(setup, mask)
