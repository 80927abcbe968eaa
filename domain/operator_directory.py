"""The OperatorDirectory aggregate: who has an account, and logins for names that do not.

The event store finds an aggregate by id, not by kind, so the plant keeps one
directory that lists every username as it is registered (saved with the
``Registered`` event, in one transaction): in its normal form since names are
normalised, as typed before (:mod:`domain.usernames`). A failed login for a name that has
no operator cannot be recorded on an operator, so it is recorded here, with
its source address: a password-spraying attempt stays on the record too.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.bounds import clipped
from domain.usernames import username_key

DIRECTORY_NAMESPACE = UUID("0b6d2f5e-8c9a-4d3b-b1f7-5e2a9c4d7a10")


def directory_id(plant_id: str) -> UUID:
    return uuid5(DIRECTORY_NAMESPACE, "operators:" + plant_id)


class OperatorDirectory(Aggregate):
    @staticmethod
    def create_id(plant_id: str, *_: object, **__: object) -> UUID:
        return directory_id(plant_id)

    @event("Opened")
    def __init__(self, plant_id: str, *, actor: str, at: datetime) -> None:
        self._plant_id = plant_id
        self._usernames: list[str] = []

    @property
    def usernames(self) -> tuple[str, ...]:
        return tuple(self._usernames)

    def usernames_like(self, key: str) -> tuple[str, ...]:
        """The listed names whose key (:func:`~domain.usernames.username_key`) is ``key``."""
        return tuple(name for name in self._usernames if username_key(name) == key)

    def list_operator(self, username: str, *, actor: str, at: datetime) -> None:
        self._operator_listed(username=username, actor=actor, at=at)

    def record_unknown_login(self, username: str, *, source: str, at: datetime) -> None:
        # The name tried is kept as given (cut to size), so an auditor sees what was attempted.
        self._unknown_login_failed(username=clipped(username), source=source, actor="system", at=at)

    @event("OperatorListed")
    def _operator_listed(self, *, username: str, actor: str, at: datetime) -> None:
        self._usernames = sorted({*self._usernames, username})

    @event("UnknownLoginFailed")
    def _unknown_login_failed(
        self, *, username: str, source: str, actor: str, at: datetime
    ) -> None:
        """Nothing to remember: the event is the record."""
