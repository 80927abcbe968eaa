"""The one mapping from domain errors to GraphQL errors, and the call that applies it.

Every error a client sees carries ``extensions.code``; the codes are a
contract of the API:

==========================  =====================================================
code                        when
==========================  =====================================================
``unauthenticated``         missing, expired or forged access token
``forbidden``               the caller's role may not do this
``invalid_credentials``     login with a wrong username or password
``unknown_device``          ``tagUpdates`` or a command names no known device
``unknown_tag``,            a refused ``requestCommand`` (the rejection is
``not_writable``,           recorded; ``extensions.commandId`` names it)
``not_a_number``,
``out_of_limits``
``wrong_code``,             a refused confirmation (recorded; ``attemptsLeft``
``code_reused``             says how many remain, 0 when it ended the command)
``expired``                 the confirmation came after the window (recorded)
``closed``                  the command already ended (``extensions.status``)
``not_found``               no such command
``not_requester``           only the requester may confirm or cancel
``invalid_transition``      not possible in the command's current status
``domain_error``            any other refusal of the domain
==========================  =====================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from graphql import GraphQLError

from api.services import Services
from domain.command import REJECTION_REASONS
from domain.errors import (
    CodeReused,
    CommandClosed,
    CommandNotFound,
    CommandRefused,
    ConfirmationRefused,
    ConfirmationTooLate,
    DomainError,
    InvalidTransition,
    InvalidWrite,
    NotRequester,
    UnknownOperator,
)

P = ParamSpec("P")
R = TypeVar("R")

FORBIDDEN = "forbidden"
INVALID_CREDENTIALS = "invalid_credentials"
NOT_FOUND = "not_found"
UNKNOWN_DEVICE = "unknown_device"


def api_error(message: str, code: str, **extensions: Any) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code, **extensions})


def from_domain(exc: DomainError) -> GraphQLError:  # noqa: PLR0911 - one flat table
    """The GraphQL error a client gets for a domain refusal."""
    message = str(exc)
    match exc:
        case CommandRefused():
            return api_error(message, exc.reason, commandId=str(exc.command_id))
        case ConfirmationRefused():
            return api_error(
                message, exc.reason, commandId=str(exc.command_id), attemptsLeft=exc.attempts_left
            )
        case ConfirmationTooLate():
            return api_error(message, "expired", commandId=str(exc.command_id))
        case CommandClosed():
            return api_error(message, "closed", commandId=str(exc.command_id), status=exc.status)
        case CommandNotFound():
            return api_error(message, NOT_FOUND, commandId=str(exc.command_id))
        case NotRequester():
            return api_error(message, "not_requester", commandId=str(exc.command_id))
        case InvalidTransition():
            return api_error(
                message, "invalid_transition", commandId=str(exc.command_id), status=exc.status
            )
        case CodeReused():
            return api_error(message, "code_reused")
        case UnknownOperator():
            return api_error(message, "unauthenticated")
        case InvalidWrite():
            # A check made before anything is recorded: the code of the rejection it would be.
            return api_error(message, REJECTION_REASONS.get(type(exc), "invalid_write"))
        case _:
            return api_error(message, "domain_error")


async def call(services: Services, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a use case through the store's executor, its refusals as GraphQL errors."""
    try:
        return await services.store.call(fn, *args, **kwargs)
    except DomainError as exc:
        raise from_domain(exc) from exc
