"""Snapshots are used only once they agree with the events they stand for.

The library loads an aggregate from its latest snapshot and the events after
it, and trusts whatever the snapshots table holds. That table is not part of
the hash chain, and whoever may INSERT into it (the runtime's role) or switch
its guard off (its owner) could plant an operator with the admin role, a
password hash they know or a session of theirs: who someone is would change
with nothing in the event log to show for it.

So :class:`CheckedSnapshotRepository` checks each snapshot once before it
loads from it: the aggregate replayed from its events (from an older snapshot
already checked, or from the first event) must, at the snapshot's version, be
exactly what the snapshot holds. Each verdict is kept, by a digest of the
stored row, so a checked snapshot costs a hash on every later load, and a row
changed in place is checked again. A snapshot that disagrees is never used:
the aggregate is loaded from its events (from the newest snapshot that agrees)
and the mismatch is logged, once per process. :func:`snapshot_disagreement`
is the one comparison, which ``plantcore audit verify`` makes too.

:meth:`CheckedSnapshotRepository.get_many` loads many aggregates with two
reads for them all (their newest snapshots, their events after them), through
:class:`BatchReads`: the store's own (:mod:`eventstore.batch_reads`), or one
read per aggregate (:class:`OneByOne`, any recorder). Each is assembled and
checked exactly as a single load would.

:class:`CheckedSnapshots` puts the repository into the application and keeps
a snapshot that cannot be stored (one is there already, taken by another
process or planted ahead of the aggregate) from failing the use case whose
events were just recorded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, cast
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    LRUCache,
    ProjectorFunction,
    Repository,
    project_aggregate,
)
from eventsourcing.domain import BaseAggregate, CanMutateProtocol, DomainEvent, Snapshot
from eventsourcing.persistence import (
    AggregateRecorder,
    EventStore,
    IntegrityError,
    Mapper,
    StoredEvent,
    Transcoder,
)
from eventsourcing.utils import get_topic

log = logging.getLogger(__name__)

# The newest snapshots read on each load: the newest one checked is among them in the
# steady state (at most one newer, taken since); past them, the load replays from the start.
CANDIDATES = 3
# Verdicts kept per process: an aggregate whose verdict was dropped is checked again.
VERDICTS_KEPT = 50_000


def snapshot_disagreement(
    stored: StoredEvent, aggregate: BaseAggregate[UUID] | None, mapper: Mapper[UUID]
) -> str | None:
    """Why ``stored`` is not a snapshot of ``aggregate`` (replayed up to its version), or None."""
    if aggregate is None:
        return "no event of its aggregate is stored"
    if aggregate.version != stored.originator_version:
        return (
            f"no event of its aggregate has that version, the last before it is {aggregate.version}"
        )
    expected = _snapshot_of(aggregate)
    if stored.topic != get_topic(type(expected)):
        return f"it is stored as {stored.topic}, not as a snapshot"
    try:
        # Restored as a load restores it: an older shape of the aggregate is upcast first.
        restored = cast(Snapshot, mapper.to_domain_event(stored)).mutate(None)
    except Exception as exc:  # whatever a row made by hand makes the reading raise
        return f"it cannot be read: {type(exc).__name__}: {exc}"[:300]
    if type(restored) is not type(aggregate):
        made, found = type(aggregate).__name__, type(restored).__name__
        return f"it is a snapshot of a {found}, its events make a {made}"
    fields = differing_fields(_snapshot_of(restored).state, expected.state, mapper.transcoder)
    return f"it differs in {', '.join(fields)}" if fields else None


def differing_fields(
    found: Mapping[str, Any], expected: Mapping[str, Any], transcoder: Transcoder
) -> list[str]:
    """The names of the state's fields that differ, compared as they are stored (JSON)."""
    if _canonical(found, transcoder) == _canonical(expected, transcoder):
        return []  # the common case, at the cost of one comparison
    return [
        name.lstrip("_")
        for name in sorted({*found, *expected})
        if name not in found
        or name not in expected
        or _canonical(found[name], transcoder) != _canonical(expected[name], transcoder)
    ]


