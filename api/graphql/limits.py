"""Refusing abusive GraphQL queries before any resolver runs.

:func:`query_limits` gives the schema extensions that bound what one request
may ask of the plant core. All of them act before execution: a refused
request runs no resolver and touches no service.

==========================  ======================================================
``extensions.code``         when
==========================  ======================================================
``query_too_large``         the document has more than ``max_tokens`` tokens
                            (strawberry's ``MaxTokensLimiter``, checked while
                            parsing, so a huge document is not even built)
``query_too_deep``          an operation nests fields deeper than ``max_depth``
                            (strawberry's ``QueryDepthLimiter``)
``too_many_aliases``        the document has more than ``max_aliases`` aliases
                            (strawberry's ``MaxAliasesLimiter``)
``query_too_costly``        an operation's static cost is over ``max_cost``
                            (:func:`query_cost_rule`; ``extensions.cost`` and
                            ``extensions.maxCost`` say by how much)
``variables_too_large``     the variables, as compact JSON, take more than
                            ``max_variables_bytes`` (:class:`InputLimiter`;
                            ``extensions.maxBytes``)
``invalid_number``          an ``Int`` or ``Float`` argument, literal or variable,
                            that GraphQL cannot hold: beyond 32 bits, NaN,
                            infinite, or no number at all (:class:`InputLimiter`)
==========================  ======================================================

The cost of an operation (:func:`query_cost`) is computed from the document
alone: every field costs 1, and a field of a list type multiplies the cost of
its selection by the list's size. The size is the field's ``first``, ``last``
or ``limit`` argument (a literal, or a variable's value or default), else that
argument's default in the schema, else the size argument of the page or
connection field just above it (``alarmJournal(first: 50) { events { ... } }``),
else ``default_list_size``. Named and inline fragments are followed, each at
most once along a path, so a fragment cycle (refused by graphql-core anyway)
cannot hang the check, and a fragment's cost is computed once per context, so a
document fanning out through fragments is costed in linear time.

Introspection (``__schema``, ``__type``) is left to its own bounds: like the
depth limiter, which ignores fields starting with ``__``, the cost counts an
introspection field as 1 whatever it selects, so GraphiQL's or an HMI's
introspection query always passes. Its answer is bounded by the schema's size,
and the usual way to amplify it, nesting introspection lists through the types'
references to each other (``fields { type { fields { type { fields ...``), is
refused by graphql-core's ``MaxIntrospectionDepthRule`` ("Maximum
introspection depth exceeded", no code), one of the ``specified_rules`` that
strawberry runs on every operation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, cast

from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLCompositeType,
    GraphQLError,
    GraphQLField,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    IntValueNode,
    NamedTypeNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    ValueNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    get_variable_values,
    is_composite_type,
    is_list_type,
)
from graphql.language import DocumentNode
from graphql.language.visitor import SKIP, VisitorAction
from graphql.validation import ASTValidationContext
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)

QUERY_TOO_LARGE = "query_too_large"
QUERY_TOO_DEEP = "query_too_deep"
TOO_MANY_ALIASES = "too_many_aliases"
QUERY_TOO_COSTLY = "query_too_costly"
VARIABLES_TOO_LARGE = "variables_too_large"
INVALID_NUMBER = "invalid_number"

DEFAULT_MAX_ALIASES = 30
"""Enough for a dashboard naming a few dozen devices; the cost bounds the rest."""
DEFAULT_MAX_TOKENS = 2000
"""About ten times the standard introspection query (some 180 tokens)."""
DEFAULT_LIST_SIZE = 10
"""The size assumed of a list whose size no argument says."""
DEFAULT_MAX_VARIABLES_BYTES = 16 * 1024
"""Some ten times what the largest mutation needs (``createOperator``, a long reason)."""
LIST_SIZE_ARGUMENTS = ("first", "last", "limit")

COST_CEILING = 10**15
"""Costs saturate here: the exact size of an absurd cost does not matter."""

ExtensionFactory = Callable[[], SchemaExtension]


def query_limits(
    *,
    max_depth: int,
    max_cost: int,
    max_aliases: int = DEFAULT_MAX_ALIASES,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    default_list_size: int = DEFAULT_LIST_SIZE,
    max_variables_bytes: int = DEFAULT_MAX_VARIABLES_BYTES,
) -> list[ExtensionFactory]:
    """The schema extensions refusing too large, deep, aliased or costly queries,
    too large variables and numbers GraphQL cannot hold.

    Pass the result as ``strawberry.Schema(..., extensions=...)``: each item is a
    factory, so every request gets extensions of its own (the cost check depends
    on the request's variables).
    """
    for name, value in (
        ("max_depth", max_depth),
        ("max_cost", max_cost),
        ("max_aliases", max_aliases),
        ("max_tokens", max_tokens),
        ("default_list_size", default_list_size),
        ("max_variables_bytes", max_variables_bytes),
    ):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, not {value}")
    # Introspection needs no ``should_ignore``: the depth limiter skips every
    # field starting with ``__`` (and what it selects) by itself.
    static_rules = [
        *(
            _with_code(rule, QUERY_TOO_DEEP)
            for rule in QueryDepthLimiter(max_depth).validation_rules
        ),
        *(
            _with_code(rule, TOO_MANY_ALIASES)
            for rule in MaxAliasesLimiter(max_aliases).validation_rules
        ),
    ]

    def tokens() -> SchemaExtension:
        return _CodedMaxTokensLimiter(max_tokens)

    def depth_and_aliases() -> SchemaExtension:
        return AddValidationRules(list(static_rules))

    def cost() -> SchemaExtension:
        return QueryCostLimiter(max_cost, default_list_size=default_list_size)

    def inputs() -> SchemaExtension:
        return InputLimiter(max_variables_bytes)

    return [tokens, depth_and_aliases, cost, inputs]


class InputLimiter(AddValidationRules):
    """Refuse variables over ``max_bytes``, and numbers GraphQL cannot hold, with their codes.

    The size is that of the variables as compact JSON (UTF-8). Variables too
    large skip validation altogether. graphql-core refuses an ``Int`` beyond
    32 bits, NaN and the infinities by itself, but without a code, and a
    variable's only once execution starts: the variables are coerced here,
    during validation, so such a request is refused with ``invalid_number``
    before it runs, as a literal is.

    Construct one per request (pass a factory to the schema): its rule reads
    the request's variables.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__([])
        self.max_bytes = max_bytes

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        self.validation_rules = [number_variables_rule(context.variables, context.operation_name)]
        yield from super().on_operation()

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        size = len(
            json.dumps(context.variables or {}, separators=(",", ":"), ensure_ascii=False).encode()
        )
        if size > self.max_bytes:
            context.pre_execution_errors = [
                GraphQLError(
                    f"the variables take {size} bytes, more than {self.max_bytes}",
                    extensions={"code": VARIABLES_TOO_LARGE, "maxBytes": self.max_bytes},
                )
            ]
        yield
        # Neither graphql-core's refusal of a literal (ValuesOfCorrectTypeRule) nor
        # of a variable (reported by the rule below) has a code of its own.
        for error in context.pre_execution_errors or ():
            if _NUMBER_REFUSAL.search(error.message) and not (error.extensions or {}).get("code"):
                error.extensions = {**(error.extensions or {}), "code": INVALID_NUMBER}


# The start of graphql-core's message when its Int or Float scalar refuses a value.
_NUMBER_REFUSAL = re.compile(r"\b(?:Int|Float) cannot represent")


def number_variables_rule(
    variables: Mapping[str, Any] | None, operation_name: str | None = None
) -> type[ValidationRule]:
    """A rule reporting each variable of the operation the Int or Float scalar refuses.

    The variables are coerced as execution would coerce them; other invalid
    variables are left to execution, which refuses them as before.
    """
    values: dict[str, Any] = dict(variables or {})

    class NumberVariablesRule(ValidationRule):
        def enter_operation_definition(
            self, node: OperationDefinitionNode, *_args: Any
        ) -> VisitorAction:
            name = node.name.value if node.name else None
            if operation_name is not None and name != operation_name:
                return SKIP  # not the operation the variables are for
            coerced = get_variable_values(
                self.context.schema, node.variable_definitions or (), values
            )
            for error in coerced if isinstance(coerced, list) else ():
                if _NUMBER_REFUSAL.search(error.message):
                    self.report_error(error)
            return SKIP

    return NumberVariablesRule


class QueryCostLimiter(AddValidationRules):
    """Refuse operations whose static cost (:func:`query_cost`) is over ``max_cost``.

    Construct one per request (pass a factory to the schema): the rule it adds
    reads the request's variables, for ``first: $n``.
    """

    def __init__(self, max_cost: int, *, default_list_size: int = DEFAULT_LIST_SIZE) -> None:
        super().__init__([])
        self.max_cost = max_cost
        self.default_list_size = default_list_size

    def on_operation(self) -> Iterator[None]:
        self.validation_rules = [
            query_cost_rule(
                self.max_cost,
                variables=self.execution_context.variables,
                default_list_size=self.default_list_size,
            )
        ]
        yield from super().on_operation()


def query_cost_rule(
    max_cost: int,
    *,
    variables: Mapping[str, object] | None = None,
    default_list_size: int = DEFAULT_LIST_SIZE,
) -> type[ValidationRule]:
    """A graphql-core validation rule refusing each operation costing over ``max_cost``.

    ``variables`` are the request's raw variable values.
    """
    values: Mapping[str, object] = dict(variables or {})

    class QueryCostRule(ValidationRule):
        def enter_operation_definition(
            self, node: OperationDefinitionNode, *_args: Any
        ) -> VisitorAction:
            walker = _CostWalker(
                self.context.schema, _fragments(self.context.document), values, default_list_size
            )
            cost = walker.operation(node)
            name = node.name.value if node.name else "anonymous"
            if cost > max_cost:
                shown = f"at least {cost}" if cost >= COST_CEILING else str(cost)
                self.report_error(
                    GraphQLError(
                        f"'{name}' costs {shown}, more than the maximum cost of {max_cost}",
                        node,
                        extensions={"code": QUERY_TOO_COSTLY, "cost": cost, "maxCost": max_cost},
                    )
                )
            return SKIP

    return QueryCostRule


def query_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    *,
    variables: Mapping[str, object] | None = None,
    default_list_size: int = DEFAULT_LIST_SIZE,
) -> dict[str, int]:
    """The static cost of each operation of ``document``, by name (``anonymous`` if none)."""
    fragments = _fragments(document)
    values: Mapping[str, object] = dict(variables or {})
    return {
        (node.name.value if node.name else "anonymous"): _CostWalker(
            schema, fragments, values, default_list_size
        ).operation(node)
        for node in document.definitions
        if isinstance(node, OperationDefinitionNode)
    }


