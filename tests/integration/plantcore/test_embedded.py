"""The quick start's embedded servers, started from their wheels and stopped again."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from urllib.parse import urlsplit

import nats
import psycopg
import pytest
import redis

from plantcore import embedded
from tests.support import free_port


def answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), 0.5):
            return True
    except OSError:
        return False


def test_embedded_postgres_serves_sql_and_stops(tmp_path: Path) -> None:
    with embedded.embedded_postgres(tmp_path) as url, psycopg.connect(url) as conn:
        assert conn.execute("SELECT 6 * 7").fetchone() == (42,)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)


def test_embedded_nats_has_jetstream_and_stops(tmp_path: Path) -> None:
    async def use(url: str) -> str:
        nc = await nats.connect(url, max_reconnect_attempts=0)
        try:
            info = await nc.jetstream().account_info()
            return type(info).__name__
        finally:
            await nc.close()

    with embedded.embedded_nats(tmp_path) as url:
        assert asyncio.run(use(url)) == "AccountInfo"
    assert not answers(url)


def test_embedded_redis_serves_and_stops(tmp_path: Path) -> None:
    with embedded.embedded_redis(tmp_path) as url:
        client = redis.Redis.from_url(url)
        client.set("plantcore", "ok")
        assert client.get("plantcore") == b"ok"
        client.close()
    assert not answers(url)


def test_configured_urls_win_and_nothing_is_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANTCORE_DATABASE_URL", "postgresql://db.example/plant")
    monkeypatch.setenv("PLANTCORE_NATS_URL", "nats://nats.example:4222")
    monkeypatch.setenv("PLANTCORE_REDIS_URL", "redis://cache.example:6379/0")

    with embedded.services(tmp_path) as urls:
        assert urls == embedded.ServiceUrls(
            "postgresql://db.example/plant",
            "nats://nats.example:4222",
            "redis://cache.example:6379/0",
        )
    assert not any(tmp_path.iterdir())


def test_a_service_that_does_not_answer_is_started_embedded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANTCORE_DATABASE_URL", "postgresql://db.example/plant")
    monkeypatch.setenv("PLANTCORE_REDIS_URL", "redis://cache.example:6379/0")
    monkeypatch.delenv("PLANTCORE_NATS_URL", raising=False)
    # Nothing listens at this "default" address, as on a machine without NATS.
    monkeypatch.setattr(embedded, "DEFAULT_NATS_URL", f"nats://127.0.0.1:{free_port()}")

    with embedded.services(tmp_path) as urls:
        assert urls.nats_url != embedded.DEFAULT_NATS_URL
        assert answers(urls.nats_url)
        assert (tmp_path / "nats").is_dir()
    assert not answers(urls.nats_url)
