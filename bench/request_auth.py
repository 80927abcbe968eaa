"""request_auth: what authenticating an API request costs, on PostgreSQL.

Every authenticated GraphQL request checks its bearer token (PyJWT, HS256:
:func:`api.credentials.verify_token`) and then asks ``PlantApplication.authenticate``
whether the token's session is still open, which loads the operator from the
event store (its latest snapshot and the events after it) for its current
roles and scopes. Measured, one request at a time:

- ``verify_token``: the token check alone, no store;
- ``verify_token`` + ``authenticate`` for three operators: ``short`` (3
  events: ``Registered``, ``PermissionGranted``, ``LoginSucceeded``), ``long``
  (100 shifts of ``LoginSucceeded``, three ``TotpStepUsed`` and ``LoggedOut``,
  503 events: loaded from the snapshot at version 500 and 3 events) and
  ``long_worst`` (549 events: the snapshot at 500 and 49 events, the most a
  load replays with snapshots every 50 events);
- ``authenticate`` alone, for each, with no token before it;
- **raw**, for each: the bare eventsourcing library's
  ``Application.repository.get`` of a bare ``Aggregate`` with the same events
  (same names and fields), snapshotted every 50 events through the library's
  ``snapshotting_intervals``, and a look-up of the session in its state. No
  token: ``ratio`` is a whole plantcore request over the bare load, and
  ``ratio_authenticate`` is ``authenticate`` alone over the same (the
  like-for-like one); the ``_p50`` ratios compare the medians instead;
- ``store_executor``: the ``long`` operator's requests as the API makes them,
  ``verify_token`` on the event loop and ``authenticate`` one hop to
  :class:`StoreExecutor`'s pool, by four concurrent clients;
- ``login``: the login mutation's work: ``find_operator``, the Argon2id
  verification of the password (:func:`api.credentials.verify_password`, the API's
  hasher settings), then a refresh token, ``log_in`` (load, save
  ``LoginSucceeded``) and the access token. Its ``parts`` split Argon2 from
  the rest.

Both applications live in a schema of their own, dropped at the end.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import argon2
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from api.credentials import (
    TokenSettings,
    hash_password,
    issue_token,
    new_refresh_token,
    new_session_id,
    verify_password,
    verify_token,
)
from bench.command_store import bench_schema
from bench.common import (
    BenchConfig,
    Figures,
    Laps,
    Run,
    interleaved,
    latency_ms,
    ratio,
    unique_name,
)
from domain.application import PlantApplication
from domain.catalog import TagCatalog
from eventstore.executor import StoreExecutor
from eventstore.postgres import event_store_env

SNAPSHOT_INTERVAL = 50  # PlantApplication.snapshotting_intervals[Operator]
STEPS_PER_SHIFT = 3  # confirmed commands per shift: TotpStepUsed
EVENTS_PER_SHIFT = STEPS_PER_SHIFT + 2  # LoginSucceeded, the steps, LoggedOut
SHIFT = timedelta(hours=8)
CONCURRENT_CLIENTS = 4
SOURCE = "10.0.0.42"
AUDIENCE = "plantcore-bench"
SECRET = "bench-only-secret-" + "x" * 32  # a throw-away HS256 key
PASSWORD = "correct horse battery staple"  # noqa: S105 - the bench operator's own
PLACEHOLDER = "unused-by-the-benchmark"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class History:
    """An operator's past: ``shifts`` of work, then ``extra_steps``, then today's login."""

    name: str
    shifts: int
    extra_steps: int

    @property
    def events(self) -> int:
        # Registered, PermissionGranted, the shifts, the extra steps, today's LoginSucceeded.
        return 2 + self.shifts * EVENTS_PER_SHIFT + self.extra_steps + 1


HISTORIES = (
    History("short", shifts=0, extra_steps=0),
    History("long", shifts=100, extra_steps=0),
    # 502 + 46 + 1 = 549 events: the snapshot at 500 and 49 after it, the most there can be.
    History("long_worst", shifts=100, extra_steps=SNAPSHOT_INTERVAL - 4),
)


@dataclass(frozen=True, slots=True)
class Account:
    """An operator with an open session, on one side, and what was stored of it."""

    username: str
    session_id: str
    version: int
    snapshot_version: int | None


# -- plantcore ---------------------------------------------------------------------------


def plant_account(app: PlantApplication, history: History, now: datetime) -> Account:
    """Register an operator, write ``history`` as its past, and log it in at ``now``."""
    name = unique_name("bench_operator")
    start = now - SHIFT * (history.shifts + 1)
    app.register_operator(
        username=name,
        full_name="Bench Operator",
        roles=["operator"],
        password_hash=PLACEHOLDER,
        totp_secret_sealed=PLACEHOLDER,
        actor="bench",
        at=start,
    )
    app.grant_permission(username=name, scope="plant", actor="bench", at=start)
    step = 0
    for shift in range(history.shifts):
        at = start + SHIFT * shift
        operator = app.get_operator(name)
        session_id = new_session_id()
        operator.log_in(
            password_matches=True,
            source=SOURCE,
            session_id=session_id,
            refresh_hash=new_refresh_token(name, session_id)[1],
            policy=app.login_policy,
            at=at,
        )
        for _ in range(STEPS_PER_SHIFT):
            step += 1
            operator.use_totp_step(step, at + timedelta(hours=1))
        operator.log_out(session_id, at=at + SHIFT - timedelta(minutes=1))
        app.save(operator)  # one save per shift: snapshots still fall every 50 versions
    if history.extra_steps:
        operator = app.get_operator(name)
        for _ in range(history.extra_steps):
            step += 1
            operator.use_totp_step(step, now - timedelta(minutes=1))
        app.save(operator)
    session_id = new_session_id()
    app.log_in(
        username=name,
        password_matches=True,
        source=SOURCE,
        session_id=session_id,
        refresh_hash=new_refresh_token(name, session_id)[1],
        at=now,
    )
    operator = app.get_operator(name)
    return Account(name, session_id, operator.version, _snapshot_version(app, operator.id))


def plant_requests(
    app: PlantApplication, settings: TokenSettings, token: str, count: int
) -> tuple[Run, list[float], list[float]]:
    """``count`` requests: the token, then the session; with each part's durations."""
    verifying: list[float] = []
    authenticating: list[float] = []
    laps = Laps()
    for _ in range(count):
        started = time.perf_counter()
        principal = verify_token(settings, token)
        verified = time.perf_counter()
        app.authenticate(username=principal.username, session_id=principal.session_id, at=_now())
        laps.lap()
        verifying.append(verified - started)
        authenticating.append(time.perf_counter() - verified)
    return laps.run(), verifying, authenticating


