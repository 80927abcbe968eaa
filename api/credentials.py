"""Credentials the API checks: Argon2id passwords, JWT access and refresh tokens, TOTP codes.

Pure functions and small value objects, tested without a server:

- :func:`hash_password` / :func:`verify_password`: argon2-cffi's
  ``PasswordHasher`` (Argon2id). An unknown user, or a stored hash that cannot
  be read, is checked against a dummy hash, so that every refusal costs the
  same Argon2 run as a wrong password. The API runs both in its login lane
  (:mod:`api.login_lane`), never on the event loop.
- :func:`issue_token` / :func:`verify_token`: HS256 access tokens with the
  claims ``sub``, ``sid`` (the session), ``roles``, ``aud``, ``iat``, ``exp``
  and ``jti``. Every claim is required on the way in; anything wrong raises
  :class:`InvalidToken` with a short reason that is safe to show to the
  client. A valid signature is not enough: the API also checks that the
  session is still open and reads the operator's *current* roles, so a
  logout, a revocation or a revoked role takes effect at once.
- :func:`new_refresh_token` / :func:`parse_refresh_token`: opaque refresh
  tokens ``<username>.<session>.<secret>``; only a SHA-256 of the secret is
  recorded (a 256-bit random secret needs no slow hash).
- :func:`totp_step`: the RFC 6238 time step a code belongs to, within one step
  either side of ``at`` (clock drift, a code typed as it rolls over), compared
  in constant time. The domain decides whether that step may still be used.
- :func:`new_enrolment_token_part` / :func:`enrolment_token_hashes`: one-time
  enrolment tokens, one random part (a new account) or two joined by ``-`` (a
  recovery, one part per admin); only a SHA-256 of each part is recorded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
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
MIN_PASSWORD_LENGTH = 12
_REQUIRED_CLAIMS = ["sub", "sid", "roles", "aud", "iat", "exp", "jti"]
_REFRESH_SECRET_BYTES = 32
# 160 random bits per part of an enrolment token: 32 base32 characters, easy to read out.
_ENROLMENT_PART_BYTES = 20
ENROLMENT_PART_SEPARATOR = "-"

_hasher = PasswordHasher()
# Verified against when the username is unknown, so both failures cost one Argon2 run.
_DUMMY_HASH = _hasher.hash("plantcore: no such user")


class InvalidToken(Exception):
    """An access token that must not be accepted; ``str()`` is safe to return to clients."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of a request, from a verified access token."""

    username: str
    session_id: str
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
    except VerificationError:
        return False
    except InvalidHashError:
        # Refused before any work: do the work anyway, so that the refusal takes as long.
        return verify_password(None, password)


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """A presented refresh token: whose, which session, and the hash of its secret."""

    username: str
    session_id: str
    secret_hash: str


def issue_token(
    settings: TokenSettings,
    *,
    username: str,
    session_id: str,
    roles: tuple[str, ...],
    now: datetime,
) -> IssuedToken:
    expires = int((now.astimezone(UTC) + settings.ttl).timestamp())
    claims = {
        "sub": username,
        "sid": session_id,
        # For the client's display only: the API authorises on the operator's current roles.
        "roles": list(roles),
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
    sub, sid, jti, exp = (claims.get(name) for name in ("sub", "sid", "jti", "exp"))
    if not (
        isinstance(sub, str)
        and sub
        and isinstance(sid, str)
        and sid
        and isinstance(jti, str)
        and isinstance(exp, int)
    ):
        raise InvalidToken("invalid token")
    return Principal(
        username=sub, session_id=sid, token_id=jti, expires_at=datetime.fromtimestamp(exp, UTC)
    )


def new_session_id() -> str:
    return uuid.uuid4().hex


def new_enrolment_token_part() -> tuple[str, str]:
    """A part of an enrolment token (base32: letters and digits) and the hash to record."""
    part = base64.b32encode(secrets.token_bytes(_ENROLMENT_PART_BYTES)).decode()
    return part, _hash_enrolment_part(part)


def enrolment_token_hashes(token: str) -> list[str]:
    """The hashes of the parts of a presented token, read leniently (case, spaces, order)."""
    typed = "".join(token.split()).upper()
    return [_hash_enrolment_part(part) for part in typed.split(ENROLMENT_PART_SEPARATOR) if part]


def _hash_enrolment_part(part: str) -> str:
    return hashlib.sha256(part.encode()).hexdigest()


def hash_refresh_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_refresh_token(username: str, session_id: str) -> tuple[str, str]:
    """A fresh refresh token for the session and the hash to record of it."""
    secret = secrets.token_urlsafe(_REFRESH_SECRET_BYTES)
    owner = base64.urlsafe_b64encode(username.encode()).decode().rstrip("=")
    return f"{owner}.{session_id}.{secret}", hash_refresh_secret(secret)


def parse_refresh_token(token: str) -> RefreshToken:
    """The parts of a presented refresh token; raises :class:`InvalidToken` if malformed."""
    owner, _, rest = token.strip().partition(".")
    session_id, _, secret = rest.partition(".")
    if not (owner and session_id and secret):
        raise InvalidToken("invalid refresh token")
    try:
        username = base64.urlsafe_b64decode(owner + "=" * (-len(owner) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidToken("invalid refresh token") from exc
    # The decoder skips characters outside the alphabet: only an exact round trip counts.
    if not username or base64.urlsafe_b64encode(username.encode()).decode().rstrip("=") != owner:
        raise InvalidToken("invalid refresh token")
    return RefreshToken(username, session_id, hash_refresh_secret(secret))


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


def new_totp_secret() -> str:
    return str(pyotp.random_base32())


def provisioning_uri(username: str, totp_secret: str, issuer: str = "plantcore") -> str:
    """The ``otpauth://`` URI an authenticator app reads (as a QR code or pasted)."""
    return str(pyotp.TOTP(totp_secret).provisioning_uri(name=username, issuer_name=issuer))
