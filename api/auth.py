"""Credentials the API checks: Argon2id passwords, JWT access tokens, TOTP codes.

Pure functions and small value objects, tested without a server:

- :func:`hash_password` / :func:`verify_password`: argon2-cffi's
  ``PasswordHasher`` (Argon2id). An unknown user is checked against a dummy
  hash so that "no such user" and "wrong password" take the same time.
- :func:`issue_token` / :func:`verify_token`: HS256 access tokens with the
  claims ``sub``, ``role``, ``aud``, ``iat``, ``exp`` and ``jti``. Every claim
  is required on the way in; anything wrong raises :class:`InvalidToken` with
  a short reason that is safe to show to the client.
- :func:`totp_step`: the RFC 6238 time step a code belongs to, within one step
  either side of ``at`` (clock drift, a code typed as it rolls over), compared
  in constant time. The domain decides whether that step may still be used.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

JWT_ALGORITHM = "HS256"
# HS256 keys shorter than the hash are weak (RFC 7518 §3.2); PyJWT warns below 32 bytes.
MIN_SECRET_BYTES = 32
TOTP_TOLERANCE_STEPS = 1
_REQUIRED_CLAIMS = ["sub", "role", "aud", "iat", "exp", "jti"]

_hasher = PasswordHasher()
# Verified against when the username is unknown, so both failures cost one Argon2 run.
_DUMMY_HASH = _hasher.hash("plantcore: no such user")


class InvalidToken(Exception):
    """An access token that must not be accepted; ``str()`` is safe to return to clients."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of a request, from a verified access token."""

    username: str
    role: str
    token_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class TokenSettings:
    secret: str
    audience: str
    ttl: timedelta = timedelta(minutes=15)

    def __post_init__(self) -> None:
        if len(self.secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"the JWT secret must have at least {MIN_SECRET_BYTES} bytes")


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: datetime


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if ``password`` matches; ``None`` (unknown user) is checked against a dummy hash."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def issue_token(settings: TokenSettings, *, username: str, role: str, now: datetime) -> IssuedToken:
    expires = int((now.astimezone(UTC) + settings.ttl).timestamp())
    claims = {
        "sub": username,
        "role": role,
        "aud": settings.audience,
        "iat": int(now.timestamp()),
        "exp": expires,
        "jti": uuid.uuid4().hex,
    }
    token = jwt.encode(claims, settings.secret, algorithm=JWT_ALGORITHM)
    return IssuedToken(token=token, expires_at=datetime.fromtimestamp(expires, UTC))


def verify_token(settings: TokenSettings, token: str) -> Principal:
    """The token's principal, checked against the real clock; raises :class:`InvalidToken`."""
    try:
        claims = jwt.decode(
            token,
            settings.secret,
            algorithms=[JWT_ALGORITHM],
            audience=settings.audience,
            options={"require": _REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("token expired") from exc
    except jwt.InvalidAudienceError as exc:
        raise InvalidToken("token not issued for this service") from exc
    except jwt.InvalidTokenError as exc:
        raise InvalidToken("invalid token") from exc
    sub, role, jti, exp = (claims.get(name) for name in ("sub", "role", "jti", "exp"))
    if not (
        isinstance(sub, str)
        and sub
        and isinstance(role, str)
        and isinstance(jti, str)
        and isinstance(exp, int)
    ):
        raise InvalidToken("invalid token")
    return Principal(
        username=sub, role=role, token_id=jti, expires_at=datetime.fromtimestamp(exp, UTC)
    )


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, or ``None``."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def totp_step(secret: str, code: str, at: datetime) -> int | None:
    """The time step ``code`` was generated for, within ±1 step of ``at``; ``None`` if none.

    Every candidate step is computed and compared with ``hmac.compare_digest``,
    so the time taken does not tell which step (if any) matched.
    """
    totp = pyotp.TOTP(secret)
    current: int = totp.timecode(at)
    candidate = code.strip()
    matched: int | None = None
    for step in range(current - TOTP_TOLERANCE_STEPS, current + TOTP_TOLERANCE_STEPS + 1):
        expected: str = totp.generate_otp(step)
        if hmac.compare_digest(expected.encode(), candidate.encode()) and matched is None:
            matched = step
    return matched
