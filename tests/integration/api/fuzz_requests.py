"""Malformed requests for the API fuzz: raw HTTP bodies and graphql-transport-ws conversations.

:func:`raw_requests` draws what a broken or hostile client sends to ``/graphql``
over HTTP: bytes that are not JSON or not UTF-8, JSON of the wrong shape, the
wrong content type or method, documents nested or repeated past every bound,
variables nested thousands deep, bodies over the size limit.

:func:`conversations` draws graphql-transport-ws conversations in any order:
``subscribe`` before ``connection_init``, two inits, ``complete`` of unknown
ids, unknown message types, frames that are not JSON, not objects, or binary,
and subscriptions generated from the schema (:mod:`fuzz_operations`). The
authorization a ``connection_init`` carries is written :data:`TOKEN`: the
sender puts the operator's token there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from tests.integration.api.fuzz_operations import draw_many, subscriptions

TOKEN = "<token>"
SUBPROTOCOLS = ("graphql-transport-ws", "graphql-ws", None)

JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
SMALL_QUERIES = st.sampled_from(
    (
        "{ me { username } }",
        "{ plantMode { mode } }",
        "query Q { devices { id } }",
        "mutation { logout }",
        "subscription { alarmEvents { alarmId } }",
        "{ __schema { types { name } } }",
    )
)
CONTENT_TYPES = st.sampled_from(
    (
        None,
        "application/json",
        "application/json; charset=latin-1",
        "text/plain",
        "application/graphql",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "multipart/form-data; boundary=x",
        "application/xml",
    )
)


@dataclass(frozen=True)
class RawRequest:
    """One HTTP request to ``/graphql`` as written: method, content type, body, query string."""

    method: str
    content_type: str | None
    body: bytes
    params: dict[str, str] = field(default_factory=dict)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _not_utf8(text: str, junk: bytes, at: int) -> bytes:
    encoded = text.encode()
    cut = at % (len(encoded) + 1)
    return encoded[:cut] + junk + encoded[cut:]


def _nested_selection(depth: int) -> bytes:
    return _json({"query": "{" + " me {" * depth + " username" + " }" * depth + " }"})


def _nested_list_literal(depth: int) -> bytes:
    return _json({"query": "{ alarms(device: " + "[" * depth + "]" * depth + ") { tag } }"})


def _repeated_fields(count: int) -> bytes:
    return _json({"query": "{" + " __typename" * count + " }"})


def _nested_variables(depth: int) -> bytes:
    query = "query($v: JSON) { me { username } }"
    return b'{"query": %s, "variables": {"v": %s}}' % (
        json.dumps(query).encode(),
        b"[" * depth + b"]" * depth,
    )


def _padded(size: int) -> bytes:
    return b'{"query": "{ __typename }"' + b" " * size + b"}"


BODIES: st.SearchStrategy[bytes] = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    JSON_VALUES.map(_json),
    st.fixed_dictionaries(
        {"query": SMALL_QUERIES | JSON_VALUES},
        optional={"variables": JSON_VALUES, "operationName": JSON_VALUES},
    ).map(_json),
    st.builds(
        _not_utf8,
        SMALL_QUERIES.map(lambda query: json.dumps({"query": query})),
        st.sampled_from((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80")),
        st.integers(min_value=0),
    ),
    st.integers(min_value=1, max_value=3000).map(_nested_selection),
    st.integers(min_value=1, max_value=20_000).map(_nested_list_literal),
    st.integers(min_value=1000, max_value=20_000).map(_repeated_fields),
    st.integers(min_value=100, max_value=30_000).map(_nested_variables),
    st.integers(min_value=60_000, max_value=70_000).map(_padded),
)
POSTS = st.builds(RawRequest, st.just("POST"), CONTENT_TYPES, BODIES)
GETS = st.builds(
    RawRequest,
    st.just("GET"),
    st.none(),
    st.just(b""),
    st.fixed_dictionaries(
        {},
        optional={
            "query": SMALL_QUERIES | st.text(max_size=50),
            "variables": st.text(max_size=50) | JSON_VALUES.map(json.dumps),
            "operationName": st.text(max_size=10),
        },
    ),
)


def raw_requests(count: int, seed: int) -> list[RawRequest]:
    return draw_many(st.one_of(POSTS, POSTS, POSTS, GETS), count, seed)


@dataclass(frozen=True)
class Conversation:
    """What one client says on one WebSocket, in order, under one sub-protocol."""

    subprotocol: str | None
    frames: tuple[str | bytes, ...]


_IDS = st.text(max_size=8) | st.integers() | st.none()
_PAYLOADS = st.fixed_dictionaries(
    {"query": subscriptions() | SMALL_QUERIES | st.text(max_size=30)},
    optional={"variables": JSON_VALUES, "operationName": JSON_VALUES},
)
MESSAGES: st.SearchStrategy[Any] = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("connection_init")},
        optional={"payload": st.just({"authorization": f"Bearer {TOKEN}"}) | JSON_VALUES},
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(("ping", "pong"))}, optional={"payload": JSON_VALUES}
    ),
    st.fixed_dictionaries(
        {"type": st.just("subscribe"), "id": _IDS, "payload": _PAYLOADS | JSON_VALUES}
    ),
    st.fixed_dictionaries({"type": st.just("complete")}, optional={"id": _IDS}),
    st.fixed_dictionaries({"type": JSON_VALUES}),
    JSON_VALUES,
)
FRAMES: st.SearchStrategy[str | bytes] = st.one_of(
    MESSAGES.map(json.dumps),
    MESSAGES.map(json.dumps),
    MESSAGES.map(json.dumps),
    st.text(max_size=30),
    st.binary(max_size=30),
)
CONVERSATIONS = st.builds(
    Conversation,
    st.sampled_from(SUBPROTOCOLS),
    st.lists(FRAMES, min_size=1, max_size=8).map(tuple),
)


def conversations(count: int, seed: int) -> list[Conversation]:
    return draw_many(CONVERSATIONS, count, seed)
