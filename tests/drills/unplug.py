"""The device unplug drill: a press's simulator killed for a minute, then started again.

Two presses are polled five times a second; one of them has a ``comm_loss``
alarm with a 5 s on-delay. Its simulator is killed (SIGKILL: the cable pulled)
and started again 60 s later on the same port. What must hold:

- its tags turn ``bad`` within one poll, each holding its last good value
  (reason ``comm_loss``), in the live state and in the history;
- the ``comm_loss`` alarm is raised, not before its on-delay;
- the supervisor is connected again within one reconnect delay (5 s) of the
  press's return, and the alarm clears;
- the other press never misses a poll.

It mostly waits, so it runs beside the other drills (``conftest.py``); its
test collects the outcome. The figures go to ``var/drills/unplug.json``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from plantfile.alarm_conditions import COMM_LOSS_CONDITION
from plantfile.plant import DEFAULT_RECONNECT_DELAY_SECONDS
from projections.live_state import STATUS_KEY
from support.clock import utc_now
from tests.drills.figures import record_figures
from tests.drills.ledger import live_samples, sequences
from tests.drills.stack import DrillStack, PlantSpec, Press
from tests.support import eventually

UNPLUGGED = "press-unplugged"
STEADY = "press-steady"
POLL_SECONDS = 0.2
COMM_LOSS_ON_DELAY = 5.0
UNPLUGGED_SECONDS = 60.0
# The connect itself and the status's way to Redis, on top of the reconnect delay.
RECONNECT_SLACK_SECONDS = 1.0
WAIT_SECONDS = 30.0
# Polls stored before the unplug, so that its last values are values of a running press.
WARM_UP_POLLS = 10


async def connected(stack: DrillStack, device: str, since: datetime) -> datetime:
    """When the device's status last turned ``connected``, if that was after ``since``."""
    async with stack.live_state() as redis:
        stored = await redis.get(STATUS_KEY.format(device=device))
    assert stored is not None, f"{device}: no status in Redis"
    status = json.loads(stored)
    assert status["state"] == "connected", f"{device}: {status}"
    changed = datetime.fromisoformat(status["ts"])
    assert changed >= since, f"{device}: connected before {since}"
    return changed


async def polled(stack: DrillStack, polls: int) -> None:
    stored = await sequences(stack)
    assert all(
        device in stored and stored[device].distinct >= polls for device in (UNPLUGGED, STEADY)
    ), stored


async def held_last_values(stack: DrillStack, unplugged: datetime) -> dict[str, Any]:
    """The first bad batch after the unplug, checked: every tag holding its last good value."""
    rows = await stack.fetch(
        "SELECT min(time) AS first_bad FROM samples"
        " WHERE device = $1 AND quality = 'bad' AND time >= $2",
        UNPLUGGED,
        unplugged,
    )
    first_bad = rows[0]["first_bad"]
    assert first_bad is not None, "no bad sample since the unplug"
    bad = {
        row["tag"]: row["value"]
        for row in await stack.fetch(
            "SELECT tag, value FROM samples WHERE device = $1 AND time = $2", UNPLUGGED, first_bad
        )
    }
    last_good = {
        row["tag"]: row["value"]
        for row in await stack.fetch(
            "SELECT DISTINCT ON (tag) tag, value FROM samples"
            " WHERE device = $1 AND quality = 'good' AND time < $2 ORDER BY tag, time DESC",
            UNPLUGGED,
            first_bad,
        )
    }
    assert bad == last_good, f"the bad batch holds {bad}, the last good values were {last_good}"
    good_after = await stack.fetch(
        "SELECT count(DISTINCT time) AS polls FROM samples"
        " WHERE device = $1 AND quality = 'good' AND time > $2 AND time < $3",
        UNPLUGGED,
        unplugged,
        first_bad,
    )
    # At most the poll that was under way as the press went: the next one is bad.
    assert good_after[0]["polls"] <= 1, f"{good_after[0]['polls']} good polls after the unplug"
    live = await live_samples(stack, UNPLUGGED)
    assert {tag: (s.quality, s.reason) for tag, s in live.items()} == dict.fromkeys(
        last_good, ("bad", "comm_loss")
    ), live
    assert {tag: s.value for tag, s in live.items()} == last_good, live
    return {"first_bad": first_bad, "held": last_good}