# -- the cost walk ------------------------------------------------------------------------


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {
        node.name.value: node
        for node in document.definitions
        if isinstance(node, FragmentDefinitionNode)
    }


def _list_levels(type_: GraphQLOutputType | None) -> int:
    """How many lists wrap the type: 1 for ``[Tag!]!``, 2 for ``[[Float]]``."""
    levels = 0
    current = get_nullable_type(type_)
    while is_list_type(current):
        levels += 1
        current = get_nullable_type(current.of_type)
    return levels


def _capped(value: int) -> int:
    return min(value, COST_CEILING)


class _CostWalker:
    """Costs one operation; a new walker per operation (its variables, its memo)."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, object],
        default_list_size: int,
    ) -> None:
        self._schema = schema
        self._fragments = fragments
        self._variables = variables
        self._variable_defaults: dict[str, ValueNode] = {}
        self._default_list_size = default_list_size
        # (fragment, page size) -> cost: each fragment is costed once per context,
        # so fragments spreading fragments twice stay linear.
        self._memo: dict[tuple[str, int | None], int] = {}
        self._on_path: set[str] = set()

    def operation(self, node: OperationDefinitionNode) -> int:
        self._variable_defaults = {
            definition.variable.name.value: definition.default_value
            for definition in node.variable_definitions or ()
            if definition.default_value is not None
        }
        root = self._schema.get_root_type(node.operation)
        return self._selections(node.selection_set, root, page_size=None)

    def _selections(
        self,
        selection_set: SelectionSetNode | None,
        scope: GraphQLCompositeType | None,
        *,
        page_size: int | None,
    ) -> int:
        """The cost of a selection set on ``scope`` (None if unknown: an invalid query).

        ``page_size`` is the size argument of the field owning the selection when
        that field is no list itself (a page or connection).
        """
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                cost = self._field(selection, scope, page_size)
            elif isinstance(selection, InlineFragmentNode):
                cost = self._selections(
                    selection.selection_set,
                    self._scope(selection.type_condition, scope),
                    page_size=page_size,
                )
            elif isinstance(selection, FragmentSpreadNode):
                cost = self._fragment(selection.name.value, page_size)
            else:  # pragma: no cover - no other selection exists
                cost = 0
            total = _capped(total + cost)
        return total

    def _field(
        self, node: FieldNode, scope: GraphQLCompositeType | None, page_size: int | None
    ) -> int:
        if node.name.value.startswith("__"):
            return 1  # introspection, or __typename: bounded by the schema, not costed
        definition = self._schema.get_field(scope, node.name.value) if scope is not None else None
        field_type = definition.type if definition is not None else None
        named = get_named_type(field_type) if field_type is not None else None
        child_scope = named if is_composite_type(named) else None
        levels = _list_levels(field_type)
        size = self._size(node, definition)
        if not levels:
            return _capped(1 + self._selections(node.selection_set, child_scope, page_size=size))
        if size is None:
            size = page_size if page_size is not None else self._default_list_size
        # Lists of lists: the argument sizes the outer one, the default each inner one.
        multiplier = _capped(size * self._default_list_size ** (levels - 1))
        children = self._selections(node.selection_set, child_scope, page_size=None)
        return _capped(1 + multiplier * children)

    def _fragment(self, name: str, page_size: int | None) -> int:
        key = (name, page_size)
        if key in self._memo:
            return self._memo[key]
        fragment = self._fragments.get(name)
        if fragment is None or name in self._on_path:
            return 0  # an unknown fragment or a cycle: graphql-core's rules refuse both
        self._on_path.add(name)
        try:
            cost = self._selections(
                fragment.selection_set,
                self._scope(fragment.type_condition, None),
                page_size=page_size,
            )
        finally:
            self._on_path.discard(name)
        self._memo[key] = cost
        return cost

    def _scope(
        self, condition: NamedTypeNode | None, scope: GraphQLCompositeType | None
    ) -> GraphQLCompositeType | None:
        if condition is None:
            return scope
        type_ = self._schema.get_type(condition.name.value)
        return type_ if is_composite_type(type_) else None

    def _size(self, node: FieldNode, definition: GraphQLField | None) -> int | None:
        """The largest of the field's size arguments, as given or by default; None if none."""
        given = {argument.name.value: argument.value for argument in node.arguments or ()}
        sizes: list[int] = []
        for name in LIST_SIZE_ARGUMENTS:
            size = self._int(given[name]) if name in given else None
            if size is None and definition is not None and name in definition.args:
                default = definition.args[name].default_value
                if isinstance(default, int) and not isinstance(default, bool):
                    size = default
            if size is not None:
                sizes.append(max(size, 0))
        return max(sizes) if sizes else None

    def _int(self, value: ValueNode) -> int | None:
        if isinstance(value, IntValueNode):
            return int(value.value)
        if isinstance(value, VariableNode):
            name = value.name.value
            if name in self._variables:
                given = self._variables[name]
                return given if isinstance(given, int) and not isinstance(given, bool) else None
            default = self._variable_defaults.get(name)
            return self._int(default) if default is not None else None
        return None


