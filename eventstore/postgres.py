"""The eventsourcing library's PostgreSQL persistence, configured from one database URL."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit


def event_store_env(database_url: str, *, pool_size: int = 5) -> dict[str, str]:
    """The environment an eventsourcing ``Application`` needs to persist in PostgreSQL.

    The URL has the usual form ``postgresql://user:password@host:port/dbname``;
    a Unix socket directory may be given as ``?host=/path`` (libpq's convention).
    """
    parts = urlsplit(database_url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {database_url!r}")
    dbname = parts.path.lstrip("/")
    host = parts.hostname or parse_qs(parts.query).get("host", [""])[0]
    if not dbname or not host:
        raise ValueError(f"the database URL must name a host and a database: {database_url!r}")
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": host,
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_CONNECT_TIMEOUT": "5",
        "POSTGRES_PRE_PING": "y",
        "CREATE_TABLE": "y",
    }
