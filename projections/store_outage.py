"""What a store being away looks like to its client, as opposed to a store refusing the data.

A projection retries what fails with one of these later, from JetStream, and
never dead-letters it: the same write succeeds once the store is back. Each
set was checked against a real server stopped, killed and restarted under a
steady load of writes (``tests/integration/projections/test_store_outage.py``).

PostgreSQL through asyncpg fails, depending on the moment, with:

- ``OSError`` (``ConnectionRefusedError`` while it is down,
  ``ConnectionResetError`` when it goes) and ``TimeoutError`` (a statement
  beyond the pool's ``command_timeout``, a server that no longer answers);
- ``PostgresConnectionError``, among them ``ConnectionDoesNotExistError``
  ("connection was closed in the middle of operation");
- ``OperatorInterventionError``: shutting down, starting up, not yet accepting
  connections (``CannotConnectNowError``), terminated (``AdminShutdownError``);
- ``InsufficientResourcesError`` (too many connections, disk full) and
  ``TransactionRollbackError`` (a deadlock, a serialisation failure);
- and, when the connection closes under a transaction or a COPY, whatever
  state asyncpg's protocol was left in: an ``InterfaceError`` ("cannot call
  Transaction.__aexit__(): the underlying connection is closed", "cannot
  perform operation: another operation is in progress" from the reset of the
  connection given back) or an ``InternalClientError`` ("cannot switch to
  state 15; another operation is in progress"), at times before asyncpg has
  noticed the connection is gone. They are not in the set as such, since an
  ``InterfaceError`` outside a transaction may be a bug of the caller's:
  :func:`transaction` raises :class:`ConnectionLost` for them. Within its
  block run only the fixed statements of a read model, which every test runs;
  asyncpg's client-side ``DataError`` (an ``InterfaceError`` and a
  ``ValueError``: data it cannot encode) stays what it is, refused data.

Redis through redis-py fails with its ``ConnectionError`` (refused, reset,
"Connection closed by server"; ``BusyLoadingError`` while it loads a dump is
one) and its ``TimeoutError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
import redis.exceptions
from asyncpg.pool import PoolConnectionProxy


class ConnectionLost(Exception):
    """PostgreSQL's connection closed under a transaction: the server stopped, crashed or
    restarted. What asyncpg raised then is the cause."""


POSTGRES_UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
    ConnectionLost,
)

REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)

# No statement of the read models takes this long unless PostgreSQL has stopped
# answering; beyond it asyncpg gives up with a TimeoutError.
STATEMENT_TIMEOUT_SECONDS = 10.0


async def read_model_pool(
    database_url: str, *, statement_timeout_seconds: float = STATEMENT_TIMEOUT_SECONDS
) -> asyncpg.Pool:
    """The pool of the read models (history, alarm views), every statement bounded in time.

    The bound covers what asyncpg sends on its own too: the rollback when a
    transaction is cancelled and the reset of a connection given back. Without
    it, a consumer that cancels a write to a server that no longer answers
    would wait on that rollback for ever.
    """
    pool: asyncpg.Pool = await asyncpg.create_pool(
        database_url, min_size=1, max_size=4, command_timeout=statement_timeout_seconds
    )
    return pool


@contextlib.asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
    """A pooled connection in a transaction; asyncpg's state errors are :class:`ConnectionLost`.

    The pool takes the connection back (or drops it) before this returns,
    whatever happened: what its reset raises counts as well.
    """
    try:
        async with pool.acquire() as conn, conn.transaction():
            yield conn
    except ValueError:
        raise  # asyncpg's client-side DataError: the data, not the connection
    except (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError) as exc:
        raise ConnectionLost(f"{type(exc).__name__}: {exc}") from exc
