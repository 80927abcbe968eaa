"""Two helpers every use case shares: timezone-aware times, and retrying a lost race."""

from __future__ import annotations

import contextlib
import functools
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

from eventsourcing.persistence import IntegrityError

P = ParamSpec("P")
R = TypeVar("R")

# Concurrent writers of one aggregate (an HMI and the expiry sweeper, a double
# click) meet as a version conflict in the store; the loser decides again on
# fresh state, which turns the conflict into the right domain error. Many may
# race at once (a client firing forbidden requests in parallel, each recording
# an AccessDenied on its operator), so a loser tries again alone (:class:`_Turns`):
# no racer of this process can make it lose twice. Against other processes it
# first waits a random moment, longer after each loss, for them to fall out of step.
CONFLICT_ATTEMPTS = 12
FIRST_PAUSE_SECONDS = 0.002
LONGEST_PAUSE_SECONDS = 0.05


class _Turns:
    """When a use case may run: with the others, or, after losing a race, alone.

    A use case that lost waits until those running have finished, and none
    starts meanwhile; then it runs again with no other of this process beside
    it. A use case a use case calls runs within its caller's turn.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._running = 0
        self._lonely = 0  # the losers waiting for their turn alone, or taking it
        self._alone = False
        self._inside = threading.local()

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        with self._turn(lambda: self._lonely == 0, alone=False):
            yield

    @contextlib.contextmanager
    def alone(self) -> Iterator[None]:
        with self._changed:
            self._lonely += 1
        try:
            with self._turn(lambda: self._running == 0 and not self._alone, alone=True):
                yield
        finally:
            with self._changed:
                self._lonely -= 1
                self._changed.notify_all()

    @contextlib.contextmanager
    def _turn(self, ready: Callable[[], bool], *, alone: bool) -> Iterator[None]:
        if getattr(self._inside, "turn", False):
            yield  # called by a use case: its turn already
            return
        with self._changed:
            self._changed.wait_for(ready)
            if alone:
                self._alone = True
            else:
                self._running += 1
        self._inside.turn = True
        try:
            yield
        finally:
            self._inside.turn = False
            with self._changed:
                if alone:
                    self._alone = False
                else:
                    self._running -= 1
                self._changed.notify_all()


_TURNS = _Turns()


def retry_on_conflict(use_case: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(use_case)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with _TURNS.together():
                return use_case(*args, **kwargs)
        except IntegrityError:
            pass
        for lost in range(1, CONFLICT_ATTEMPTS - 1):
            try:
                with _TURNS.alone():
                    return use_case(*args, **kwargs)
            except IntegrityError:
                longest = min(FIRST_PAUSE_SECONDS * 2**lost, LONGEST_PAUSE_SECONDS)
                time.sleep(random.uniform(0, longest))
        with _TURNS.alone():
            return use_case(*args, **kwargs)

    return run


def utc(at: datetime) -> datetime:
    # A naive time would be stored without an offset and compare wrongly later.
    if at.tzinfo is None:
        raise ValueError(f"times must be timezone-aware, got {at!r}")
    return at.astimezone(UTC)
