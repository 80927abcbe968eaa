"""The position a log follower may persist while work is in flight; read-back comparison."""

from __future__ import annotations

from eventstore.tracking import Progress
from reactors.command_dispatcher import _same_value


def test_the_safe_position_never_passes_unfinished_work() -> None:
    progress = Progress(10)
    assert not progress.is_new(10)
    for notification_id in (11, 12, 13):
        progress.seen(notification_id)
    progress.hold(12)
    assert progress.safe == 11
    progress.hold(13)
    progress.release(12)
    assert progress.safe == 12
    progress.release(13)
    assert progress.safe == 13


def test_a_read_back_matches_the_requested_value_within_float32_rounding() -> None:
    assert _same_value(12.300000190734863, 12.3)
    assert _same_value(1500, 1500.0)
    assert not _same_value(1499.0, 1500)
    assert _same_value(True, True)
    assert _same_value(1, True)
    assert not _same_value(0, True)
    assert not _same_value(None, 5)
