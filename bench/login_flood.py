"""login_flood: an emergency stop's store calls while logins flood in, with and without the lane.

An emergency stop is two calls into the event store on the shared
:class:`~eventstore.executor.StoreExecutor`: ``request_command`` (an emergency
value is recorded already released) and the dispatcher's ``record_dispatch``.
Their time together is measured three ways, one stop after the other:

- ``quiet``: no logins;
- ``plantcore``: while logins arrive at a fixed pace, each without waiting for
  the others (an attacker's pace, not the server's), run as the API runs them,
  through :class:`~api.login_lane.LoginLane`: refused at once when the lane is
  full, Argon2 on the lane's thread, the store calls on the lane's own;
- ``raw``: the same flood run as logins ran before the lane: the store calls
  on the shared executor, Argon2 on asyncio's default executor
  (``asyncio.to_thread``), nothing refused.

Every login is of the same operator with a wrong password, as a guessing run
is; once it locks, each is still an Argon2 check and a recorded refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from api.credentials import hash_password, verify_password
from api.login_lane import LoginLane, LoginLaneFull
from bench.command_store import bench_schema
from bench.common import BenchConfig, Figures, Run, latency_ms, unique_name
from domain.application import PlantApplication
from domain.catalog import TagCatalog, TagLimits, ValueKind
from domain.errors import LoginRefused
from eventstore.executor import StoreExecutor
from eventstore.postgres import event_store_env

DEVICE, TAG = "bench-press", "running"
PASSWORD = "bench login password"  # noqa: S105 - the bench operators' own
# Stands in for a sealed TOTP secret: nothing here checks a code.
UNUSED = "unused-by-the-benchmark"
LOGINS_PER_S = 40
# The store threads of the runtime, shared by every use case.
STORE_THREADS = 4

Login = Callable[[], Coroutine[Any, Any, str]]


def _now() -> datetime:
    return datetime.now(UTC)


def _refused_attempt(app: PlantApplication, username: str, matches: bool) -> None:
    with contextlib.suppress(LoginRefused):
        app.log_in(
            username=username,
            password_matches=matches,
            source="203.0.113.9",
            session_id="bench",
            refresh_hash="bench",
            at=_now(),
        )


def lane_login(app: PlantApplication, lane: LoginLane, username: str) -> Login:
    """A login as the API runs it: in the login lane, or refused at once."""

    async def login() -> str:
        try:
            with lane.admit():
                operator = await lane.store(app.find_operator, username)
                matches = await lane.verify(operator.password_hash if operator else None, "x")
                await lane.store(_refused_attempt, app, username, matches)
        except LoginLaneFull:
            return "refused"
        return "checked"

    return login


def unbounded_login(app: PlantApplication, store: StoreExecutor, username: str) -> Login:
    """A login as the API ran it before the lane: the shared executor, the default one."""

    async def login() -> str:
        operator = await store.call(app.find_operator, username)
        matches = await asyncio.to_thread(
            verify_password, operator.password_hash if operator else None, "x"
        )
        await store.call(_refused_attempt, app, username, matches)
        return "checked"

    return login


async def emergency_stops(
    app: PlantApplication, store: StoreExecutor, username: str, count: int
) -> Run:
    """``count`` emergency stops, one after the other: request, then the dispatch's record."""
    durations: list[float] = []
    started = time.perf_counter()
    for _ in range(count):
        sent = time.perf_counter()
        ticket = await store.call(
            app.request_command, actor=username, device=DEVICE, tag=TAG, value=False, at=_now()
        )
        await store.call(app.record_dispatch, ticket.command_id, _now())
        durations.append(time.perf_counter() - sent)
    return Run(count, time.perf_counter() - started, durations)


async def during_flood(
    login: Login, stops: Callable[[], Awaitable[Run]]
) -> tuple[Run, Counter[str]]:
    """``stops`` while ``login`` is started ``LOGINS_PER_S`` times a second; how each ended."""
    outcomes: Counter[str] = Counter()
    pending: set[asyncio.Task[str]] = set()

    def count(task: asyncio.Task[str]) -> None:
        pending.discard(task)
        if not task.cancelled():
            outcomes[task.result()] += 1

    async def flood() -> None:
        while True:
            task = asyncio.create_task(login())
            pending.add(task)
            task.add_done_callback(count)
            outcomes["sent"] += 1
            await asyncio.sleep(1 / LOGINS_PER_S)  # the attacker's pace

    flooding = asyncio.create_task(flood())
    try:
        await asyncio.sleep(1.0)  # a second of flood before the first stop
        run = await stops()
    finally:
        flooding.cancel()
        for task in pending:
            task.cancel()  # a login not started yet leaves its executor's queue
        await asyncio.gather(flooding, *pending, return_exceptions=True)
    outcomes["cancelled"] = outcomes["sent"] - outcomes["checked"] - outcomes["refused"]
    return run, outcomes


async def run(config: BenchConfig) -> Figures:
    count = config.pick(quick=5, full=20)
    catalog = TagCatalog(
        [TagLimits(DEVICE, TAG, "", True, ValueKind.BOOL, None, None, emergency_values=(False,))]
    )
    store = StoreExecutor(max_workers=STORE_THREADS)
    lane = LoginLane()
    with bench_schema(config.database_url) as schema:
        env = {**event_store_env(config.database_url), "POSTGRES_SCHEMA": schema}
        app = PlantApplication(catalog, env=env)
        try:
            operator, guessed = unique_name("bench_stopper"), unique_name("bench_guessed")
            for username in (operator, guessed):
                app.register_operator(
                    username=username,
                    full_name="Bench Operator",
                    roles=["operator"],
                    password_hash=hash_password(PASSWORD),
                    totp_secret_sealed=UNUSED,
                    actor="bench",
                    at=_now(),
                )
            app.grant_permission(username=operator, scope="plant", actor="bench", at=_now())

            def stops() -> Awaitable[Run]:
                return emergency_stops(app, store, operator, count)

            await stops()  # untimed: connections opened, statements and pages warm
            quiet = await stops()
            ours, our_logins = await during_flood(lane_login(app, lane, guessed), stops)
            raw, raw_logins = await during_flood(unbounded_login(app, store, guessed), stops)
        finally:
            lane.shutdown()
            store.shutdown()
            app.close()
    return {
        "params": {
            "stops": count,
            "logins_per_s": LOGINS_PER_S,
            "store_threads": STORE_THREADS,
            "lane_capacity": lane.capacity,
        },
        "quiet": {"stop_latency_ms": latency_ms(quiet.durations)},
        "plantcore": {"stop_latency_ms": latency_ms(ours.durations), "logins": our_logins},
        "raw": {"stop_latency_ms": latency_ms(raw.durations), "logins": raw_logins},
        # How many times longer a stop takes during the flood without the lane than with it.
        "ratio_p50": round(latency_ms(raw.durations)["p50"] / latency_ms(ours.durations)["p50"], 1),
    }
