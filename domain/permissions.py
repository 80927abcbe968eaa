"""Who may do what, where: the permission matrix of role, action and scope.

A role says *what* an operator may do (:data:`ROLE_ACTIONS`); for the actions
that touch a machine or read its past (:data:`SCOPED_ACTIONS`) a granted scope
says *where*: a device, an area, or the whole plant. Both are needed, for
every role: an admin who may command has to be granted a scope like anyone
else, so that a permission on one device never reaches another by accident of
rank.

``docs/security.md`` prints this same matrix; a test checks that they agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from domain.errors import InvalidScope, UnknownRole


class Role(StrEnum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    OPERATOR = "operator"
    VIEWER = "viewer"
    # Reads the history of the devices in their scope, and what anyone reads; nothing else.
    ANALYST = "analyst"
    AUDITOR = "auditor"
    SERVICE = "service"


class Action(StrEnum):
    VIEW = "view"
    # A device's stored samples: what it made, how fast, for how long.
    READ_HISTORY = "history.read"
    REQUEST_COMMAND = "command.request"
    APPROVE_COMMAND = "command.approve"
    ACKNOWLEDGE_ALARM = "alarm.acknowledge"
    SHELVE_ALARM = "alarm.shelve"
    REMOVE_ALARM_FROM_SERVICE = "alarm.remove_from_service"
    RESET_ALARM_LATCH = "alarm.reset_latch"
    SET_PLANT_MODE = "plant.mode"
    MANAGE_OPERATORS = "operators.manage"
    MANAGE_SESSIONS = "sessions.manage"
    READ_AUDIT = "audit.read"
    # Which service /health finds down, and why: for those who run or check the plant.
    READ_HEALTH = "health.read"


# Actions on one machine, or on its past: allowed only inside a granted scope.
SCOPED_ACTIONS = frozenset(
    {
        Action.READ_HISTORY,
        Action.REQUEST_COMMAND,
        Action.APPROVE_COMMAND,
        Action.ACKNOWLEDGE_ALARM,
        Action.SHELVE_ALARM,
        Action.REMOVE_ALARM_FROM_SERVICE,
        Action.RESET_ALARM_LATCH,
    }
)

_ALARM_HANDLING = {Action.ACKNOWLEDGE_ALARM, Action.SHELVE_ALARM, Action.RESET_ALARM_LATCH}

ROLE_ACTIONS: Mapping[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(
        {
            Action.VIEW,
            Action.READ_HISTORY,
            Action.REQUEST_COMMAND,
            Action.APPROVE_COMMAND,
            *_ALARM_HANDLING,
            Action.REMOVE_ALARM_FROM_SERVICE,
            Action.SET_PLANT_MODE,
            Action.MANAGE_OPERATORS,
            Action.MANAGE_SESSIONS,
            Action.READ_HEALTH,
        }
    ),
    Role.SUPERVISOR: frozenset(
        {
            Action.VIEW,
            Action.READ_HISTORY,
            Action.REQUEST_COMMAND,
            Action.APPROVE_COMMAND,
            *_ALARM_HANDLING,
            # ISA-18.2: taking an alarm out of service needs more authority than shelving it.
            Action.REMOVE_ALARM_FROM_SERVICE,
            Action.SET_PLANT_MODE,
            Action.READ_HEALTH,
        }
    ),
    Role.OPERATOR: frozenset(
        {
            Action.VIEW,
            Action.READ_HISTORY,
            Action.REQUEST_COMMAND,
            Action.APPROVE_COMMAND,
            *_ALARM_HANDLING,
        }
    ),
    Role.VIEWER: frozenset({Action.VIEW, Action.READ_HISTORY}),
    Role.ANALYST: frozenset({Action.VIEW, Action.READ_HISTORY}),
    # Auditors read the record, including what the plant shows and measured (a write
    # against the value read after it, an alarm against the value that raised it), and
    # change nothing.
    Role.AUDITOR: frozenset(
        {Action.VIEW, Action.READ_HISTORY, Action.READ_AUDIT, Action.READ_HEALTH}
    ),
    # An integrator's account writes setpoints but is never the second person of a
    # critical write, nor handles alarms: those need a human at the console. Nor does
    # it read the history: a program's credential lives on another host, and one that
    # needs the past is given the analyst role, and a scope, on purpose.
    Role.SERVICE: frozenset({Action.VIEW, Action.REQUEST_COMMAND}),
}

PLANT_SCOPE = "plant"


@dataclass(frozen=True, slots=True)
class Scope:
    """Where scoped actions are allowed: ``plant``, ``area:<name>`` or ``device:<id>``."""

    kind: str
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> Scope:
        raw = text.strip()
        if raw == PLANT_SCOPE:
            return cls(PLANT_SCOPE)
        kind, _, name = raw.partition(":")
        if kind not in ("area", "device") or not name.strip():
            raise InvalidScope(text)
        return cls(kind, name.strip())

    def covers(self, device: str, area: str) -> bool:
        if self.kind == PLANT_SCOPE:
            return True
        if self.kind == "device":
            return self.name == device
        # A device outside every area ("") is reached by a device or plant scope only.
        return bool(area) and self.name == area

    def __str__(self) -> str:
        return self.kind if self.kind == PLANT_SCOPE else f"{self.kind}:{self.name}"


def parse_role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        raise UnknownRole(text) from None


def actions_of(roles: Iterable[str]) -> frozenset[Action]:
    """Every action any of ``roles`` allows (unknown role names allow nothing)."""
    allowed: set[Action] = set()
    for role in roles:
        if role in Role.__members__.values():
            allowed |= ROLE_ACTIONS[Role(role)]
    return frozenset(allowed)


def is_allowed(
    roles: Iterable[str],
    scopes: Iterable[str],
    action: Action,
    *,
    device: str | None = None,
    area: str = "",
) -> bool:
    """May someone with ``roles`` and ``scopes`` do ``action`` (on ``device`` in ``area``)?

    A scoped action asked without a device is refused: there is nothing to
    check the scope against, and guessing would widen it.
    """
    if action not in actions_of(roles):
        return False
    if action not in SCOPED_ACTIONS:
        return True
    if device is None:
        return False
    return any(Scope.parse(scope).covers(device, area) for scope in scopes)
