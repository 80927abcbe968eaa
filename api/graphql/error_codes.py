"""The one mapping from domain errors to GraphQL errors, and the call that applies it.

Every error a client sees carries ``extensions.code``; the codes are a
contract of the API:

==========================  =====================================================
code                        when
==========================  =====================================================
``unauthenticated``         missing, expired, forged or wrong-audience access token,
                            a session that ended, an invalid or reused refresh token
``forbidden``               the permission matrix does not allow it (for a command
                            the rejection is recorded, with ``commandId``)
``invalid_credentials``     any refused login (wrong username or password, account
                            locked or disabled: the same answer, the event log says
                            which); a wrong current password to ``changePassword``
                            or ``enrollTotp``
``account_locked``          ``changePassword`` or ``enrollTotp`` while the caller's
                            account is locked; ``extensions.until``
``login_rate_limited``      too many logins from the caller's address lately;
                            ``extensions.retryAfter`` (seconds)
``login_busy``              as many logins as the server checks at once are being
                            checked: try again in a moment
``unknown_device``          ``tagUpdates``, ``deviceStatus``, ``commands`` or a command
                            names no known device (``extensions.argument``)
``unknown_area``            ``tagUpdates`` or ``deviceStatus`` names no known area
``invalid_argument``        an empty device list, or ``tagUpdates`` naming no device
                            or both ``device`` and ``devices`` (``extensions.argument``)
``unknown_tag``,            a refused ``requestCommand`` (the rejection is
``not_writable``,           recorded; ``extensions.commandId`` names it)
``not_a_number``,
``out_of_limits``,
``read_only``,
``simulation_mode``,
``rate_limited``
``wrong_code``,             a wrong or reused TOTP code, or an enrolment token that
``code_reused``,            does not work (recorded on the person, and on the command;
``invalid_enrolment_token``
                            ``codesLeft``: wrong answers the person has left before
                            their second factor locks; ``attemptsLeft``: the
                            command's, 0 when it ended)
``second_factor_locked``    too many wrong codes lately: every answer refused
                            (recorded) until ``extensions.until`` or an unlock
``totp_not_enrolled``       a code asked of someone with no authenticator yet, or
                            ``enrollTotp`` by them: they enrol with their token
``recovery_pending``        a recovery is asked for while another one waits
``no_recovery_request``     an approval with no recovery waiting (none, or lapsed)
``expired``                 the confirmation came after the window (recorded)
``closed``                  the command already ended (``extensions.status``)
``not_found``               no such command, operator or alarm
``nothing_to_acknowledge``, an alarm action its state does not allow (the
``already_shelved``, …      codes of :class:`~domain.errors.AlarmActionRefused`)
``not_requester``           only the requester may confirm or cancel
``second_person_required``  the requester tried to approve their own critical write,
                            or the admin who asked for a recovery to approve it
``invalid_transition``      not possible in the command's current status
``operator_exists``         ``createOperator`` with a username already taken, in any
                            form (case, width, accents composed or not)
``invalid_username``        ``createOperator`` with an empty username, or one holding
                            a control or invisible character
``unknown_role``,           a role or scope that does not exist
``invalid_scope``
``last_admin``, ``self``,   an account change refused (the plant keeps an admin,
``role_required``           an admin does not disable, unlock or recover themselves,
                            one role kept)
``weak_password``           a password shorter than 12 characters
``reason_required``         a plant mode change without a reason
``input_too_large``         a text over its bound (``extensions.field``, ``limit``;
                            for ``requestCommand`` the rejection is recorded)
``totp_unavailable``        the caller's TOTP secret does not open with this plant's
                            secrets key (changed or lost key): to be recovered
``query_too_deep``,         the query was refused before running
``query_too_costly``,
``query_too_large``,
``too_many_aliases``
``bad_cursor``, ``bad_page`` an ``alarmJournal`` or ``commands`` cursor or page size
                            that cannot be used
``invalid_time_range``,     ``commands`` with ``from`` after ``to``, or more than
``span_too_long``           31 days apart (``extensions.argument``)
``invalid_bucket``,         a ``history`` argument refused before any query, as are
``unknown_aggregate``,      its ranges, cursors, pages, devices and tags with the codes
``too_many_rows``           above (``extensions.argument`` names it; the table is in
                            :mod:`api.graphql.history_arguments`)
``invalid_write``           a write the catalogue refuses, outside a recorded command
``domain_error``            any other refusal of the domain
``internal_error``          a fault of the server, not a refusal: ``extensions.errorId``
                            names the log line with its cause (:mod:`api.graphql.internal_errors`)
==========================  =====================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from graphql import GraphQLError

from api.services import Services
from domain.command import REJECTION_REASONS
from domain.errors import (
    AlarmActionRefused,
    AlarmNotFound,
    CodeReused,
    CommandClosed,
    CommandNotFound,
    CommandRefused,
    ConfirmationRefused,
    ConfirmationTooLate,
    DomainError,
    Forbidden,
    InputTooLarge,
    InvalidScope,
    InvalidTransition,
    InvalidUsername,
    InvalidWrite,
    LoginRefused,
    ModeReasonRequired,
    NotRequester,
    OperatorAccountError,
    OperatorExists,
    SecondFactorLocked,
    SecondFactorRefused,
    SecondPersonRequired,
    SessionInvalid,
    UnknownOperator,
    UnknownRole,
)

P = ParamSpec("P")
R = TypeVar("R")

FORBIDDEN = "forbidden"
UNAUTHENTICATED = "unauthenticated"
INVALID_CREDENTIALS = "invalid_credentials"
LOGIN_RATE_LIMITED = "login_rate_limited"
LOGIN_BUSY = "login_busy"
NOT_FOUND = "not_found"
UNKNOWN_DEVICE = "unknown_device"
UNKNOWN_AREA = "unknown_area"
INVALID_ARGUMENT = "invalid_argument"
INVALID_TIME_RANGE = "invalid_time_range"
SPAN_TOO_LONG = "span_too_long"


def api_error(message: str, code: str, **extensions: Any) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code, **extensions})


# Refusals whose code follows from their type alone.
_CODES: dict[type[DomainError], str] = {
    Forbidden: FORBIDDEN,
    SecondPersonRequired: "second_person_required",
    OperatorExists: "operator_exists",
    InvalidUsername: "invalid_username",
    UnknownOperator: NOT_FOUND,
    UnknownRole: "unknown_role",
    InvalidScope: "invalid_scope",
    ModeReasonRequired: "reason_required",
    CodeReused: "code_reused",
    AlarmNotFound: NOT_FOUND,
}


def from_domain(exc: DomainError) -> GraphQLError:  # noqa: PLR0911, PLR0912 - one flat table
    """The GraphQL error a client gets for a domain refusal."""
    message = str(exc)
    if type(exc) in _CODES:
        return api_error(message, _CODES[type(exc)])
    match exc:
        case LoginRefused():
            # A password its owner re-entered (``login`` answers every refusal alike itself).
            if exc.until is not None:
                return api_error("account locked", "account_locked", until=exc.until.isoformat())
            return api_error("invalid username or password", INVALID_CREDENTIALS)
        case SessionInvalid():
            return api_error(f"{message}: log in again", UNAUTHENTICATED, reason=exc.reason)
        case OperatorAccountError():
            return api_error(message, exc.code)
        case AlarmActionRefused():
            return api_error(message, exc.code, alarmId=str(exc.alarm_id), state=exc.state)
        case InputTooLarge():
            return api_error(message, "input_too_large", field=exc.field, limit=exc.limit)
        case CommandRefused():
            return api_error(message, exc.reason, commandId=str(exc.command_id))
        case ConfirmationRefused():
            return api_error(
                message,
                exc.reason,
                commandId=str(exc.command_id),
                attemptsLeft=exc.attempts_left,
                codesLeft=exc.codes_left,
            )
        case SecondFactorRefused():
            return api_error(message, exc.reason, codesLeft=exc.codes_left)
        case SecondFactorLocked():
            return api_error(message, "second_factor_locked", until=exc.until.isoformat())
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
        case InvalidWrite():
            # A check made before anything is recorded: the code of the rejection it would be.
            return api_error(message, REJECTION_REASONS.get(type(exc), "invalid_write"))
        case _:
            return api_error(message, "domain_error")


async def call(services: Services, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a use case through the store's executor, its refusals as GraphQL errors."""
    try:
        return await services.store_executor.call(fn, *args, **kwargs)
    except DomainError as exc:
        raise from_domain(exc) from exc
