"""history_query: a tag's history read back through the GraphQL API, beside the bare SQL.

The history is written once, untimed, by :class:`HistoryWriter` (the history
consumer's path, 5,120 rows a call), and rolled up by a
:class:`RollupRefresher` pass, as the runtime does, into the tables of
``ensure_history_schema`` in a schema of the run's own:

- ``bench-press``'s ``speed`` at 1 Hz over one whole UTC day, two days before
  the run: 86,400 rows;
- ``bench-line``'s 20 tags, one sample every 5 minutes each, over the 30 days
  ending with that day: 172,800 rows, 14,400 hours. The hour read reads
  only the hours, so how dense the samples are under them does not change
  it; sparser samples only load faster (the rollups cost by the minute, and
  here every sample is a minute of its own).

Three reads, each by a client of the API and by the query a DBA would write on
the same table, alternately:

- ``raw_day``: the day of ``speed``. API: pages of 1,600 samples (``time value
  quality``), each asking for the next with the last one's cursor: 54 requests.
  SQL: the day's rows of ``samples``, in time order.
- ``minute_day``: the same day in 1-minute buckets. API: one request of 1,440
  buckets (``time avg quality``), served from ``samples_1m``. SQL: the day's
  rows of ``samples_1m``.
- ``hour_month``: the 20 tags over the 30 days in 1-hour buckets. API: one
  request per tag of 720 buckets, served from ``samples_1h``. SQL: one query
  of the 14,400 rows of ``samples_1h``.

The API is the plant's (``create_app``) with its default limits, as
``plantcore run`` serves it without settings: a cost of 5,000
(``PLANTCORE_GRAPHQL_MAX_COST``) and 10,000 rows a request. A history query
costs one per field of a sample or bucket per row of ``first``: the pages and
the request per tag are how a client stays within it (``cost`` in the
figures). It is served by uvicorn on a loopback port of its own, in this
process; every request is an HTTP POST with a viewer's bearer token, so it
pays the token's and the session's check as every request does, and a read's
time includes the client's HTTP and the decoding of the JSON answer, as an
HMI's would (``request_latency_ms``: each POST alone). The bare query's time
is asyncpg's fetch of its records. Before the timing, each read's API answer
is checked against the SQL one: the same rows, times, values and qualities.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis
import uvicorn
from graphql import build_schema, parse
from nats.aio.client import Client as NatsClient

from api.app import create_app
from api.credentials import TokenSettings, issue_token, new_session_id
from api.graphql.limits import query_cost
from api.graphql.schema import schema as graphql_schema
from api.login_lane import LoginLane
from api.rate_limit import CommandRateCounter, LoginThrottle
from api.secrets import SecretBox, generate_key
from api.services import DEFAULT_MAX_QUERY_COST, Services
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
from domain.catalog import DeviceInfo, TagCatalog, TagLimits, ValueKind
from domain.messages import Quality, Sample, TelemetryBatch
from eventstore.executor import StoreExecutor
from eventstore.log_tail import LogTail
from eventstore.postgres import event_store_env
from plantcore.embedded import free_port
from projections.history import HistoryWriter
from projections.history_schema import ensure_history_schema
from projections.rollup_refresher import RollupRefresher

PRESS, SPEED = "bench-press", "speed"
LINE = "bench-line"
LINE_TAGS = tuple(f"tag_{i:02d}" for i in range(20))
DAYS = 30
LINE_MINUTES = 5  # between two samples of a line's tag
ROWS_PER_WRITE = 5_120  # one fetch of the history consumer: 256 messages of 20 samples
# Samples of ``time value quality`` a page asks for: 4,804 of the default cost (1,666 fit).
PAGE = 1_600
SECRET = "bench-only-secret-" + "x" * 32  # a throw-away HS256 key
PLACEHOLDER = "unused-by-the-benchmark"

RAW_QUERY = """query($d: String!, $t: [String!]!, $f: DateTime!, $to: DateTime!, $n: Int!,
    $c: String) {
  history(device: $d, tags: $t, from: $f, to: $to, first: $n, after: $c) {
    samples { time value quality } endCursor hasNextPage
  }
}"""
BUCKETS_QUERY = """query($d: String!, $t: [String!]!, $f: DateTime!, $to: DateTime!, $b: Int!,
    $n: Int!) {
  history(device: $d, tags: $t, from: $f, to: $to, bucket: $b, aggregates: ["avg"], first: $n) {
    buckets { time avg quality }
  }
}"""

RAW_SQL = (
    "SELECT time, value, quality FROM samples"
    " WHERE device = $1 AND tag = $2 AND time >= $3 AND time < $4 ORDER BY time"
)
MINUTES_SQL = (
    "SELECT bucket AS time, avg AS value, count, good_count FROM samples_1m"
    " WHERE device = $1 AND tag = $2 AND bucket >= $3 AND bucket < $4 ORDER BY bucket"
)
HOURS_SQL = (
    "SELECT tag, bucket AS time, avg AS value, count, good_count FROM samples_1h"
    " WHERE device = $1 AND tag = ANY($2::text[]) AND bucket >= $3 AND bucket < $4"
    " ORDER BY tag, bucket"
)

# A sample or a bucket as the API answers it.
JsonRow = dict[str, Any]


def press_value(second: int) -> float:
    """A press's speed: an hourly swing around 1,200 rpm with a faster ripple."""
    return round(1200 + 150 * math.sin(second * math.tau / 3600) + 7 * math.sin(second / 13), 3)


