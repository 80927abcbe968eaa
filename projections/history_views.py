"""The SQL views analysts read: history, the alarm journal and the command list.

Analysts use SQL tools (a notebook, a BI client), not GraphQL, so they get a
few views with stable, documented column names (docs/analyst-views.md), and
the ``analyst`` role may read those views and nothing else (ADR 0023). A view
runs with its owner's rights, so it can show what the analyst may not read
itself: the command list comes straight from the event store's table.

- ``history_raw``: every stored sample;
- ``history_1m``, ``history_1h``: the per-minute and per-hour rollups, with
  the share of good quality computed;
- ``alarm_events``: the alarm journal, one row per alarm or flood event;
- ``command_list``: one row per command with its status now.

A command's status is the one the latest event that changes it leads to
(:data:`STATUS_AFTER`; a ``ConfirmationFailed`` only when it was the final
attempt); the tests hold that to the aggregate's own status for each path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from domain.command import CommandStatus, ControlCommand
from projections.history_schema import check_table_name

COMMAND_TOPIC = f"{ControlCommand.__module__}:{ControlCommand.__qualname__}"

# The events that set a command's status, and the status each sets.
STATUS_AFTER: Mapping[str, CommandStatus] = {
    "Requested": CommandStatus.REQUESTED,
    "Rejected": CommandStatus.REJECTED,
    "ChallengeIssued": CommandStatus.AWAITING_CONFIRMATION,
    "Confirmed": CommandStatus.CONFIRMED,
    "ApprovalRequested": CommandStatus.AWAITING_APPROVAL,
    "Approved": CommandStatus.CONFIRMED,
    "ApprovalDeclined": CommandStatus.DECLINED,
    "Expired": CommandStatus.EXPIRED,
    "Cancelled": CommandStatus.CANCELLED,
    "WriteDispatched": CommandStatus.DISPATCHED,
    "WriteSucceeded": CommandStatus.SUCCEEDED,
    "WriteFailed": CommandStatus.WRITE_FAILED,
}
# Sets CONFIRMATION_FAILED only on the final attempt; ApprovalRefused sets nothing.
_FINAL_FAILURE = "ConfirmationFailed"

# The columns of the history views, in order (what ``plantcore history export`` writes too).
RAW_COLUMNS = ("time", "device", "tag", "value", "quality", "unit")
ROLLUP_COLUMNS = (
    "bucket",
    "device",
    "tag",
    "unit",
    "count",
    "good_count",
    "good_share",
    "min",
    "max",
    "avg",
    "twa",
    "first_value",
    "first_time",
    "last_value",
    "last_time",
)
_ROLLUP_SOURCES = {"good_share": "good_count::double precision / NULLIF(count, 0) AS good_share"}


@dataclass(frozen=True)
class View:
    name: str
    query: str


def _rollup(name: str, table: str) -> View:
    return View(
        name,
        f"""
        SELECT {", ".join(_ROLLUP_SOURCES.get(column, column) for column in ROLLUP_COLUMNS)}
          FROM {table}""",  # noqa: S608 (a table name of this module's)
    )


def _json_time(field: str) -> str:
    # The event store keeps a datetime as {"_type_": "datetime_iso", "_data_": "..."}.
    return f"(({field}) ->> '_data_')::timestamptz"


def _command_list(events_table: str) -> View:
    statuses = ", ".join(
        f"('{COMMAND_TOPIC}.{event}', '{status.value}')" for event, status in STATUS_AFTER.items()
    )
    state = "convert_from({alias}.state, 'UTF8')::jsonb"
    request, latest = state.format(alias="r"), state.format(alias="e")
    return View(
        "command_list",
        f"""
        SELECT r.originator_id AS command_id,
               r.notification_id AS position,
               {_json_time(request + " -> 'at'")} AS requested_at,
               {request} ->> 'actor' AS requested_by,
               {request} ->> 'device' AS device,
               {request} ->> 'tag' AS tag,
               {request} -> 'value' AS value,
               s.status,
               why.reason,
               s.read_back,
               a.approved_by,
               s.at AS status_at
          FROM {events_table} r
          CROSS JOIN LATERAL (
                SELECT coalesce(m.status, 'confirmation_failed') AS status,
                       {latest} -> 'read_back' AS read_back,
                       {_json_time(latest + " -> 'at'")} AS at
                  FROM {events_table} e
                  LEFT JOIN (VALUES {statuses}) AS m (topic, status) ON m.topic = e.topic
                 WHERE e.originator_id = r.originator_id
                   AND (m.status IS NOT NULL
                        OR (e.topic = '{COMMAND_TOPIC}.{_FINAL_FAILURE}'
                            AND ({latest} ->> 'final')::boolean))
                 ORDER BY e.originator_version DESC
                 LIMIT 1) s
          LEFT JOIN LATERAL (
                SELECT {latest} ->> 'reason' AS reason
                  FROM {events_table} e
                 WHERE e.originator_id = r.originator_id AND {latest} ? 'reason'
                 ORDER BY e.originator_version DESC
                 LIMIT 1) why ON true
          LEFT JOIN LATERAL (
                SELECT {latest} ->> 'actor' AS approved_by
                  FROM {events_table} e
                 WHERE e.originator_id = r.originator_id
                   AND e.topic = '{COMMAND_TOPIC}.Approved') a ON true
         WHERE r.topic = '{COMMAND_TOPIC}.Requested'""",  # noqa: S608 (checked names)
    )


def analyst_views(events_table: str) -> Sequence[View]:
    """Every view the analyst reads, over the tables of this database."""
    check_table_name(events_table)
    return (
        View("history_raw", f"SELECT {', '.join(RAW_COLUMNS)} FROM samples"),  # noqa: S608
        _rollup("history_1m", "samples_1m"),
        _rollup("history_1h", "samples_1h"),
        View(
            "alarm_events",
            """
            SELECT position, at, device, area, condition, priority, event, actor, alarm_id, detail
              FROM alarm_journal""",
        ),
        _command_list(events_table),
    )


async def ensure_analyst_views(pool: asyncpg.Pool, *, events_table: str) -> list[str]:
    """Make (or remake) each analyst view, after the tables they read; returns their names.

    A view is dropped and made again rather than replaced, so that a column
    renamed or removed in a later release is not refused; ``plantcore db init``
    grants them again right after.
    """
    views = analyst_views(events_table)
    async with pool.acquire() as conn, conn.transaction():
        for view in views:
            await conn.execute(f"DROP VIEW IF EXISTS {view.name}")
            await conn.execute(f"CREATE VIEW {view.name} AS {view.query}")
    return [view.name for view in views]