# -- refusal codes on strawberry's limiters -----------------------------------------------


class _CodedContext:
    """A validation context whose reported errors carry ``extensions.code``."""

    def __init__(self, context: ASTValidationContext, code: str) -> None:
        self._context = context
        self._code = code

    def report_error(self, error: GraphQLError) -> None:
        error.extensions = {**(error.extensions or {}), "code": self._code}
        self._context.report_error(error)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def _with_code(rule: type[ASTValidationRule], code: str) -> type[ASTValidationRule]:
    """``rule``, its errors carrying ``extensions.code`` ``code``.

    A subclass given a context that adds the code: whether the rule reports from
    its constructor (strawberry's limiters do) or from its visitor methods.
    """

    def init(self: ASTValidationRule, context: ASTValidationContext) -> None:
        rule.__init__(self, cast("ASTValidationContext", _CodedContext(context, code)))

    return cast("type[ASTValidationRule]", type(rule.__name__, (rule,), {"__init__": init}))


class _CodedMaxTokensLimiter(MaxTokensLimiter):
    """``MaxTokensLimiter`` whose refusal carries ``extensions.code`` ``query_too_large``."""

    def on_parse(self) -> Iterator[None]:
        yield
        limit = f"more than {self.max_token_count} tokens"
        for error in self.execution_context.pre_execution_errors or ():
            if isinstance(error, GraphQLSyntaxError) and limit in error.message:
                error.extensions = {**(error.extensions or {}), "code": QUERY_TOO_LARGE}
