"""What the auditor's screen says of the log: whether the last checkpoint still holds."""

from __future__ import annotations

from datetime import UTC, datetime

from audit.chain_state import ChainState
from audit.checkpoints import Checkpoint, generate_signing_key

SIGNED = bytes(range(32))


def checkpoint_at(position: int) -> Checkpoint:
    return Checkpoint.sign(generate_signing_key(), position, SIGNED, datetime.now(UTC))


def test_a_checkpoint_holds_while_the_log_keeps_its_hash() -> None:
    state = ChainState(12, b"h" * 32, checkpoint_at(10), hash_at_checkpoint=SIGNED)
    assert state.checkpoint_holds is True
    assert state.events_since_checkpoint == 2


def test_a_rewritten_or_missing_row_breaks_the_checkpoint() -> None:
    assert ChainState(12, None, checkpoint_at(10), b"x" * 32).checkpoint_holds is False
    assert ChainState(9, None, checkpoint_at(10), None).checkpoint_holds is False


def test_without_a_checkpoint_there_is_nothing_to_hold() -> None:
    state = ChainState(12, b"h" * 32)
    assert state.checkpoint_holds is None
    assert state.events_since_checkpoint is None
