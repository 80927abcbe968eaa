"""The PlantConfiguration aggregate: the devices a plant runs, and every change to them.

The plant file is the source; this aggregate is its history. Each time the
plant core starts or applies an edited file, the application hands it the
devices it now runs (each as a fingerprint of its whole configuration) and the
device blocks it had to leave out. A difference from what was recorded last
becomes one ``DevicesChanged`` event saying which devices were added, removed
and changed, from which file, and why any block was refused. An edit made while
the plant core was stopped is therefore recorded at the next start.

One aggregate per plant id, derived from it (like an operator's from the
username), so two plant cores of one plant contend in the event store itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

# Fixed forever: changing it would orphan every stored configuration history.
CONFIGURATION_NAMESPACE = UUID("3b0d8e44-9c1f-4f7a-b2e5-61a9d7c0f812")


def configuration_id(plant_id: str) -> UUID:
    return uuid5(CONFIGURATION_NAMESPACE, "plant:" + plant_id)


@dataclass(frozen=True, slots=True)
class DevicesChange:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]


class PlantConfiguration(Aggregate):
    @staticmethod
    def create_id(*_: Any, plant_id: str, **__: Any) -> UUID:
        return configuration_id(plant_id)

    @event("HistoryStarted")
    def __init__(self, *, plant_id: str, actor: str, at: datetime) -> None:
        self._plant_id = plant_id
        self._devices: dict[str, str] = {}
        self._problems: tuple[str, ...] = ()

    @property
    def plant_id(self) -> str:
        return self._plant_id

    @property
    def devices(self) -> Mapping[str, str]:
        """Each device's id and configuration fingerprint, as last recorded."""
        return dict(self._devices)

    def record(
        self,
        *,
        devices: Mapping[str, str],
        source: str,
        problems: Sequence[str],
        actor: str,
        at: datetime,
    ) -> DevicesChange | None:
        """Record what differs from the last recorded configuration; None when nothing does."""
        before = self._devices
        change = DevicesChange(
            added=tuple(sorted(set(devices) - set(before))),
            removed=tuple(sorted(set(before) - set(devices))),
            changed=tuple(sorted(d for d in devices if d in before and before[d] != devices[d])),
        )
        if not (change.added or change.removed or change.changed) and (
            tuple(problems) == self._problems
        ):
            return None
        self._devices_changed(
            added=list(change.added),
            removed=list(change.removed),
            changed=list(change.changed),
            devices=dict(devices),
            source=source,
            problems=list(problems),
            actor=actor,
            at=at,
        )
        return change

    @event("DevicesChanged")
    def _devices_changed(
        self,
        *,
        added: list[str],
        removed: list[str],
        changed: list[str],
        devices: dict[str, str],
        source: str,
        problems: list[str],
        actor: str,
        at: datetime,
    ) -> None:
        self._devices = dict(devices)
        self._problems = tuple(problems)
