"""The PlantMode aggregate: whether the plant takes commands.

Three modes (seed 000, "modos de operación"):

- ``normal``: commands go through the whole safety chain;
- ``read_only``: every command is refused with that reason (an attack, a
  panic, a maintenance window), emergency actions included: the plant's
  hard-wired emergency stops do not depend on plantcore;
- ``simulation``: training and tests; only devices that run simulated
  (``simulate: true``) accept commands, so no write can reach a real PLC.

Switching is a ``ModeChanged`` event with who, when and why. A plant that
never switched is in ``normal`` mode.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import ModeReasonRequired

MODE_NAMESPACE = UUID("9d3e7a41-2f6b-4c8e-a5d0-6b1f3e8c2d57")


class Mode(StrEnum):
    NORMAL = "normal"
    READ_ONLY = "read_only"
    SIMULATION = "simulation"


def plant_mode_id(plant_id: str) -> UUID:
    return uuid5(MODE_NAMESPACE, "mode:" + plant_id)


class PlantMode(Aggregate):
    @staticmethod
    def create_id(plant_id: str, *_: object, **__: object) -> UUID:
        return plant_mode_id(plant_id)

    @event("Started")
    def __init__(self, plant_id: str, *, actor: str, at: datetime) -> None:
        self._plant_id = plant_id
        self._mode = Mode.NORMAL
        self._reason = ""
        self._changed_by = actor
        self._changed_at = at

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def changed_by(self) -> str:
        return self._changed_by

    @property
    def changed_at(self) -> datetime:
        return self._changed_at

    def change(self, mode: Mode, *, reason: str, actor: str, at: datetime) -> bool:
        if mode is self._mode:
            return False
        if not reason.strip():
            raise ModeReasonRequired
        self._mode_changed(
            mode=mode.value, previous=self._mode.value, reason=reason.strip(), actor=actor, at=at
        )
        return True

    @event("ModeChanged")
    def _mode_changed(
        self, *, mode: str, previous: str, reason: str, actor: str, at: datetime
    ) -> None:
        self._mode = Mode(mode)
        self._reason = reason
        self._changed_by = actor
        self._changed_at = at
