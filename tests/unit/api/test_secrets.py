"""Sealed TOTP secrets: opened by their key and owner only, old clear ones still accepted."""

from __future__ import annotations

import pytest

from api.secrets import SEALED_PREFIX, SecretBox, SecretKeyError, UnsealError, generate_key
from domain.operator import CLEAR_SECRET_PREFIX

SECRET = "JBSWY3DPEHPK3PXP"


def test_a_sealed_secret_opens_with_its_key_for_its_owner_only() -> None:
    box = SecretBox.from_text(generate_key())
    sealed = box.seal(SECRET, username="ana")
    assert sealed.startswith(SEALED_PREFIX)
    assert SECRET not in sealed
    assert box.open(sealed, username="ana") == SECRET
    # Sealing twice gives two texts (a fresh nonce each time), both opening.
    again = box.seal(SECRET, username="ana")
    assert again != sealed
    assert box.open(again, username="ana") == SECRET
    with pytest.raises(UnsealError):
        box.open(sealed, username="bob")  # copied onto another operator
    with pytest.raises(UnsealError):
        SecretBox.from_text(generate_key()).open(sealed, username="ana")  # another key


def test_a_tampered_or_foreign_text_does_not_open() -> None:
    box = SecretBox.from_text(generate_key())
    sealed = box.seal(SECRET, username="ana")
    flipped = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
    for text in (flipped, SEALED_PREFIX + "%%%", "rot13:" + SECRET, SECRET):
        with pytest.raises(UnsealError):
            box.open(text, username="ana")


def test_a_secret_recorded_in_clear_before_sealing_still_opens() -> None:
    box = SecretBox.from_text(generate_key())
    assert box.open(CLEAR_SECRET_PREFIX + SECRET, username="ana") == SECRET


@pytest.mark.parametrize("key", ["", "short", "!" * 44, generate_key()[:-4]])
def test_a_malformed_key_is_refused(key: str) -> None:
    with pytest.raises(SecretKeyError):
        SecretBox.from_text(key)
