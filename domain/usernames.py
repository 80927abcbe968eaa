"""User names: one account per person, however the name is typed.

``Ana``, ``ANA``, full-width ``ana`` (U+FF41 U+FF4E U+FF41) and `` ana `` name
one person, and so do the composed and decomposed forms of ``josé``. A name's
*key* is the form the plant compares names in: NFKC (compatibility forms such
as full-width letters become their plain letters, composed and decomposed
accents become one), case-folded (``casefold``, so ``ß`` and ``ss`` agree
too), NFKC again (folding can undo it), white space trimmed and each run of it
made one space. The key of a key is itself.

A new name is stored as its key (:func:`normalise_username`), so the operator
id (a uuid5 of the stored name) is the same whatever form was typed. It must
be something a person can read back: not empty, no control, format,
private-use or unassigned character (an invisible ``U+200B`` or a
right-to-left override would make two names look alike), no line or
paragraph separator, and within :data:`~domain.bounds.MAX_USERNAME_LENGTH`
before and after normalising. Accounts registered before names were
normalised keep the name they were stored with (ADR 0027).
"""

from __future__ import annotations

import unicodedata

from domain.bounds import MAX_USERNAME_LENGTH, check_length
from domain.errors import InvalidUsername

# Control, format, surrogate, private use, unassigned; line and paragraph separators.
_UNREADABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def username_key(text: str) -> str:
    """The form in which two user names are the same name; any text has one."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return " ".join(folded.split())


def normalise_username(text: str) -> str:
    """The key of a user name a person chose, or :class:`InvalidUsername` / ``InputTooLarge``."""
    check_length("username", text, MAX_USERNAME_LENGTH)
    if any(unicodedata.category(char) in _UNREADABLE_CATEGORIES for char in text):
        raise InvalidUsername(text, "control_character")
    key = username_key(text)
    if not key:
        raise InvalidUsername(text, "empty")
    check_length("username", key, MAX_USERNAME_LENGTH)
    return key
