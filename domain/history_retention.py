"""The record of history removed by the retention policy, for an auditor.

The history (raw samples and their minute and hour rollups) is not part of the
event store: it is a read model, and old parts of it are dropped whole, one
partition at a time, once they are older than their table's retention. Data
removed by policy must still leave a trace, so each drop is recorded here as
an aggregate of its own, with one event saying which table lost which time
range, how many rows, and under which retention.
"""

from __future__ import annotations

from datetime import datetime

from eventsourcing.domain import Aggregate, event


class HistoryPartition(Aggregate):
    @event("HistoryPartitionDropped")
    def __init__(
        self,
        *,
        table: str,
        partition: str,
        start: datetime,
        end: datetime,
        rows: int,
        retention_days: int,
        actor: str,
        at: datetime,
    ) -> None:
        self.table = table
        self.partition = partition
        self.start = start
        self.end = end
        self.rows = rows
        self.retention_days = retention_days
