from __future__ import annotations

import random

import pytest

from devices.backoff import Backoff, ceiling


class Highest(random.Random):
    """Jitter that always draws the top of its range."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Lowest(random.Random):
    """Jitter that always draws the bottom of its range."""

    def uniform(self, a: float, b: float) -> float:
        return a


def delays(backoff: Backoff, count: int) -> list[float]:
    return [backoff.next_delay() for _ in range(count)]


def test_ceiling_doubles_from_the_base_to_the_cap() -> None:
    assert [ceiling(n, 1.0, 60.0) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert ceiling(10_000, 1.0, 60.0) == 60


def test_the_seeds_default_retries_at_once_then_every_five_seconds() -> None:
    backoff = Backoff(5.0, 5.0, random.Random(7), immediate_first=True)
    assert delays(backoff, 6) == [0.0, 5.0, 5.0, 5.0, 5.0, 5.0]


@pytest.mark.parametrize(
    ("rng", "expected"),
    [(Highest(), [0.0, 1.0, 2.0, 4.0, 8.0, 8.0]), (Lowest(), [0.0, 1.0, 1.0, 2.0, 4.0, 4.0])],
)
def test_the_delay_grows_with_jitter_between_half_the_ceiling_and_the_ceiling(
    rng: random.Random, expected: list[float]
) -> None:
    assert delays(Backoff(1.0, 8.0, rng, immediate_first=True), 6) == expected


def test_jitter_never_goes_below_the_base_nor_above_the_cap() -> None:
    backoff = Backoff(3.0, 10.0, random.Random(11))
    assert all(3.0 <= delay <= 10.0 for delay in delays(backoff, 200))
    assert delays(Backoff(3.0, 10.0, random.Random(11)), 200) == delays(
        Backoff(3.0, 10.0, random.Random(11)), 200
    )  # reproducible from its seed


def test_without_an_immediate_first_attempt_the_first_delay_is_the_base() -> None:
    assert delays(Backoff(1.0, 60.0, Highest()), 3) == [1.0, 2.0, 4.0]


def test_reset_starts_again_from_the_first_attempt() -> None:
    backoff = Backoff(1.0, 8.0, Highest(), immediate_first=True)
    delays(backoff, 5)
    backoff.reset()
    assert delays(backoff, 3) == [0.0, 1.0, 2.0]


@pytest.mark.parametrize(("base", "cap"), [(0.0, 5.0), (-1.0, 5.0), (5.0, 4.0)])
def test_a_base_that_is_not_positive_or_above_the_cap_is_refused(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="0 < base <= cap"):
        Backoff(base, cap)
