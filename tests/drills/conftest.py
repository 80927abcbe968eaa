"""The drills' shared fixture: the device unplug drill, run beside the others.

That drill spends a minute waiting for an unplugged press to come back, so it
starts in the background with the first drill test of the session (when its
own test is selected) and runs on its own thread, event loop and plant
(:class:`~tests.drills.background.BackgroundDrill`); ``test_device_unplug.py``
collects its outcome.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.drills.ledger", "tests.drills.unplug")

from tests.drills.background import BackgroundDrill  # noqa: E402
from tests.drills.unplug import unplug_drill  # noqa: E402 - rewritten asserts, as in a test

UNPLUG_TEST = Path("tests/drills/test_device_unplug.py")


@pytest.fixture(scope="session", autouse=True)
def unplugged_press(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackgroundDrill | None]:
    """The unplug drill, under way from the first drill test on (None if not selected)."""
    if not any(Path(item.nodeid.split("::")[0]) == UNPLUG_TEST for item in request.session.items):
        yield None
        return
    root = tmp_path_factory.mktemp("unplug")
    drill = BackgroundDrill("unplug", lambda: unplug_drill(root))
    yield drill
    drill.join()
