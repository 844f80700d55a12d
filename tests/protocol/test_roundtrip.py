"""Property-based round trips: decode(encode(m)) == m for generated wire messages.

Strategies are derived from the Struct definitions, so every field of every message kind
is exercised. A second property checks the lenient path with the spellings real clients
use: the same message written with snake_case keys and unpadded URL-safe base64.
"""

from __future__ import annotations

import base64
import json
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import decode_client, decode_server, encode
from protocol import wire as w

_json_leaf = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_json_object = st.dictionaries(st.text(max_size=8), _json, max_size=3)


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    origin = get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        hints = get_type_hints(tp)
        required = {
            f: strategy_for(hints[f]) for f in tp.__struct_fields__ if f not in _optional_fields(tp)
        }
        optional = {f: strategy_for(hints[f]) for f in _optional_fields(tp)}
        return st.fixed_dictionaries(required, optional=optional).map(lambda kw: tp(**kw))
    if origin in (Union, types.UnionType):
        return st.one_of([strategy_for(a) for a in get_args(tp)])
    if origin is Literal:
        return st.sampled_from(get_args(tp))
    if origin is list:
        return st.lists(strategy_for(get_args(tp)[0]), max_size=2)
    if origin is dict:
        return _json_object
    if tp is type(None):
        return st.none()
    return {
        str: st.text(max_size=12),
        int: st.integers(-(2**53), 2**53),
        float: st.floats(allow_nan=False, allow_infinity=False),
        bool: st.booleans(),
        bytes: st.binary(max_size=24),
        Any: _json,
    }[tp]


def _optional_fields(tp: type[msgspec.Struct]) -> tuple[str, ...]:
    info = msgspec.inspect.type_info(tp)
    assert isinstance(info, msgspec.inspect.StructType)
    return tuple(field.name for field in info.fields if not field.required)


def _only(name: str) -> Any:
    return lambda value: w.RealtimeInput(**{name: value})


def _realtime_inputs() -> st.SearchStrategy[w.RealtimeInput]:
    hints = get_type_hints(w.RealtimeInput)
    return st.one_of(
        [
            strategy_for(hints[name]).filter(lambda v: v is not None).map(_only(name))
            for name in w.RealtimeInput.__struct_fields__
        ]
    )


client_messages = st.one_of(
    strategy_for(w.Setup),
    strategy_for(w.ClientContent),
    _realtime_inputs(),
    strategy_for(w.ContextUpdate),
    strategy_for(w.ToolResponse).filter(lambda m: all(r.id for r in m.function_responses or ())),
)
server_messages = strategy_for(w.ServerMessage).filter(lambda m: not m.is_empty())


def as_sdk_writes_it(value: Any) -> Any:
    """Snake_case keys of the known schema and unpadded URL-safe base64, as google-genai sends."""
    if isinstance(value, msgspec.Struct):
        return {
            name: as_sdk_writes_it(getattr(value, name))
            for name in value.__struct_fields__
            if getattr(value, name) is not None
        }
    if isinstance(value, list):
        return [as_sdk_writes_it(item) for item in value]
    if isinstance(value, bytes):
        return base64.urlsafe_b64encode(value).decode().rstrip("=")
    return value


@settings(max_examples=300, deadline=None)
@given(client_messages)
def test_client_messages_round_trip(message: w.ClientMessage) -> None:
    assert decode_client(encode(message)) == message


@settings(max_examples=300, deadline=None)
@given(client_messages)
def test_client_messages_round_trip_in_the_sdks_spelling(message: w.ClientMessage) -> None:
    frame = json.dumps({w.envelope_key(message): as_sdk_writes_it(message)})
    assert decode_client(frame) == message


@settings(max_examples=300, deadline=None)
@given(server_messages)
def test_server_messages_round_trip(message: w.ServerMessage) -> None:
    assert decode_server(encode(message)) == message
