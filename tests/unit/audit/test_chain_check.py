"""The chain verifier on synthetic logs: each kind of tampering caught, named and located."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from audit.chain_check import ChainVerifier, ExpectedHead, Kind, verify_rows
from eventstore.chain import ZERO_HASH, ChainRow, link_hash
from tests.unit.audit.chains import chain, content, rehash, swap_contents, swap_positions


def kinds(rows: list[ChainRow], **options: object) -> list[tuple[Kind, int]]:
    report = verify_rows(rows, **options)  # type: ignore[arg-type]
    return [(finding.kind, finding.position) for finding in report.findings]


# -- link_hash -----------------------------------------------------------------


def test_link_hash_is_deterministic_and_32_bytes() -> None:
    args = (ZERO_HASH, 7, uuid.UUID(int=1), 3, "tests:Tank.Renamed", b'{"name":"b"}')
    assert link_hash(*args) == link_hash(*args)
    assert len(link_hash(*args)) == 32


def test_link_hash_separates_its_fields() -> None:
    base = link_hash(ZERO_HASH, 7, uuid.UUID(int=1), 3, "ab", b"cd")
    # The same bytes, split differently between topic and state, hash differently.
    assert link_hash(ZERO_HASH, 7, uuid.UUID(int=1), 3, "abc", b"d") != base
    assert link_hash(ZERO_HASH, 7, uuid.UUID(int=1), 3, "a", b"bcd") != base
    # Every field counts, and NULL is not empty.
    variants = {
        link_hash(b"\x01" * 32, 7, uuid.UUID(int=1), 3, "ab", b"cd"),
        link_hash(ZERO_HASH, 8, uuid.UUID(int=1), 3, "ab", b"cd"),
        link_hash(ZERO_HASH, 7, uuid.UUID(int=2), 3, "ab", b"cd"),
        link_hash(ZERO_HASH, 7, uuid.UUID(int=1), 4, "ab", b"cd"),
        link_hash(ZERO_HASH, 7, uuid.UUID(int=1), 3, "", b"abcd"),
        link_hash(ZERO_HASH, 7, uuid.UUID(int=1), 3, None, b"cd"),
        link_hash(ZERO_HASH, 7, uuid.UUID(int=1), 3, "ab", None),
        link_hash(ZERO_HASH, 7, uuid.UUID(int=1), 3, "ab", b""),
    }
    assert base not in variants
    assert len(variants) == 8


def test_link_hash_refuses_a_previous_hash_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        link_hash(b"short", 1, uuid.UUID(int=1), 1, "t", b"s")


# -- intact logs ---------------------------------------------------------------


def test_an_intact_chain_verifies() -> None:
    rows = chain(range(1, 301))
    report = verify_rows(rows)
    assert report.intact
    assert (report.rows, report.first_position, report.last_position) == (300, 1, 300)
    assert report.head_hash == rows[-1].chain_hash


def test_a_gap_in_positions_is_not_tampering() -> None:
    # Positions 4-6 and 20 were taken by inserts that rolled back.
    rows = chain([1, 2, 3, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22])
    assert verify_rows(rows).intact


def test_rows_must_come_in_position_order() -> None:
    rows = chain(range(1, 4))
    verifier = ChainVerifier()
    verifier.feed(rows[1])
    with pytest.raises(ValueError, match="increasing position order"):
        verifier.feed(rows[0])


# -- each kind of tampering ----------------------------------------------------


def test_a_changed_payload_is_named_at_its_position() -> None:
    rows = chain(range(1, 101))
    rows[41] = replace(rows[41], state=rows[41].state.replace(b"event", b"EVENT"))  # type: ignore[union-attr]
    report = verify_rows(rows)
    assert [(f.kind, f.position) for f in report.findings] == [(Kind.CHANGED, 42)]
    assert "payload, topic, version or aggregate" in report.findings[0].explanation
    assert str(rows[41].originator_id) in report.findings[0].explanation


@pytest.mark.parametrize(
    "change",
    [
        {"topic": "tests:Tank.Forged"},
        {"version": 99},
        {"originator_id": uuid.UUID(int=999)},
    ],
)
def test_a_changed_topic_version_or_aggregate_is_caught(change: dict[str, object]) -> None:
    rows = chain(range(1, 21))
    rows[9] = replace(rows[9], **change)  # type: ignore[arg-type]
    assert kinds(rows) == [(Kind.CHANGED, 10)]


def test_an_edited_stored_hash_is_told_from_an_edited_event() -> None:
    rows = chain(range(1, 21))
    rows[4] = replace(rows[4], chain_hash=b"\x07" * 32)
    report = verify_rows(rows)
    assert [(f.kind, f.position) for f in report.findings] == [(Kind.CHANGED, 5)]
    assert "stored chain hash at position 5 was altered" in report.findings[0].explanation


def test_a_deleted_row_is_missing_at_its_position() -> None:
    rows = chain(range(1, 51))
    del rows[24]  # position 25
    report = verify_rows(rows)
    assert [(f.kind, f.position) for f in report.findings] == [(Kind.MISSING, 25)]
    assert "the event at position 26 names it" in report.findings[0].explanation


def test_deleting_the_first_row_is_caught() -> None:
    rows = chain(range(1, 11))[1:]
    assert kinds(rows) == [(Kind.MISSING, 1)]


def test_a_forged_row_with_a_correct_link_is_caught_by_the_next_row() -> None:
    # A gap at 11 (a rolled-back insert) lets a forger slip a row in between 10 and 12.
    rows = chain([*range(1, 11), *range(12, 31)])
    originator, version, topic, state = content(11)
    forged_hash = link_hash(rows[9].chain_hash or ZERO_HASH, 11, originator, version, topic, state)
    forged = ChainRow(11, 10, forged_hash, originator, version, topic, state)
    tampered = [*rows[:10], forged, *rows[10:]]
    report = verify_rows(tampered)
    assert [(f.kind, f.position) for f in report.findings] == [(Kind.INSERTED, 11)]
    assert "the event at position 12 links to position 10" in report.findings[0].explanation


def test_a_row_inserted_without_a_hash_is_inserted_not_just_unchained() -> None:
    rows = chain([*range(1, 11), *range(12, 21)])
    originator, version, topic, state = content(11)
    slipped = ChainRow(11, None, None, originator, version, topic, state)
    assert kinds([*rows[:10], slipped, *rows[10:]]) == [(Kind.INSERTED, 11)]


def test_a_forged_row_with_a_made_up_link_is_inserted() -> None:
    rows = chain([*range(1, 11), *range(12, 21)])
    originator, version, topic, state = content(11)
    forged = ChainRow(11, 3, b"\x01" * 32, originator, version, topic, state)
    found = kinds([*rows[:10], forged, *rows[10:]])
    assert found[0] == (Kind.INSERTED, 11)


@pytest.mark.parametrize("swap", [swap_contents, swap_positions])
@pytest.mark.parametrize(("i", "j"), [(30, 31), (30, 37)])
def test_two_swapped_rows_are_reordered_naming_both(swap: object, i: int, j: int) -> None:
    rows = swap(chain(range(1, 81)), i, j)  # type: ignore[operator]
    report = verify_rows(rows)
    assert [(f.kind, f.positions) for f in report.findings] == [(Kind.REORDERED, (i + 1, j + 1))]
    assert "swapped" in report.findings[0].explanation


def test_a_row_moved_into_a_gap_is_reordered() -> None:
    rows = chain([*range(1, 21), *range(25, 31)])
    moved = replace(rows[9], position=22)  # position 10 moved to the free position 22
    tampered = [*rows[:9], *rows[10:20], moved, *rows[20:]]
    found = verify_rows(tampered).findings
    assert [(f.kind, f.position) for f in found] == [(Kind.MISSING, 10), (Kind.REORDERED, 10)]
    assert "moved there from position 10" in found[1].explanation


def test_rows_without_a_hash_before_the_chain_began_are_unchained() -> None:
    prefix = [replace(row, chain_prev=None, chain_hash=None) for row in chain(range(1, 4))]
    # The trigger chains the row after a row without a hash from 32 zero bytes.
    rest = chain(range(4, 20))
    rest[0] = replace(rest[0], chain_prev=3)
    report = verify_rows([*prefix, *rest])
    assert [(f.kind, f.positions) for f in report.findings] == [(Kind.UNCHAINED, (1, 2, 3))]


def test_rows_appended_without_a_hash_are_unchained() -> None:
    rows = chain(range(1, 11))
    originator, version, topic, state = content(11)
    tail = ChainRow(11, None, None, originator, version, topic, state)
    assert kinds([*rows, tail]) == [(Kind.UNCHAINED, 11)]


def test_every_independent_tampering_is_reported_first_one_first() -> None:
    rows = chain(range(1, 401))
    rows[349] = replace(rows[349], state=b"{}")
    rows = swap_contents(rows, 200, 201)
    del rows[99]  # position 100
    report = verify_rows(rows)
    assert [(f.kind, f.position) for f in report.findings] == [
        (Kind.MISSING, 100),
        (Kind.REORDERED, 201),
        (Kind.CHANGED, 350),
    ]
    assert report.first is not None
    assert report.first.position == 100


# -- checkpoints ---------------------------------------------------------------


def heads(rows: list[ChainRow], *positions: int) -> list[ExpectedHead]:
    by_position = {row.position: row.chain_hash for row in rows}
    return [ExpectedHead(p, by_position[p] or ZERO_HASH, f"checkpoint {p}") for p in positions]


def test_a_consistently_rewritten_chain_is_caught_only_by_a_checkpoint() -> None:
    original = chain(range(1, 101))
    signed = heads(original, 20, 60, 100)
    tampered = list(original)
    tampered[39] = replace(tampered[39], state=b'{"n": 40, "note": "rewritten"}')
    rewritten = rehash(tampered, 39)

    assert verify_rows(rewritten).intact  # the chain alone cannot tell
    report = verify_rows(rewritten, expected=signed)
    assert [(f.kind, f.position) for f in report.findings] == [
        (Kind.CHECKPOINT_MISMATCH, 60),
        (Kind.CHECKPOINT_MISMATCH, 100),
    ]
    assert "rewritten after position 20" in report.findings[0].explanation
    assert report.checkpoints_matched == 1


def test_rows_removed_from_the_end_are_caught_by_a_later_checkpoint() -> None:
    rows = chain(range(1, 51))
    report = verify_rows(rows[:45], expected=heads(rows, 30, 50))
    assert [(f.kind, f.position) for f in report.findings] == [(Kind.MISSING, 50)]
    assert "events were removed from the end" in report.findings[0].explanation


def test_a_checkpointed_row_that_is_gone_is_missing() -> None:
    rows = chain(range(1, 51))
    rewritten = rehash([*rows[:29], *rows[30:]], 29)  # 30 removed, the chain recomputed
    found = verify_rows(rewritten, expected=heads(rows, 30)).findings
    assert [(f.kind, f.position) for f in found] == [(Kind.MISSING, 30)]


def test_an_export_starts_from_its_anchor() -> None:
    rows = chain(range(1, 101))
    anchor = rows[49]
    assert verify_rows(
        rows[50:],
        anchor_position=anchor.position,
        anchor_hash=anchor.chain_hash or ZERO_HASH,
        expected=heads(rows, 10, 50, 80),
    ).intact
    wrong = verify_rows(rows[50:], anchor_position=50, anchor_hash=b"\x09" * 32)
    assert [(f.kind, f.position) for f in wrong.findings] == [(Kind.CHANGED, 51)]
