"""The HTTP upgrade request of a Live connection: which API, which version, which credential.

Sans-IO. ``parse_handshake`` reads the path and headers the way the real endpoints are
addressed (Gemini API, ephemeral-token and Vertex paths; the SDK's leading ``//``; keys in
``x-goog-api-key``, ``?key=``, ``Authorization: Bearer|Token``, ``?access_token=``).
``credential_accepted`` compares a credential of any shape (non-ASCII, huge, control
characters) with the expected key as bytes, in constant time.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, urlsplit

from protocol.models import Api

INVALID_KEY_REASON: Final = "API key not valid. Please pass a valid API key."

_GEMINI_PATH: Final = re.compile(
    r"^/ws/google\.ai\.generativelanguage\.(v1alpha|v1beta|v1)\.GenerativeService\."
    r"(BidiGenerateContent|BidiGenerateContentConstrained)$"
)
_VERTEX_PATH: Final = re.compile(
    r"^/ws/google\.cloud\.aiplatform\.(v1beta1|v1)\.LlmBidiService/BidiGenerateContent$"
)


@dataclass(frozen=True)
class Handshake:
    """What the client's HTTP upgrade request said, checked."""

    api: Api
    version: str
    credential: str | None
    ephemeral: bool  # a token was given as such (Authorization: Token, ?access_token=)
    constrained: bool = False  # the ...BidiGenerateContentConstrained method
    key_given: bool = False  # the credential came as a key (x-goog-api-key, ?key=)

    def __repr__(self) -> str:  # never shows the credential
        return (
            f"Handshake(api={self.api!r}, version={self.version!r}, "
            f"ephemeral={self.ephemeral}, constrained={self.constrained})"
        )


def parse_handshake(path: str, headers: Iterable[tuple[bytes, bytes]]) -> Handshake | None:
    """The API and credential of an upgrade request, or None for an unknown path."""
    parts = urlsplit("/" + path.lstrip("/"))  # "//ws/..." would otherwise parse as a host
    route = parts.path
    query = parse_qs(parts.query)
    header = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}
    credential = header.get("x-goog-api-key") or next(iter(query.get("key", [])), None)
    key_given = credential is not None
    ephemeral = False
    authorization = header.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() in ("bearer", "token") and token:
        credential = credential or token.strip()
        ephemeral = scheme.lower() == "token"
    if not credential and query.get("access_token"):
        credential, ephemeral = query["access_token"][0], True
    if match := _GEMINI_PATH.match(route):
        constrained = match.group(2).endswith("Constrained")
        return Handshake(
            "gemini",
            match.group(1),
            credential,
            ephemeral or constrained,
            constrained=constrained,
            key_given=key_given,
        )
    if match := _VERTEX_PATH.match(route):
        return Handshake("vertex", match.group(1), credential, False, key_given=key_given)
    return None


def credential_accepted(credential: str | None, api_key: str | None) -> bool:
    """Whether ``credential`` is ``api_key`` (any credential when no key is set)."""
    if api_key is None:
        return True
    if credential is None:
        return False
    # As bytes: compare_digest refuses str with non-ASCII characters (TypeError).
    given = credential.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, api_key.encode("utf-8", "surrogateescape"))
