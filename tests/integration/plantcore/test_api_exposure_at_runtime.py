"""``plantcore run`` serves no GraphiQL and no schema unless its configuration turns them on."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from plantcore.runtime import PlantRuntime
from tests.integration.plantcore.conftest import RunPlant
from tests.support import eventually

pytestmark = pytest.mark.integration

BROWSER = {"Accept": "text/html"}
SCHEMA = {"query": "{ __schema { queryType { name } } }"}


async def serving(runtime: PlantRuntime) -> httpx.AsyncClient:
    async def started() -> None:
        assert runtime.server is not None
        assert runtime.server.started

    await eventually(started)
    return httpx.AsyncClient(base_url=runtime.api_url)


@pytest.fixture
def plant_file(tmp_path: Path) -> Path:
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump({"plant_id": "exposure", "devices": []}))
    return path


async def test_the_runtime_by_default_serves_no_graphiql_and_no_schema(
    plant_file: Path, run_plant: RunPlant
) -> None:
    runtime = await run_plant(plant_file)
    async with await serving(runtime) as http:
        page = await http.get("/graphql", headers=BROWSER)
        schema = (await http.post("/graphql", json=SCHEMA)).json()
    assert page.status_code == 404
    assert schema["data"] is None
    assert "introspection has been disabled" in schema["errors"][0]["message"]


async def test_the_runtime_serves_both_when_configured_to(
    plant_file: Path, run_plant: RunPlant
) -> None:
    runtime = await run_plant(plant_file, graphiql=True, introspection=True)
    async with await serving(runtime) as http:
        page = await http.get("/graphql", headers=BROWSER)
        schema = (await http.post("/graphql", json=SCHEMA)).json()
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()
    assert schema["data"]["__schema"]["queryType"] == {"name": "Query"}
