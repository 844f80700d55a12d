"""Lenient decoding of client frames, for servers (the emulator).

Real clients do not send canonical JSON: google-genai sends snake_case top-level keys
(``realtime_input``), many snake_case nested keys (``mime_type``, ``voice_config``) and
URL-safe base64, and int64 values may be strings. msgspec's camelCase Structs would silently
ignore the snake_case keys, so a frame is first normalised: every key *of the known schema*
is mapped to its canonical name and every bytes field to standard padded base64. Keys inside
free-form JSON (function args and responses, JSON schemas) are never touched. The
normalisation table is derived from the wire Structs themselves, so the two cannot drift.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from protocol.errors import RemoteProtocolError, validation_path
from protocol.wire import Blob, ClientEnvelope, ClientMessage, RealtimeInput, check_json_limits

# One entry per accepted key: (canonical name, kind, child table).
_LEAF: Final = 0
_STRUCT: Final = 1
_STRUCT_LIST: Final = 2
_BYTES: Final = 3
_Entry = tuple[str, int, "dict[str, Any] | None"]

_URLSAFE_TO_STANDARD: Final = str.maketrans("-_", "+/")
_json_decoder = msgspec.json.Decoder()


def _unwrap_optional(info: msgspec.inspect.Type) -> msgspec.inspect.Type:
    if isinstance(info, msgspec.inspect.UnionType):
        rest = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        if len(rest) == 1:
            return rest[0]
    return info


def _table_for(
    struct_type: type[msgspec.Struct], cache: dict[type, dict[str, _Entry]]
) -> dict[str, _Entry]:
    if struct_type in cache:
        return cache[struct_type]
    table: dict[str, _Entry] = {}
    cache[struct_type] = table  # before recursing, for self-referencing types
    info = msgspec.inspect.type_info(struct_type)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        field_type = _unwrap_optional(field.type)
        entry: _Entry
        if isinstance(field_type, msgspec.inspect.StructType):
            entry = (field.encode_name, _STRUCT, _table_for(field_type.cls, cache))
        elif isinstance(field_type, msgspec.inspect.ListType) and isinstance(
            field_type.item_type, msgspec.inspect.StructType
        ):
            entry = (field.encode_name, _STRUCT_LIST, _table_for(field_type.item_type.cls, cache))
        elif isinstance(field_type, msgspec.inspect.BytesType):
            entry = (field.encode_name, _BYTES, None)
        else:
            entry = (field.encode_name, _LEAF, None)
        table[field.name] = entry
        table[field.encode_name] = entry
    return table


_ENVELOPE_TABLE: Final = _table_for(ClientEnvelope, {})


def _standard_base64(text: str) -> str:
    if "-" in text or "_" in text:
        text = text.translate(_URLSAFE_TO_STANDARD)
    missing = -len(text) % 4
    if missing:
        text += "=" * missing
    return text


def _normalise(obj: Any, table: dict[str, _Entry], path: str) -> Any:
    if not isinstance(obj, dict):
        return obj  # msgspec.convert reports the type error with its path
    out: dict[str, Any] = {}
    for key, value in obj.items():
        entry = table.get(key)
        if entry is None:
            continue  # unknown field: ignored, for forward compatibility
        name, kind, child = entry
        if name in out:
            raise RemoteProtocolError(
                f"field {path}.{name} is given twice (as two spellings)", field=f"{path}.{name}"
            )
        if kind == _STRUCT:
            assert child is not None
            value = _normalise(value, child, f"{path}.{name}")
        elif kind == _STRUCT_LIST and isinstance(value, list):
            assert child is not None
            value = [_normalise(item, child, f"{path}.{name}[{i}]") for i, item in enumerate(value)]
        elif kind == _BYTES and isinstance(value, str):
            value = _standard_base64(value)
        out[name] = value
    return out


# A fast path for the message that is almost all of a server's traffic: one audio chunk,
# exactly as our encoder writes it (3x faster than the lenient path). These Structs forbid
# unknown fields, so any other shape fails fast and takes the lenient path below.
class _CanonicalBlob(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    mime_type: str
    data: bytes


class _CanonicalAudio(msgspec.Struct, forbid_unknown_fields=True):
    audio: _CanonicalBlob


class _CanonicalFrame(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    realtime_input: _CanonicalAudio


_canonical_decoder = msgspec.json.Decoder(_CanonicalFrame)


def _audio_fast_path(frame: bytes | str) -> RealtimeInput | None:
    try:
        blob = _canonical_decoder.decode(frame).realtime_input.audio
        return RealtimeInput(audio=Blob(mime_type=blob.mime_type, data=blob.data))
    except (msgspec.DecodeError, UnicodeError):  # ValidationError is a DecodeError
        return None


def decode_client(frame: bytes | str) -> ClientMessage:
    """Parse one client frame as a server must: leniently, as real clients write it.

    Accepts snake_case or camelCase keys at every level of the known schema, URL-safe or
    standard base64 with or without padding, and int64 values as numbers or strings.
    Returns the one message the frame carries (``Setup``, ``RealtimeInput``...).

    Raises ``RemoteProtocolError`` naming the offending field for a frame that is not a JSON
    object, is past the JSON limits (``protocol.limits``), has zero or several known
    top-level keys, or holds values of the wrong type.
    """
    fast = _audio_fast_path(frame)
    if fast is not None:
        return fast
    return _decode_lenient(frame)


def _decode_lenient(frame: bytes | str) -> ClientMessage:
    check_json_limits(frame)
    try:
        raw = _json_decoder.decode(frame)
    except (msgspec.DecodeError, UnicodeError) as exc:  # bad UTF-8, a lone surrogate
        raise RemoteProtocolError(f"client frame is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise RemoteProtocolError(
            f"client frame must be a JSON object, got {type(raw).__name__}", field="$"
        )
    known = [key for key in raw if key in _ENVELOPE_TABLE]
    if len(known) != 1:
        raise RemoteProtocolError(
            f"client message must have exactly one known top-level key, got {len(known)}: "
            f"{sorted(raw)}",
            field="$",
        )
    normalised = _normalise(raw, _ENVELOPE_TABLE, "$")
    try:
        envelope = msgspec.convert(normalised, ClientEnvelope, strict=False)
    except msgspec.ValidationError as exc:
        raise RemoteProtocolError(
            f"invalid client message: {exc}", field=validation_path(str(exc))
        ) from exc
    for name in envelope.__struct_fields__:
        message: ClientMessage | None = getattr(envelope, name)
        if message is not None:
            return message
    raise RemoteProtocolError("client message is empty", field="$")  # pragma: no cover
