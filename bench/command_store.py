"""command_store: the whole life of a command through ``PlantApplication`` on PostgreSQL.

One command is four use cases and four saves, six stored events:

====================================  =============================================
``request_command``                   load the operator, look up the plant mode;
                                      save 1: ``Requested`` + ``ChallengeIssued``
``confirm_command`` (a fresh TOTP     load command and operator, look up the plant
step each time)                       mode; save 2: ``Confirmed`` + the operator's
                                      ``TotpStepUsed``
``record_dispatch``                   load; save 3: ``WriteDispatched``
``record_write_succeeded``            load; save 4: ``WriteSucceeded``
====================================  =============================================

That is seven loads per command, two of them the plant mode's: a plant that
never changed mode has no ``PlantMode`` aggregate, so each lookup is a miss
(a snapshot query and an event query that find nothing) and the mode is
``normal``. Operators are snapshotted every 50 events, so every load first
asks the snapshot table, and every 50th event of an operator writes a snapshot.

The raw side does the same with the bare eventsourcing library: a bare
``Aggregate`` per command and one standing in for the operator (registered
with a scope, snapshotted every 50 events through the library's
``snapshotting_intervals``), the same loads and misses, the same saves of the
same number of events, in a bare ``Application`` on the same database. Both
live in a schema of their own, dropped at the end.

Then the same lifecycle runs from asyncio through :class:`StoreExecutor`, each
use case one hop to its thread pool, by four concurrent clients (four
operators, as four HMIs would be): the off-loop path the API takes.

Every operator, in every part, confirms the same number of commands, so every
side writes its snapshots at the same points: an operator loads from its
latest snapshot and at most 49 events after it, so a command costs about the
same after 300 confirmations as after none (``first_tenth`` against
``last_tenth`` in the figures).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Protocol
from uuid import NAMESPACE_URL, UUID, uuid5

import psycopg
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, event
from psycopg import sql

from bench.common import BenchConfig, Figures, Laps, Run, interleaved, ratio, unique_name
from domain.application import PlantApplication
from domain.catalog import TagCatalog, TagLimits, ValueKind
from eventstore.executor import StoreExecutor
from eventstore.postgres import event_store_env

DEVICE, TAG, VALUE = "bench-press", "speed_setpoint", 1500
EVENTS_PER_COMMAND = 6
SAVES_PER_COMMAND = 4
LOADS_PER_COMMAND = 7  # two of them plant-mode lookups that find nothing
SNAPSHOT_INTERVAL = 50  # PlantApplication.snapshotting_intervals[Operator]
CONCURRENT_CLIENTS = 4
PLACEHOLDER = "unused-by-the-benchmark"


def _now() -> datetime:
    return datetime.now(UTC)


class Lifecycle(Protocol):
    """One operator's commands, a use case at a time."""

    def request(self) -> UUID: ...

    def confirm(self, command_id: UUID) -> None: ...

    def dispatch(self, command_id: UUID) -> None: ...

    def succeed(self, command_id: UUID) -> None: ...


# -- plantcore ---------------------------------------------------------------------------


class PlantOperator:
    def __init__(self, app: PlantApplication) -> None:
        self._app = app
        self._name = unique_name("bench_operator")
        self._step = 0
        app.register_operator(
            username=self._name,
            full_name="Bench Operator",
            roles=["operator"],
            # Never checked: the API verifies codes; the application only sees TOTP steps.
            password_hash=PLACEHOLDER,
            totp_secret_sealed=PLACEHOLDER,
            actor="bench",
            at=_now(),
        )
        app.grant_permission(username=self._name, scope="plant", actor="bench", at=_now())

    def request(self) -> UUID:
        ticket = self._app.request_command(
            actor=self._name, device=DEVICE, tag=TAG, value=VALUE, at=_now()
        )
        return ticket.command_id

    def confirm(self, command_id: UUID) -> None:
        self._step += 1
        self._app.confirm_command(
            actor=self._name, command_id=command_id, totp_step=self._step, at=_now()
        )

    def dispatch(self, command_id: UUID) -> None:
        self._app.record_dispatch(command_id, _now())

    def succeed(self, command_id: UUID) -> None:
        self._app.record_write_succeeded(command_id, VALUE, _now())


