"""Recompute the hash chain of the event log and say where, and how, it was tampered with.

:class:`ChainVerifier` is pure and streaming: feed it rows in position order
(from the database or from an export) and it yields findings as it goes,
holding only a bounded window of rows before and after the current one.

How a break is classified (the first row that does not fit is ``p``):

- ``missing``: a row's ``chain_prev`` names a position that is not there (the
  row at that position was removed), or a signed checkpoint names one.
- ``inserted``: a row's ``chain_prev`` skips over rows that are there, and its
  hash is right from the row it names: the rows skipped were slipped in.
- ``reordered``: the content at ``p`` hashes correctly at another row's place
  and that row's content at ``p``'s (two rows swapped, by content or by
  position), looked for in the rows just ahead; or a row hashes correctly at
  the place of a missing one (moved).
- ``changed``: a row whose stored hash does not match its content (payload,
  topic, version or aggregate changed), or whose stored hash itself was edited.
- ``unchained``: rows without a hash (written while the chain trigger was off).
- ``checkpoint_mismatch``: the chain holds another hash at a position than a
  signed checkpoint says: the chain from before that position was rewritten.
- ``snapshot_mismatch`` (:func:`verify_database` given the snapshots): a stored
  snapshot is not the state its aggregate's events make at its version
  (:mod:`audit.snapshot_check`).

After a break the verifier continues from the stored hashes, so later,
independent tampering is reported too; a gap in the positions (a rolled-back
insert) is not a break, since ``chain_prev`` names the previous row, not
``position - 1``.
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from audit.snapshot_check import SnapshotSource, check_snapshots
from eventstore.chain import (
    ZERO_HASH,
    ChainRow,
    has_hash_chain,
    iter_chain_rows,
    link_hash,
    row_hash,
)

DEFAULT_WINDOW = 256


class Kind(enum.StrEnum):
    CHANGED = "changed"
    MISSING = "missing"
    INSERTED = "inserted"
    REORDERED = "reordered"
    UNCHAINED = "unchained"
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"
    BAD_CHECKPOINT = "bad_checkpoint"  # a checkpoint whose signature does not hold
    SNAPSHOT_MISMATCH = "snapshot_mismatch"  # a snapshot its events do not make


@dataclass(frozen=True)
class Finding:
    kind: Kind
    position: int
    explanation: str
    positions: tuple[int, ...] = ()

    def __str__(self) -> str:
        return f"position {self.position}: {self.kind}: {self.explanation}"


@dataclass(frozen=True)
class ExpectedHead:
    """A chain hash someone vouches for at a position (a verified, signed checkpoint)."""

    position: int
    chain_hash: bytes
    source: str


@dataclass(frozen=True)
class Report:
    rows: int
    first_position: int | None
    last_position: int | None
    head_hash: bytes | None
    findings: tuple[Finding, ...]
    checkpoints_matched: int = 0
    checkpoints_checked: int = 0  # those within the rows verified (or at their anchor)
    snapshots_checked: int = 0

    @property
    def snapshots_matched(self) -> int:
        mismatched = sum(1 for finding in self.findings if finding.kind is Kind.SNAPSHOT_MISMATCH)
        return self.snapshots_checked - mismatched

    @property
    def intact(self) -> bool:
        return not self.findings

    def with_findings(self, extra: Iterable[Finding]) -> Report:
        """The same report with more findings (from checkpoints or an export's framing)."""
        merged = sorted((*self.findings, *extra), key=lambda finding: finding.position)
        return replace(self, findings=tuple(merged))

    @property
    def first(self) -> Finding | None:
        """The finding at the lowest position: where the log stops being trustworthy."""
        return self.findings[0] if self.findings else None


def _short(digest: bytes | None) -> str:
    return "none" if digest is None else digest.hex()[:16] + "…"


def _describe(row: ChainRow) -> str:
    return f"aggregate {row.originator_id} version {row.version}, {row.topic}"


def _span(positions: list[int]) -> str:
    if len(positions) == 1:
        return f"position {positions[0]}"
    if len(positions) <= 6:
        return "positions " + ", ".join(str(position) for position in positions)
    return f"{len(positions)} positions from {positions[0]} to {positions[-1]}"


@dataclass
class _UnchainedRun:
    rows: list[ChainRow] = field(default_factory=list)
    before_position: int | None = None
    before_hash: bytes = ZERO_HASH


class ChainVerifier:
    """Feed rows in increasing position order; collect findings.

    ``anchor_position`` and ``anchor_hash`` are the row just before the first
    one fed (for an export that starts mid-log); by default the first row fed
    must be the first of the log. ``expected`` are verified checkpoints;
    those before the anchor are ignored. ``window`` bounds the rows held ahead
    (to find a swapped partner) and behind (to name inserted rows).
    """

    def __init__(
        self,
        *,
        anchor_position: int | None = None,
        anchor_hash: bytes = ZERO_HASH,
        expected: Iterable[ExpectedHead] = (),
        window: int = DEFAULT_WINDOW,
    ) -> None:
        if window < 1:
            raise ValueError("the window holds at least one row")
        self._window = window
        self._anchor_position = anchor_position
        self._anchor_hash = anchor_hash
        self._prev_position = anchor_position
        self._prev_hash = anchor_hash
        self._ahead: deque[ChainRow] = deque()
        self._recent: OrderedDict[int, bytes] = OrderedDict()
        self._explained: dict[int, bytes] = {}
        self._accounted: set[int] = set()
        self._missing: set[int] = set()
        self._missing_slots: OrderedDict[int, bytes] = OrderedDict()
        self._unchained: _UnchainedRun | None = None
        self._last_fed: int | None = None
        self._new: list[Finding] = []
        self.findings: list[Finding] = []
        self.rows = 0
        self.first_position: int | None = None
        self.last_position: int | None = None
        self.head_hash: bytes | None = None
        self.checkpoints_matched = 0
        self.checkpoints_checked = 0
        self._last_confirmed: int | None = None
        claims = sorted(expected, key=lambda claim: claim.position)
        self._expected: deque[ExpectedHead] = deque()
        for claim in claims:
            if anchor_position is not None and claim.position < anchor_position:
                continue
            if anchor_position is not None and claim.position == anchor_position:
                self._check_claim(claim, anchor_position, anchor_hash, anchor_hash)
            else:
                self._expected.append(claim)

    # -- feeding ---------------------------------------------------------------

    def check(self, rows: Iterable[ChainRow]) -> Iterator[Finding]:
        """Verify ``rows`` to the end, yielding each finding as it is made."""
        for row in rows:
            yield from self.feed(row)
        yield from self.finish()

    def feed(self, row: ChainRow) -> list[Finding]:
        if self._last_fed is not None and row.position <= self._last_fed:
            raise ValueError(
                "rows must come in increasing position order:"
                f" {row.position} after {self._last_fed}"
            )
        self._last_fed = row.position
        self._ahead.append(row)
        while len(self._ahead) > self._window:
            self._process(self._ahead.popleft())
        return self._take_new()

    def finish(self) -> list[Finding]:
        while self._ahead:
            self._process(self._ahead.popleft())
        self._settle_unchained(None)
        for claim in self._expected:
            self.checkpoints_checked += 1
            if claim.position in self._missing:
                continue
            end = (
                "the log is empty"
                if self.last_position is None
                else f"the log ends at position {self.last_position}"
            )
            self._report(
                Kind.MISSING,
                claim.position,
                f"{end}, but {claim.source} names position {claim.position}:"
                " events were removed from the end",
            )
        self._expected.clear()
        return self._take_new()

    def report(self) -> Report:
        return Report(
            rows=self.rows,
            first_position=self.first_position,
            last_position=self.last_position,
            head_hash=self.head_hash,
            findings=tuple(sorted(self.findings, key=lambda finding: finding.position)),
            checkpoints_matched=self.checkpoints_matched,
            checkpoints_checked=self.checkpoints_checked,
        )

    # -- one row -----------------------------------------------------------------

    def _process(self, row: ChainRow) -> None:
        position = row.position
        self._claims_before(position)
        if position in self._explained:
            self._advance(row, self._explained.pop(position))
            return
        if row.chain_hash is None:
            if self._unchained is None:
                self._unchained = _UnchainedRun(
                    before_position=self._prev_position, before_hash=self._prev_hash
                )
            self._unchained.rows.append(row)
            # The trigger chains the next row from 32 zero bytes after a row without a hash.
            self._advance(row, ZERO_HASH)
            return
        if self._unchained is not None:
            self._settle_unchained(row)
        self._check_linked(row)

    def _check_linked(self, row: ChainRow) -> None:
        position, named = row.position, row.chain_prev
        previous = self._prev_position
        assert row.chain_hash is not None
        if named == previous:
            expected = row_hash(self._prev_hash, row)
            if expected == row.chain_hash:
                self._advance(row, expected)
            elif not self._found_swap(row):
                self._report_changed(row, expected)
            return
        if named is not None and named >= position:
            if not self._found_swap(row):
                self._report(
                    Kind.CHANGED,
                    position,
                    f"the event at position {position} ({_describe(row)}) names position"
                    f" {named} as its predecessor, at or after its own: its chain fields"
                    " were altered",
                )
                self._advance(row, row.chain_hash)
            return
        if named is not None and (previous is None or named > previous):
            self._missing.add(named)
            self._missing_slots[named] = self._prev_hash
            while len(self._missing_slots) > self._window:
                self._missing_slots.popitem(last=False)
            before = (
                f"the event before it is at position {previous}"
                if previous is not None
                else "no event comes before it"
            )
            self._report(
                Kind.MISSING,
                named,
                f"the event at position {named} is missing: the event at position {position}"
                f" names it as its predecessor, but {before}",
                positions=(named,),
            )
            self._advance(row, row.chain_hash)
            return
        # ``named`` is earlier than the previous row (or None: "I am the first").
        base = self._hash_at(named)
        if base is not None and row_hash(base, row) == row.chain_hash:
            floor = -(2**63) if named is None else named
            skipped = [
                recent
                for recent in self._recent
                if floor < recent < position and recent not in self._accounted
            ]
            if skipped:
                several = len(skipped) > 1
                self._accounted.update(skipped)
                self._report(
                    Kind.INSERTED,
                    skipped[0],
                    f"the event{'s' if several else ''} at {_span(skipped)}"
                    f" {'were' if several else 'was'} inserted: the event at position"
                    f" {position} links to {_name(named)}, over {'them' if several else 'it'}",
                    positions=tuple(skipped),
                )
            self._advance(row, row.chain_hash)
            return
        if self._found_move(row) or self._found_swap(row):
            return
        self._accounted.add(position)
        self._report(
            Kind.INSERTED,
            position,
            f"the event at position {position} ({_describe(row)}) does not belong to the"
            f" chain: it names {_name(named)} as its predecessor instead of"
            f" {_name(previous)}, and its hash does not hold there",
        )
        self._advance(row, row.chain_hash)

    def _report_changed(self, row: ChainRow, expected: bytes) -> None:
        assert row.chain_hash is not None
        position = row.position
        after = self._ahead[0] if self._ahead else None
        if (
            after is not None
            and after.chain_prev == position
            and after.chain_hash is not None
            and row_hash(expected, after) == after.chain_hash
            and row_hash(row.chain_hash, after) != after.chain_hash
        ):
            self._report(
                Kind.CHANGED,
                position,
                f"the stored chain hash at position {position} was altered"
                f" ({_short(row.chain_hash)} instead of {_short(expected)});"
                " the event itself is as it was hashed",
            )
            self._advance(row, expected)
            return
        self._report(
            Kind.CHANGED,
            position,
            f"the event at position {position} ({_describe(row)}) does not match its"
            " hash: its payload, topic, version or aggregate was changed",
        )
        self._advance(row, row.chain_hash)

    def _found_swap(self, row: ChainRow) -> bool:
        """Whether a row just ahead holds the event that belongs at ``row``'s place."""
        assert row.chain_hash is not None
        position, before = row.position, self._prev_hash
        ahead = list(self._ahead)
        for index, other in enumerate(ahead):
            if other.position in self._explained or other.chain_hash is None:
                continue
            here = link_hash(
                before, position, other.originator_id, other.version, other.topic, other.state
            )
            by_content = here == row.chain_hash  # the contents were exchanged
            by_position = here == other.chain_hash and other.chain_prev == self._prev_position
            if not (by_content or by_position):
                continue
            before_other = here if index == 0 else ahead[index - 1].chain_hash or ZERO_HASH
            there = link_hash(
                before_other, other.position, row.originator_id, row.version, row.topic, row.state
            )
            if there in (other.chain_hash, row.chain_hash):
                self._explained[other.position] = there
                self._report(
                    Kind.REORDERED,
                    position,
                    f"the events at positions {position} and {other.position} were swapped:"
                    " each one hashes correctly at the other's place",
                    positions=(position, other.position),
                )
            else:
                self._report(
                    Kind.REORDERED,
                    position,
                    f"the event now at position {other.position} ({_describe(other)}) belongs"
                    f" at position {position}, where it hashes correctly; the event now at"
                    f" {position} ({_describe(row)}) is not the one hashed there",
                    positions=(position, other.position),
                )
            self._advance(row, here)
            return True
        return False

    def _found_move(self, row: ChainRow) -> bool:
        """Whether ``row`` hashes correctly at the place of a missing row: moved from there."""
        for slot, before in self._missing_slots.items():
            if row_hash_at(before, slot, row) == row.chain_hash:
                del self._missing_slots[slot]
                self._accounted.add(row.position)
                self._report(
                    Kind.REORDERED,
                    slot,
                    f"the event at position {row.position} ({_describe(row)}) was moved there"
                    f" from position {slot}, where it is missing: it hashes correctly there",
                    positions=(slot, row.position),
                )
                self._advance(row, row.chain_hash or ZERO_HASH)
                return True
        return False

    def _settle_unchained(self, row: ChainRow | None) -> None:
        """Close a run of rows without a hash: slipped in, or merely not covered."""
        run, self._unchained = self._unchained, None
        if run is None:
            return
        positions = [unchained.position for unchained in run.rows]
        if (
            row is not None
            and row.chain_hash is not None
            and row.chain_prev == run.before_position
            and row_hash(run.before_hash, row) == row.chain_hash
        ):
            self._accounted.update(positions)
            self._prev_position, self._prev_hash = run.before_position, run.before_hash
            self._report(
                Kind.INSERTED,
                positions[0],
                f"the event{'s' if len(positions) > 1 else ''} at {_span(positions)} without"
                f" a chain hash {'were' if len(positions) > 1 else 'was'} inserted with the"
                f" chain trigger off: the event at position {row.position} links to"
                f" {_name(run.before_position)}, over {'them' if len(positions) > 1 else 'it'}",
                positions=tuple(positions),
            )
            return
        self._report(
            Kind.UNCHAINED,
            positions[0],
            f"the event{'s' if len(positions) > 1 else ''} at {_span(positions)}"
            f" {'have' if len(positions) > 1 else 'has'} no chain hash: written while the"
            " chain trigger was off, or the hash was removed; nothing proves"
            f" {'them' if len(positions) > 1 else 'it'}",
            positions=tuple(positions),
        )

    # -- bookkeeping -------------------------------------------------------------

    def _advance(self, row: ChainRow, effective: bytes) -> None:
        """``row`` is settled; the next one links from ``effective``."""
        self._prev_position, self._prev_hash = row.position, effective
        self._recent[row.position] = effective
        while len(self._recent) > self._window:
            dropped, _ = self._recent.popitem(last=False)
            self._accounted.discard(dropped)
        self.rows += 1
        if self.first_position is None:
            self.first_position = row.position
        self.last_position = row.position
        self.head_hash = row.chain_hash
        while self._expected and self._expected[0].position == row.position:
            self._check_claim(self._expected.popleft(), row.position, row.chain_hash, effective)

    def _hash_at(self, position: int | None) -> bytes | None:
        if position == self._anchor_position:
            return self._anchor_hash
        if position is not None:
            return self._recent.get(position)
        return None

    def _claims_before(self, position: int) -> None:
        while self._expected and self._expected[0].position < position:
            claim = self._expected.popleft()
            self.checkpoints_checked += 1
            if claim.position in self._missing:
                continue
            self._missing.add(claim.position)
            self._report(
                Kind.MISSING,
                claim.position,
                f"{claim.source} names position {claim.position}, which is not in the log:"
                " the event there was removed",
                positions=(claim.position,),
            )

    def _check_claim(
        self, claim: ExpectedHead, position: int, stored: bytes | None, effective: bytes
    ) -> None:
        self.checkpoints_checked += 1
        if claim.chain_hash in (stored, effective):
            self.checkpoints_matched += 1
            self._last_confirmed = position
            return
        since = (
            f"after position {self._last_confirmed} (the last one a checkpoint confirms)"
            if self._last_confirmed is not None
            else "anywhere"
        )
        self._report(
            Kind.CHECKPOINT_MISMATCH,
            position,
            f"the chain hash at position {position} is {_short(stored)}, but {claim.source}"
            f" says {_short(claim.chain_hash)}: the chain was rewritten {since}"
            f" up to position {position}",
            positions=(position,),
        )

    def _report(
        self, kind: Kind, position: int, explanation: str, positions: tuple[int, ...] = ()
    ) -> None:
        finding = Finding(kind, position, explanation, positions or (position,))
        self.findings.append(finding)
        self._new.append(finding)

    def _take_new(self) -> list[Finding]:
        new, self._new = self._new, []
        return new


def _name(position: int | None) -> str:
    return "no predecessor" if position is None else f"position {position}"


def row_hash_at(prev_hash: bytes, position: int, row: ChainRow) -> bytes:
    """``row``'s content hashed as if it stood at ``position``."""
    return link_hash(prev_hash, position, row.originator_id, row.version, row.topic, row.state)


def verify_rows(
    rows: Iterable[ChainRow],
    *,
    anchor_position: int | None = None,
    anchor_hash: bytes = ZERO_HASH,
    expected: Iterable[ExpectedHead] = (),
    window: int = DEFAULT_WINDOW,
) -> Report:
    verifier = ChainVerifier(
        anchor_position=anchor_position, anchor_hash=anchor_hash, expected=expected, window=window
    )
    for _ in verifier.check(rows):
        pass
    return verifier.report()


class NoHashChain(RuntimeError):
    """The events table was never chained (the plant core has not started on it)."""


def verify_database(
    conninfo: str,
    table: str,
    *,
    expected: Iterable[ExpectedHead] = (),
    window: int = DEFAULT_WINDOW,
    on_rows: Callable[[int, int], None] | None = None,
    snapshots: SnapshotSource | None = None,
) -> Report:
    """Verify the whole chain of ``table`` in one consistent snapshot, read-only.

    ``expected`` must be read before this is called: then every checkpoint
    names a row committed before the snapshot. ``on_rows(done, total)`` is
    called every few thousand rows (for progress). With ``snapshots``, every
    stored snapshot is then checked against its events, in the same
    transaction: the events and snapshots as they stood when the chain was read.
    """
    verifier = ChainVerifier(expected=expected, window=window)
    with psycopg.connect(conninfo) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        if not has_hash_chain(conn, table):
            raise NoHashChain(f"{table} has no hash chain: start the plant core once to install it")
        total = _count(conn, table)
        done = 0
        for row in iter_chain_rows(conn, table):
            verifier.feed(row)
            done += 1
            if on_rows is not None and done % 5000 == 0:
                on_rows(done, total)
        verifier.finish()
        if on_rows is not None:
            on_rows(done, total)
        report = verifier.report()
        if snapshots is not None:
            checked = check_snapshots(conn, table, snapshots, log_end=report.last_position)
            report = replace(report, snapshots_checked=checked.checked).with_findings(
                Finding(Kind.SNAPSHOT_MISMATCH, mismatch.position, mismatch.explanation)
                for mismatch in checked.mismatches
            )
    return report


def _count(conn: psycopg.Connection[TupleRow], table: str) -> int:
    *schema, name = table.split(".")
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*schema, name))
    ).fetchone()
    assert row is not None
    return int(row[0])
