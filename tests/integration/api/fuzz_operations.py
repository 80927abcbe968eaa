"""The GraphQL operations the API fuzz sends, drawn from the served schema by hypothesis-graphql.

Each :class:`Operation` is a document of queries or mutations drawn from the
schema strawberry serves (its printed SDL, the same as ``docs/schema.graphql``):
valid ones (``Mode.POSITIVE``) and ones with one violation of the schema each
(``Mode.NEGATIVE``: a wrong type, a missing or null argument, an unknown enum
value, an ``Int`` out of range). Two thirds carry their argument values as
variables instead of literals, so that both ways into the API are fuzzed (a
literal is checked by validation, a variable when it is coerced), and half of
those are aimed: their device, tag, command, alarm, area and user name are
filled in by the sender with things that exist (:data:`AIMABLE`), so that the
resolvers go past "not found".

hypothesis-graphql has no strategy for the custom scalars, so ``DateTime`` is
drawn as ISO 8601 texts (and any text), and ``JSON`` as any JSON value,
integers of thousands of digits included.

:func:`generate` runs in a worker process (see ``test_fuzz.py``): drawing a
document costs milliseconds of CPU, so it is done on the other core while the
documents already drawn are sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, TypeVar

import graphql
import hypothesis
import hypothesis_graphql
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, nodes

from api.graphql.schema import build_schema

T = TypeVar("T")

SDL = build_schema().as_str()
SCHEMA = graphql.build_schema(SDL)

# Each costs an Argon2id hash or verification (some 140 ms of CPU): a small share of the run.
ARGON2_FIELDS = frozenset(
    {"login", "createOperator", "resetPassword", "changePassword", "enrollTotp"}
)
# Ends the caller's session: sent in a session of its own, so the rest of the run keeps its one.
SESSION_ENDING_FIELDS = frozenset({"logout"})
# What anyone may call without a token.
OPEN_FIELDS = frozenset({"login", "refreshToken"})
# The arguments an aimed operation points at something that exists.
AIMABLE = frozenset({"device", "tag", "commandId", "alarmId", "username", "area"})

_NAME = st.from_regex(r"[_A-Za-z][_0-9A-Za-z]{0,7}", fullmatch=True)
_JSON_LEAVES: st.SearchStrategy[graphql.ValueNode] = st.one_of(
    st.just(nodes.Null),
    st.booleans().map(nodes.Boolean),
    st.integers().map(nodes.Int),
    # Past 4300 digits Python reads no integer: written as digits, never as an int.
    st.integers(min_value=1, max_value=6000).map(
        lambda digits: graphql.IntValueNode(value="9" * digits)
    ),
    st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
    st.text().map(nodes.String),
)
JSON_VALUES = st.recursive(
    _JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=4).map(nodes.List)
        | st.dictionaries(_NAME, children, max_size=4).map(
            lambda fields: nodes.Object(
                [
                    graphql.ObjectFieldNode(name=graphql.NameNode(value=name), value=value)
                    for name, value in fields.items()
                ]
            )
        )
    ),
    max_leaves=12,
)
DATETIMES = st.one_of(
    st.datetimes(timezones=st.none() | st.just(UTC)).map(lambda at: nodes.String(at.isoformat())),
    st.text().map(nodes.String),
)
CUSTOM_SCALARS = {"JSON": JSON_VALUES, "DateTime": DATETIMES}


@dataclass(frozen=True)
class Operation:
    """One GraphQL request: its document and variables, and the root fields it selects.

    ``targets`` names the variables the sender fills with something that exists,
    by the argument they are passed to (``{"v0": "device"}``).
    """

    query: str
    variables: dict[str, Any] | None
    fields: frozenset[str]
    targets: dict[str, str] = field(default_factory=dict)

    def body(self, existing: Callable[[str], str]) -> dict[str, Any]:
        """The JSON body, each target variable set to ``existing(argument)``."""
        if self.variables is None:
            return {"query": self.query}
        variables = {**self.variables}
        for variable, argument in self.targets.items():
            variables[variable] = existing(argument)
        return {"query": self.query, "variables": variables}


def root_fields(query: str) -> frozenset[str]:
    """The names of the root fields a document selects."""
    [operation] = graphql.parse(query).definitions
    assert isinstance(operation, graphql.OperationDefinitionNode)
    return frozenset(
        selection.name.value
        for selection in operation.selection_set.selections
        if isinstance(selection, graphql.FieldNode)
    )


def with_variables(query: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The same operation with each root field's argument values passed as variables.

    A variable is declared with the argument's type in the schema, so that a
    value of the wrong type is refused when the variables are coerced, not by
    validation. Also returns, for each string variable, the argument it is for.
    """
    [operation] = graphql.parse(query).definitions
    assert isinstance(operation, graphql.OperationDefinitionNode)
    root = SCHEMA.get_root_type(operation.operation)
    assert root is not None
    definitions: list[graphql.VariableDefinitionNode] = []
    variables: dict[str, Any] = {}
    arguments_of: dict[str, str] = {}
    selections: list[graphql.SelectionNode] = []
    for selection in operation.selection_set.selections:
        assert isinstance(selection, graphql.FieldNode)
        declared = root.fields[selection.name.value].args
        arguments: list[graphql.ArgumentNode] = []
        for argument in selection.arguments or ():
            variable = graphql.VariableNode(name=graphql.NameNode(value=f"v{len(definitions)}"))
            definitions.append(
                graphql.VariableDefinitionNode(
                    variable=variable,
                    type=graphql.parse_type(str(declared[argument.name.value].type)),
                )
            )
            value = graphql.value_from_ast_untyped(argument.value)
            variables[variable.name.value] = value
            if isinstance(value, str):
                arguments_of[variable.name.value] = argument.name.value
            arguments.append(graphql.ArgumentNode(name=argument.name, value=variable))
        selections.append(
            graphql.FieldNode(
                name=selection.name,
                arguments=tuple(arguments),
                selection_set=selection.selection_set,
            )
        )
    lifted = graphql.OperationDefinitionNode(
        operation=operation.operation,
        variable_definitions=tuple(definitions),
        selection_set=graphql.SelectionSetNode(selections=tuple(selections)),
    )
    document = graphql.print_ast(graphql.DocumentNode(definitions=(lifted,)))
    return document, variables, arguments_of