# -- the bare library --------------------------------------------------------------------


class RawCommand(Aggregate):
    @event("Requested")
    def __init__(self, *, device: str, tag: str, value: int, actor: str, at: datetime) -> None:
        self.device, self.tag, self.value = device, tag, value
        self.status = "requested"

    @event("ChallengeIssued")
    def challenge(self, *, expires_at: datetime, actor: str, at: datetime) -> None:
        self.status = "awaiting"

    @event("Confirmed")
    def confirm(self, *, actor: str, at: datetime) -> None:
        self.status = "confirmed"

    @event("WriteDispatched")
    def dispatch(self, *, actor: str, at: datetime) -> None:
        self.status = "dispatched"

    @event("WriteSucceeded")
    def succeed(self, *, read_back: int, actor: str, at: datetime) -> None:
        self.status = "succeeded"


class RawOperator(Aggregate):
    @event("Registered")
    def __init__(self, *, username: str, roles: list[str]) -> None:
        self.username = username
        self.roles = list(roles)
        self.scopes: list[str] = []
        self.last_step = 0

    @event("PermissionGranted")
    def grant(self, *, scope: str, at: datetime) -> None:
        self.scopes = sorted({*self.scopes, scope})

    @event("TotpStepUsed")
    def use_step(self, *, step: int, at: datetime) -> None:
        self.last_step = step


class RawApplication(Application[UUID]):
    name = "BenchRawApplication"
    # As PlantApplication does for Operator: the library then turns snapshots on.
    snapshotting_intervals = {RawOperator: SNAPSHOT_INTERVAL}


# What PlantApplication reads when the plant never changed mode: an id with no events.
NO_PLANT_MODE = uuid5(NAMESPACE_URL, "bench:raw:plant-mode")


class RawLifecycle:
    def __init__(self, app: RawApplication) -> None:
        self._app = app
        # Two events, as plantcore's operator (Registered, PermissionGranted): the
        # snapshots then fall on the same versions on both sides.
        operator = RawOperator(username=unique_name("bench_operator"), roles=["operator"])
        operator.grant(scope="plant", at=_now())
        app.save(operator)
        self._operator_id = operator.id
        self._step = 0

    def _allowed_operator(self) -> RawOperator:
        """The operator and the plant mode, loaded as plantcore's policy check loads them."""
        operator: RawOperator = self._app.repository.get(self._operator_id)
        if "plant" not in operator.scopes:
            raise PermissionError(operator.username)
        with suppress(AggregateNotFoundError):
            self._app.repository.get(NO_PLANT_MODE)
        return operator

    def request(self) -> UUID:
        self._allowed_operator()
        at = _now()
        command = RawCommand(device=DEVICE, tag=TAG, value=VALUE, actor="bench", at=at)
        command.challenge(expires_at=at + timedelta(seconds=30), actor="bench", at=at)
        self._app.save(command)
        return command.id

    def confirm(self, command_id: UUID) -> None:
        command: RawCommand = self._app.repository.get(command_id)
        operator = self._allowed_operator()
        self._step += 1
        command.confirm(actor="bench", at=_now())
        operator.use_step(step=self._step, at=_now())
        self._app.save(command, operator)

    def dispatch(self, command_id: UUID) -> None:
        command: RawCommand = self._app.repository.get(command_id)
        command.dispatch(actor="bench", at=_now())
        self._app.save(command)

    def succeed(self, command_id: UUID) -> None:
        command: RawCommand = self._app.repository.get(command_id)
        command.succeed(read_back=VALUE, actor="bench", at=_now())
        self._app.save(command)


