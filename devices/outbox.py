"""The outbox: a durable first-in, first-out buffer of a process's messages to NATS, on disk.

Every telemetry batch, status and alarm transition of the supervisors is
appended here first, and the forwarder (:mod:`devices.nats_bridge`) publishes
the entries in order and removes each once JetStream has stored it. So a NATS
outage, or JetStream not answering, costs nothing but delay, and a process
killed outright loses at most the message it was appending: the next process
to open the outbox forwards what is left.

An entry is ``(seq, kind, device, subject, msg_id, payload, enqueued_at)``:
``seq`` orders them, ``device`` is the lane whose order must hold, ``msg_id``
is the ``Nats-Msg-Id`` it is published with, every time, so that JetStream
stores a resend once. Its kind says what may be given up when the outbox is
full (``max_bytes``, counted over the entries' own bytes):

- ``telemetry`` (batches, and status heartbeats that repeat the state): the
  oldest go first, each counted and the episode logged once;
- ``alarm`` and ``status`` (a change of a device's connection state): never.
  When only those are left the outbox grows past its limit rather than lose
  one, and says so, once per episode, at error level.

SQLite in WAL mode with ``synchronous=NORMAL``: a committed append survives
the process being killed; a power loss may take the last appends since the
WAL was last synced (ADR 0032 says why that trade). One process owns the
outbox: a lock file held with ``flock`` refuses a second (:class:`OutboxLocked`).

Appending never raises: a disk that refuses it is logged, once per episode, and
the message counted as lost (``unwritable``). A row that cannot be read back
is counted (``unreadable``) and removed, so it never stops the entries behind
it. Every figure (:meth:`Outbox.figures`) is held in memory, read without I/O.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from support.repeated_log import RepeatedLog

log = logging.getLogger(__name__)

DATABASE_NAME = "outbox.sqlite3"
LOCK_NAME = "outbox.lock"
SCHEMA_VERSION = 1
# What an entry costs beyond its fields' bytes: its row header, seq and times, its index entry.
ENTRY_OVERHEAD_BYTES = 64
# Telemetry looked at per step when making room: a few pages of the index.
_DROP_STEP = 256
# The WAL is cut back to this after a checkpoint, so a burst does not leave it large.
_WAL_LIMIT_BYTES = 8 * 1024 * 1024
BUSY_SECONDS = 0.1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    device TEXT NOT NULL,
    subject TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    enqueued_at REAL NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_kind ON entries (kind, seq);
"""
# An entry's size as the figures count it, whatever a damaged row holds.
_SIZES_BY_KIND = (
    "SELECT kind, count(*), sum(coalesce(CAST(size AS INTEGER), 0)) FROM entries GROUP BY kind"
)
_OLDEST_TELEMETRY = (
    "SELECT seq, coalesce(CAST(size AS INTEGER), 0) FROM entries"
    " WHERE kind = 'telemetry' ORDER BY seq LIMIT ?"
)
_DROP_TELEMETRY_UP_TO = (
    "DELETE FROM entries WHERE kind = 'telemetry' AND seq <= ?"
    " RETURNING kind, coalesce(CAST(size AS INTEGER), 0)"
)
_INSERT = (
    "INSERT INTO entries (kind, device, subject, msg_id, payload, enqueued_at, size)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_READ = (
    "SELECT seq, kind, device, subject, msg_id, payload, enqueued_at FROM entries"
    " WHERE seq > ? ORDER BY seq LIMIT ?"
)
_DELETE_ONE = "DELETE FROM entries WHERE seq = ? RETURNING kind, coalesce(CAST(size AS INTEGER), 0)"
# The seqs come as one JSON array, so that one statement deletes any number of them.
_DELETE = (
    "DELETE FROM entries WHERE seq IN (SELECT value FROM json_each(?))"
    " RETURNING kind, coalesce(CAST(size AS INTEGER), 0)"
)


class EntryKind(StrEnum):
    TELEMETRY = "telemetry"
    STATUS = "status"
    ALARM = "alarm"


_KINDS = frozenset(kind.value for kind in EntryKind)


# Why an entry left the outbox without being forwarded (the ``reason`` of its count).
FULL = "full"
UNWRITABLE = "unwritable"
UNREADABLE = "unreadable"
UNDELIVERABLE = "undeliverable"


class OutboxError(RuntimeError):
    """The outbox cannot be opened: the process must not run without it."""


class OutboxLocked(OutboxError):
    """Another process holds the outbox: two would interleave their messages."""


class _OtherSchema(Exception):
    """A file of another version of the outbox."""


# What SQLite says of a file that is not a database, or a damaged one. Any other error
# (a full disk, no permission) may pass: the file is left alone, and opening it fails.
_UNUSABLE_FILE = frozenset({"SQLITE_NOTADB", "SQLITE_CORRUPT"})


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    kind: EntryKind
    device: str
    subject: str
    msg_id: str
    payload: bytes
    enqueued_at: float  # wall clock, seconds since the epoch