def plant_sessions(app: PlantApplication, username: str, session_id: str, count: int) -> Run:
    """``count`` session checks alone, no token: the store's side of a request."""
    laps = Laps()
    for _ in range(count):
        app.authenticate(username=username, session_id=session_id, at=_now())
        laps.lap()
    return laps.run()


def bare_verify(settings: TokenSettings, token: str, count: int) -> Run:
    laps = Laps()
    for _ in range(count):
        verify_token(settings, token)
        laps.lap()
    return laps.run()


async def concurrent_requests(
    app: PlantApplication, settings: TokenSettings, token: str, per_client: int
) -> Run:
    """The API's path: the token checked on the loop, the session in the store's pool."""
    store_executor = StoreExecutor(max_workers=CONCURRENT_CLIENTS)

    async def client() -> Run:
        laps = Laps()
        for _ in range(per_client):
            principal = verify_token(settings, token)
            await store_executor.call(
                app.authenticate,
                username=principal.username,
                session_id=principal.session_id,
                at=_now(),
            )
            laps.lap()
        return laps.run()

    try:
        wall = Laps()
        runs = await asyncio.gather(*(client() for _ in range(CONCURRENT_CLIENTS)))
        wall.lap()
    finally:
        store_executor.shutdown()
    return Run.concurrent(runs, wall.run().seconds)


