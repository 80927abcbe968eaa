"""The outbox on disk: order, reopening, its size and what it gives up, its lock, bad rows."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.outbox import (
    DATABASE_NAME,
    ENTRY_OVERHEAD_BYTES,
    Entry,
    EntryKind,
    Outbox,
    OutboxError,
    OutboxLocked,
)

TELEMETRY, STATUS, ALARM = EntryKind.TELEMETRY, EntryKind.STATUS, EntryKind.ALARM
SUBJECT = "plant.telemetry.press-1"
PAYLOAD = b"x" * 100
# What one entry below counts for: its payload, device, subject, id ("m" and 3 digits).
ENTRY_SIZE = len(PAYLOAD) + len("press-1") + len(SUBJECT) + 4 + ENTRY_OVERHEAD_BYTES


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(tmp_path: Path, clock: Clock) -> Iterator[Outbox]:
    opened = Outbox.open(tmp_path, max_bytes=10 * ENTRY_SIZE, clock=clock)
    yield opened
    opened.close()


def put(outbox: Outbox, number: int, kind: EntryKind = TELEMETRY) -> bool:
    return outbox.append(kind, "press-1", SUBJECT, f"m{number:03d}", PAYLOAD)


def ids(entries: list[Entry]) -> list[str]:
    return [entry.msg_id for entry in entries]


def test_entries_come_back_in_the_order_they_went_in_with_what_they_hold(
    outbox: Outbox, clock: Clock
) -> None:
    for number in range(5):
        put(outbox, number, ALARM if number == 2 else TELEMETRY)
        clock.now += 1

    entries = outbox.read(10)

    assert ids(entries) == ["m000", "m001", "m002", "m003", "m004"]
    assert [entry.kind for entry in entries] == [TELEMETRY, TELEMETRY, ALARM, TELEMETRY, TELEMETRY]
    assert entries[2].payload == PAYLOAD
    assert (entries[2].device, entries[2].subject) == ("press-1", SUBJECT)
    assert entries[2].enqueued_at == 1_800_000_002.0
    assert ids(outbox.read(2, after=entries[1].seq)) == ["m002", "m003"]


def test_removed_entries_are_gone_and_counted_as_forwarded(outbox: Outbox, clock: Clock) -> None:
    for number in range(4):
        put(outbox, number)
        clock.now += 10
    first, second, *_ = outbox.read(10)

    assert outbox.remove([first.seq, second.seq, first.seq + 100]) == 2
    assert outbox.remove([first.seq]) == 0  # already gone

    figures = outbox.figures()
    assert ids(outbox.read(10)) == ["m002", "m003"]
    assert (figures.forwarded, figures.bytes) == (2, 2 * ENTRY_SIZE)
    assert figures.entries == {TELEMETRY: 2, STATUS: 0, ALARM: 0}
    assert figures.oldest_age_seconds == 20.0  # m002 went in at +20 s, now is +40 s


def test_what_was_appended_is_there_after_close_and_reopen(tmp_path: Path, clock: Clock) -> None:
    outbox = Outbox.open(tmp_path, max_bytes=10 * ENTRY_SIZE, clock=clock)
    put(outbox, 0, STATUS)
    put(outbox, 1, ALARM)
    put(outbox, 2)
    outbox.remove([outbox.read(1)[0].seq])
    outbox.close()
    clock.now += 30

    reopened = Outbox.open(tmp_path, max_bytes=10 * ENTRY_SIZE, clock=clock)
    try:
        figures = reopened.figures()
        assert ids(reopened.read(10)) == ["m001", "m002"]
        assert figures.entries == {TELEMETRY: 1, STATUS: 0, ALARM: 1}
        assert figures.bytes == 2 * ENTRY_SIZE
        assert figures.oldest_age_seconds == 30.0
        put(reopened, 3)
        assert ids(reopened.read(10)) == ["m001", "m002", "m003"]  # after, never in between
    finally:
        reopened.close()


def test_when_full_the_oldest_telemetry_goes_first_never_an_alarm_or_a_status_change(
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="devices.outbox")
    put(outbox, 0, ALARM)
    put(outbox, 1)
    put(outbox, 2, STATUS)
    for number in range(3, 10):
        put(outbox, number)
    assert outbox.figures().bytes == outbox.max_bytes  # full to the byte, nothing dropped yet

    assert put(outbox, 10, ALARM)
    assert put(outbox, 11)
    assert put(outbox, 12, STATUS)

    assert ids(outbox.read(20)) == [
        "m000", "m002", "m005", "m006", "m007", "m008", "m009", "m010", "m011", "m012",
    ]  # fmt: skip
    figures = outbox.figures()
    assert figures.bytes == outbox.max_bytes
    assert figures.dropped == {("telemetry", "full"): 3}  # m001, m003, m004
    full = [r for r in caplog.records if "buffer full" in r.getMessage()]
    assert [r.levelno for r in full] == [logging.WARNING]  # once for the episode


def test_with_only_alarms_and_status_changes_left_they_are_kept_beyond_the_limit(
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="devices.outbox")
    for number in range(10):
        put(outbox, number, ALARM if number % 2 else STATUS)

    assert put(outbox, 10, ALARM)
    assert put(outbox, 11, STATUS)
    assert not put(outbox, 12)  # new telemetry has nothing older to give way
    assert put(outbox, 13, ALARM)

    figures = outbox.figures()
    assert len(outbox.read(20)) == 13
    assert figures.bytes == 13 * ENTRY_SIZE > outbox.max_bytes
    assert figures.entries == {TELEMETRY: 0, STATUS: 6, ALARM: 7}
    assert figures.dropped == {("telemetry", "full"): 1}
    over = [r for r in caplog.records if "over its limit" in r.getMessage()]
    assert [r.levelno for r in over] == [logging.ERROR]  # once for the episode

    outbox.remove(entry.seq for entry in outbox.read(4))
    over = [r for r in caplog.records if "over its limit" in r.getMessage()]
    assert [r.levelno for r in over] == [logging.ERROR, logging.INFO]  # and once at its end


def test_a_second_opener_is_refused_while_the_first_holds_the_outbox(
    tmp_path: Path, outbox: Outbox
) -> None:
    with pytest.raises(OutboxLocked, match="in use by another process"):
        Outbox.open(tmp_path, max_bytes=1000)
    outbox.close()
    again = Outbox.open(tmp_path, max_bytes=1000)
    again.close()


def test_a_row_that_cannot_be_read_is_counted_and_removed_and_the_rest_still_come(
    tmp_path: Path, outbox: Outbox
) -> None:
    put(outbox, 0)
    with sqlite3.connect(tmp_path / DATABASE_NAME) as other:
        other.execute(
            "INSERT INTO entries (kind, device, subject, msg_id, payload, enqueued_at, size)"
            " VALUES ('mystery', 'press-1', 'plant.telemetry.press-1', 'm001', x'00', 0, 10)"
        )
        other.execute(
            "INSERT INTO entries (kind, device, subject, msg_id, payload, enqueued_at, size)"
            " VALUES ('alarm', 'press-1', 'plant.alarms.press-1', 'm002', 'text, not bytes', 0, 10)"
        )
    put(outbox, 3)

    assert ids(outbox.read(10)) == ["m000", "m003"]
    assert ids(outbox.read(10)) == ["m000", "m003"]  # removed, not met again
    assert outbox.figures().dropped == {("mystery", "unreadable"): 1, ("alarm", "unreadable"): 1}


def test_a_file_that_is_not_an_outbox_is_set_aside_and_a_new_one_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / DATABASE_NAME).write_bytes(b"not a database, " * 100)

    outbox = Outbox.open(tmp_path, max_bytes=10 * ENTRY_SIZE)
    try:
        put(outbox, 0)
        assert ids(outbox.read(10)) == ["m000"]
    finally:
        outbox.close()
    (aside,) = tmp_path.glob(f"{DATABASE_NAME}.unusable-*")
    assert aside.read_bytes() == b"not a database, " * 100
    assert any("unusable" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


def test_a_buffer_of_another_version_is_set_aside_not_read(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / DATABASE_NAME) as newer:
        newer.execute("CREATE TABLE entries (seq INTEGER PRIMARY KEY, what TEXT)")
        newer.execute("PRAGMA user_version = 7")

    outbox = Outbox.open(tmp_path, max_bytes=10 * ENTRY_SIZE)
    try:
        assert outbox.read(10) == []
        put(outbox, 0)
    finally:
        outbox.close()
    (aside,) = tmp_path.glob(f"{DATABASE_NAME}.unusable-*")
    with sqlite3.connect(aside) as kept:
        assert kept.execute("PRAGMA user_version").fetchone() == (7,)


def test_a_directory_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a directory")

    with pytest.raises(OutboxError, match=r"cannot open the buffer in .*taken"):
        Outbox.open(tmp_path / "taken", max_bytes=1000)


def test_an_append_the_disk_refuses_is_counted_as_lost_and_logged_once(
    tmp_path: Path, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="devices.outbox")
    stranger = sqlite3.connect(tmp_path / DATABASE_NAME, isolation_level=None)
    stranger.execute("BEGIN IMMEDIATE")  # holds the write lock, as a shell left open could
    try:
        assert not put(outbox, 0, ALARM)
        assert not put(outbox, 1)
    finally:
        stranger.execute("ROLLBACK")
        stranger.close()
    assert put(outbox, 2)

    assert ids(outbox.read(10)) == ["m002"]
    assert outbox.figures().dropped == {("alarm", "unwritable"): 1, ("telemetry", "unwritable"): 1}
    refused = [r for r in caplog.records if "cannot append" in r.getMessage()]
    assert [r.levelno for r in refused] == [logging.ERROR, logging.INFO]


def test_a_size_limit_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive size limit"):
        Outbox.open(tmp_path, max_bytes=0)
