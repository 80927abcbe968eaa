from __future__ import annotations

import random

import pytest

from devices.backoff import Backoff, ceiling


def test_ceiling_doubles_from_one_second_to_a_minute() -> None:
    assert [ceiling(n, 1.0, 60.0) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert ceiling(10_000, 1.0, 60.0) == 60


def test_full_jitter_stays_under_the_ceiling_and_is_reproducible() -> None:
    delays = [Backoff(rng=random.Random(7)).next_delay() for _ in range(2)]
    assert delays[0] == delays[1]
    backoff = Backoff(rng=random.Random(7))
    for attempt in range(10):
        assert 0 <= backoff.next_delay() <= ceiling(attempt, 1.0, 60.0)


def test_equal_jitter_waits_at_least_half_the_ceiling() -> None:
    backoff = Backoff(jitter="equal", rng=random.Random(3))
    for attempt in range(10):
        top = ceiling(attempt, 1.0, 60.0)
        assert top / 2 <= backoff.next_delay() <= top


def test_reset_starts_again_from_the_base() -> None:
    backoff = Backoff(jitter="equal", rng=random.Random(1))
    for _ in range(6):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(0.5, abs=0.5)
    assert backoff.attempt == 1