def logins(
    app: PlantApplication, settings: TokenSettings, username: str, count: int
) -> tuple[Run, list[float], list[float]]:
    """The login mutation's work ``count`` times; with Argon2's and the rest's durations."""
    hashing: list[float] = []
    rest: list[float] = []
    laps = Laps()
    for _ in range(count):
        started = time.perf_counter()
        found = app.find_operator(username)
        loaded = time.perf_counter()
        matches = verify_password(found.password_hash if found else None, PASSWORD)
        verified = time.perf_counter()
        session_id = new_session_id()
        refresh_hash = new_refresh_token(username, session_id)[1]
        operator = app.log_in(
            username=username,
            password_matches=matches,
            source=SOURCE,
            session_id=session_id,
            refresh_hash=refresh_hash,
            at=_now(),
        )
        issue_token(
            settings, username=username, session_id=session_id, roles=operator.roles, now=_now()
        )
        laps.lap()
        hashing.append(verified - loaded)
        rest.append(time.perf_counter() - verified + loaded - started)
    return laps.run(), hashing, rest


# -- the bare library --------------------------------------------------------------------


class RawOperator(Aggregate):
    """The operator's events with the same fields, and only the state a session check reads."""

    @event("Registered")
    def __init__(
        self,
        *,
        username: str,
        full_name: str,
        roles: list[str],
        password_hash: str,
        totp_secret_sealed: str,
        actor: str,
        at: datetime,
    ) -> None:
        self.username = username
        self.roles = list(roles)
        self.scopes: list[str] = []
        self.sessions: dict[str, datetime] = {}
        self.last_step = 0

    @event("PermissionGranted")
    def grant(self, *, scope: str, actor: str, at: datetime) -> None:
        self.scopes = sorted({*self.scopes, scope})

    @event("LoginSucceeded")
    def log_in(
        self,
        *,
        session_id: str,
        source: str,
        refresh_hash: str,
        expires_at: datetime,
        actor: str,
        at: datetime,
    ) -> None:
        self.sessions[session_id] = expires_at

    @event("TotpStepUsed")
    def use_step(self, *, step: int, actor: str, at: datetime) -> None:
        self.last_step = step

    @event("LoggedOut")
    def log_out(self, *, session_id: str, actor: str, at: datetime) -> None:
        self.sessions.pop(session_id, None)


class RawApplication(Application[UUID]):
    name = "BenchRawAuthApplication"
    # As PlantApplication does for Operator: the library then turns snapshots on.
    snapshotting_intervals = {RawOperator: SNAPSHOT_INTERVAL}


def raw_account(app: RawApplication, history: History, now: datetime) -> tuple[UUID, Account]:
    name = unique_name("bench_operator")
    start = now - SHIFT * (history.shifts + 1)
    lifetime = timedelta(hours=12)  # LoginPolicy.session_lifetime
    operator = RawOperator(
        username=name,
        full_name="Bench Operator",
        roles=["operator"],
        password_hash=PLACEHOLDER,
        totp_secret_sealed=PLACEHOLDER,
        actor="bench",
        at=start,
    )
    app.save(operator)
    operator = app.repository.get(operator.id)
    operator.grant(scope="plant", actor="bench", at=start)
    app.save(operator)
    step = 0
    for shift in range(history.shifts):
        at = start + SHIFT * shift
        operator = app.repository.get(operator.id)
        session_id = new_session_id()
        operator.log_in(
            session_id=session_id,
            source=SOURCE,
            refresh_hash=new_refresh_token(name, session_id)[1],
            expires_at=at + lifetime,
            actor=name,
            at=at,
        )
        for _ in range(STEPS_PER_SHIFT):
            step += 1
            operator.use_step(step=step, actor=name, at=at + timedelta(hours=1))
        operator.log_out(session_id=session_id, actor=name, at=at + SHIFT - timedelta(minutes=1))
        app.save(operator)
    if history.extra_steps:
        operator = app.repository.get(operator.id)
        for _ in range(history.extra_steps):
            step += 1
            operator.use_step(step=step, actor=name, at=now - timedelta(minutes=1))
        app.save(operator)
    operator = app.repository.get(operator.id)
    session_id = new_session_id()
    operator.log_in(
        session_id=session_id,
        source=SOURCE,
        refresh_hash=new_refresh_token(name, session_id)[1],
        expires_at=now + lifetime,
        actor=name,
        at=now,
    )
    app.save(operator)
    account = Account(name, session_id, operator.version, _snapshot_version(app, operator.id))
    return operator.id, account


