"""Export a range of the event log as NDJSON with its chain proof; verify an export offline.

An export is one JSON object per line:

1. a header: ``{"type": "header", "format": "plantcore-audit-export", "version": 1,
   "table", "from", "to" (as asked), "first", "last" (positions included),
   "anchor": {"position", "chain_hash"} (the row just before the range, null and
   32 zero bytes at the start of the log), "exported_at"}``;
2. one line per event, in position order: ``{"type": "event", "position",
   "chain_prev", "chain_hash" (hex), "originator_id", "originator_version",
   "topic", "state" (base64), "data"}``, ``data`` being the state decoded as
   JSON when it is JSON (for reading; ``state`` is what is hashed, and a
   ``data`` that differs from it is reported as a change);
3. a trailer: ``{"type": "trailer", "count", "last_position", "last_hash"}``.

:func:`verify_file` needs no database: it recomputes the chain from the
anchor. That proves the export is whole and unaltered since it was made; that
it matches the plant's real log is proven by signed checkpoints within its
range (or at its anchor), given with ``checkpoints`` and ``public_key``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from psycopg import sql
from psycopg.rows import TupleRow

from audit.chain_check import (
    DEFAULT_WINDOW,
    ChainVerifier,
    Finding,
    Kind,
    NoHashChain,
    Report,
)
from audit.checkpoints import Checkpoint, public_keys, verified_heads
from eventstore.chain import HASH_SIZE, ZERO_HASH, ChainRow, has_hash_chain, iter_chain_rows

FORMAT = "plantcore-audit-export"
VERSION = 1

# The library's record time, first in every stored event's JSON state.
_TIMESTAMP = re.compile(rb'"timestamp":\{"_type_":"datetime_iso","_data_":"([^"]+)"\}')


class ExportFormatError(ValueError):
    """An export that cannot be read as one (not JSON, a field missing or mistyped)."""


@dataclass(frozen=True)
class ExportSummary:
    count: int
    first_position: int | None
    last_position: int | None
    anchor_position: int | None
    anchor_hash: bytes
    last_hash: bytes | None


def _identifier(table: str) -> sql.Identifier:
    *schema, name = table.split(".")
    return sql.Identifier(*schema, name)


def _snapshot(conn: psycopg.Connection[TupleRow]) -> None:
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True


def event_time(state: bytes | None) -> datetime | None:
    """When the library recorded the event (its ``timestamp``), if the state says."""
    if state is None:
        return None
    found = _TIMESTAMP.search(state[:512])
    try:
        if found is not None:
            return datetime.fromisoformat(found.group(1).decode("ascii"))
        data = json.loads(state)
        return datetime.fromisoformat(data["timestamp"]["_data_"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def position_at(conninfo: str, table: str, at: datetime, *, end: bool) -> int | None:
    """The first position recorded at or after ``at`` (or, with ``end``, the last at or before).

    Positions follow commit order and record times follow it closely, not
    exactly (an event is timed when made, numbered when committed): the range
    is contiguous in positions, and may hold an event a few milliseconds
    outside the times asked. It scans from the nearer end of the log.
    """
    if at.tzinfo is None:
        raise ValueError("a time needs a time zone (e.g. 2026-03-01T08:00:00Z)")
    query = sql.SQL("SELECT notification_id, state FROM {} ORDER BY notification_id {}").format(
        _identifier(table), sql.SQL("DESC" if end else "ASC")
    )
    with psycopg.connect(conninfo) as conn:
        _snapshot(conn)
        with conn.cursor(name="plantcore_audit_times") as cursor:
            cursor.itersize = 2000
            cursor.execute(query)
            for position, state in cursor:
                recorded = event_time(None if state is None else bytes(state))
                if recorded is None:
                    continue
                if (recorded <= at) if end else (recorded >= at):
                    return int(position)
    return None


def export_range(
    conninfo: str,
    table: str,
    out: TextIO,
    *,
    first: int | None = None,
    last: int | None = None,
    now: datetime | None = None,
) -> ExportSummary:
    """Write positions ``first``..``last`` (inclusive; None: from the start, to the head)."""
    table_id = _identifier(table)
    with psycopg.connect(conninfo) as conn:
        _snapshot(conn)
        if not has_hash_chain(conn, table):
            raise NoHashChain(f"{table} has no hash chain: start the plant core once to install it")
        low = -(2**63) if first is None else first
        high = 2**63 - 1 if last is None else last
        bounds = conn.execute(
            sql.SQL(
                "SELECT min(notification_id), max(notification_id) FROM {}"
                " WHERE notification_id BETWEEN %s AND %s"
            ).format(table_id),
            (low, high),
        ).fetchone()
        assert bounds is not None
        anchor = conn.execute(
            sql.SQL(
                "SELECT notification_id, chain_hash FROM {} WHERE notification_id < %s"
                " ORDER BY notification_id DESC LIMIT 1"
            ).format(table_id),
            (low if bounds[0] is None else bounds[0],),
        ).fetchone()
        anchor_position = None if anchor is None else int(anchor[0])
        anchor_hash = ZERO_HASH if anchor is None or anchor[1] is None else bytes(anchor[1])
        return write_export(
            out,
            iter_chain_rows(conn, table, first=low, last=high),
            table=table,
            asked=(first, last),
            first_position=bounds[0],
            last_position=bounds[1],
            anchor_position=anchor_position,
            anchor_hash=anchor_hash,
            exported_at=now or datetime.now(UTC),
        )


def write_export(
    out: TextIO,
    rows: Iterable[ChainRow],
    *,
    table: str,
    asked: tuple[int | None, int | None],
    first_position: int | None,
    last_position: int | None,
    anchor_position: int | None,
    anchor_hash: bytes,
    exported_at: datetime,
) -> ExportSummary:
    """Write the header, one line per row (in position order) and the trailer."""
    _write(
        out,
        {
            "type": "header",
            "format": FORMAT,
            "version": VERSION,
            "table": table,
            "from": asked[0],
            "to": asked[1],
            "first": first_position,
            "last": last_position,
            "anchor": {"position": anchor_position, "chain_hash": anchor_hash.hex()},
            "exported_at": exported_at.isoformat(),
        },
    )
    count = 0
    last_hash: bytes | None = None
    for row in rows:
        _write(out, _event_line(row))
        count += 1
        last_hash = row.chain_hash
    _write(
        out,
        {
            "type": "trailer",
            "count": count,
            "last_position": last_position,
            "last_hash": None if last_hash is None else last_hash.hex(),
        },
    )
    return ExportSummary(
        count, first_position, last_position, anchor_position, anchor_hash, last_hash
    )


def _write(out: TextIO, record: Mapping[str, Any]) -> None:
    out.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")


def _event_line(row: ChainRow) -> dict[str, Any]:
    line: dict[str, Any] = {
        "type": "event",
        "position": row.position,
        "chain_prev": row.chain_prev,
        "chain_hash": None if row.chain_hash is None else row.chain_hash.hex(),
        "originator_id": str(row.originator_id),
        "originator_version": row.version,
        "topic": row.topic,
        "state": None if row.state is None else base64.b64encode(row.state).decode("ascii"),
    }
    decoded = _decoded(row.state)
    if decoded is not _NOT_JSON:
        line["data"] = decoded
    return line


_NOT_JSON = object()


def _decoded(state: bytes | None) -> Any:
    if state is None:
        return _NOT_JSON
    try:
        return json.loads(state)
    except (ValueError, UnicodeDecodeError):
        return _NOT_JSON


# -- offline verification ------------------------------------------------------


def verify_file(
    path: Path,
    public_key: Ed25519PublicKey | Iterable[Ed25519PublicKey] | None = None,
    checkpoints: Iterable[Checkpoint] | None = None,
    *,
    window: int = DEFAULT_WINDOW,
) -> Report:
    """Recompute an export's chain from its anchor; check its framing and any checkpoints.

    Checkpoints outside the export's range are ignored; one at the anchor
    vouches for the anchor. Raises :class:`ExportFormatError` for a file that
    is not an export (or a line that is not JSON).
    """
    keys = (
        {}
        if public_key is None
        else public_keys([public_key] if isinstance(public_key, Ed25519PublicKey) else public_key)
    )
    if checkpoints is not None and not keys:
        raise ValueError("checking checkpoints needs the public key they were signed with")
    with path.open(encoding="utf-8") as lines:
        numbered = enumerate(lines, start=1)
        header = _header(next(numbered, (1, "")))
        anchor_position, anchor_hash = header["anchor"]
        declared_last: int | None = header["last"]
        heads, refused = verified_heads(checkpoints or (), keys)
        in_range = [
            head
            for head in heads
            if (anchor_position is None or head.position >= anchor_position)
            and declared_last is not None
            and head.position <= declared_last
        ]
        verifier = ChainVerifier(
            anchor_position=anchor_position,
            anchor_hash=anchor_hash,
            expected=in_range,
            window=window,
        )
        extra: list[Finding] = list(refused)
        trailer: dict[str, Any] | None = None
        last_fed: int | None = None
        for number, line in numbered:
            if not line.strip():
                continue
            record = _json(line, number)
            if trailer is not None:
                raise ExportFormatError(f"line {number}: content after the trailer")
            kind = record.get("type")
            if kind == "trailer":
                trailer = record
                continue
            if kind != "event":
                raise ExportFormatError(f"line {number}: neither an event nor the trailer")
            row = _row(record, number)
            if last_fed is not None and row.position <= last_fed:
                repeated = row.position == last_fed
                extra.append(
                    Finding(
                        Kind.INSERTED if repeated else Kind.REORDERED,
                        row.position,
                        f"line {number}: the event at position {row.position} comes after"
                        f" position {last_fed}: the export's lines were"
                        f" {'repeated' if repeated else 'moved'}",
                    )
                )
                continue
            last_fed = row.position
            if "data" in record and _decoded(row.state) != record["data"]:
                extra.append(
                    Finding(
                        Kind.CHANGED,
                        row.position,
                        f"line {number}: the decoded data of the event at position"
                        f" {row.position} does not match its state: the line was edited",
                    )
                )
            verifier.feed(row)
        verifier.finish()
    extra.extend(_framing(verifier, declared_last, trailer))
    return verifier.report().with_findings(extra)


def _framing(
    verifier: ChainVerifier, declared_last: int | None, trailer: dict[str, Any] | None
) -> list[Finding]:
    """The header's and trailer's word against the events found: truncation, extra lines."""
    seen_last = verifier.last_position
    where = seen_last if seen_last is not None else (declared_last or 0)
    if trailer is None:
        return [
            Finding(
                Kind.MISSING,
                where,
                f"the export has no trailer: it was cut short after position {seen_last}",
            )
        ]
    findings = []
    if declared_last is not None and (seen_last is None or seen_last < declared_last):
        findings.append(
            Finding(
                Kind.MISSING,
                declared_last,
                f"the export says it ends at position {declared_last}, but its events end"
                f" at {seen_last}: events were removed from its end",
            )
        )
    count = trailer.get("count")
    if count != verifier.rows:
        kind = Kind.MISSING if isinstance(count, int) and count > verifier.rows else Kind.INSERTED
        findings.append(
            Finding(
                kind,
                where,
                f"the trailer counts {count} events, the export holds {verifier.rows}",
            )
        )
    last_hash = verifier.head_hash.hex() if verifier.head_hash is not None else None
    if trailer.get("last_position") != seen_last or trailer.get("last_hash") != last_hash:
        findings.append(
            Finding(
                Kind.CHANGED,
                where,
                f"the trailer ends the chain at position {trailer.get('last_position')} with"
                f" hash {str(trailer.get('last_hash'))[:16]}…, the events at {seen_last}"
                f" with {str(last_hash)[:16]}…",
            )
        )
    return findings


def _json(line: str, number: int) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise ExportFormatError(f"line {number}: not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise ExportFormatError(f"line {number}: not a JSON object")
    return record


def _header(numbered: tuple[int, str]) -> dict[str, Any]:
    number, line = numbered
    if not line.strip():
        raise ExportFormatError("the file is empty, not an export")
    record = _json(line, number)
    if record.get("type") != "header" or record.get("format") != FORMAT:
        raise ExportFormatError("line 1: not the header of a plantcore audit export")
    if record.get("version") != VERSION:
        raise ExportFormatError(f"line 1: export version {record.get('version')} is not {VERSION}")
    try:
        anchor = record["anchor"]
        position = anchor["position"]
        digest = bytes.fromhex(anchor["chain_hash"])
        last = record["last"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportFormatError(f"line 1: a malformed header ({exc})") from None
    if position is not None and not isinstance(position, int):
        raise ExportFormatError("line 1: the anchor position is not an integer")
    if len(digest) != HASH_SIZE or (last is not None and not isinstance(last, int)):
        raise ExportFormatError("line 1: a malformed anchor hash or last position")
    return {"anchor": (position, digest), "last": last}


def _row(record: dict[str, Any], number: int) -> ChainRow:
    try:
        digest = record["chain_hash"]
        state = record["state"]
        prev = record["chain_prev"]
        position = record["position"]
        version = record["originator_version"]
        topic = record["topic"]
        if not isinstance(position, int) or not isinstance(version, int):
            raise TypeError("position and originator_version must be integers")
        if prev is not None and not isinstance(prev, int):
            raise TypeError("chain_prev must be an integer or null")
        if topic is not None and not isinstance(topic, str):
            raise TypeError("topic must be a string or null")
        return ChainRow(
            position=position,
            chain_prev=prev,
            chain_hash=None if digest is None else bytes.fromhex(digest),
            originator_id=uuid.UUID(record["originator_id"]),
            version=version,
            topic=topic,
            state=None if state is None else base64.b64decode(state, validate=True),
        )
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ExportFormatError(f"line {number}: a malformed event ({exc})") from None