@dataclass(frozen=True)
class Batch:
    """What one call of :func:`generate` draws: ``count`` documents from ``seed``.

    ``single`` documents select one root field each (the cheapest to draw and
    to run); the others a few at once, as hypothesis-graphql likes.
    """

    mode: Mode
    fields: frozenset[str]
    count: int
    seed: int
    single: bool = True


def generate(batch: Batch) -> list[Operation]:
    """The batch's operations: the same on every run (a fixed seed, no example database)."""
    return draw_many(operations(batch), batch.count, batch.seed)


def operations(batch: Batch) -> st.SearchStrategy[Operation]:
    if batch.single:
        documents = st.one_of(*(_documents(batch.mode, [name]) for name in sorted(batch.fields)))
    else:
        documents = _documents(batch.mode, sorted(batch.fields))
    return st.tuples(documents, st.sampled_from(("literal", "variables", "aimed"))).map(_operation)


def _documents(mode: Mode, fields: list[str]) -> st.SearchStrategy[str]:
    return hypothesis_graphql.from_schema(
        SDL, fields=fields, custom_scalars=CUSTOM_SCALARS, mode=mode
    )


def _operation(drawn: tuple[str, str]) -> Operation:
    query, form = drawn
    fields = root_fields(query)
    if form == "literal":
        return Operation(query, None, fields)
    try:
        lifted, variables, arguments_of = with_variables(query)
    except ValueError:
        return Operation(query, None, fields)  # an integer no JSON reader takes stays literal
    if form == "variables":
        return Operation(lifted, variables, fields)
    targets = {v: argument for v, argument in arguments_of.items() if argument in AIMABLE}
    return Operation(lifted, variables, fields, targets)


def subscriptions() -> st.SearchStrategy[str]:
    """Valid subscription documents (hypothesis-graphql draws them as queries of their root)."""
    assert SCHEMA.subscription_type is not None
    as_root = graphql.GraphQLSchema(query=SCHEMA.subscription_type)
    return hypothesis_graphql.queries(as_root, custom_scalars=CUSTOM_SCALARS).map(
        lambda query: "subscription " + query
    )


def every_field() -> frozenset[str]:
    roots = (SCHEMA.query_type, SCHEMA.mutation_type)
    return frozenset(name for root in roots if root is not None for name in root.fields)


def draw_many(strategy: st.SearchStrategy[T], count: int, seed: int) -> list[T]:
    """``count`` values of ``strategy`` (fewer if it has fewer), the same ones on every run."""
    drawn: list[T] = []

    @hypothesis.seed(seed)
    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example],
    )
    @given(strategy)
    def keep(value: T) -> None:
        drawn.append(value)

    keep()
    return drawn