def _canonical(value: object, transcoder: Transcoder) -> str:
    # Stored and replayed states differ in form (a tuple read back is a list, keys come in
    # another order); their JSON with sorted keys does not.
    return json.dumps(json.loads(transcoder.encode(value)), sort_keys=True)


def mutated(
    aggregate: BaseAggregate[UUID] | None, events: Iterable[object]
) -> BaseAggregate[UUID] | None:
    """``aggregate`` with ``events`` applied in order (``None`` before its first event).

    The library's projector does the same, but checks each event against a
    runtime protocol first, which costs as much as applying it: a replay of
    every event of an aggregate, as a first check of its snapshot is, runs here.
    """
    for event in events:
        aggregate = cast(CanMutateProtocol[BaseAggregate[UUID]], event).mutate(aggregate)
    return aggregate


def _snapshot_of(aggregate: BaseAggregate[UUID]) -> Snapshot:
    snapshot_class: type[Snapshot] = getattr(type(aggregate), "Snapshot", Snapshot)
    return snapshot_class.take(aggregate)


def _fingerprint(stored: StoredEvent) -> bytes:
    digest = hashlib.sha256(str(stored.originator_id).encode())
    digest.update(struct.pack(">q", stored.originator_version))
    topic = stored.topic.encode()
    digest.update(struct.pack(">i", len(topic)) + topic)
    digest.update(stored.state)
    return digest.digest()


class BatchReads(Protocol):
    """Reads of many aggregates' stored rows at once, each aggregate's in version order."""

    def newest(
        self, recorder: AggregateRecorder, ids: Sequence[UUID], limit: int
    ) -> dict[UUID, list[StoredEvent]]:
        """Each aggregate's ``limit`` newest rows, newest first (absent: none stored)."""
        ...

    def after(
        self, recorder: AggregateRecorder, versions: Mapping[UUID, int | None]
    ) -> dict[UUID, list[StoredEvent]]:
        """Each aggregate's rows after its version (``None``: all), oldest first."""
        ...


class OneByOne:
    """:class:`BatchReads` for any recorder: one read per aggregate."""

    def newest(
        self, recorder: AggregateRecorder, ids: Sequence[UUID], limit: int
    ) -> dict[UUID, list[StoredEvent]]:
        return {key: list(recorder.select_events(key, desc=True, limit=limit)) for key in ids}

    def after(
        self, recorder: AggregateRecorder, versions: Mapping[UUID, int | None]
    ) -> dict[UUID, list[StoredEvent]]:
        return {key: list(recorder.select_events(key, gt=gt)) for key, gt in versions.items()}


