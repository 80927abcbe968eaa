"""Each test gets its own application on the in-memory event store."""

from __future__ import annotations

import pytest

from domain.application import PlantApplication
from tests.unit.domain.plant import make_app


@pytest.fixture
def app() -> PlantApplication:
    return make_app()
