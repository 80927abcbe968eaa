"""A repeated condition is logged when it starts and when it ends, with its count."""

from __future__ import annotations

import logging

import pytest

from support.repeated_log import RepeatedLog


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_episode_is_logged_once_at_its_start_and_once_at_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    failures = RepeatedLog(logging.getLogger("test.repeated"), "read of", clock=clock)
    caplog.set_level(logging.INFO, "test.repeated")

    started = [failures.happened("40001", f"timeout {n}") for n in range(50)]
    clock.now += 12.5
    episode = failures.ended("40001")

    assert started == [True] + [False] * 49
    assert episode is not None
    assert episode.count == 50
    assert episode.detail == "timeout 49"
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "read of 40001: timeout 0"),
        (logging.INFO, "read of 40001 is over after 12.5 s, 50 times; last: timeout 49"),
    ]


def test_episodes_of_different_keys_are_kept_apart_and_an_end_without_a_start_says_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = RepeatedLog(logging.getLogger("test.repeated"), "read of", level=logging.ERROR)
    caplog.set_level(logging.INFO, "test.repeated")

    failures.happened("a", "refused")
    failures.happened("b", "refused")
    failures.happened("a", "refused")

    assert "a" in failures
    assert "b" in failures
    assert failures.ended("never-started") is None
    ended_a = failures.ended("a")
    assert ended_a is not None
    assert ended_a.count == 2
    assert "a" not in failures
    assert "b" in failures
    assert failures.happened("a", "refused again") is True  # a new episode starts
    assert [r.levelno for r in caplog.records] == [
        logging.ERROR, logging.ERROR, logging.INFO, logging.ERROR,
    ]  # fmt: skip
