"""The event log's verification state as a running plant core sees it, for the auditor's screen.

:func:`read_chain_state` reads the chain's head (its last position and hash)
and, for the last signed checkpoint, the hash the log holds at the checkpoint's
position now: a checkpoint whose hash the log no longer holds says the chain
was rewritten since it was signed. It checks no signature (the plant core does
not hold the public key) and does not recompute the chain: that is
``plantcore audit verify``, with the checkpoints and the public key
(docs/audit.md). Blocking: call it off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg import sql

from audit.checkpoints import Checkpoint


@dataclass(frozen=True)
class ChainState:
    """The head of the chain, and the last checkpoint with the log's hash at its position."""

    head_position: int | None
    head_hash: bytes | None
    checkpoint: Checkpoint | None = None
    hash_at_checkpoint: bytes | None = None

    @property
    def checkpoint_holds(self) -> bool | None:
        """Whether the log still holds the hash the checkpoint signed (None: no checkpoint)."""
        if self.checkpoint is None:
            return None
        return self.hash_at_checkpoint == self.checkpoint.chain_hash

    @property
    def events_since_checkpoint(self) -> int | None:
        """Positions written after the checkpoint's (None: no checkpoint or an empty log)."""
        if self.checkpoint is None or self.head_position is None:
            return None
        return max(0, self.head_position - self.checkpoint.position)


def read_chain_state(app: Application[UUID], checkpoint: Checkpoint | None) -> ChainState:
    """The chain's head and, for ``checkpoint``, the hash the log holds at its position."""
    recorder = app.recorder
    if not isinstance(recorder, PostgresApplicationRecorder):
        return ChainState(None, None, checkpoint)  # a log in memory (unit tests) has no chain
    table = sql.SQL("{}.{}").format(
        sql.Identifier(recorder.datastore.schema), sql.Identifier(recorder.events_table_name)
    )
    with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(
            sql.SQL(
                "SELECT notification_id, chain_hash FROM {} ORDER BY notification_id DESC LIMIT 1"
            ).format(table)
        )
        head = curs.fetchone()
        at_checkpoint = None
        if checkpoint is not None:
            curs.execute(
                sql.SQL("SELECT chain_hash FROM {} WHERE notification_id = %s").format(table),
                (checkpoint.position,),
            )
            at_checkpoint = curs.fetchone()
    return ChainState(
        head_position=None if head is None else int(head["notification_id"]),
        head_hash=_digest(head),
        checkpoint=checkpoint,
        hash_at_checkpoint=_digest(at_checkpoint),
    )


def _digest(row: Any) -> bytes | None:
    digest = None if row is None else row["chain_hash"]
    return None if digest is None else bytes(digest)
