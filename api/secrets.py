"""Sealing TOTP secrets before they are recorded, and opening them to check a code.

An operator's TOTP secret must be kept (the server recomputes codes), but the
event log is read by auditors and copied to NATS and to exports: it must not
hold the secret in clear. The API seals it with AES-256-GCM under the plant's
secrets key (``PLANTCORE_SECRETS_KEY`` or ``PLANTCORE_SECRETS_KEY_FILE``),
bound to the username as associated data, so a sealed secret copied onto
another operator does not open. The domain stores the sealed text as it is.

Format: ``aesgcm:v1:<base64url(nonce ‖ ciphertext ‖ tag)>``. Secrets recorded
before sealing existed reach the API as ``clear:<secret>`` (the upcast of
``Operator.Registered`` v1) and are still accepted, so old logs keep working.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.operator import CLEAR_SECRET_PREFIX

SEALED_PREFIX = "aesgcm:v1:"
KEY_BYTES = 32
_NONCE_BYTES = 12


class SecretKeyError(ValueError):
    """The secrets key is missing or malformed."""


class UnsealError(Exception):
    """A sealed secret that does not open with this key (another key, or tampered)."""


def generate_key() -> str:
    """A new secrets key, as the text ``PLANTCORE_SECRETS_KEY`` takes (base64url, 32 bytes)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


@dataclass(frozen=True)
class SecretBox:
    key: bytes

    @classmethod
    def from_text(cls, text: str) -> SecretBox:
        try:
            key = base64.urlsafe_b64decode(text.strip().encode())
        except (ValueError, TypeError) as exc:
            raise SecretKeyError("the secrets key is not base64url") from exc
        if len(key) != KEY_BYTES:
            raise SecretKeyError(f"the secrets key must be {KEY_BYTES} bytes, not {len(key)}")
        return cls(key)

    def seal(self, secret: str, *, username: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self.key).encrypt(nonce, secret.encode(), username.encode())
        return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str, *, username: str) -> str:
        if sealed.startswith(CLEAR_SECRET_PREFIX):
            return sealed.removeprefix(CLEAR_SECRET_PREFIX)
        if not sealed.startswith(SEALED_PREFIX):
            raise UnsealError("not a sealed secret")
        try:
            raw = base64.urlsafe_b64decode(sealed.removeprefix(SEALED_PREFIX).encode())
            opened = AESGCM(self.key).decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], username.encode()
            )
        except (ValueError, InvalidTag) as exc:
            raise UnsealError("the secret does not open with this key") from exc
        return opened.decode()
