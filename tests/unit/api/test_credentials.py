"""Passwords, access tokens and TOTP codes, without any server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pyotp
import pytest

from api import credentials
from api.credentials import (
    InvalidToken,
    TokenSettings,
    bearer_token,
    hash_password,
    hash_refresh_secret,
    issue_token,
    new_refresh_token,
    parse_refresh_token,
    totp_step,
    verify_password,
    verify_token,
)

SETTINGS = TokenSettings(secret="s" * 32, audience="plantcore")
T0 = datetime(2026, 3, 1, 8, 0, 15, tzinfo=UTC)


def test_a_password_verifies_against_its_argon2id_hash_only() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct horse")
    assert not verify_password(stored, "correct horse ")
    assert not verify_password(None, "correct horse")
    assert not verify_password("not a hash", "correct horse")


def test_a_hash_that_cannot_be_read_is_refused_after_the_same_argon2_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checked: list[str] = []
    hasher = credentials._hasher

    class Counting:
        def verify(self, password_hash: str, password: str) -> bool:
            checked.append(password_hash)
            return hasher.verify(password_hash, password)

    monkeypatch.setattr(credentials, "_hasher", Counting())

    assert not verify_password("not a hash", "correct horse")
    assert not verify_password(None, "correct horse")
    # Each refusal costs one real verification, as a wrong password does.
    assert checked == ["not a hash", credentials._DUMMY_HASH, credentials._DUMMY_HASH]


def _issue(settings: TokenSettings, now: datetime, username: str = "ana") -> str:
    return issue_token(
        settings, username=username, session_id="s1", roles=("operator",), now=now
    ).token


def test_a_token_carries_the_user_and_session_and_expires_in_the_configured_time() -> None:
    now = datetime.now(UTC)
    issued = issue_token(SETTINGS, username="ana", session_id="s1", roles=("operator",), now=now)
    principal = verify_token(SETTINGS, issued.token)
    assert (principal.username, principal.session_id) == ("ana", "s1")
    assert principal.expires_at == issued.expires_at
    assert timedelta(minutes=14) < issued.expires_at - now <= timedelta(minutes=15)
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert set(claims) == {"sub", "sid", "roles", "aud", "iat", "exp", "jti"}
    assert claims["roles"] == ["operator"]
    other = _issue(SETTINGS, now)
    assert verify_token(SETTINGS, other).token_id != principal.token_id


def test_an_expired_token_is_refused() -> None:
    expired = _issue(SETTINGS, datetime.now(UTC) - timedelta(minutes=16))
    with pytest.raises(InvalidToken, match="expired"):
        verify_token(SETTINGS, expired)


def test_a_token_for_another_audience_is_refused() -> None:
    elsewhere = TokenSettings(secret=SETTINGS.secret, audience="historian")
    with pytest.raises(InvalidToken, match="not issued for this service"):
        verify_token(SETTINGS, _issue(elsewhere, datetime.now(UTC)))


def test_a_forged_or_altered_token_is_refused() -> None:
    forger = TokenSettings(secret="f" * 32, audience="plantcore")
    with pytest.raises(InvalidToken, match="invalid token"):
        verify_token(SETTINGS, _issue(forger, datetime.now(UTC)))
    unsigned = jwt.encode({"sub": "ana"}, key=None, algorithm="none")
    with pytest.raises(InvalidToken):
        verify_token(SETTINGS, unsigned)
    with pytest.raises(InvalidToken):
        verify_token(SETTINGS, "not.a.token")


def test_a_token_without_every_claim_is_refused() -> None:
    now = int(datetime.now(UTC).timestamp())
    partial = jwt.encode(
        {"sub": "ana", "aud": "plantcore", "iat": now, "exp": now + 60},
        SETTINGS.secret,
        algorithm="HS256",
    )
    with pytest.raises(InvalidToken):
        verify_token(SETTINGS, partial)


def test_a_short_signing_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenSettings(secret="short", audience="plantcore")


def test_bearer_header_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None


def test_totp_code_matches_its_step_within_one_step_either_side() -> None:
    secret = pyotp.random_base32()
    totp = pyotp.TOTP(secret)
    step = totp.timecode(T0)
    for offset in (-1, 0, 1):
        code = totp.generate_otp(step + offset)
        assert totp_step(secret, code, T0) == step + offset
    assert totp_step(secret, totp.generate_otp(step - 2), T0) is None
    assert totp_step(secret, totp.generate_otp(step + 2), T0) is None


def test_a_wrong_totp_code_matches_no_step() -> None:
    secret = pyotp.random_base32()
    totp = pyotp.TOTP(secret)
    step = totp.timecode(T0)
    valid = {totp.generate_otp(s) for s in range(step - 1, step + 2)}
    wrong = next(code for code in ("000000", "111111", "222222") if code not in valid)
    assert totp_step(secret, wrong, T0) is None
    assert totp_step(secret, "", T0) is None
    assert totp_step(secret, "12345", T0) is None


def test_a_refresh_token_names_its_owner_and_session_and_records_only_a_hash() -> None:
    token, recorded = new_refresh_token("ana.maría", "sess-1")
    presented = parse_refresh_token(token)
    assert (presented.username, presented.session_id) == ("ana.maría", "sess-1")
    assert presented.secret_hash == recorded
    secret = token.rsplit(".", 1)[1]
    assert secret not in recorded
    assert hash_refresh_secret(secret) == recorded
    assert new_refresh_token("ana.maría", "sess-1")[1] != recorded


@pytest.mark.parametrize("token", ["", "abc", "abc.def", "!!!.s.secret", ".s.x", "YW5h..x"])
def test_a_malformed_refresh_token_is_refused(token: str) -> None:
    with pytest.raises(InvalidToken, match="invalid refresh token"):
        parse_refresh_token(token)
