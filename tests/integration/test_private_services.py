"""A test's own servers: stopped, killed and started again by PID, on the same port and data."""

from __future__ import annotations

import concurrent.futures
import os
from pathlib import Path

import nats
import psycopg
import pytest
import redis

from plantcore.embedded import port_answers
from tests import private_services
from tests.private_services import PrivateService, private_nats, private_postgres, private_redis

pytestmark = pytest.mark.integration


def assert_gone(service: PrivateService, pid: int) -> None:
    assert service.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not port_answers(service.port)


def test_postgres_keeps_its_rows_through_a_kill_and_a_stop(tmp_path: Path) -> None:
    with private_postgres(tmp_path) as postgres:
        port, first = postgres.port, postgres.pid  # the same port throughout
        assert first is not None
        assert postgres.url == f"postgresql://postgres@127.0.0.1:{port}/postgres"
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (1), (2), (3)")
            # A session still open when the server goes, as a pool's would be.
            postgres.kill()
            assert_gone(postgres, first)
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")

        postgres.start()  # after crash recovery
        assert postgres.pid not in (None, first)
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            assert conn.execute("SELECT sum(n) FROM kept").fetchone() == (6,)
            postgres.restart()  # a clean stop does not wait for this open session
        with psycopg.connect(postgres.url) as conn:
            assert conn.execute("SELECT sum(n) FROM kept").fetchone() == (6,)
        last = postgres.pid
        assert last is not None
    assert_gone(postgres, last)
    assert not postgres.data_dir.exists()


def test_redis_comes_back_on_its_port_and_empty(tmp_path: Path) -> None:
    with private_redis(tmp_path) as service:
        port, first = service.port, service.pid
        assert first is not None
        assert service.url == f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(service.url)
        client.set("plantcore", "ok")
        service.kill()
        assert_gone(service, first)
        service.start()
        # Like the plant's Redis, it keeps nothing on disk.
        assert client.get("plantcore") is None
        client.close()


async def test_nats_keeps_its_streams_through_a_kill(tmp_path: Path) -> None:
    async def stored_messages(url: str, publish: bool) -> int:
        nc = await nats.connect(url, max_reconnect_attempts=0)
        try:
            js = nc.jetstream(timeout=5)
            if publish:
                await js.add_stream(name="KEPT", subjects=["kept.>"])
                await js.publish("kept.one", b"1")
            info = await js.stream_info("KEPT")
            return info.state.messages
        finally:
            await nc.close()

    with private_nats(tmp_path) as service:
        port = service.port
        assert service.url == f"nats://127.0.0.1:{port}"
        assert await stored_messages(service.url, publish=True) == 1
        service.kill()
        service.start()
        assert service.port == port
        assert await stored_messages(service.url, publish=False) == 1


def test_leaving_the_block_after_a_failure_stops_the_server(tmp_path: Path) -> None:
    service = private_redis(tmp_path)
    pids: list[int | None] = []

    def fail_while_running() -> None:
        with service:
            pids.append(service.pid)
            raise RuntimeError("the test failed")

    with pytest.raises(RuntimeError, match="the test failed"):
        fail_while_running()
    [pid] = pids
    assert pid is not None
    assert_gone(service, pid)


def test_a_server_that_cannot_start_says_so_and_leaves_nothing_running(tmp_path: Path) -> None:
    with private_redis(tmp_path) as taken:
        second = private_redis(tmp_path / "second")
        second.port = taken.port  # already in use: Redis exits at once
        with pytest.raises(RuntimeError, match="exited at start-up"):
            second.start()
        assert second.pid is None


def test_a_frozen_server_answers_nothing_until_thawed_and_still_stops(tmp_path: Path) -> None:
    with private_redis(tmp_path) as service:
        client = redis.Redis.from_url(service.url, socket_timeout=0.5)
        service.freeze()
        with pytest.raises(redis.exceptions.TimeoutError):
            client.ping()
        service.thaw()
        assert client.ping() is True
        client.close()
        service.freeze()  # and left frozen: stopping it must not wait for a thaw
        pid = service.pid
        assert pid is not None
    assert_gone(service, pid)


def test_postgres_started_from_two_threads_at_once_shares_one_template(tmp_path: Path) -> None:
    # As a drill in the background and one in the foreground do, before any template exists.
    private_services._template_made.cache_clear()
    private_services._clusters_made.cache_clear()
    ports: list[int] = []

    def run(name: str) -> None:
        with private_postgres(tmp_path / name) as postgres:
            with psycopg.connect(postgres.url) as conn:
                conn.execute("SELECT 1")
            ports.append(postgres.port)

    with concurrent.futures.ThreadPoolExecutor(2) as threads:
        for started in [threads.submit(run, name) for name in ("first", "second")]:
            started.result()
    assert len(set(ports)) == 2
