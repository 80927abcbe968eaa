"""The lane logins run in, apart from commands: bounded Argon2 work and store calls of its own.

Argon2id costs about 0.2 s of CPU per password on purpose. Run on the event
store's executor, or on asyncio's default one, a flood of logins would take
every core and every store thread, and an emergency stop's ``request_command``
and the dispatcher's ``record_dispatch`` would wait behind it. So a login
runs in a lane of its own:

- Argon2 (every password checked or hashed by the API) runs on ``workers``
  threads of its own, by default one core less than the machine has and at
  least one: however many logins arrive, no more cores than that hash.
- A login's store calls (finding the operator, recording the attempt) run on
  a one-thread :class:`~eventstore.executor.StoreExecutor` of the lane, never
  ahead of a command's in the shared one; and at most one login at a time
  holds the event table's write lock.
- At most ``workers + queue`` logins are in the lane at once. The next one is
  refused at once (:class:`LoginLaneFull`) rather than queued: the client is
  told to try again, and the wait of an admitted login stays bounded.

The admission count is kept on the event loop, which is the only caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from api.credentials import hash_password, verify_password
from eventstore.executor import StoreExecutor

P = ParamSpec("P")
R = TypeVar("R")

# Logins that may wait for a worker: an admitted one waits some 8 checks of 0.2 s at most.
DEFAULT_LOGIN_QUEUE = 8


def default_login_workers() -> int:
    """One core less than the machine has, so that one is always left to the rest."""
    return max(1, (os.cpu_count() or 1) - 1)


class LoginLaneFull(Exception):
    """As many logins as the lane holds are already in it: try again in a moment."""


class LoginLane:
    def __init__(self, *, workers: int | None = None, queue: int = DEFAULT_LOGIN_QUEUE) -> None:
        workers = default_login_workers() if workers is None else workers
        if workers < 1 or queue < 0:
            raise ValueError(f"a login lane needs a worker and a queue, not {workers}, {queue}")
        self.capacity = workers + queue
        self.refused = 0
        self._in_lane = 0
        self._argon2 = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._store = StoreExecutor(max_workers=1, name="login-store")

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a place in the lane for one login; raises :class:`LoginLaneFull` if none is free."""
        if self._in_lane >= self.capacity:
            self.refused += 1
            raise LoginLaneFull(f"{self._in_lane} logins are being checked")
        self._in_lane += 1
        try:
            yield
        finally:
            self._in_lane -= 1

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """:func:`~api.credentials.verify_password` on the lane's Argon2 threads."""
        return await self._hashing(verify_password, password_hash, password)

    async def hash(self, password: str) -> str:
        """:func:`~api.credentials.hash_password` on the lane's Argon2 threads."""
        return await self._hashing(hash_password, password)

    async def store(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """A blocking call into the event store, on the lane's own store thread."""
        return await self._store.call(fn, *args, **kwargs)

    async def _hashing(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._argon2, functools.partial(fn, *args, **kwargs))

    def shutdown(self) -> None:
        self._argon2.shutdown(wait=True, cancel_futures=True)
        self._store.shutdown()
