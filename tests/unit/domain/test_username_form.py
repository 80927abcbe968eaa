"""The normal form of a user name: what is the same name, and what is no name at all."""

from __future__ import annotations

import sys

import pytest

from domain.bounds import MAX_USERNAME_LENGTH
from domain.errors import InputTooLarge, InvalidUsername
from domain.usernames import normalise_username, username_key


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        ("Ana", "ana"),
        ("\uff21\uff4e\uff41", "ana"),  # full width
        ("jose\u0301", "jos\u00e9"),  # decomposed é
        ("STRASSE", "strasse"),
        ("Stra\u00dfe", "strasse"),  # ß folds to ss
        ("  Mary \u00a0\u3000 Jane\u2003", "mary jane"),  # every space, trimmed and collapsed
        ("\u2460", "1"),  # circled digit one
        ("\ufb01le", "file"),  # the fi ligature
    ],
)
def test_forms_of_one_name_have_one_key(typed: str, key: str) -> None:
    assert normalise_username(typed) == key


def test_the_key_of_a_key_is_itself_for_every_character() -> None:
    # Callers may normalise before the use case does (to seal a secret to the name):
    # normalising twice must give the same name, or the secret would not open.
    for code_point in range(sys.maxunicode + 1):
        key = username_key(chr(code_point))
        assert username_key(key) == key, hex(code_point)


@pytest.mark.parametrize("text", ["", " ", "\u3000\u00a0"])
def test_an_empty_name_is_refused(text: str) -> None:
    with pytest.raises(InvalidUsername) as refused:
        normalise_username(text)
    assert refused.value.reason == "empty"


@pytest.mark.parametrize(
    "text", ["a\x00", "a\x1f", "a\x85", "a\u200d", "a\ufeff", "a\u2029", "a\U000f0000", "a\u0378"]
)
def test_control_format_private_and_unassigned_characters_are_refused(text: str) -> None:
    with pytest.raises(InvalidUsername) as refused:
        normalise_username(text)
    assert refused.value.reason == "control_character"


def test_the_bound_holds_before_and_after_normalising() -> None:
    assert normalise_username("a" * MAX_USERNAME_LENGTH) == "a" * MAX_USERNAME_LENGTH
    for text in ("a" * (MAX_USERNAME_LENGTH + 1), "\u3300" * 17):  # ㌀ is 4 letters in NFKC
        with pytest.raises(InputTooLarge):
            normalise_username(text)
