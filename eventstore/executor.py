"""Runs the blocking event store off the event loop.

The eventsourcing library has no asyncio API: every call into the application
(and so into psycopg) blocks. All of them go through one dedicated, bounded
thread pool, so the event loop never waits on PostgreSQL and the number of
threads holding database connections stays below the pool size.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from eventsourcing.persistence import InterfaceError, OperationalError

P = ParamSpec("P")
R = TypeVar("R")

# Transient store failures (connection lost, pool exhausted): retried after a pause.
TRANSIENT_STORE_ERRORS = (OperationalError, InterfaceError)


class StoreExecutor:
    def __init__(self, max_workers: int = 4, *, name: str = "eventstore") -> None:
        # The threads' name tells, in a thread dump, whose store calls are waiting.
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)

    async def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