def raw_requests(app: RawApplication, operator_id: UUID, session_id: str, count: int) -> Run:
    """``count`` loads of the operator and a look at its session: the store's minimum."""
    laps = Laps()
    for _ in range(count):
        operator: RawOperator = app.repository.get(operator_id)
        expires_at = operator.sessions.get(session_id)
        if expires_at is None or _now() >= expires_at:
            raise RuntimeError("the raw session should be open")
        laps.lap()
    return laps.run()


# -- driving them ------------------------------------------------------------------------


def _snapshot_version(app: Application[UUID], aggregate_id: UUID) -> int | None:
    if app.snapshots is None:
        return None
    latest = list(app.snapshots.get(aggregate_id, desc=True, limit=1))
    return latest[0].originator_version if latest else None


def _part(durations: Sequence[float]) -> Run:
    """One part of each operation, as if it were all there was to it."""
    return Run(len(durations), sum(durations), list(durations))


def _median_ratio(ours: Run, raw: Run) -> float:
    """The raw median duration over ours: like :func:`ratio`, 1.0 is no overhead."""
    ours_p50, raw_p50 = statistics.median(ours.durations), statistics.median(raw.durations)
    return round(raw_p50 / ours_p50, 3) if ours_p50 > 0 else 0.0


def _part_figures(part: Run, whole: Run) -> Figures:
    return {
        "per_s": round(part.rate, 1),
        "share": round(part.seconds / whole.seconds, 3) if whole.seconds else 0.0,
        "latency_ms": latency_ms(part.durations),
    }


async def compare(
    plant: PlantApplication,
    raw: RawApplication,
    settings: TokenSettings,
    history: History,
    count: int,
    rounds: int,
) -> tuple[Figures, str, Run]:
    """plantcore against the raw library for one history; the token and plantcore's run."""
    now = _now()
    ours = await asyncio.to_thread(plant_account, plant, history, now)
    raw_id, theirs = await asyncio.to_thread(raw_account, raw, history, now)
    if (ours.version, ours.snapshot_version) != (theirs.version, theirs.snapshot_version):
        raise RuntimeError(f"the two sides' histories differ: {ours} against {theirs}")
    if ours.version != history.events:
        raise RuntimeError(f"{history.name}: {ours.version} events, {history.events} expected")
    token = issue_token(
        settings, username=ours.username, session_id=ours.session_id, roles=("operator",), now=now
    ).token
    verifying: list[Run] = []
    authenticating: list[Run] = []

    async def plantcore_round() -> Run:
        whole, verify_parts, auth_parts = await asyncio.to_thread(
            plant_requests, plant, settings, token, count
        )
        verifying.append(_part(verify_parts))
        authenticating.append(_part(auth_parts))
        return whole

    async def authenticate_round() -> Run:
        return await asyncio.to_thread(plant_sessions, plant, ours.username, ours.session_id, count)

    async def raw_round() -> Run:
        return await asyncio.to_thread(raw_requests, raw, raw_id, theirs.session_id, count)

    # One untimed lap each: statements prepared, the operator's rows in the page cache.
    await asyncio.to_thread(plant_requests, plant, settings, token, 50)
    await asyncio.to_thread(raw_requests, raw, raw_id, theirs.session_id, 50)
    runs = await interleaved(
        rounds,
        {"plantcore": plantcore_round, "authenticate": authenticate_round, "raw": raw_round},
    )
    request, alone, bare = runs["plantcore"], runs["authenticate"], runs["raw"]
    verify, authenticate = Run.combined(verifying), Run.combined(authenticating)
    figures: Figures = {
        "operator_events": ours.version,
        "snapshot_version": ours.snapshot_version,
        "events_after_snapshot": ours.version - (ours.snapshot_version or 0),
        "plantcore": {
            **request.figures("requests"),
            "parts": {
                "verify_token": _part_figures(verify, request),
                "authenticate": _part_figures(authenticate, request),
            },
        },
        "authenticate": alone.figures("requests"),
        "raw": bare.figures("requests"),
        "ratio": ratio(request, bare),
        "ratio_authenticate": ratio(alone, bare),
        # The same at the median, which a slow tail on a shared machine does not move.
        "ratio_p50": _median_ratio(request, bare),
        "ratio_authenticate_p50": _median_ratio(alone, bare),
    }
    return figures, token, runs["plantcore"]


