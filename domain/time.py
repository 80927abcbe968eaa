"""Two helpers every use case shares: timezone-aware times, and retrying a lost race."""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

from eventsourcing.persistence import IntegrityError

P = ParamSpec("P")
R = TypeVar("R")

# Concurrent writers of one aggregate (an HMI and the expiry sweeper, a double
# click) meet as a version conflict in the store; the loser decides again on
# fresh state, which turns the conflict into the right domain error. Many may
# race at once (an HMI's parallel requests refused on one operator, a burst of
# logins on the operator directory: as many as the store executor has threads,
# in each process), so a loser first waits a random moment, longer after each
# loss, for the racers to fall out of step.
CONFLICT_ATTEMPTS = 12
FIRST_PAUSE_SECONDS = 0.002
LONGEST_PAUSE_SECONDS = 0.05


def retry_on_conflict(use_case: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(use_case)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        for lost in range(CONFLICT_ATTEMPTS - 1):
            try:
                return use_case(*args, **kwargs)
            except IntegrityError:
                longest = min(FIRST_PAUSE_SECONDS * 2**lost, LONGEST_PAUSE_SECONDS)
                time.sleep(random.uniform(0, longest))
        return use_case(*args, **kwargs)

    return run


def utc(at: datetime) -> datetime:
    # A naive time would be stored without an offset and compare wrongly later.
    if at.tzinfo is None:
        raise ValueError(f"times must be timezone-aware, got {at!r}")
    return at.astimezone(UTC)