async def alarm_event(stack: DrillStack, event: str) -> datetime:
    rows = await stack.fetch(
        "SELECT at FROM alarm_journal WHERE device = $1 AND condition = $2 AND event = $3",
        UNPLUGGED,
        COMM_LOSS_CONDITION,
        event,
    )
    assert len(rows) == 1, f"{COMM_LOSS_CONDITION} {event}: {rows}"
    at: datetime = rows[0]["at"]
    return at


async def lost(stack: DrillStack, since: datetime) -> datetime:
    async with stack.live_state() as redis:
        stored = await redis.get(STATUS_KEY.format(device=UNPLUGGED))
    assert stored is not None
    status = json.loads(stored)
    assert status["state"] == "disconnected", status
    changed = datetime.fromisoformat(status["ts"])
    assert changed >= since
    return changed


async def unplug_drill(root: Path) -> dict[str, Any]:
    comm_loss = {"priority": "high", "on_delay": COMM_LOSS_ON_DELAY}
    spec = PlantSpec(
        presses=[Press(UNPLUGGED, block={"comm_loss_alarm": comm_loss}), Press(STEADY)],
        poll_seconds=POLL_SECONDS,
    )
    with DrillStack("unplug", root, spec) as stack:
        await stack.prepare_database()
        started = utc_now()
        stack.start_plantcore()
        for device in (UNPLUGGED, STEADY):
            await eventually(partial(connected, stack, device, started), timeout=WAIT_SECONDS)
        await eventually(partial(polled, stack, WARM_UP_POLLS), timeout=WAIT_SECONDS)

        press = stack.presses[UNPLUGGED]
        unplugged = utc_now()
        press.kill()
        disconnected = await eventually(partial(lost, stack, unplugged), timeout=WAIT_SECONDS)
        held = await eventually(partial(held_last_values, stack, unplugged), timeout=WAIT_SECONDS)
        raised = await eventually(
            partial(alarm_event, stack, "Raised"), timeout=COMM_LOSS_ON_DELAY + WAIT_SECONDS
        )
        away = UNPLUGGED_SECONDS - (utc_now() - unplugged).total_seconds()
        await asyncio.sleep(max(0.0, away))  # the press stays unplugged this long
        press.start()
        returned = utc_now()
        reconnected = await eventually(
            partial(connected, stack, UNPLUGGED, returned - timedelta(seconds=1)),
            timeout=WAIT_SECONDS,
        )
        cleared = await eventually(partial(alarm_event, stack, "Cleared"), timeout=WAIT_SECONDS)
        steady = (await sequences(stack))[STEADY]

    figures = {
        "injected": f"simulator of {UNPLUGGED} killed (SIGKILL), started again",
        "unplugged_seconds": round((returned - unplugged).total_seconds(), 1),
        "seconds_to_bad": round((held["first_bad"] - unplugged).total_seconds(), 2),
        "poll_seconds": POLL_SECONDS,
        "held_values": held["held"],
        "comm_loss_raised_after_seconds": round((raised - disconnected).total_seconds(), 2),
        "comm_loss_on_delay_seconds": COMM_LOSS_ON_DELAY,
        "seconds_to_reconnect": round((reconnected - returned).total_seconds(), 2),
        "reconnect_delay_seconds": DEFAULT_RECONNECT_DELAY_SECONDS,
        "comm_loss_cleared_after_reconnect_seconds": round(
            (cleared - reconnected).total_seconds(), 2
        ),
        "other_press_polls": steady.distinct,
        "other_press_missing": steady.missing,
        "other_press_repeated": steady.repeated,
    }
    record_figures("unplug", figures)
    assert raised - disconnected >= timedelta(seconds=COMM_LOSS_ON_DELAY), figures
    assert reconnected - returned <= timedelta(
        seconds=DEFAULT_RECONNECT_DELAY_SECONDS + RECONNECT_SLACK_SECONDS
    ), figures
    assert cleared >= reconnected, figures
    assert (steady.missing, steady.repeated) == (0, 0), figures
    return figures
