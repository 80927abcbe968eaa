"""Query depth, cost, alias and size limits, on a small schema of their own.

Every refusal is checked to come before execution: the resolvers count their
calls in the request's context, and a refused request makes none.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
import strawberry
from graphql import GraphQLError, build_schema, get_introspection_query, parse
from strawberry.types import ExecutionResult

from api.graphql.limits import (
    QUERY_TOO_COSTLY,
    QUERY_TOO_DEEP,
    QUERY_TOO_LARGE,
    TOO_MANY_ALIASES,
    query_cost,
    query_limits,
)


@dataclass
class Calls:
    count: int = 0


Info = strawberry.Info[Calls, None]


@strawberry.type
class Tag:
    name: str
    value: float


@strawberry.type
class Device:
    id: str

    @strawberry.field
    def tags(self, info: Info, first: int | None = None) -> list[Tag]:
        info.context.count += 1
        return [Tag(name=f"t{i}", value=float(i)) for i in range(first or 2)]

    @strawberry.field
    def parent(self, info: Info) -> Device | None:
        info.context.count += 1
        return Device(id=f"{self.id}/parent")


@strawberry.type
class DevicePage:
    items: list[Device]


@strawberry.type
class Query:
    @strawberry.field
    def device(self, info: Info) -> Device:
        info.context.count += 1
        return Device(id="d")

    @strawberry.field
    def devices(self, info: Info, first: int | None = None) -> list[Device]:
        info.context.count += 1
        return [Device(id=f"d{i}") for i in range(first or 2)]

    @strawberry.field
    def recent(self, info: Info, limit: int = 5) -> list[Device]:
        info.context.count += 1
        return [Device(id=f"r{i}") for i in range(limit)]

    @strawberry.field
    def page(self, info: Info, first: int = 20) -> DevicePage:
        info.context.count += 1
        return DevicePage(items=[Device(id=f"p{i}") for i in range(first)])


MAX_DEPTH = 4
MAX_COST = 100
MAX_ALIASES = 5
MAX_TOKENS = 300


def plant_schema(
    *, max_depth: int = MAX_DEPTH, max_cost: int = MAX_COST, max_tokens: int = MAX_TOKENS
) -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        extensions=query_limits(
            max_depth=max_depth, max_cost=max_cost, max_aliases=MAX_ALIASES, max_tokens=max_tokens
        ),
    )


SCHEMA = plant_schema()
# Costs everything over 1: its refusals say the cost of any query.
PROBE = plant_schema(max_cost=1, max_depth=50, max_tokens=5000)
GRAPHQL_SCHEMA = build_schema(SCHEMA.as_str())


async def run(
    query: str, schema: strawberry.Schema = SCHEMA, **variables: Any
) -> tuple[ExecutionResult, Calls]:
    calls = Calls()
    result = await schema.execute(query, variable_values=variables or None, context_value=calls)
    return result, calls


async def refused(query: str, schema: strawberry.Schema = SCHEMA, **variables: Any) -> GraphQLError:
    """The one error refusing ``query``, after checking that no resolver ran."""
    result, calls = await run(query, schema, **variables)
    assert result.data is None
    assert calls.count == 0, "a refused query ran resolvers"
    assert result.errors is not None
    assert len(result.errors) == 1, result.errors
    return result.errors[0]


async def cost_of(query: str, **variables: Any) -> int:
    error = await refused(query, PROBE, **variables)
    assert error.extensions is not None
    assert error.extensions["code"] == QUERY_TOO_COSTLY, error
    cost: int = error.extensions["cost"]
    assert f"costs {cost}," in error.message
    return cost


def nested(depth: int) -> str:
    """A query of the depth the limiter gives it: ``device`` then depth - 1 ``parent``."""
    return "{ device" + " { parent" * (depth - 1) + " { id }" + " }" * (depth - 1) + " }"


# -- a normal query -----------------------------------------------------------------------


async def test_a_normal_query_passes_and_runs() -> None:
    result, calls = await run("{ device { id parent { id } tags(first: 3) { name } } }")
    assert result.errors is None
    assert result.data == {
        "device": {
            "id": "d",
            "parent": {"id": "d/parent"},
            "tags": [{"name": "t0"}, {"name": "t1"}, {"name": "t2"}],
        }
    }
    assert calls.count == 3


# -- depth --------------------------------------------------------------------------------


async def test_a_query_as_deep_as_the_limit_passes() -> None:
    result, calls = await run(nested(MAX_DEPTH))
    assert result.errors is None
    assert calls.count == MAX_DEPTH


async def test_a_query_one_level_deeper_than_the_limit_is_refused_before_any_resolver() -> None:
    error = await refused(nested(MAX_DEPTH + 1))
    assert error.extensions == {"code": QUERY_TOO_DEEP}
    assert error.message == f"'anonymous' exceeds maximum operation depth of {MAX_DEPTH}"


async def test_depth_is_counted_through_fragments() -> None:
    query = (
        "query Deep { device { ...P } }"
        " fragment P on Device { parent { parent { parent { ... on Device { parent { id } } } } } }"
    )
    error = await refused(query)
    assert error.extensions == {"code": QUERY_TOO_DEEP}
    assert "'Deep' exceeds maximum operation depth" in error.message


# -- introspection ------------------------------------------------------------------------


@pytest.mark.parametrize("max_depth", [MAX_DEPTH, 10])
async def test_the_full_introspection_query_passes(max_depth: int) -> None:
    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )
    result, _ = await run(query, plant_schema(max_depth=max_depth))
    assert result.errors is None
    assert result.data is not None
    names = {t["name"] for t in result.data["__schema"]["types"]}
    assert {"Query", "Device", "Tag", "DevicePage"} <= names
    assert query_cost(GRAPHQL_SCHEMA, parse(query)) == {"IntrospectionQuery": 1}


async def test_introspection_nested_through_its_cycles_is_refused_by_graphql_core() -> None:
    query = "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"
    error = await refused(query)
    assert error.message == "Maximum introspection depth exceeded"


# -- cost ---------------------------------------------------------------------------------


async def test_a_wide_query_over_the_cost_limit_is_refused_with_its_cost() -> None:
    # devices: 10 by default, each id + tags (10 by default, each name + value)
    # = 1 + 10 * (1 + (1 + 10 * 2)) = 221
    error = await refused("{ devices { id tags { name value } } }")
    assert error.extensions == {"code": QUERY_TOO_COSTLY, "cost": 221, "maxCost": MAX_COST}
    assert error.message == f"'anonymous' costs 221, more than the maximum cost of {MAX_COST}"


async def test_each_field_costs_one() -> None:
    assert await cost_of("{ device { id parent { id } } }") == 4


async def test_first_as_a_literal_multiplies_the_list_selection() -> None:
    query = "{ devices(first: 2) { id tags(first: 3) { name value } } }"
    assert await cost_of(query) == 1 + 2 * (1 + (1 + 3 * 2))
    result, calls = await run(query)
    assert result.errors is None
    assert calls.count == 1 + 2  # devices, then the tags of each


async def test_first_as_a_variable_multiplies_the_list_selection() -> None:
    query = "query Q($n: Int) { devices(first: $n) { id } }"
    assert await cost_of(query, n=3) == 1 + 3
    assert await cost_of(query, n=60) == 1 + 60
    assert await cost_of(query) == 1 + 10  # no value: the default list size
    assert await cost_of("query Q($n: Int = 7) { devices(first: $n) { id } }") == 1 + 7
    assert await cost_of("query Q($n: Int = 7) { devices(first: $n) { id } }", n=4) == 1 + 4

    result, calls = await run(query, n=3)
    assert result.errors is None
    assert calls.count == 1
    error = await refused(query, n=500)
    assert error.extensions is not None
    assert error.extensions["cost"] == 501


async def test_concurrent_requests_are_each_costed_with_their_own_variables() -> None:
    query = "query Q($n: Int) { devices(first: $n) { id } }"
    (cheap, cheap_calls), (costly, costly_calls) = await asyncio.gather(
        run(query, n=3), run(query, n=500)
    )
    assert cheap.errors is None
    assert cheap_calls.count == 1
    assert costly.errors is not None
    assert costly.errors[0].extensions == {
        "code": QUERY_TOO_COSTLY,
        "cost": 501,
        "maxCost": MAX_COST,
    }
    assert costly_calls.count == 0


async def test_a_size_argument_default_in_the_schema_sizes_the_list() -> None:
    assert await cost_of("{ recent { id } }") == 1 + 5
    assert await cost_of("{ recent(limit: 8) { id } }") == 1 + 8


async def test_a_page_size_sizes_the_list_just_below_it() -> None:
    assert await cost_of("{ page { items { id } } }") == 1 + (1 + 20 * 1)
    assert await cost_of("{ page(first: 2) { items { id tags { name } } } }") == 1 + (
        1 + 2 * (1 + (1 + 10 * 1))
    )


async def test_named_fragments_are_counted() -> None:
    query = (
        "{ devices(first: 2) { ...D } }"
        " fragment D on Device { id tags(first: 3) { ...T } }"
        " fragment T on Tag { name value }"
    )
    assert await cost_of(query) == 1 + 2 * (1 + (1 + 3 * 2))


async def test_inline_fragments_are_counted() -> None:
    query = "{ devices(first: 2) { ... on Device { id tags(first: 3) { name ... { value } } } } }"
    assert await cost_of(query) == 1 + 2 * (1 + (1 + 3 * 2))


async def test_fragments_amplified_by_lists_are_refused() -> None:
    query = (
        "query Wide { devices(first: 5) { ...D } }"
        " fragment D on Device { id tags(first: 5) { ...T } parent { ...P } }"
        " fragment T on Tag { name value }"
        " fragment P on Device { id tags(first: 5) { ...T } }"
    )
    error = await refused(query)
    # devices: 1 + 5 x (id 1 + tags (1 + 5 x 2) + parent (1 + id 1 + tags (1 + 5 x 2)))
    assert error.extensions == {"code": QUERY_TOO_COSTLY, "cost": 126, "maxCost": MAX_COST}
    assert "'Wide' costs 126," in error.message


@pytest.mark.timeout(10)
async def test_a_fragment_cycle_is_refused_and_does_not_hang() -> None:
    query = (
        "{ device { ...A } }"
        " fragment A on Device { parent { ...B } }"
        " fragment B on Device { parent { ...A } }"
    )
    result, calls = await run(query)
    assert result.data is None
    assert calls.count == 0
    assert result.errors is not None
    assert "Cannot spread fragment 'A' within itself via 'B'." in {e.message for e in result.errors}
    # The cost walk itself ends, each fragment once along a path.
    assert query_cost(GRAPHQL_SCHEMA, parse(query)) == {"anonymous": 1 + (1 + (1 + 0))}


@pytest.mark.timeout(10)
def test_fragments_fanning_out_are_costed_in_linear_time() -> None:
    # Each fragment spreads the next one twice: 2**40 expansions, costed in 41 steps.
    levels = 40
    fragments = " ".join(
        f"fragment F{i} on Device {{ parent {{ ...F{i + 1} ...F{i + 1} }} }}" for i in range(levels)
    )
    query = f"{{ device {{ ...F0 }} }} {fragments} fragment F{levels} on Device {{ id }}"
    (cost,) = query_cost(GRAPHQL_SCHEMA, parse(query)).values()
    assert cost == 1 + sum(2**i for i in range(levels)) + 2**levels


async def test_an_absurd_cost_saturates_without_breaking_the_message() -> None:
    query = (
        "{ devices(first: 1000000000) { parent { parent { tags(first: 1000000000) { name } } } } }"
    )
    error = await refused(query)
    assert error.extensions is not None
    assert error.extensions["code"] == QUERY_TOO_COSTLY
    assert "costs at least 1000000000000000," in error.message


# -- aliases and tokens -------------------------------------------------------------------


def aliased(count: int) -> str:
    return "{ " + " ".join(f"a{i}: device {{ id }}" for i in range(count)) + " }"


async def test_as_many_aliases_as_the_limit_pass() -> None:
    result, calls = await run(aliased(MAX_ALIASES))
    assert result.errors is None
    assert calls.count == MAX_ALIASES


async def test_too_many_aliases_are_refused() -> None:
    error = await refused(aliased(MAX_ALIASES + 1))
    assert error.extensions == {"code": TOO_MANY_ALIASES}
    assert error.message == f"{MAX_ALIASES + 1} aliases found. Allowed: {MAX_ALIASES}"


async def test_too_many_tokens_are_refused_while_parsing() -> None:
    query = "{ device { " + "id " * MAX_TOKENS + "} }"
    error = await refused(query)
    assert error.extensions == {"code": QUERY_TOO_LARGE}
    assert f"Document contains more than {MAX_TOKENS} tokens" in error.message


async def test_a_document_within_the_token_limit_passes() -> None:
    query = "{ device { " + "id " * (MAX_TOKENS - 10) + "} }"
    result, _ = await run(query, plant_schema(max_cost=MAX_TOKENS))
    assert result.errors is None


# -- arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "limits",
    [
        {"max_depth": 0, "max_cost": 10},
        {"max_depth": 5, "max_cost": 0},
        {"max_depth": 5, "max_cost": 10, "max_aliases": 0},
        {"max_depth": 5, "max_cost": 10, "max_tokens": -1},
    ],
)
def test_limits_must_be_positive(limits: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be at least 1"):
        query_limits(**limits)
