"""``plantcore history export``: one device's tags over a time range, to a CSV or Parquet file.

It reads the analysts' views (``history_raw``, ``history_1m``, ``history_1h``),
so the ``analyst`` role is all it needs. Rows come through a server-side cursor
``fetch_size`` at a time and each batch is written before the next is fetched:
memory stays the same however long the range. The file is written under a
temporary name beside the output and renamed when complete, so a failed export
leaves no half file behind.

A device or tag is known when the history holds samples of it: the history
outlives the plant file (a device removed from it still has its past).
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from projections.history_views import RAW_COLUMNS, ROLLUP_COLUMNS

DEFAULT_FETCH_SIZE = 10_000


class Bucket(StrEnum):
    RAW = "raw"
    MINUTE = "1m"
    HOUR = "1h"


class Format(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"


_SOURCES: dict[Bucket, tuple[str, str, Sequence[str]]] = {
    Bucket.RAW: ("history_raw", "time", RAW_COLUMNS),
    Bucket.MINUTE: ("history_1m", "bucket", ROLLUP_COLUMNS),
    Bucket.HOUR: ("history_1h", "bucket", ROLLUP_COLUMNS),
}


class ExportError(Exception):
    """The export cannot run as asked; nothing was written."""


@dataclass(frozen=True)
class ExportRequest:
    device: str
    tags: tuple[str, ...]
    start: datetime
    end: datetime
    bucket: Bucket = Bucket.RAW

    def check(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ExportError("--from and --to need a time zone (2026-03-01T08:00:00Z)")
        if self.start >= self.end:
            raise ExportError(f"--from {self.start.isoformat()} is not before --to")
        if not self.tags:
            raise ExportError("--tags names no tag")

    @property
    def columns(self) -> Sequence[str]:
        return _SOURCES[self.bucket][2]


class Sink(Protocol):
    def write(self, rows: Sequence[tuple[Any, ...]]) -> None: ...

    def close(self) -> None: ...


class CsvSink:
    """A header, then one line per row; times in ISO 8601 with their zone."""

    def __init__(self, path: str, columns: Sequence[str]) -> None:
        self._out = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 (closed in close)
        self._writer = csv.writer(self._out)
        self._writer.writerow(columns)

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self._writer.writerows(
            tuple(v.isoformat() if isinstance(v, datetime) else v for v in row) for row in rows
        )

    def close(self) -> None:
        self._out.close()


def _checked(conn: psycopg.Connection[TupleRow], request: ExportRequest) -> None:
    """Refuse a device or tag the history does not know, naming each."""
    known = {
        tag
        for (tag,) in conn.execute(
            "SELECT t FROM unnest(%s::text[]) AS t WHERE EXISTS"
            " (SELECT 1 FROM history_raw WHERE device = %s AND tag = t)",
            (list(request.tags), request.device),
        )
    }
    if known == set(request.tags):
        return
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM history_raw WHERE device = %s)", (request.device,)
    ).fetchone()
    if not (row and row[0]):
        raise ExportError(f"unknown device {request.device!r}: the history holds no sample of it")
    unknown = ", ".join(repr(tag) for tag in request.tags if tag not in known)
    raise ExportError(f"unknown tag {unknown} of {request.device!r}: no sample in the history")


def _query(request: ExportRequest) -> tuple[sql.Composed, sql.Composed]:
    view, time_column, columns = _SOURCES[request.bucket]
    where = sql.SQL("FROM {} WHERE device = %s AND tag = ANY(%s) AND {} >= %s AND {} < %s").format(
        sql.Identifier(view), sql.Identifier(time_column), sql.Identifier(time_column)
    )
    rows = sql.SQL("SELECT {} {} ORDER BY {}, tag").format(
        sql.SQL(", ").join(sql.Identifier(column) for column in columns),
        where,
        sql.Identifier(time_column),
    )
    return sql.SQL("SELECT count(*) {}").format(where), rows


def count_rows(conn: psycopg.Connection[TupleRow], request: ExportRequest) -> int:
    counting, _ = _query(request)
    row = conn.execute(counting, _arguments(request)).fetchone()
    return int(row[0]) if row else 0


def _arguments(request: ExportRequest) -> tuple[object, ...]:
    return (request.device, list(request.tags), request.start, request.end)


def stream_rows(
    conn: psycopg.Connection[TupleRow], request: ExportRequest, fetch_size: int
) -> Iterator[list[tuple[Any, ...]]]:
    """The rows in order of time then tag, ``fetch_size`` at most per batch."""
    _, rows = _query(request)
    with conn.transaction(), conn.cursor(name="plantcore_history_export") as cursor:
        cursor.execute(rows, _arguments(request))
        while batch := cursor.fetchmany(fetch_size):
            yield batch


def export_history(
    conn: psycopg.Connection[TupleRow],
    request: ExportRequest,
    output: Path,
    file_format: Format,
    *,
    fetch_size: int = DEFAULT_FETCH_SIZE,
    on_rows: Callable[[int, int], None] | None = None,
) -> int:
    """Write the rows ``request`` selects to ``output``; returns how many.

    ``on_rows(done, total)`` is called after each batch written.
    """
    request.check()
    _checked(conn, request)
    total = count_rows(conn, request)
    directory = output.parent if str(output.parent) else Path()
    try:
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{output.name}.")
    except OSError as exc:
        raise ExportError(f"cannot write {output}: {exc.strerror}") from exc
    os.close(handle)
    done = 0
    try:
        sink = _sink(file_format, temporary, request.columns)
        try:
            for batch in stream_rows(conn, request, fetch_size):
                sink.write(batch)
                done += len(batch)
                if on_rows is not None:
                    on_rows(done, total)
        finally:
            sink.close()
        os.replace(temporary, output)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return done


def _sink(file_format: Format, path: str, columns: Sequence[str]) -> Sink:
    if file_format is Format.CSV:
        return CsvSink(path, columns)
    from plantcore.parquet_sink import ParquetSink  # pyarrow: the `parquet` extra

    return ParquetSink(path, columns)
