"""Where the link connects, and with which credentials: URLs and headers as google-genai
builds them.

- ``gemini_api(model, api_key=None)``: the Gemini API; the key from the argument or the
  ``GOOGLE_API_KEY`` / ``GEMINI_API_KEY`` environment variables (``api_key_from_env``),
  sent as ``x-goog-api-key``.
- ``vertex_ai(model, project=None, location=None)``: Vertex AI; an OAuth token from
  google-auth's application default credentials, fetched again for every connection;
  project and location from the arguments or ``GOOGLE_CLOUD_PROJECT`` /
  ``GOOGLE_CLOUD_LOCATION``.
- ``custom(url, model, api_key=None)``: any Gemini Live compatible server (the emulator,
  a gateway); ``ws://`` is allowed; a URL without a path gets the Gemini API path. It
  sends only a key passed to it: never the environment's, which is meant for Google.
- ``ephemeral(token, model)``: the Gemini API with an ephemeral token (``auth_tokens/...``,
  minted by ``actors.tokens.mint_token``) on the constrained method
  ``...BidiGenerateContentConstrained``, sent as google-genai sends it (``x-goog-api-key``
  and ``Authorization: Token``) or, with ``in_query=True``, as browser clients do
  (``?access_token=``). A key passed to ``gemini_api``/``custom`` that starts with
  ``auth_tokens/`` is taken as a token the same way, as google-genai does.

Keys are checked where they come in (``check_api_key``): surrounding whitespace is
stripped (a key read from a file often ends in a newline), and a key with any other
control, space or non-ASCII character is a ``ValueError`` that names where the key came
from, never the key. Credentials never appear in an endpoint's repr, in errors or in events.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

import trio

from runtime.errors import GeminiLiveError

GEMINI_HOST = "generativelanguage.googleapis.com"
GEMINI_PATH = "/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent"
CONSTRAINED_PATH = GEMINI_PATH + "Constrained"
TOKEN_PREFIX = "auth_tokens/"
TOKEN_API_VERSION = "v1alpha"  # google-genai: ephemeral tokens are "in v1alpha only"
VERTEX_PATH = "/ws/google.cloud.aiplatform.{version}.LlmBidiService/BidiGenerateContent"


class MissingCredentials(GeminiLiveError, ValueError):
    """No credentials given or found in the environment; the message says where to put them."""


Headers = list[tuple[str, str]]


@dataclass(frozen=True)
class Endpoint:
    api: Literal["gemini", "vertex", "custom"]
    url: str
    model: str  # as it goes into setup.model
    _headers: Callable[[], Awaitable[Headers]] = field(repr=False)

    async def headers(self) -> Headers:
        """The handshake headers (fetching a fresh OAuth token for Vertex AI)."""
        return await self._headers()

    @property
    def wire_api(self) -> Literal["gemini", "vertex"]:
        """The API whose rules the server follows: Vertex AI for its path, else Gemini's."""
        return "vertex" if self.api == "vertex" or ".aiplatform." in self.url else "gemini"

    def __repr__(self) -> str:  # the query may hold a token
        shown = self.url.split("?", 1)[0]
        return f"Endpoint(api={self.api!r}, url={shown!r}, model={self.model!r})"


def _static(headers: Headers) -> Callable[[], Awaitable[Headers]]:
    async def get() -> Headers:
        return list(headers)

    return get


API_KEY_VARIABLES = ("GOOGLE_API_KEY", "GEMINI_API_KEY")


class InvalidApiKey(GeminiLiveError, ValueError):
    """A key that cannot go into a header; the message says where it came from, not what it is."""


def check_api_key(key: str, source: str) -> str:
    """``key`` without surrounding whitespace; raises ``InvalidApiKey`` (naming ``source``,
    e.g. "api_key" or "GOOGLE_API_KEY") if what is left is empty or holds a control, space
    or non-ASCII character (which would corrupt the handshake, or end up in error texts)."""
    stripped = key.strip()
    if not stripped:
        raise InvalidApiKey(f"the API key from {source} is empty")
    for position, char in enumerate(stripped):
        if not "!" <= char <= "~":
            control = ord(char) < 32 or ord(char) == 127
            kind = "a control character" if control else "a space or non-ASCII character"
            raise InvalidApiKey(
                f"the API key from {source} contains {kind} at position {position}: "
                "an API key is printable ASCII"
            )
    return stripped


def api_key_from_env() -> str | None:
    """The key from ``GOOGLE_API_KEY``, else ``GEMINI_API_KEY`` (checked), or None."""
    for name in API_KEY_VARIABLES:
        value = os.environ.get(name)
        if value:
            return check_api_key(value, name)
    return None


