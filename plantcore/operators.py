"""Creating operators from the command line and the demo's own operator."""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyotp

from api.auth import hash_password, verify_password
from domain.application import PlantApplication
from domain.errors import OperatorExists


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    totp_secret: str

    def provisioning_uri(self) -> str:
        """The ``otpauth://`` URI an authenticator app reads (as a QR code or pasted)."""
        return str(
            pyotp.TOTP(self.totp_secret).provisioning_uri(
                name=self.username, issuer_name="plantcore"
            )
        )


def create_operator(
    app: PlantApplication,
    *,
    username: str,
    full_name: str,
    role: str,
    password: str,
    actor: str,
) -> Credentials:
    """Register an operator with a fresh TOTP secret; raises OperatorExists."""
    totp_secret = pyotp.random_base32()
    app.register_operator(
        username=username,
        full_name=full_name,
        role=role,
        password_hash=hash_password(password),
        totp_secret=totp_secret,
        actor=actor,
        at=datetime.now(UTC),
    )
    return Credentials(username, password, totp_secret)


def demo_operator(app: PlantApplication, state_dir: Path) -> Credentials:
    """The demo's operator, the same on every run against the same database.

    The credentials live in ``<state_dir>/demo-operator.json`` (outside the
    repository). If the database already knows that user name with other
    credentials (the file was deleted, or the database is shared), a new user
    name is made rather than reusing an account whose password nobody has.
    """
    path = state_dir / "demo-operator.json"
    if path.exists():
        saved = Credentials(**json.loads(path.read_text(encoding="utf-8")))
        operator = app.find_operator(saved.username)
        if operator is not None and verify_password(operator.password_hash, saved.password):
            return Credentials(saved.username, saved.password, operator.totp_secret)
    while True:
        try:
            credentials = create_operator(
                app,
                username=f"demo-{secrets.token_hex(3)}",
                full_name="Demo Operator",
                role="operator",
                password=secrets.token_urlsafe(12),
                actor="plantcore demo",
            )
        except OperatorExists:
            continue
        state_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(credentials)), encoding="utf-8")
        path.chmod(0o600)
        return credentials
