"""An update yielded to many subscriptions is executed once per distinct query."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Hashable
from dataclasses import field
from typing import Any

import strawberry

from api.graphql.shared_render import SharedRenderExecutor

executed: list[str] = []


@strawberry.type
class Shared:
    value: int
    renders: strawberry.Private[dict[Hashable, Any]] = field(default_factory=dict)

    @strawberry.field
    def doubled(self) -> int:
        executed.append("shared")
        return self.value * 2


@strawberry.type
class Own:
    value: int

    @strawberry.field
    def doubled(self) -> int:
        executed.append("own")
        return self.value * 2


SHARED = Shared(value=21)


@strawberry.type
class Query:
    @strawberry.field
    def ping(self) -> int:
        return 0


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def shared(self, times: int = 1) -> AsyncGenerator[Shared, None]:
        for _ in range(times):
            yield SHARED

    @strawberry.subscription
    async def own(self) -> AsyncGenerator[Own, None]:
        yield Own(value=21)


schema = strawberry.Schema(
    query=Query, subscription=Subscription, execution_context_class=SharedRenderExecutor
)


async def results(query: str, **variables: Any) -> list[Any]:
    stream = await schema.subscribe(query, variable_values=variables)
    return [(r.data, r.errors) async for r in stream]  # type: ignore[union-attr]


async def test_the_same_update_is_executed_once_for_every_subscription_with_its_query() -> None:
    executed.clear()
    SHARED.renders.clear()
    answers = [await results("subscription { shared { doubled } }") for _ in range(5)]
    assert answers == [[({"shared": {"doubled": 42}}, None)]] * 5
    assert executed == ["shared"]
    # Another query, other variables, or an alias: executed for it, once again.
    assert await results("subscription { shared { d: doubled } }") == [
        ({"shared": {"d": 42}}, None)
    ]
    assert (
        await results("subscription($n: Int!) { shared(times: $n) { doubled } }", n=2)
        == [({"shared": {"doubled": 42}}, None)] * 2
    )
    assert executed == ["shared"] * 3


async def test_an_update_that_does_not_opt_in_is_executed_for_each_subscription() -> None:
    executed.clear()
    for _ in range(3):
        assert await results("subscription { own { doubled } }") == [
            ({"own": {"doubled": 42}}, None)
        ]
    assert executed == ["own"] * 3


async def test_queries_run_as_before() -> None:
    result = await schema.execute("{ ping }")
    assert (result.data, result.errors) == ({"ping": 0}, None)
