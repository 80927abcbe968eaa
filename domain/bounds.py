"""How much of what a person sends the plant accepts, and keeps of what it refuses.

The event log keeps everything forever, so every text a user sends has a
length it may not exceed (docs/decisions/0022-bounded-input.md).
The use cases check at their start, so every entry point is bounded, GraphQL,
the CLI and tests alike:

- What a person asks to have recorded (a reason, a comment, a new operator's
  username and full name, a scope) is refused over its bound with
  :class:`~domain.errors.InputTooLarge`, and nothing is recorded: they can
  send a shorter one.
- What the plant records *about* a refusal or an attempt (a rejected command's
  device, tag and value, the unknown username of a failed login, the target of
  a denied action, a source address) is never refused for its size, since the
  refusal must be on record (ADR 0002): it is cut with :func:`clipped`.

A command's value must be storable as it is: a boolean, a finite float, or an
integer of 64 bits (what a PLC register, PostgreSQL's ``bigint`` and most JSON
readers hold). Anything else is kept as its clipped ``repr`` (:func:`recorded_repr`).
"""

from __future__ import annotations

from domain.errors import InputTooLarge

MAX_ID_LENGTH = 128
"""A device, tag or area id (the plant file's are far shorter)."""
MAX_USERNAME_LENGTH = 64
MAX_FULL_NAME_LENGTH = 128
MAX_TEXT_LENGTH = 500
"""A reason or a comment: a few sentences."""
MAX_SCOPE_LENGTH = len("device:") + MAX_ID_LENGTH
MAX_RECORDED_LENGTH = 200
"""The most a refusal keeps of any one text it records."""
MIN_INT64 = -(2**63)
MAX_INT64 = 2**63 - 1
CUT_MARK = "…"
# An integer of more bits has more digits than a refusal keeps.
_MAX_SHOWN_BITS = 600


def check_length(field: str, text: str, limit: int) -> None:
    """Refuse ``text`` (the argument ``field``) if it is longer than ``limit`` characters."""
    if len(text) > limit:
        raise InputTooLarge(field, len(text), limit)


def clipped(text: str, limit: int = MAX_RECORDED_LENGTH) -> str:
    """``text`` as a refusal records it: at most ``limit`` characters, a cut one ending in …"""
    if len(text) <= limit:
        return text
    return text[: limit - len(CUT_MARK)] + CUT_MARK


def fits_int64(value: int) -> bool:
    return MIN_INT64 <= value <= MAX_INT64


def recorded_repr(value: object) -> str:
    """The ``repr`` of a value that cannot be stored as it is, clipped."""
    if isinstance(value, int) and value.bit_length() > _MAX_SHOWN_BITS:
        # Its digits would be cut (or, past 4300 of them, not printed at all): its size says more.
        return f"<an integer of {value.bit_length()} bits>"
    return clipped(repr(value))


def oversized_request(device: str, tag: str, value: object) -> str | None:
    """Why a command request is too large to be decided on, or ``None``.

    A value is too large when it is an integer beyond 64 bits, or anything
    else whose ``repr`` is longer than a refusal keeps (a number never is).
    """
    for field, text in (("device", device), ("tag", tag)):
        if len(text) > MAX_ID_LENGTH:
            return f"the {field} has {len(text)} characters, more than {MAX_ID_LENGTH}"
    if isinstance(value, bool | float):
        return None
    if isinstance(value, int):
        return None if fits_int64(value) else "the value does not fit in a 64-bit integer"
    shown = len(repr(value))
    if shown > MAX_RECORDED_LENGTH:
        return f"the value has {shown} characters, more than {MAX_RECORDED_LENGTH}"
    return None