def line_value(tag: int, minute: int) -> float:
    return round(50 + tag + 10 * math.sin((minute + 37 * tag) * math.tau / 1440), 3)


def press_samples(day: datetime) -> list[Sample]:
    # One sample in a thousand is uncertain, so quality is not uniform.
    return [
        Sample(
            SPEED,
            press_value(n),
            Quality.UNCERTAIN if n % 1000 == 999 else Quality.GOOD,
            "rpm",
            day + timedelta(seconds=n),
        )
        for n in range(86_400)
    ]


def line_samples(start: datetime) -> list[Sample]:
    # Time by time, every tag's sample of that time: the order the writer gets them in.
    return [
        Sample(tag, line_value(i, minute), Quality.GOOD, "bar", start + timedelta(minutes=minute))
        for minute in range(0, DAYS * 1440, LINE_MINUTES)
        for i, tag in enumerate(LINE_TAGS)
    ]


async def write_history(writer: HistoryWriter, device: str, samples: Sequence[Sample]) -> None:
    for first in range(0, len(samples), ROWS_PER_WRITE):
        chunk = tuple(samples[first : first + ROWS_PER_WRITE])
        added = await writer.write([TelemetryBatch(device, chunk[-1].ts, chunk)])
        assert added == len(chunk), f"{added} of {len(chunk)} rows added"


def catalog() -> TagCatalog:
    tags = [TagLimits(PRESS, SPEED, "rpm", False, ValueKind.NUMBER, None, None)]
    tags += [TagLimits(LINE, tag, "bar", False, ValueKind.NUMBER, None, None) for tag in LINE_TAGS]
    return TagCatalog(tags, {PRESS: DeviceInfo(area="press"), LINE: DeviceInfo(area="line")})


def viewer_token(app: PlantApplication, tokens: TokenSettings) -> str:
    """A viewer of the whole plant with an open session, as a login leaves one."""
    name, now = unique_name("bench_viewer"), datetime.now(UTC)
    app.register_operator(
        username=name,
        full_name="Bench Viewer",
        roles=["viewer"],
        password_hash=PLACEHOLDER,
        totp_secret_sealed=PLACEHOLDER,
        actor="bench",
        at=now,
    )
    app.grant_permission(username=name, scope="plant", actor="bench", at=now)
    session_id = new_session_id()
    app.log_in(
        username=name,
        password_matches=True,
        source="127.0.0.1",
        session_id=session_id,
        refresh_hash=PLACEHOLDER,
        at=now,
    )
    return issue_token(
        tokens, username=name, session_id=session_id, roles=("viewer",), now=now
    ).token


def api_services(app: PlantApplication, store: StoreExecutor, pool: asyncpg.Pool) -> Services:
    """The API's services with every limit at its default. A history query uses none of
    Redis, NATS or the command log: those clients are made but never connected."""
    redis = aioredis.Redis()
    return Services(
        app=app,
        store_executor=store,
        redis=redis,
        nats=NatsClient(),
        tokens=TokenSettings(secret=SECRET, audience="plantcore-bench"),
        command_log_tail=LogTail(app, store),
        secrets=SecretBox.from_text(generate_key()),
        command_rate=CommandRateCounter(redis),
        login_throttle=LoginThrottle(redis, limit=60),
        login_lane=LoginLane(workers=1),
        pool=pool,
    )


