"""The login lane: a bounded number of logins, Argon2 and store calls on threads of its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from api import login_lane
from api.credentials import hash_password
from api.login_lane import LoginLane, LoginLaneFull, default_login_workers


@pytest.fixture
def lane() -> Iterator[LoginLane]:
    lane = LoginLane(workers=1, queue=2)
    yield lane
    lane.shutdown()


async def test_a_full_lane_refuses_the_next_login_at_once_and_admits_again_when_one_leaves(
    lane: LoginLane,
) -> None:
    with lane.admit(), lane.admit(), lane.admit():
        with pytest.raises(LoginLaneFull), lane.admit():
            pass
        with pytest.raises(LoginLaneFull), lane.admit():
            pass
        assert lane.refused == 2
    # The places are given back, whether the login ended well or not.
    with pytest.raises(RuntimeError), lane.admit():
        raise RuntimeError("the store failed")
    with lane.admit(), lane.admit(), lane.admit():
        pass
    assert lane.refused == 2


async def test_no_more_passwords_are_checked_at_once_than_the_lane_has_workers(
    lane: LoginLane, monkeypatch: pytest.MonkeyPatch
) -> None:
    running: list[str] = []
    most = 0
    lock = threading.Lock()

    def checking(password_hash: str | None, password: str) -> bool:
        nonlocal most
        with lock:
            running.append(threading.current_thread().name)
            most = max(most, len(running))
        threading.Event().wait(0.02)  # long enough for the others to pile up behind it
        with lock:
            running.pop()
        return password == "right"

    monkeypatch.setattr(login_lane, "verify_password", checking)

    checked = await asyncio.gather(*(lane.verify(None, p) for p in ("right", "x", "y", "right")))

    assert checked == [True, False, False, True]
    assert most == 1


async def test_argon2_and_store_calls_run_on_the_lanes_own_threads(lane: LoginLane) -> None:
    def thread_name() -> str:
        return threading.current_thread().name

    assert (await lane.store(thread_name)).startswith("login-store")
    stored = await lane.hash("a long enough password")
    assert stored.startswith("$argon2id$")
    assert await lane.verify(stored, "a long enough password")
    assert not await lane.verify(hash_password("another password"), "a long enough password")


def test_the_lane_leaves_a_core_to_the_rest_and_needs_a_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert default_login_workers() == 7
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert default_login_workers() == 1
    with pytest.raises(ValueError, match="a worker"):
        LoginLane(workers=0)
