"""An update yielded to many subscriptions is executed once per query, not once per subscriber.

strawberry executes a subscription's selection set on every value it yields
(graphql-core's per-event execution: field collection, resolution, completion
and serialization). Hundreds of HMIs following the same device each had the
same update executed for them. A payload type that opts in by carrying a
``renders`` dict (:class:`~api.graphql.devices.TagUpdate`, built once per
NATS message and handed to every subscription that lets it through) keeps
there the result of each distinct operation executed on it; the next
subscription with the same operation, fragments and variables gets that
result without executing anything.

Only types whose fields are plain values may opt in: nothing of their
rendering may depend on who asks (the context), since the result is shared.
Who receives an update is still decided by each subscription, before it
yields it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Hashable
from typing import Any

from graphql import ExecutionResult, Executor, print_ast
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

# The attribute through which a payload opts in: a dict, empty when the payload is built.
RENDERS = "renders"


def _render_key(executor: Executor) -> Hashable:
    """What a per-event execution's result depends on besides the payload."""
    fragments = tuple(print_ast(node) for _, node in sorted(executor.fragment_definitions.items()))
    variables = repr(sorted(executor.variable_values.coerced.items()))
    return print_ast(executor.operation), fragments, variables


class SharedRenderExecutor(StrawberryGraphQLCoreExecutionContext):
    """strawberry's executor, reusing the result of an opted-in payload's execution."""

    render_key: Hashable | None = None

    def build_per_event_executor(self, payload: Any) -> Executor:
        if self.render_key is None:
            self.render_key = _render_key(self)  # once per subscription, copied to each event
        return super().build_per_event_executor(payload)

    def execute_operation(self, serially: bool | None = None) -> Any:
        renders = getattr(self.root_value, RENDERS, None)
        if not isinstance(renders, dict) or self.render_key is None:
            return super().execute_operation(serially)
        cached = renders.get(self.render_key)
        if cached is not None:
            return cached
        result = super().execute_operation(serially)
        if isinstance(result, ExecutionResult):
            if not result.errors:
                renders[self.render_key] = result
            return result
        return self._keep(renders, self.render_key, result)

    @staticmethod
    async def _keep(renders: dict[Hashable, Any], key: Hashable, result: Awaitable[Any]) -> Any:
        done = await result
        if isinstance(done, ExecutionResult) and not done.errors:
            renders[key] = done
        return done
