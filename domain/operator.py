"""The Operator aggregate: a person (or service) who may act on the plant.

Minimal for now: who they are, their role, the credentials the API checks, and
the last TOTP time step they used. Roles, permissions and lockout come later.

The id is derived from the username, so registering the same name twice
collides in the event store itself (a version conflict) instead of racing a
"does it exist?" check.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import CodeReused

# Fixed forever: changing it would orphan every stored operator.
OPERATOR_NAMESPACE = UUID("6f1c1d0e-5b8a-4c1e-9a57-0d3c8f7e2b41")


def operator_id(username: str) -> UUID:
    return uuid5(OPERATOR_NAMESPACE, "operator:" + username)


class Operator(Aggregate):
    @staticmethod
    def create_id(*_: Any, username: str, **__: Any) -> UUID:
        return operator_id(username)

    @event("Registered")
    def __init__(
        self,
        *,
        username: str,
        full_name: str,
        role: str,
        password_hash: str,
        totp_secret: str,
        actor: str,
        at: datetime,
    ) -> None:
        self._username = username
        self._full_name = full_name
        self._role = role
        self._password_hash = password_hash
        self._totp_secret = totp_secret
        self._last_totp_step: int | None = None

    @property
    def username(self) -> str:
        return self._username

    @property
    def full_name(self) -> str:
        return self._full_name

    @property
    def role(self) -> str:
        return self._role

    @property
    def password_hash(self) -> str:
        return self._password_hash

    @property
    def totp_secret(self) -> str:
        return self._totp_secret

    @property
    def last_totp_step(self) -> int | None:
        return self._last_totp_step

    def __repr__(self) -> str:
        # The library's repr prints every attribute: credentials must never reach a log.
        return f"Operator(username={self._username!r}, role={self._role!r}, version={self.version})"

    def use_totp_step(self, step: int, at: datetime) -> None:
        """Accept a TOTP code of time ``step`` once only (RFC 6238 §5.2).

        Steps only move forward: an older step is refused too, so a code
        captured earlier cannot be replayed while it is still in the
        verifier's tolerance window.
        """
        if self._last_totp_step is not None and step <= self._last_totp_step:
            raise CodeReused(self._username, step)
        self._totp_step_used(step=step, actor=self._username, at=at)

    @event("TotpStepUsed")
    def _totp_step_used(self, *, step: int, actor: str, at: datetime) -> None:
        self._last_totp_step = step