@asynccontextmanager
async def serving(services: Services) -> AsyncIterator[str]:
    """The API on a free loopback port, uvicorn configured as the runtime does; yields its URL.

    uvicorn binds the port itself: a socket handed to it made without the TCP
    protocol number gets no ``TCP_NODELAY`` from asyncio, and every response
    then waits ~40 ms for a delayed ACK.
    """
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(services), host="127.0.0.1", port=port, lifespan="off", log_level="warning"
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    await task  # raises what stopped it
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        await task


@dataclass
class Client:
    """An API client with a bearer token; ``requests`` gets each POST's duration."""

    http: httpx.AsyncClient
    url: str
    token: str
    requests: list[float] | None = None

    async def post(self, query: str, **variables: Any) -> dict[str, Any]:
        sent = time.perf_counter()
        response = await self.http.post(
            self.url,
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {self.token}"},
        )
        body: dict[str, Any] = response.json()
        if self.requests is not None:
            self.requests.append(time.perf_counter() - sent)
        assert "errors" not in body, body["errors"]
        history: dict[str, Any] = body["data"]["history"]
        return history

    async def raw(self, device: str, tag: str, start: datetime, end: datetime) -> list[JsonRow]:
        """Every sample of ``tag`` in ``[start, end)``, a page at a time."""
        found: list[JsonRow] = []
        cursor: str | None = None
        while True:
            page = await self.post(
                RAW_QUERY, d=device, t=[tag], f=start.isoformat(), to=end.isoformat(), n=PAGE,
                c=cursor,
            )  # fmt: skip
            found += page["samples"]
            if not page["hasNextPage"]:
                return found
            cursor = page["endCursor"]

    async def buckets(
        self, device: str, tag: str, start: datetime, end: datetime, width: int
    ) -> list[JsonRow]:
        rows = int((end - start).total_seconds() // width)
        page = await self.post(
            BUCKETS_QUERY, d=device, t=[tag], f=start.isoformat(), to=end.isoformat(), b=width,
            n=rows,
        )  # fmt: skip
        buckets: list[JsonRow] = page["buckets"]
        return buckets


@dataclass(frozen=True)
class Read:
    """One read of the history, by the API and by the bare query; ``rows`` in its answer."""

    name: str
    rows: int
    requests: int
    cost: int
    api: Callable[[], Awaitable[list[JsonRow]]]
    sql: Callable[[], Awaitable[list[asyncpg.Record]]]


def reads(client: Client, pool: asyncpg.Pool, day: datetime) -> list[Read]:
    next_day = day + timedelta(days=1)
    month = next_day - timedelta(days=DAYS)

    async def hours_api() -> list[JsonRow]:
        found: list[JsonRow] = []
        for tag in LINE_TAGS:
            found += await client.buckets(LINE, tag, month, next_day, 3600)
        return found

    def sql(query: str, *arguments: object) -> Callable[[], Awaitable[list[asyncpg.Record]]]:
        return lambda: pool.fetch(query, *arguments)

    return [
        Read(
            "raw_day",
            86_400,
            math.ceil(86_400 / PAGE),
            cost_of(RAW_QUERY, n=PAGE),
            lambda: client.raw(PRESS, SPEED, day, next_day),
            sql(RAW_SQL, PRESS, SPEED, day, next_day),
        ),
        Read(
            "minute_day",
            1_440,
            1,
            cost_of(BUCKETS_QUERY, n=1_440),
            lambda: client.buckets(PRESS, SPEED, day, next_day, 60),
            sql(MINUTES_SQL, PRESS, SPEED, day, next_day),
        ),
        Read(
            "hour_month",
            len(LINE_TAGS) * DAYS * 24,
            len(LINE_TAGS),
            cost_of(BUCKETS_QUERY, n=DAYS * 24),
            hours_api,
            sql(HOURS_SQL, LINE, list(LINE_TAGS), month, next_day),
        ),
    ]


def cost_of(query: str, **variables: object) -> int:
    """What the API's cost check counts for ``query`` (api/graphql/limits.py)."""
    served = build_schema(graphql_schema.as_str())
    (cost,) = query_cost(served, parse(query), variables=variables).values()
    assert cost <= DEFAULT_MAX_QUERY_COST, f"{cost} is over the default cost"
    return cost


def bucket_quality(count: int, good_count: int) -> str:
    """The quality the API gives a bucket (``Bucket.quality``), from the rollup's counts."""
    if count and good_count == count:
        return Quality.GOOD.name
    return Quality.BAD.name if good_count == 0 else Quality.UNCERTAIN.name


def check_same(read: Read, api: list[JsonRow], sql: list[asyncpg.Record]) -> None:
    """The API answered what the bare query did: the same rows, values and qualities."""
    assert len(api) == len(sql) == read.rows, (read.name, len(api), len(sql))
    for ours, theirs in zip(api, sql, strict=True):
        if "good_count" in theirs:
            quality = bucket_quality(theirs["count"], theirs["good_count"])
        else:
            quality = Quality(theirs["quality"]).name
        their_value = theirs["value"]
        value = ours.get("value", ours.get("avg"))
        at = datetime.fromisoformat(ours["time"])
        assert (at, ours["quality"]) == (theirs["time"], quality), (read.name, ours, theirs)
        # A bucket's average composed from the minutes may differ in the last bits.
        same = value == their_value or math.isclose(value or 0, their_value or 0, rel_tol=1e-12)
        assert same, (read.name, ours, theirs)


async def measure(read: Read, client: Client, rounds: int, per_round: int) -> Figures:
    check_same(read, await read.api(), await read.sql())  # and untimed: both warm
    requests: list[float] = []

    def timed(reader: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[Run]]:
        async def round_of_reads() -> Run:
            laps = Laps()
            for _ in range(per_round):
                await reader()
                laps.lap()
            return laps.run()

        return round_of_reads

    async def api_round() -> Run:
        client.requests = requests
        try:
            return await timed(read.api)()
        finally:
            client.requests = None

    runs = await interleaved(rounds, {"api": api_round, "sql": timed(read.sql)})
    return {
        "rows": read.rows,
        "api_requests_per_read": read.requests,
        "cost_per_request": read.cost,
        "api": {**runs["api"].figures("reads"), "request_latency_ms": latency_ms(requests)},
        "sql": runs["sql"].figures("reads"),
        "ratio": ratio(runs["api"], runs["sql"]),
    }


async def load(pool: asyncpg.Pool, day: datetime) -> Figures:
    """Write the history through the writer; how long it took."""
    writer = HistoryWriter(pool, await ensure_history_schema(pool))
    laps = Laps()
    await write_history(writer, PRESS, press_samples(day))
    laps.lap()
    await write_history(writer, LINE, line_samples(day + timedelta(days=1 - DAYS)))
    # Days old, so every minute is late for the rollups: one refresher's pass computes them.
    await RollupRefresher(pool).refresh()
    laps.lap()
    await pool.execute("ANALYZE samples, samples_1m, samples_1h")
    press, line = laps.run().durations
    return {
        "press_rows": 86_400,
        "press_seconds": round(press, 1),
        "line_rows": DAYS * 1440 // LINE_MINUTES * len(LINE_TAGS),
        "line_seconds": round(line, 1),
    }


async def run(config: BenchConfig) -> Figures:
    rounds = config.pick(quick=1, full=5)
    per_round = {"raw_day": config.pick(quick=1, full=2), "minute_day": 10, "hour_month": 2}
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    store = StoreExecutor(max_workers=4)
    with bench_schema(config.database_url) as schema:
        app = PlantApplication(
            catalog(), env={**event_store_env(config.database_url), "POSTGRES_SCHEMA": schema}
        )
        pool = await asyncpg.create_pool(
            config.database_url, min_size=2, max_size=4, server_settings={"search_path": schema}
        )
        services = api_services(app, store, pool)
        try:
            loaded = await load(pool, day)
            token = await store.call(viewer_token, app, services.tokens)
            figures: Figures = {}
            async with serving(services) as url, httpx.AsyncClient() as http:
                client = Client(http, url, token)
                for read in reads(client, pool, day):
                    figures[read.name] = await measure(read, client, rounds, per_round[read.name])
        finally:
            services.login_lane.shutdown()
            await pool.close()
            app.close()
            store.shutdown()
    return {
        "params": {
            "rounds": rounds,
            "reads_per_round": per_round,
            "max_query_cost": DEFAULT_MAX_QUERY_COST,
            "page": PAGE,
            "load": loaded,
        },
        **figures,
    }
