"""The shape of a graphql-transport-ws message, checked before strawberry reads it.

strawberry trusts the fields of a message to be of the protocol's kinds and
fails with a ``TypeError`` when one is not (a ``subscribe`` whose payload is
an array, an ``id`` that is an object), dropping the socket without a close
frame. Every message that reaches it is first held to the protocol
(https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md); one that
breaks it closes the socket with 4400 and the reason, as the protocol says.
"""

from __future__ import annotations

from collections.abc import Mapping

_OPTIONAL_OBJECT = (dict, type(None))
_OPTIONAL_TEXT = (str, type(None))


def shape_problem(message: Mapping[str, object]) -> str | None:
    """Why ``message`` (a JSON object) is not a graphql-transport-ws message, or None."""
    kind = message.get("type")
    if not isinstance(kind, str):
        return "the message's type must be a string"
    if kind in ("subscribe", "complete") and not isinstance(message.get("id"), str):
        return f"the {kind} message's id must be a string"
    if kind == "subscribe":
        return _subscribe_payload_problem(message.get("payload"))
    return None


def _subscribe_payload_problem(payload: object) -> str | None:
    if not isinstance(payload, dict):
        return "the subscribe message's payload must be an object"
    if not isinstance(payload.get("query"), str):
        return "the subscribe payload's query must be a string"
    if not isinstance(payload.get("variables"), _OPTIONAL_OBJECT):
        return "the subscribe payload's variables must be an object or null"
    if not isinstance(payload.get("operationName"), _OPTIONAL_TEXT):
        return "the subscribe payload's operationName must be a string or null"
    if not isinstance(payload.get("extensions"), _OPTIONAL_OBJECT):
        return "the subscribe payload's extensions must be an object or null"
    return None
