"""Requests racing to record on one aggregate are all answered and all recorded.

An HMI fires requests in parallel, and every refusal of the permission matrix
is an event on one aggregate, the caller's operator. Hundreds of racers, far
more than the store executor has threads, keep them all writing at once; each
write that loses the version race decides again on fresh state, alone in the
process (``domain.time.retry_on_conflict``), and none is answered with an
internal error.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.api.access import codes, named, open_session, operator_events
from tests.integration.api.conftest import PlantFactory

pytestmark = pytest.mark.integration

RACERS = 300


async def test_racing_refusals_of_one_operator_are_all_answered_and_recorded(
    make_plant: PlantFactory,
) -> None:
    plant = await make_plant(dispatcher=False)
    token = (await open_session(plant, plant.username)).access_token
    denied_before = len(named(await operator_events(plant, plant.username), "AccessDenied"))

    answers = await asyncio.gather(
        *(plant.gql("{ operators { username } }", token) for _ in range(RACERS))
    )

    assert [codes(answer) for answer in answers] == [["forbidden"]] * RACERS
    denied = named(await operator_events(plant, plant.username), "AccessDenied")
    assert len(denied) == denied_before + RACERS
