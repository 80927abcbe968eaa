"""Which samples the history stores, for the tags whose plant file says ``history:``.

A tag without a policy has every sample stored. A tag with one
(:class:`~plantfile.tags.HistoryPolicy`) has a sample stored when, compared
with its *reference*, the last sample stored at or before it:

- there is no reference, or it is the sample itself (written again, a no-op);
- the quality differs, or one has a value and the other none;
- ``max_interval_seconds`` have passed since the reference;
- the value moved more than ``deadband`` from the reference's.

The filter runs in the history writer, not in the supervisor: the stream
carries every sample, so the live state and the alarms see each one, and only
what is kept for the long term is thinned (ADR 0036).

The last stored sample of each tag is remembered once its transaction has
committed. A sample that memory cannot place, because there is none (the first
after a start) or because it is not later than the remembered one (late, or
delivered again), takes its reference from the table: the stored row at or
before its time. So a restart stores nothing it need not, and a batch
delivered again is decided as it was the first time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from plantfile.plant import PlantConfig
from plantfile.tags import HistoryPolicy

# (time, device, tag, value, quality, unit): a row of the history table.
Row = tuple[datetime, str, str, float | None, str, str]
TagKey = tuple[str, str]  # (device, tag)
SampleKey = tuple[str, str, datetime]  # (device, tag, time)


@dataclass(frozen=True, slots=True)
class Stored:
    """What a stored sample is compared by."""

    time: datetime
    value: float | None
    quality: str


@dataclass(frozen=True, slots=True)
class Selection:
    rows: list[Row]  # to write
    latest: dict[TagKey, Stored]  # each filtered tag's last stored sample, once written


def history_policies(plant: PlantConfig) -> dict[TagKey, HistoryPolicy]:
    return {
        (device.id, tag.name): tag.history
        for device in plant.devices
        for tag in device.tags
        if tag.history is not None
    }


def stores(policy: HistoryPolicy, reference: Stored | None, row: Row) -> bool:
    time, _, _, value, quality, _ = row
    if reference is None or reference.time == time or reference.quality != quality:
        return True
    if (value is None) != (reference.value is None):
        return True
    interval = policy.max_interval_seconds
    if interval is not None and (time - reference.time).total_seconds() >= interval:
        return True
    if value is None or reference.value is None:
        return False  # both without a value, and not due
    return abs(value - reference.value) > policy.deadband


def _stored(row: Row) -> Stored:
    return Stored(row[0], row[3], row[4])


def _latest(*candidates: Stored | None) -> Stored | None:
    return max((c for c in candidates if c is not None), key=lambda c: c.time, default=None)


class HistoryFilter:
    """Thins the samples of the tags with a history policy (see the module's docstring)."""

    def __init__(self, policies: Mapping[TagKey, HistoryPolicy]) -> None:
        self._policies = dict(policies)
        self._last: dict[TagKey, Stored] = {}

    def follow(self, policies: Mapping[TagKey, HistoryPolicy]) -> None:
        """Apply the policies of an edited plant file from the next batch on."""
        self._policies = dict(policies)

    def unplaced(self, rows: Iterable[Row]) -> list[SampleKey]:
        """The filtered samples whose reference must be read from the table."""
        unplaced = []
        for time, device, tag, *_ in rows:
            if (device, tag) not in self._policies:
                continue
            last = self._last.get((device, tag))
            if last is None or last.time > time:
                unplaced.append((device, tag, time))
        return unplaced

    def select(self, rows: Sequence[Row], references: Mapping[SampleKey, Stored]) -> Selection:
        """The rows to store; ``references`` holds the table's for :meth:`unplaced`'s samples."""
        kept: list[Row] = []
        filtered: dict[TagKey, list[Row]] = {}
        for row in rows:
            key = (row[1], row[2])
            if key in self._policies:
                filtered.setdefault(key, []).append(row)
            else:
                kept.append(row)
        latest: dict[TagKey, Stored] = {}
        for key, tag_rows in filtered.items():
            policy = self._policies[key]
            remembered = self._last.get(key)
            in_batch: Stored | None = None
            for row in sorted(tag_rows, key=lambda r: r[0]):
                reference = _latest(
                    references.get((key[0], key[1], row[0])),
                    in_batch,
                    remembered if remembered is not None and remembered.time <= row[0] else None,
                )
                if stores(policy, reference, row):
                    kept.append(row)
                    in_batch = _stored(row)
            newest = _latest(remembered, in_batch)
            if newest is not None:
                latest[key] = newest
        return Selection(kept, latest)

    def remember(self, selection: Selection) -> None:
        """Called once ``selection``'s rows are committed."""
        self._last.update(selection.latest)