def gemini_api(
    model: str, api_key: str | None = None, *, api_version: str | None = None
) -> Endpoint:
    """The Gemini API (``api_version`` default v1beta); a key starting with
    ``auth_tokens/`` is an ephemeral token (``ephemeral``, default v1alpha)."""
    key = check_api_key(api_key, "api_key") if api_key else api_key_from_env()
    if not key:
        raise MissingCredentials(
            "the Gemini API needs a key: pass api_key or set GOOGLE_API_KEY (or GEMINI_API_KEY)"
        )
    if key.startswith(TOKEN_PREFIX):
        return ephemeral(key, model, api_version=api_version or TOKEN_API_VERSION)
    url = f"wss://{GEMINI_HOST}" + GEMINI_PATH.format(version=api_version or "v1beta")
    return Endpoint("gemini", url, _model_name(model), _static([("x-goog-api-key", key)]))


def ephemeral(
    token: str,
    model: str,
    *,
    api_version: str = TOKEN_API_VERSION,
    base_url: str | None = None,
    in_query: bool = False,
) -> Endpoint:
    """The constrained method with an ephemeral token (``auth_tokens/...``): google-genai's
    headers, or ``?access_token=`` with ``in_query``. ``base_url`` (``ws://`` or
    ``wss://HOST:PORT``) points it elsewhere than Google (the emulator). The token is
    checked like a key and never shown."""
    token = check_api_key(token, "token")
    if not token.startswith(TOKEN_PREFIX):
        raise InvalidApiKey(f"an ephemeral token starts with {TOKEN_PREFIX!r}")
    base = (base_url or f"wss://{GEMINI_HOST}").rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise InvalidEndpoint(f"base_url must be a ws:// or wss:// URL, not {base_url!r}")
    url = base + CONSTRAINED_PATH.format(version=api_version)
    if in_query:
        return Endpoint("gemini", f"{url}?access_token={token}", _model_name(model), _static([]))
    headers = [("x-goog-api-key", token), ("Authorization", f"Token {token}")]
    return Endpoint("gemini", url, _model_name(model), _static(headers))


def vertex_ai(
    model: str,
    project: str | None = None,
    location: str | None = None,
    *,
    api_version: str = "v1beta1",
    token: Callable[[], str] | None = None,
) -> Endpoint:
    """``token`` returns an OAuth access token (blocking is fine: it runs in a thread);
    by default google-auth's application default credentials are refreshed for it."""
    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT")
    location = location or os.environ.get("GOOGLE_CLOUD_LOCATION")
    if not project or not location:
        raise MissingCredentials(
            "Vertex AI needs a project and a location: pass them or set "
            "GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_LOCATION"
        )
    host = (
        "aiplatform.googleapis.com"
        if location == "global"
        else f"{location}-aiplatform.googleapis.com"
    )
    url = f"wss://{host}" + VERTEX_PATH.format(version=api_version)
    name = (
        model
        if model.startswith("projects/")
        else (
            f"projects/{project}/locations/{location}/publishers/google/models/"
            + model.rsplit("/", 1)[-1]
        )
    )
    fetch = token or _default_token

    async def headers() -> Headers:
        access_token = await trio.to_thread.run_sync(fetch)
        return [("Authorization", f"Bearer {access_token}"), ("x-goog-user-project", project)]

    return Endpoint("vertex", url, name, headers)


def _default_token() -> str:
    try:
        import google.auth
        import google.auth.transport.requests
    except ImportError as exc:  # pragma: no cover - google-auth comes with google-genai
        raise MissingCredentials("Vertex AI needs google-auth") from exc
    try:
        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        credentials.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
    except google.auth.exceptions.GoogleAuthError as exc:
        raise MissingCredentials(f"no usable application default credentials: {exc}") from exc
    token = credentials.token
    if not isinstance(token, str):
        raise MissingCredentials("the application default credentials gave no access token")
    return token


class InvalidEndpoint(GeminiLiveError, ValueError):
    """An endpoint URL the client cannot connect to (not ws:// or wss://, no host)."""


def custom(url: str, model: str, api_key: str | None = None) -> Endpoint:
    """Raises ``InvalidEndpoint`` for a URL that is not ``ws://HOST...`` or ``wss://HOST...``."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number
    except ValueError:
        raise InvalidEndpoint(f"endpoint {url!r} has an invalid port") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        hint = (
            " (for the emulator: ws://127.0.0.1:PORT)" if parts.scheme in ("http", "https") else ""
        )
        raise InvalidEndpoint(f"endpoint must be a ws:// or wss:// URL, not {url!r}{hint}")
    key = check_api_key(api_key, "api_key") if api_key else None
    if key is not None and key.startswith(TOKEN_PREFIX) and parts.path in ("", "/"):
        return ephemeral(key, model, base_url=url)
    if parts.path in ("", "/"):
        url = url.rstrip("/") + GEMINI_PATH.format(version="v1beta")
    headers: Headers = [("x-goog-api-key", key)] if key else []
    return Endpoint("custom", url, _model_name(model), _static(headers))


def _model_name(model: str) -> str:
    return model if model.startswith(("models/", "projects/", "publishers/")) else f"models/{model}"
