"""Faults of the server reach the client as a code and an id; their details reach the log.

An exception nobody meant to raise (a bug, a database or Redis that is down)
carries a text that can name hosts, ports, files, SQL, or what a secret looks
like. GraphQL would send that text to whoever asked. Instead the client gets
``extensions.code`` ``internal_error`` and an ``errorId``, and the log gets
one line at ERROR with the same id, the exception and its traceback: a report
from the control room finds its cause.

Refusals keep their codes and texts: the errors the API raises on purpose
carry ``extensions.code``, and the errors graphql-core finds in the document
or its variables (a field that does not exist, a value its type refuses)
point at the document and at no field. A fault is everything else: an error
caused by an exception, raised while resolving a field (it has a ``path``) or
outside any part of the document (strawberry's catch-all, a validation rule
that crashed).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from uuid import uuid4

from graphql import GraphQLError
from strawberry.types import ExecutionResult

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal_error"


def is_internal(error: GraphQLError) -> bool:
    """Whether ``error`` is a fault of the server rather than a refusal or a bad document."""
    if "code" in (error.extensions or {}):
        return False
    cause = error.original_error
    if cause is None or isinstance(cause, GraphQLError):
        return False
    return error.path is not None or not error.nodes


def hide_internal_errors(result: ExecutionResult) -> ExecutionResult:
    """``result`` with each fault replaced by its code and id, each logged with its cause."""
    if result.errors:
        result.errors = [_logged(error) if is_internal(error) else error for error in result.errors]
    return result


async def hiding_internal_errors(
    results: AsyncGenerator[object, None],
) -> AsyncGenerator[object, None]:
    """The results of a stream (a subscription, an operation over a socket), faults hidden."""
    async with aclosing(results):
        async for result in results:
            yield hide_internal_errors(result) if isinstance(result, ExecutionResult) else result


def _logged(error: GraphQLError) -> GraphQLError:
    error_id = str(uuid4())
    where = ".".join(str(key) for key in error.path) if error.path else "the operation"
    log.error(
        "internal error %s in %s: %s", error_id, where, error.message, exc_info=error.original_error
    )
    return GraphQLError(
        f"internal error {error_id}: the server's log has the details",
        nodes=error.nodes,
        path=error.path,
        extensions={"code": INTERNAL_ERROR, "errorId": error_id},
    )
