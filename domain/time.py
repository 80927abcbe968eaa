"""Two helpers every use case shares: timezone-aware times, and retrying a lost race."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

from eventsourcing.persistence import IntegrityError

P = ParamSpec("P")
R = TypeVar("R")

# Concurrent writers of one aggregate (an HMI and the expiry sweeper, a double
# click) meet as a version conflict in the store; the loser decides again on
# fresh state, which turns the conflict into the right domain error.
CONFLICT_ATTEMPTS = 3


def retry_on_conflict(use_case: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(use_case)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        for _ in range(CONFLICT_ATTEMPTS - 1):
            try:
                return use_case(*args, **kwargs)
            except IntegrityError:
                continue
        return use_case(*args, **kwargs)

    return run


def utc(at: datetime) -> datetime:
    # A naive time would be stored without an offset and compare wrongly later.
    if at.tzinfo is None:
        raise ValueError(f"times must be timezone-aware, got {at!r}")
    return at.astimezone(UTC)
