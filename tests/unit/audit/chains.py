"""Synthetic hash chains, built and tampered with as an attacker with the table would."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

from eventstore.chain import ZERO_HASH, ChainRow, link_hash

AGGREGATES = [uuid.UUID(int=n + 1) for n in range(5)]


def content(position: int) -> tuple[uuid.UUID, int, str, bytes]:
    aggregate = AGGREGATES[position % len(AGGREGATES)]
    state = json.dumps({"n": position, "note": f"event {position}"}).encode()
    return aggregate, position, f"tests:Tank.Event{position % 3}", state


def chain(positions: list[int] | range, prev_hash: bytes = ZERO_HASH) -> list[ChainRow]:
    """Rows hashed exactly as the trigger does, at the given positions (gaps allowed)."""
    rows = []
    prev: int | None = None
    for position in positions:
        originator, version, topic, state = content(position)
        digest = link_hash(prev_hash, position, originator, version, topic, state)
        rows.append(ChainRow(position, prev, digest, originator, version, topic, state))
        prev, prev_hash = position, digest
    return rows


def rehash(rows: list[ChainRow], start: int, prev_hash: bytes = ZERO_HASH) -> list[ChainRow]:
    """Recompute every link from index ``start`` on: the rewrite a superuser could do."""
    out = list(rows[:start])
    prev_hash = out[-1].chain_hash if out and out[-1].chain_hash is not None else prev_hash
    prev = out[-1].position if out else None
    for row in rows[start:]:
        digest = link_hash(
            prev_hash, row.position, row.originator_id, row.version, row.topic, row.state
        )
        out.append(replace(row, chain_prev=prev, chain_hash=digest))
        prev, prev_hash = row.position, digest
    return out


def swap_contents(rows: list[ChainRow], i: int, j: int) -> list[ChainRow]:
    """Exchange two rows' events, leaving the chain columns in place."""
    out = list(rows)
    a, b = rows[i], rows[j]
    fields = ("originator_id", "version", "topic", "state")
    out[i] = replace(a, **{name: getattr(b, name) for name in fields})
    out[j] = replace(b, **{name: getattr(a, name) for name in fields})
    return out


def swap_positions(rows: list[ChainRow], i: int, j: int) -> list[ChainRow]:
    """Exchange two whole rows' positions (notification ids), chain columns included."""
    out = list(rows)
    a, b = rows[i], rows[j]
    out[i] = replace(b, position=a.position)
    out[j] = replace(a, position=b.position)
    return out
