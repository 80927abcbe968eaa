"""Opaque page cursors over a log position, each marked with the list it belongs to.

A cursor of one list (``journal``, ``audit``, ``commands``) given to another is
``bad_cursor``, as is anything that does not decode: never a page from the
wrong place.
"""

from __future__ import annotations

import base64

from api.graphql.error_codes import api_error

BAD_CURSOR = "bad_cursor"


def encode_position(kind: str, position: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{position}".encode()).decode()


def decode_position(kind: str, cursor: str) -> int:
    try:
        found, position = base64.urlsafe_b64decode(cursor.encode()).decode().split(":")
        if found != kind:
            raise ValueError(found)
        return int(position)
    except (ValueError, UnicodeDecodeError):
        raise api_error(f"not a cursor of {kind}: {cursor!r}", BAD_CURSOR) from None
