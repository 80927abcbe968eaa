"""Fault drill: a press unplugged for a minute (the drill is in ``unplug.py``).

The drill runs in the background from the first drill test of the session on
(``conftest.py``); this test waits for its outcome: what it asserted failed
here, with its figures.
"""

from __future__ import annotations

import pytest

from tests.drills.background import BackgroundDrill
from tests.drills.unplug import UNPLUGGED_SECONDS

pytestmark = [pytest.mark.drill, pytest.mark.timeout(360)]


def test_an_unplugged_press_is_held_bad_alarmed_and_reconnected(
    unplugged_press: BackgroundDrill | None,
) -> None:
    assert unplugged_press is not None
    figures = unplugged_press.outcome()
    assert figures["unplugged_seconds"] >= UNPLUGGED_SECONDS