class CheckedSnapshotRepository(Repository[UUID]):
    """The library's repository, loading from a snapshot only once it agrees with its events."""

    def __init__(
        self,
        event_store: EventStore[UUID],
        snapshot_store: EventStore[UUID] | None,
        batch_reads: BatchReads | None = None,
    ) -> None:
        super().__init__(event_store, snapshot_store=snapshot_store)
        self._verdicts: LRUCache[bytes, bool] = LRUCache(maxsize=VERDICTS_KEPT)
        self._batch_reads: BatchReads = batch_reads or OneByOne()

    def get_many(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, Any]:
        """The current version of each aggregate that is stored, by id; two reads in all."""
        ids = list(dict.fromkeys(aggregate_ids))
        if not ids:
            return {}
        snapshots = self.snapshot_store
        newest = (
            {}
            if snapshots is None
            else self._batch_reads.newest(snapshots.recorder, ids, CANDIDATES)
        )
        bases = {key: self._trusted_base(newest.get(key, [])) for key in ids}
        stored = self._batch_reads.after(
            self.event_store.recorder,
            {
                key: None if base is None else base.originator_version
                for key, (base, _) in bases.items()
            },
        )
        found: dict[UUID, Any] = {}
        for key, (base, unchecked) in bases.items():
            events = [
                cast(DomainEvent, self.event_store.mapper.to_domain_event(row))
                for row in stored.get(key, [])
            ]
            aggregate = self._assemble(base, unchecked, events, mutated)
            if aggregate is not None:
                found[key] = aggregate
        return found

    def _reconstruct_aggregate(
        self,
        aggregate_id: UUID,
        version: int | None,
        projector_func: ProjectorFunction[Any, Any],
    ) -> Any:
        snapshots = self.snapshot_store
        if snapshots is None:
            return super()._reconstruct_aggregate(aggregate_id, version, projector_func)
        project = mutated if projector_func is project_aggregate else projector_func
        newest = snapshots.recorder.select_events(
            aggregate_id, lte=version, desc=True, limit=CANDIDATES
        )
        base, unchecked = self._trusted_base(newest)
        after = None if base is None else base.originator_version
        # Every stored event of an aggregate is an aggregate event, hence a DomainEvent.
        events = cast(
            list[DomainEvent], list(self.event_store.get(aggregate_id, gt=after, lte=version))
        )
        aggregate = self._assemble(base, unchecked, events, project)
        if aggregate is None:
            raise AggregateNotFoundError(
                f"Aggregate {aggregate_id!r} version {version!r} not found."
            )
        return aggregate

    def _assemble(
        self,
        base: StoredEvent | None,
        unchecked: Sequence[StoredEvent],
        events: Sequence[DomainEvent],
        project: ProjectorFunction[Any, Any],
    ) -> Any:
        """The aggregate from ``base`` and ``events``, judging each unchecked snapshot met."""
        snapshots = self.snapshot_store
        aggregate = None
        if base is not None:
            assert snapshots is not None  # a base is one of its snapshots
            aggregate = project(None, [snapshots.mapper.to_domain_event(base)])
        # One pass over the events: each unchecked snapshot is checked where they reach it.
        applied = 0
        for snapshot in reversed(unchecked):  # oldest first
            reached = applied
            while (
                reached < len(events)
                and events[reached].originator_version <= snapshot.originator_version
            ):
                reached += 1
            aggregate = project(aggregate, events[applied:reached])
            applied = reached
            assert snapshots is not None  # an unchecked snapshot is one of its snapshots
            self._judge(snapshot, aggregate, snapshots.mapper)
        return project(aggregate, events[applied:])

    def _trusted_base(
        self, newest: Sequence[StoredEvent]
    ) -> tuple[StoredEvent | None, list[StoredEvent]]:
        """The newest snapshot that agrees with its events, and the unchecked ones after it."""
        unchecked: list[StoredEvent] = []
        for stored in newest:
            try:
                agrees = self._verdicts.get(_fingerprint(stored))
            except KeyError:
                unchecked.append(stored)
                continue
            if agrees:
                return stored, unchecked
        return None, unchecked

    def _judge(
        self, stored: StoredEvent, aggregate: BaseAggregate[UUID] | None, mapper: Mapper[UUID]
    ) -> None:
        reason = snapshot_disagreement(stored, aggregate, mapper)
        self._verdicts.put(_fingerprint(stored), reason is None)
        if reason is not None:
            log.warning(
                "the snapshot of %s at version %d disagrees with its events (%s):"
                " it is never loaded from; `plantcore audit verify` reports it",
                stored.originator_id,
                stored.originator_version,
                reason,
            )


class CheckedSnapshots(Application[UUID]):
    """An application that loads from checked snapshots, and whose snapshots never fail a save."""

    # The store's batched reads, set by the composition root before the repository is made.
    batch_reads: BatchReads | None = None

    def construct_repository(self) -> CheckedSnapshotRepository:
        # The library's aggregate cache stays off, as plantcore never configures it.
        return CheckedSnapshotRepository(self.events, self.snapshots, self.batch_reads)

    @property
    def checked_repository(self) -> CheckedSnapshotRepository:
        return cast(CheckedSnapshotRepository, self.repository)

    def take_snapshot(
        self,
        aggregate_id: UUID,
        version: int | None = None,
        projector_func: ProjectorFunction[Any, Any] = project_aggregate,
    ) -> None:
        try:
            super().take_snapshot(aggregate_id, version, projector_func)
        except IntegrityError:
            # The events that reached this version are recorded: their use case succeeded.
            # The row already there is checked against them like any other before use.
            log.warning(
                "a snapshot of %s at version %s is stored already: not replaced",
                aggregate_id,
                version,
            )
