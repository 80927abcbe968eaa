"""``history``: raw pages and buckets from raw, minute and hour rows, checked against the raw rows.

The samples are written by the history writer into a database of the test's
own, and rolled up by the refresher, so the rollups are the runtime's; every
bucket the API answers is checked against the same aggregates computed here,
in Python, from the rows written.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from api.app import create_app
from api.history_limits import HistoryLimits
from api.services import Services
from domain.messages import Quality, Sample, TelemetryBatch
from projections.history import HistoryWriter
from projections.history_schema import ensure_history_schema
from projections.rollup_refresher import RollupRefresher
from tests.integration.api.access import codes, field, named, open_session, operator_events
from tests.integration.api.conftest import AREA, OTHER_AREA, Plant, PlantFactory, other_device

pytestmark = pytest.mark.integration

HISTORY = """query($d: String!, $t: [String!]!, $f: DateTime!, $to: DateTime!, $b: Int,
    $a: [String!], $fill: HistoryFill! = NONE, $n: Int! = 500, $c: String) {
  history(device: $d, tags: $t, from: $f, to: $to, bucket: $b, aggregates: $a, fill: $fill,
          first: $n, after: $c) {
    samples { tag time value quality unit }
    buckets { tag time unit count goodShare quality filled min max avg first last twa }
    source endCursor hasNextPage
  }
}"""
TAGS = ("speed", "speed_setpoint")
LIMITS = HistoryLimits(max_rows=3000, max_span_days=2, raw_days=30, minute_days=365)


@dataclass(frozen=True)
class Row:
    tag: str
    time: datetime
    value: float
    quality: Quality


@dataclass
class History:
    plant: Plant
    client: httpx.AsyncClient
    client_services: Services
    token: str
    rows: list[Row]
    start: datetime
    end: datetime

    async def query(self, token: str | None = None, **variables: Any) -> dict[str, Any]:
        given = {"d": self.plant.device, "t": list(TAGS), **variables}
        for key in ("f", "to"):
            given[key] = given.get(key, self.start if key == "f" else self.end)
            if isinstance(given[key], datetime):
                given[key] = given[key].isoformat()
        response = await self.client.post(
            "/graphql",
            json={"query": HISTORY, "variables": given},
            headers={"Authorization": f"Bearer {token or self.token}"},
        )
        body: dict[str, Any] = response.json()
        return body

    async def answer(self, **variables: Any) -> dict[str, Any]:
        body = await self.query(**variables)
        assert "errors" not in body, body
        page: dict[str, Any] = body["data"]["history"]
        return page


def written_rows(start: datetime) -> list[Row]:
    """Three hours of two tags at irregular intervals, some samples bad."""
    rng = random.Random(15)
    rows = []
    for tag, step in (("speed", 7.0), ("speed_setpoint", 29.0)):
        at = start + timedelta(seconds=rng.uniform(0, step))
        while at < start + timedelta(hours=3):
            quality = Quality.BAD if rng.random() < 0.1 else Quality.GOOD
            rows.append(Row(tag, at, round(rng.uniform(0, 1500), 3), quality))
            at += timedelta(seconds=rng.uniform(1, 2 * step), microseconds=rng.randrange(10**6))
    return rows


@pytest.fixture
async def history(make_plant: PlantFactory, own_database: str) -> AsyncIterator[History]:
    plant = await make_plant()
    pool = await asyncpg.create_pool(own_database, min_size=1, max_size=2)
    partitions = await ensure_history_schema(pool)
    now = datetime.now(UTC)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    rows = written_rows(start)
    writer = HistoryWriter(pool, partitions)
    samples = tuple(Sample(r.tag, r.value, r.quality, "rpm", r.time) for r in rows)
    await writer.write([TelemetryBatch(plant.device, now, samples)])
    await RollupRefresher(pool).refresh()  # late for the new table: their minutes were pending
    # The query below selects every field of both lists: costlier than the default allows.
    services = dataclasses.replace(
        plant.services, pool=pool, history_limits=LIMITS, max_query_cost=10**6
    )
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(services)), base_url="http://plant"
    )
    # An analyst of the whole plant: an unknown device is within their scope, so it is
    # refused as unknown rather than as beyond their reach.
    analyst = await plant.add_operator(["analyst"], ["plant"], full_name="Ann Analyst")
    token = (await open_session(plant, analyst.username)).access_token
    yield History(plant, client, services, token, rows, start, start + timedelta(hours=3))
    await client.aclose()
    await pool.close()


# -- what the buckets should hold, from the raw rows -------------------------------------------


def expected_buckets(rows: Sequence[Row], tag: str, width: int, cut: int) -> dict[datetime, dict]:
    """Each bucket's aggregates; a good value holds until the tag's next sample or the end
    of its ``cut``-second stretch (the bucket from raw rows, the minute from rollups)."""
    mine = sorted((r for r in rows if r.tag == tag), key=lambda r: r.time)
    out: dict[datetime, dict[str, Any]] = {}
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for i, row in enumerate(mine):
        seconds = (row.time - epoch).total_seconds()
        start = epoch + timedelta(seconds=math.floor(seconds / width) * width)
        bucket = out.setdefault(start, {"count": 0, "good": [], "held": 0.0, "weighted": 0.0})
        bucket["count"] += 1
        if row.quality is not Quality.GOOD:
            continue
        bucket["good"].append(row)
        stretch_end = epoch + timedelta(seconds=(math.floor(seconds / cut) + 1) * cut)
        following = mine[i + 1].time if i + 1 < len(mine) else stretch_end
        held = (min(following, stretch_end) - row.time).total_seconds()
        bucket["held"] += held
        bucket["weighted"] += row.value * held
    result = {}
    for start, b in out.items():
        values = [r.value for r in b["good"]]
        result[start] = {
            "count": b["count"],
            "goodShare": len(values) / b["count"],
            "min": min(values, default=None),
            "max": max(values, default=None),
            "avg": sum(values) / len(values) if values else None,
            "first": values[0] if values else None,
            "last": values[-1] if values else None,
            "twa": b["weighted"] / b["held"] if b["held"] else None,
        }
    return result


def check_buckets(answer: list[dict[str, Any]], rows: Sequence[Row], width: int, cut: int) -> None:
    assert answer, "no buckets"
    for tag in TAGS:
        expected = expected_buckets(rows, tag, width, cut)
        mine = [b for b in answer if b["tag"] == tag]
        stored = [b for b in mine if b["count"]]
        assert {datetime.fromisoformat(b["time"]) for b in stored} == set(expected)
        for bucket in stored:
            want = expected[datetime.fromisoformat(bucket["time"])]
            for name, value in want.items():
                if value is None or bucket[name] is None:
                    assert bucket[name] == value, (tag, bucket, name)
                else:
                    assert bucket[name] == pytest.approx(value, rel=1e-9, abs=1e-9), (name, bucket)
            assert bucket["unit"] == "rpm"
            quality = (
                "GOOD"
                if want["goodShare"] == 1
                else "BAD"
                if not want["goodShare"]
                else "UNCERTAIN"
            )
            assert bucket["quality"] == quality


# -- raw ---------------------------------------------------------------------------------------


async def test_raw_samples_come_in_pages_with_quality_and_unit(history: History) -> None:
    seen: list[tuple[str, datetime, float, str, str]] = []
    cursor = None
    pages = 0
    while True:
        page = await history.answer(n=97, c=cursor)
        pages += 1
        assert page["source"] == "samples"
        assert page["buckets"] == []
        seen += [
            (s["tag"], datetime.fromisoformat(s["time"]), s["value"], s["quality"], s["unit"])
            for s in page["samples"]
        ]
        cursor = page["endCursor"]
        if not page["hasNextPage"]:
            break
        assert pages < 100
    written = sorted(
        ((r.tag, r.time, r.value, r.quality.name, "rpm") for r in history.rows),
        key=lambda s: (TAGS.index(s[0]), s[1]),
    )
    assert seen == written
    assert pages == math.ceil(len(written) / 97)


# -- buckets from each source ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "source", "cut"),
    [(10, "samples", 10), (45, "samples", 45), (120, "samples_1m", 60), (3600, "samples_1h", 60)],
)
async def test_buckets_match_a_computation_from_the_raw_rows(
    history: History, width: int, source: str, cut: int
) -> None:
    page = await history.answer(b=width, n=3000)
    assert page["source"] == source
    assert page["samples"] == []
    assert page["hasNextPage"] is False
    check_buckets(page["buckets"], history.rows, width, cut)
    span = (history.end - history.start).total_seconds()
    assert len(page["buckets"]) == len(TAGS) * math.ceil(span / width)


async def test_the_minutes_not_rolled_up_yet_are_computed_from_the_raw_rows(
    history: History,
) -> None:
    # Three hours ahead of the clock: not rolled up until the watermark passes them.
    pool = history.client_services.pool
    assert pool is not None
    start = history.start + timedelta(hours=6)
    rows = written_rows(start)
    samples = tuple(Sample(r.tag, r.value, r.quality, "rpm", r.time) for r in rows)
    await HistoryWriter(pool, await ensure_history_schema(pool)).write(
        [TelemetryBatch(history.plant.device, start, samples)]
    )
    refresher = RollupRefresher(pool)
    widths = [(60, "samples_1m"), (120, "samples_1m"), (3600, "samples_1h")]

    async def check_trends() -> None:
        for width, source in widths:
            page = await history.answer(f=start, to=start + timedelta(hours=3), b=width, n=3000)
            assert page["source"] == source
            check_buckets(page["buckets"], rows, width, cut=60)

    await check_trends()  # none of it rolled up
    # Rolled up to the middle of an hour: hours, then minutes, then raw rows.
    await refresher.advance(to=start + timedelta(minutes=90))
    await refresher.catch_up()
    await check_trends()
    await refresher.advance(to=start + timedelta(hours=3))
    await refresher.catch_up()
    await check_trends()


async def test_only_the_aggregates_asked_for_have_values(history: History) -> None:
    page = await history.answer(b=600, a=["max", "goodShare"])
    bucket = next(b for b in page["buckets"] if b["count"] is None and b["max"] is not None)
    assert bucket["goodShare"] is not None
    assert bucket["quality"] in ("GOOD", "UNCERTAIN", "BAD")
    assert (bucket["min"], bucket["avg"], bucket["first"], bucket["last"], bucket["twa"]) == (
        None,
        None,
        None,
        None,
        None,
    )


async def test_empty_buckets_are_filled_as_asked(history: History) -> None:
    # One more hour after the data: empty buckets at the end; a gap is made by the range.
    end = history.end + timedelta(hours=1)
    none = await history.answer(b=600, to=end, t=["speed"])
    previous = await history.answer(b=600, to=end, t=["speed"], fill="PREVIOUS")
    linear = await history.answer(b=600, to=end, t=["speed"], fill="LINEAR")
    empty = [i for i, b in enumerate(none["buckets"]) if b["count"] == 0]
    assert len(empty) == 6
    last_with_data = none["buckets"][empty[0] - 1]
    for i in empty:
        assert none["buckets"][i]["avg"] is None
        assert none["buckets"][i]["quality"] == "BAD"
        assert previous["buckets"][i]["avg"] == last_with_data["avg"]
        assert previous["buckets"][i]["filled"]
        assert previous["buckets"][i]["quality"] == "UNCERTAIN"
        # Nothing after them to interpolate towards.
        assert linear["buckets"][i]["avg"] is None
        assert not linear["buckets"][i]["filled"]


# -- bad input ---------------------------------------------------------------------------------


BAD_INPUT: list[tuple[dict[str, Any], str, str]] = [
    ({"d": "no-such-press"}, "unknown_device", "device"),
    ({"t": ["speed", "torque"]}, "unknown_tag", "tags"),
    ({"t": []}, "unknown_tag", "tags"),
    (
        {"f": "2030-01-02T00:00:00+00:00", "to": "2030-01-01T00:00:00+00:00"},
        "invalid_time_range",
        "from",
    ),
    (
        {"f": "2030-01-01T00:00:00", "to": "2030-01-02T00:00:00+00:00"},
        "invalid_time_range",
        "from",
    ),
    (
        {"f": "2030-01-01T00:00:00+00:00", "to": "2030-01-04T00:00:00+00:00"},
        "span_too_long",
        "to",
    ),
    ({"b": 0}, "invalid_bucket", "bucket"),
    ({"b": -60}, "invalid_bucket", "bucket"),
    ({"b": 1, "n": 3000}, "too_many_rows", "bucket"),
    ({"b": 10}, "too_many_rows", "first"),
    ({"n": 0}, "bad_page", "first"),
    ({"n": 3001}, "bad_page", "first"),
    ({"a": ["avg", "median"]}, "unknown_aggregate", "aggregates"),
    ({"c": "bm90IGEgY3Vyc29y"}, "bad_cursor", "after"),
    ({"b": 600, "c": "x"}, "bad_cursor", "after"),
]


async def test_bad_input_is_refused_naming_the_argument(history: History) -> None:
    for variables, code, argument in BAD_INPUT:
        body = await history.query(**variables)
        assert body["data"] is None, variables
        (error,) = body["errors"]
        assert (error["extensions"]["code"], error["extensions"]["argument"]) == (code, argument), (
            variables,
            error,
        )


async def test_past_their_retention_raw_samples_and_small_buckets_are_refused(
    history: History,
) -> None:
    old = history.start - timedelta(days=31)
    for variables in ({}, {"b": 30}, {"b": 90}):
        body = await history.query(f=old, to=old + timedelta(hours=1), **variables)
        (error,) = body["errors"]
        assert error["extensions"] == {
            "code": "invalid_bucket",
            "argument": "bucket",
            "resolution": 60,
        }
    older = history.start - timedelta(days=400)
    body = await history.query(f=older, to=older + timedelta(hours=5), b=600)
    assert body["errors"][0]["extensions"]["resolution"] == 3600
    page = await history.answer(f=older, to=older + timedelta(hours=5), b=3600)
    assert page["source"] == "samples_1h"
    assert all(b["count"] == 0 for b in page["buckets"])


async def test_the_cost_limit_counts_the_rows_asked_for(history: History) -> None:
    strict = dataclasses.replace(history.client_services, max_query_cost=5000)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(strict)), base_url="http://plant"
    ) as client:
        query = (
            "query($d: String!, $f: DateTime!, $to: DateTime!, $n: Int!) {"
            ' history(device: $d, tags: ["speed"], from: $f, to: $to, bucket: 60, first: $n)'
            " { buckets { time avg } } }"
        )
        answers = []
        for first in (2000, 3000):
            response = await client.post(
                "/graphql",
                json={"query": query, "variables": {"d": history.plant.device,
                      "f": history.start.isoformat(), "to": history.end.isoformat(), "n": first}},
                headers={"Authorization": f"Bearer {history.token}"},
            )  # fmt: skip
            answers.append(response.json())
    assert "errors" not in answers[0]
    assert len(answers[0]["data"]["history"]["buckets"]) == 180
    assert answers[1]["errors"][0]["extensions"]["code"] == "query_too_costly"


# -- who may read ------------------------------------------------------------------------------


# A reader's scopes, and the answers to them for the plant's device (area stamping), the
# other device (area welding) and a device the plant does not have: a device's history is
# read only inside a scope, and whether a device exists is told only to a scope reaching it.
SCOPES_AND_ANSWERS: list[tuple[tuple[str, ...], tuple[str, str, str]]] = [
    (("plant",), ("answered", "answered", "unknown_device")),
    (("device:{mine}",), ("answered", "forbidden", "forbidden")),
    ((f"area:{AREA}",), ("answered", "forbidden", "forbidden")),
    ((f"area:{OTHER_AREA}",), ("forbidden", "answered", "forbidden")),
    ((), ("forbidden", "forbidden", "forbidden")),
]


@pytest.mark.parametrize("role", ["viewer", "analyst"])
async def test_history_is_read_only_on_the_devices_of_the_readers_scopes(
    history: History, role: str
) -> None:
    plant = history.plant
    devices = (plant.device, other_device(plant.device), "no-such-press")
    expected: dict[tuple[str, ...], dict[str, str]] = {}
    found: dict[tuple[str, ...], dict[str, str]] = {}
    refusals_recorded: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    for templates, answers in SCOPES_AND_ANSWERS:
        scopes = tuple(template.format(mine=plant.device) for template in templates)
        expected[scopes] = dict(zip(devices, answers, strict=True))
        person = await plant.add_operator([role], scopes, full_name="Rhea Reader")
        token = (await open_session(plant, person.username)).access_token
        found[scopes] = {}
        for device in devices:
            body = await history.query(token=token, d=device, b=3600)
            if "errors" in body:
                assert body["data"] is None, body
                found[scopes][device] = ",".join(str(code) for code in codes(body))
                continue
            buckets = body["data"]["history"]["buckets"]
            # The device's own samples, not an empty answer standing in for a refusal.
            assert any(b["count"] for b in buckets) is (device == plant.device), body
            found[scopes][device] = "answered"
        denied = named(await operator_events(plant, person.username), "AccessDenied")
        refusals_recorded[scopes] = [(field(e, "action"), field(e, "target")) for e in denied]
    assert found == expected
    # Each refusal is on the reader's record, with the action and the device asked for.
    assert refusals_recorded == {
        scopes: [("history.read", d) for d, answer in answers.items() if answer == "forbidden"]
        for scopes, answers in expected.items()
    }


async def test_an_anonymous_caller_reads_no_history(history: History) -> None:
    response = await history.client.post(
        "/graphql",
        json={"query": HISTORY, "variables": {"d": history.plant.device, "t": ["speed"],
              "f": history.start.isoformat(), "to": history.end.isoformat()}},
    )  # fmt: skip
    assert response.json()["errors"][0]["extensions"]["code"] == "unauthenticated"