# -- driving them ------------------------------------------------------------------------


def run_commands(client: Lifecycle, count: int) -> Run:
    laps = Laps()
    for _ in range(count):
        command_id = client.request()
        client.confirm(command_id)
        client.dispatch(command_id)
        client.succeed(command_id)
        laps.lap()
    return laps.run()


async def run_commands_off_loop(
    client: Lifecycle, count: int, store_executor: StoreExecutor
) -> Run:
    """The same lifecycle from the event loop: every use case is one hop to the store's pool."""
    laps = Laps()
    for _ in range(count):
        command_id = await store_executor.call(client.request)
        await store_executor.call(client.confirm, command_id)
        await store_executor.call(client.dispatch, command_id)
        await store_executor.call(client.succeed, command_id)
        laps.lap()
    return laps.run()


async def concurrent_clients(app: PlantApplication, per_client: int) -> Run:
    store_executor = StoreExecutor(max_workers=CONCURRENT_CLIENTS)
    try:
        clients = [await store_executor.call(PlantOperator, app) for _ in range(CONCURRENT_CLIENTS)]
        wall = Laps()
        runs = await asyncio.gather(
            *(run_commands_off_loop(c, per_client, store_executor) for c in clients)
        )
        wall.lap()
    finally:
        store_executor.shutdown()
    return Run.concurrent(runs, wall.run().seconds)


@contextmanager
def bench_schema(database_url: str) -> Iterator[str]:
    """A schema of its own for the run's event tables, dropped with everything in it."""
    schema = unique_name("bench")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield schema
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


async def run(config: BenchConfig) -> Figures:
    # Every operator confirms ``count`` commands, sequential or concurrent: equal
    # histories put the snapshots (every 50 operator events) at the same points.
    count = config.pick(quick=40, full=300)
    rounds = config.pick(quick=1, full=5)
    catalog = TagCatalog(
        [TagLimits(DEVICE, TAG, "rpm", writable=True, kind=ValueKind.INTEGER, low=0, high=3000)]
    )
    with bench_schema(config.database_url) as schema:
        env = {**event_store_env(config.database_url), "POSTGRES_SCHEMA": schema}
        plant = PlantApplication(catalog, env=env)
        raw = RawApplication(env=env)
        try:
            # One untimed lap each: connections opened, tables and statements warm.
            await asyncio.to_thread(run_commands, PlantOperator(plant), 20)
            await asyncio.to_thread(run_commands, RawLifecycle(raw), 20)

            # A fresh operator per round, so each round has the same operator history.
            async def plantcore_round() -> Run:
                return await asyncio.to_thread(run_commands, PlantOperator(plant), count)

            async def raw_round() -> Run:
                return await asyncio.to_thread(run_commands, RawLifecycle(raw), count)

            runs = await interleaved(rounds, {"plantcore": plantcore_round, "raw": raw_round})
            off_loop = await concurrent_clients(plant, count)
        finally:
            plant.close()
            raw.close()
    return {
        "params": {
            "commands_per_round": count,
            "rounds": rounds,
            "events_per_command": EVENTS_PER_COMMAND,
            "saves_per_command": SAVES_PER_COMMAND,
            "loads_per_command": LOADS_PER_COMMAND,
            "operator_snapshot_interval": SNAPSHOT_INTERVAL,
            "concurrent_clients": CONCURRENT_CLIENTS,
            "commands_per_client": count,
        },
        **{name: _figures(each) for name, each in runs.items()},
        "ratio": ratio(runs["plantcore"], runs["raw"]),
        "store_executor": {
            **_figures(off_loop),
            "vs_sequential": ratio(off_loop, runs["plantcore"]),
        },
    }


def _figures(commands: Run) -> Figures:
    return {
        **commands.figures("commands"),
        "events_per_s": round(commands.rate * EVENTS_PER_COMMAND, 1),
    }