async def run(config: BenchConfig) -> Figures:
    count = config.pick(quick=100, full=1000)
    rounds = config.pick(quick=1, full=5)
    verifications = config.pick(quick=2_000, full=20_000)
    per_client = config.pick(quick=100, full=1000)
    login_count = config.pick(quick=5, full=30)
    settings = TokenSettings(secret=SECRET, audience=AUDIENCE)
    with bench_schema(config.database_url) as schema:
        env = {**event_store_env(config.database_url), "POSTGRES_SCHEMA": schema}
        plant = PlantApplication(TagCatalog([]), env=env)
        raw = RawApplication(env=env)
        try:
            histories: dict[str, Figures] = {}
            sequential: dict[str, tuple[str, Run]] = {}
            for history in HISTORIES:
                figures, token, plantcore = await compare(
                    plant, raw, settings, history, count, rounds
                )
                histories[history.name] = figures
                sequential[history.name] = token, plantcore
            token, long_plantcore = sequential["long"]
            bare_verify(settings, token, 200)
            verify_only = Run.combined(
                [bare_verify(settings, token, verifications // rounds) for _ in range(rounds)]
            )
            await concurrent_requests(plant, settings, token, 20)
            off_loop = await concurrent_requests(plant, settings, token, per_client)
            login = await _logins(plant, settings, login_count)
        finally:
            plant.close()
            raw.close()
    return {
        "params": {
            "requests_per_round": count,
            "rounds": rounds,
            "operator_snapshot_interval": SNAPSHOT_INTERVAL,
            "events_per_shift": EVENTS_PER_SHIFT,
            "histories": {
                h.name: {"shifts": h.shifts, "extra_steps": h.extra_steps} for h in HISTORIES
            },
            "concurrent_clients": CONCURRENT_CLIENTS,
            "requests_per_client": per_client,
            "logins": login_count,
        },
        "verify_token": verify_only.figures("requests"),
        **histories,
        "store_executor": {
            **off_loop.figures("requests"),
            "history": "long",
            "vs_sequential": ratio(off_loop, long_plantcore),
        },
        "login": login,
    }


async def _logins(plant: PlantApplication, settings: TokenSettings, count: int) -> Figures:
    password_hash = hash_password(PASSWORD)
    name = unique_name("bench_login")
    plant.register_operator(
        username=name,
        full_name="Bench Login",
        roles=["operator"],
        password_hash=password_hash,
        totp_secret_sealed=PLACEHOLDER,
        actor="bench",
        at=_now(),
    )
    await asyncio.to_thread(logins, plant, settings, name, 2)
    whole, hashing, rest = await asyncio.to_thread(logins, plant, settings, name, count)
    parameters = argon2.extract_parameters(password_hash)
    return {
        **whole.figures("logins"),
        "parts": {
            "argon2id_verify": _part_figures(_part(hashing), whole),
            "store_and_tokens": _part_figures(_part(rest), whole),
        },
        "argon2id": {
            "time_cost": parameters.time_cost,
            "memory_cost_kib": parameters.memory_cost,
            "parallelism": parameters.parallelism,
        },
    }