@dataclass(frozen=True, slots=True)
class OutboxFigures:
    entries: Mapping[str, int]  # by kind
    bytes: int
    max_bytes: int
    oldest_age_seconds: float  # 0 when empty
    forwarded: int
    # Entries given up, by (kind, reason): full, unwritable, unreadable, undeliverable.
    dropped: Mapping[tuple[str, str], int]


class Outbox:
    """The durable FIFO of one process; open it with :meth:`open`, close it with :meth:`close`."""

    def __init__(
        self,
        db: sqlite3.Connection,
        lock_fd: int,
        path: Path,
        *,
        max_bytes: int,
        clock: Callable[[], float],
    ) -> None:
        self._db = db
        self._lock_fd = lock_fd
        self.path = path
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: Counter[EntryKind] = Counter()
        self._bytes = 0
        self._oldest: float | None = None
        self._forwarded = 0
        self._dropped: Counter[tuple[str, str]] = Counter()
        self._full = RepeatedLog(log, "buffer full, dropping the oldest telemetry of")
        self._over = RepeatedLog(log, "buffer over its limit at", level=logging.ERROR)
        self._unwritable = RepeatedLog(log, "cannot append to the buffer at", level=logging.ERROR)
        for kind, count, size in db.execute(_SIZES_BY_KIND):
            if kind in _KINDS:
                self._entries[EntryKind(kind)] = count
            self._bytes += size
        self._find_oldest()

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        max_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> Outbox:
        """The outbox in ``directory`` (made if missing), locked for this process.

        Raises :class:`OutboxLocked` if another process has it open, and
        :class:`OutboxError` if it cannot be opened (the directory cannot be
        made, the disk refuses). A file that is not a database, a damaged one,
        or one of another schema is set aside (renamed, kept for a look) and a
        new outbox started, with an error in the log.
        """
        if max_bytes <= 0:
            raise ValueError(f"an outbox needs a positive size limit, got {max_bytes}")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            lock_fd = _lock(directory / LOCK_NAME)
        except OSError as exc:
            raise OutboxError(f"cannot open the buffer in {directory}: {exc}") from exc
        path = directory / DATABASE_NAME

        def load() -> Outbox:
            db = _connect(path)
            try:
                return cls(db, lock_fd, path, max_bytes=max_bytes, clock=clock)
            except BaseException:
                db.close()
                raise

        try:
            try:
                return load()
            except (sqlite3.DatabaseError, _OtherSchema) as exc:
                if not isinstance(exc, _OtherSchema) and exc.sqlite_errorname not in _UNUSABLE_FILE:
                    raise
                aside = _set_aside(path)
                log.error("buffer %s is unusable (%s): set aside as %s", path, exc, aside)
                return load()
        except (sqlite3.Error, OSError) as exc:
            os.close(lock_fd)
            raise OutboxError(f"cannot open the buffer {path}: {exc}") from exc
        except BaseException:
            os.close(lock_fd)
            raise

    def close(self) -> None:
        """Close the file and release the lock; closing again does nothing."""
        if self._lock_fd < 0:
            return
        self._db.close()
        os.close(self._lock_fd)  # releases the lock
        self._lock_fd = -1

    # -- the producer's side -------------------------------------------------------------

    def append(
        self, kind: EntryKind, device: str, subject: str, msg_id: str, payload: bytes
    ) -> bool:
        """Add an entry at the end; whether it was kept (never raises)."""
        size = len(payload) + len(device) + len(subject) + len(msg_id) + ENTRY_OVERHEAD_BYTES
        row = (kind.value, device, subject, msg_id, payload, self._clock(), size)
        freed: list[tuple[str, int]] = []
        kept = True
        try:
            if self._bytes + size <= self.max_bytes:
                self._db.execute(_INSERT, row)  # one statement, its own transaction
            else:
                with self._transaction():
                    freed = self._make_room(size)
                    # No older telemetry left to give up: a new one goes instead.
                    kept = kind is not EntryKind.TELEMETRY or (
                        self._bytes - sum(size for _, size in freed) + size <= self.max_bytes
                    )
                    if kept:
                        self._db.execute(_INSERT, row)
        except sqlite3.Error as exc:
            self._dropped[kind.value, UNWRITABLE] += 1
            self._unwritable.happened(str(self.path), f"{exc!r}; a {kind.value} entry is lost")
            return False
        self._unwritable.ended(str(self.path))
        self._forget(freed, FULL)
        if kept:
            self._entries[kind] += 1
            self._bytes += size
            if self._oldest is None:
                self._oldest = row[5]
        else:
            self._dropped[kind.value, FULL] += 1
        if freed or not kept:
            self._full.happened(str(self.path), f"its limit of {self.max_bytes} bytes reached")
        else:
            self._full.ended(str(self.path))
        if self._bytes > self.max_bytes:
            self._over.happened(
                str(self.path),
                f"{self._bytes} bytes of {self.max_bytes}: only alarm transitions and status"
                " changes are left, which are never dropped, so they are kept beyond it",
            )
        return kept

    def _make_room(self, size: int) -> list[tuple[str, int]]:
        """Delete the oldest telemetry until ``size`` more bytes fit; the rows deleted."""
        need = self._bytes + size - self.max_bytes
        freed: list[tuple[str, int]] = []
        while need > 0:
            rows = self._db.execute(_OLDEST_TELEMETRY, (_DROP_STEP,)).fetchall()
            if not rows:
                break
            last = rows[-1][0]
            for seq, entry_size in rows:
                need -= entry_size
                if need <= 0:
                    last = seq
                    break
            freed += self._db.execute(_DROP_TELEMETRY_UP_TO, (last,)).fetchall()
        return freed

    # -- the forwarder's side ------------------------------------------------------------

    def read(self, limit: int, *, after: int = 0) -> list[Entry]:
        """The oldest ``limit`` entries after seq ``after``, in order.

        Rows that cannot be read are counted (``unreadable``) and removed.
        """
        entries: list[Entry] = []
        unreadable: list[int] = []
        for row in self._db.execute(_READ, (after, limit)):
            entry = _entry(row)
            if entry is None:
                log.error("buffer %s: entry %r cannot be read; removed", self.path, row[:5])
                unreadable.append(row[0])
            else:
                entries.append(entry)
        if unreadable:
            self._forget(self._delete(unreadable), UNREADABLE)
        return entries

    def remove(self, seqs: Iterable[int]) -> int:
        """Remove forwarded entries (any already gone are skipped); how many were removed."""
        removed = self._delete(seqs)
        self._forget(removed)
        self._forwarded += len(removed)
        return len(removed)

    def give_up(self, entry: Entry, reason: str) -> None:
        """Remove an entry that will never be forwarded, counting it under ``reason``."""
        self._forget(self._delete([entry.seq]), reason)

    def figures(self) -> OutboxFigures:
        oldest = self._oldest
        return OutboxFigures(
            entries={kind.value: self._entries[kind] for kind in EntryKind},
            bytes=self._bytes,
            max_bytes=self.max_bytes,
            oldest_age_seconds=0.0 if oldest is None else max(0.0, self._clock() - oldest),
            forwarded=self._forwarded,
            dropped=dict(self._dropped),
        )

    def __len__(self) -> int:
        return sum(self._entries.values())

    @property
    def dropped(self) -> int:
        """Entries given up so far, for any reason: what a reader ahead may still hold."""
        return self._dropped.total()

    # -- bookkeeping ---------------------------------------------------------------------

    def _delete(self, seqs: Iterable[int]) -> list[tuple[str, int]]:
        wanted = list(seqs)
        if not wanted:
            return []
        if len(wanted) == 1:  # the usual case while NATS keeps up, and twice as fast
            return self._db.execute(_DELETE_ONE, wanted).fetchall()
        return self._db.execute(_DELETE, (json.dumps(wanted),)).fetchall()

    def _forget(self, rows: list[tuple[str, int]], reason: str | None = None) -> None:
        """Take deleted rows out of the figures; count them as dropped if ``reason``."""
        if not rows:
            return
        for kind, size in rows:
            if kind in _KINDS:
                self._entries[EntryKind(kind)] -= 1
            self._bytes -= size
            if reason is not None:
                self._dropped[kind, reason] += 1
        self._find_oldest()
        if self._bytes <= self.max_bytes:
            self._over.ended(str(self.path))

    def _find_oldest(self) -> None:
        row = self._db.execute("SELECT enqueued_at FROM entries ORDER BY seq LIMIT 1").fetchone()
        self._oldest = None if row is None else float(row[0])

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _entry(row: tuple[object, ...]) -> Entry | None:
    """The entry a row holds, or None when a field is not what was written."""
    seq, kind, device, subject, msg_id, payload, enqueued_at = row
    if (
        isinstance(seq, int)
        and isinstance(kind, str)
        and kind in _KINDS
        and isinstance(device, str)
        and isinstance(subject, str)
        and isinstance(msg_id, str)
        and isinstance(payload, bytes)
        and isinstance(enqueued_at, int | float)
        and device
        and subject
        and msg_id
    ):
        return Entry(seq, EntryKind(kind), device, subject, msg_id, payload, float(enqueued_at))
    return None


def _lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise OutboxLocked(
            f"the buffer in {path.parent} is in use by another process (pid {holder}):"
            " give each plant core a PLANTCORE_BUFFER_DIR of its own"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _connect(path: Path) -> sqlite3.Connection:
    # A short busy wait: only a stranger holding the file (an operator's shell) makes it wait,
    # and the event loop waits with it.
    db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_SECONDS)
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise _OtherSchema(f"schema version {version}, this plant core reads {SCHEMA_VERSION}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(f"PRAGMA journal_size_limit = {_WAL_LIMIT_BYTES}")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.close()
        raise
    return db


def _set_aside(path: Path) -> Path:
    aside = path.with_name(f"{path.name}.unusable-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").rename(f"{aside}{suffix}")
    return aside
