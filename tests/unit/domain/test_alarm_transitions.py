"""The alarm's transition table: every action from every state, allowed or refused.

The table is written out by hand from ISA-18.2's state diagram, independently
of the aggregate's code. Hidden states (shelved, suppressed, out of service)
are reached from an unacknowledged active alarm, so the table also says what
the operators' actions do to an alarm they cannot see.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from uuid import uuid4

import pytest

from domain.alarm import AlarmState
from domain.application import PlantApplication
from domain.errors import (
    AlarmActionRefused,
    AlarmNotFound,
    DomainError,
    LatchResetRefused,
    NothingToAcknowledge,
    NotOutOfService,
    NotShelved,
    RemovalRefused,
    ShelveRefused,
)
from tests.unit.domain.test_alarm_source import Source

S = AlarmState
Expected = AlarmState | type[DomainError]

ACTIONS = (
    "raise",
    "clear",
    "suppress",
    "unsuppress",
    "acknowledge",
    "shelve",
    "unshelve",
    "remove",
    "return",
    "reset",
)

# How each starting state is reached (the latched one by a latching condition).
SETUPS: dict[AlarmState, tuple[str, ...]] = {
    S.NORMAL: ("raise", "acknowledge", "clear"),
    S.UNACK_ACTIVE: ("raise",),
    S.ACK_ACTIVE: ("raise", "acknowledge"),
    S.RTN_UNACK: ("raise", "clear"),
    S.LATCHED: ("raise", "acknowledge", "clear"),
    S.SHELVED: ("raise", "shelve"),
    S.SUPPRESSED: ("raise", "suppress"),
    S.OUT_OF_SERVICE: ("raise", "remove"),
}

TABLE: dict[AlarmState, dict[str, Expected]] = {
    S.NORMAL: {
        "raise": S.UNACK_ACTIVE,
        "clear": S.NORMAL,
        "suppress": S.SUPPRESSED,
        "unsuppress": S.NORMAL,
        "acknowledge": NothingToAcknowledge,
        "shelve": S.SHELVED,
        "unshelve": NotShelved,
        "remove": S.OUT_OF_SERVICE,
        "return": NotOutOfService,
        "reset": LatchResetRefused,
    },
    S.UNACK_ACTIVE: {
        "raise": S.UNACK_ACTIVE,
        "clear": S.RTN_UNACK,
        "suppress": S.SUPPRESSED,
        "unsuppress": S.UNACK_ACTIVE,
        "acknowledge": S.ACK_ACTIVE,
        "shelve": S.SHELVED,
        "unshelve": NotShelved,
        "remove": S.OUT_OF_SERVICE,
        "return": NotOutOfService,
        "reset": LatchResetRefused,
    },
    S.ACK_ACTIVE: {
        "raise": S.ACK_ACTIVE,
        "clear": S.NORMAL,
        "suppress": S.SUPPRESSED,
        "unsuppress": S.ACK_ACTIVE,
        "acknowledge": NothingToAcknowledge,
        "shelve": S.SHELVED,
        "unshelve": NotShelved,
        "remove": S.OUT_OF_SERVICE,
        "return": NotOutOfService,
        "reset": LatchResetRefused,
    },
    S.RTN_UNACK: {
        "raise": S.UNACK_ACTIVE,
        "clear": S.RTN_UNACK,
        "suppress": S.SUPPRESSED,
        "unsuppress": S.RTN_UNACK,
        "acknowledge": S.NORMAL,
        "shelve": S.SHELVED,
        "unshelve": NotShelved,
        "remove": S.OUT_OF_SERVICE,
        "return": NotOutOfService,
        "reset": LatchResetRefused,
    },
    S.LATCHED: {
        "raise": S.UNACK_ACTIVE,
        "clear": S.LATCHED,
        "suppress": S.SUPPRESSED,
        "unsuppress": S.LATCHED,
        "acknowledge": NothingToAcknowledge,
        "shelve": S.SHELVED,
        "unshelve": NotShelved,
        "remove": S.OUT_OF_SERVICE,
        "return": NotOutOfService,
        "reset": S.NORMAL,
    },
    S.SHELVED: {
        "raise": S.SHELVED,
        "clear": S.SHELVED,
        "suppress": S.SHELVED,
        "unsuppress": S.SHELVED,
        "acknowledge": S.SHELVED,
        "shelve": ShelveRefused,
        "unshelve": S.UNACK_ACTIVE,
        "remove": S.OUT_OF_SERVICE,
        "return": NotOutOfService,
        "reset": LatchResetRefused,
    },
    S.SUPPRESSED: {
        "raise": S.SUPPRESSED,
        "clear": S.SUPPRESSED,
        "suppress": S.SUPPRESSED,
        "unsuppress": S.UNACK_ACTIVE,
        "acknowledge": S.SUPPRESSED,
        "shelve": S.SHELVED,
        "unshelve": NotShelved,
        "remove": S.OUT_OF_SERVICE,
        "return": NotOutOfService,
        "reset": LatchResetRefused,
    },
    S.OUT_OF_SERVICE: {
        "raise": S.OUT_OF_SERVICE,
        "clear": S.OUT_OF_SERVICE,
        "suppress": S.OUT_OF_SERVICE,
        "unsuppress": S.OUT_OF_SERVICE,
        "acknowledge": S.OUT_OF_SERVICE,
        "shelve": ShelveRefused,
        "unshelve": NotShelved,
        "remove": RemovalRefused,
        "return": S.UNACK_ACTIVE,
        "reset": LatchResetRefused,
    },
}

# What the hidden alarm is underneath after an allowed action (ISA state).
UNDERNEATH: dict[tuple[AlarmState, str], AlarmState] = {
    (S.SHELVED, "clear"): S.RTN_UNACK,
    (S.SHELVED, "acknowledge"): S.ACK_ACTIVE,
    (S.SUPPRESSED, "clear"): S.RTN_UNACK,
    (S.SUPPRESSED, "acknowledge"): S.ACK_ACTIVE,
    (S.OUT_OF_SERVICE, "clear"): S.RTN_UNACK,
    (S.OUT_OF_SERVICE, "acknowledge"): S.ACK_ACTIVE,
}


def perform(source: Source, action: str) -> None:
    """One action one second after the last, by the source or by operator ``ana``."""
    app, at = source.app, source.tick(1)
    alarm = source.alarm() if source.events() else None
    active = alarm.active if alarm else False
    suppressed = alarm.suppressed if alarm else False
    operator: dict[str, Callable[[], object]] = {
        "raise": lambda: source.send(active=True, suppressed=suppressed),
        "clear": lambda: source.send(active=False, suppressed=suppressed),
        "suppress": lambda: source.send(active=active, suppressed=True),
        "unsuppress": lambda: source.send(active=active, suppressed=False),
        "acknowledge": lambda: app.acknowledge_alarm(
            alarm_id=source.alarm_id, actor="ana", comment="seen", at=at
        ),
        "shelve": lambda: app.shelve_alarm(
            alarm_id=source.alarm_id,
            actor="ana",
            reason="sensor drifts",
            duration=timedelta(hours=1),
            at=at,
        ),
        "unshelve": lambda: app.unshelve_alarm(alarm_id=source.alarm_id, actor="ana", at=at),
        "remove": lambda: app.remove_alarm_from_service(
            alarm_id=source.alarm_id, actor="ana", reason="sensor replaced", at=at
        ),
        "return": lambda: app.return_alarm_to_service(alarm_id=source.alarm_id, actor="ana", at=at),
        "reset": lambda: app.reset_alarm_latch(alarm_id=source.alarm_id, actor="ana", at=at),
    }
    operator[action]()


def started(app: PlantApplication, state: AlarmState) -> Source:
    source = Source(app, latch=state is S.LATCHED)
    for step in SETUPS[state]:
        perform(source, step)
    assert source.state() is state
    return source


def test_the_table_covers_every_action_from_every_state() -> None:
    assert set(TABLE) == set(AlarmState)
    assert all(tuple(row) == ACTIONS for row in TABLE.values())


@pytest.mark.parametrize(
    ("start", "action", "expected"),
    [(start, action, expected) for start, row in TABLE.items() for action, expected in row.items()],
)
def test_transition(
    app: PlantApplication, start: AlarmState, action: str, expected: Expected
) -> None:
    source = started(app, start)
    before = source.events()
    if isinstance(expected, AlarmState):
        perform(source, action)
        alarm = source.alarm()
        assert alarm.state is expected
        assert alarm.isa_state is UNDERNEATH.get((start, action), alarm.isa_state)
    else:
        with pytest.raises(expected):
            perform(source, action)
        assert source.events() == before, "a refused action recorded something"
        assert source.state() is start


def test_a_refusal_says_why(app: PlantApplication) -> None:
    source = started(app, S.NORMAL)
    with pytest.raises(NothingToAcknowledge) as refused:
        perform(source, "acknowledge")
    assert refused.value.code == "nothing_to_acknowledge"
    assert refused.value.state == "normal"
    assert "acknowledge" in str(refused.value)


def test_a_latched_alarm_is_not_reset_while_the_process_is_in_alarm(app: PlantApplication) -> None:
    source = Source(app, latch=True)
    perform(source, "raise")
    with pytest.raises(LatchResetRefused) as refused:
        perform(source, "reset")
    assert refused.value.code == "not_latched"
    perform(source, "clear")
    perform(source, "raise")
    with pytest.raises(LatchResetRefused) as refused:
        perform(source, "reset")
    assert refused.value.code == "still_active"


def test_an_unacknowledged_latched_alarm_still_awaits_its_acknowledgement_after_a_reset(
    app: PlantApplication,
) -> None:
    source = Source(app, latch=True)
    perform(source, "raise")
    perform(source, "clear")
    assert source.state() is S.LATCHED
    assert source.alarm().needs_acknowledgement
    perform(source, "reset")
    assert source.state() is S.RTN_UNACK
    perform(source, "acknowledge")
    assert source.state() is S.NORMAL


def test_an_acknowledged_latched_alarm_stays_latched(app: PlantApplication) -> None:
    source = Source(app, latch=True)
    perform(source, "raise")
    perform(source, "clear")
    perform(source, "acknowledge")
    assert source.state() is S.LATCHED
    assert source.alarm().acknowledged


def test_a_new_activation_needs_a_new_acknowledgement(app: PlantApplication) -> None:
    source = started(app, S.RTN_UNACK)
    perform(source, "raise")
    assert source.state() is S.UNACK_ACTIVE
    perform(source, "acknowledge")
    perform(source, "clear")
    assert source.state() is S.NORMAL
    assert not source.alarm().acknowledged
    assert source.alarm().raised_at is None


def test_operator_actions_record_who_when_and_why(app: PlantApplication) -> None:
    source = started(app, S.UNACK_ACTIVE)
    at = source.tick(3)
    app.acknowledge_alarm(alarm_id=source.alarm_id, actor="bob", comment="on my way", at=at)
    acknowledged = app.alarm_events(source.alarm_id)[-1]
    assert type(acknowledged).__name__ == "Acknowledged"
    assert acknowledged.actor == "bob"  # type: ignore[attr-defined]
    assert acknowledged.at == at  # type: ignore[attr-defined]
    assert acknowledged.comment == "on my way"  # type: ignore[attr-defined]
    app.remove_alarm_from_service(
        alarm_id=source.alarm_id, actor="bob", reason="  probe removed ", at=at
    )
    alarm = source.alarm()
    assert alarm.out_of_service_reason == "probe removed"


@pytest.mark.parametrize(
    ("reason", "duration", "code"),
    [
        ("", timedelta(hours=1), "reason_required"),
        ("   ", timedelta(hours=1), "reason_required"),
        ("nuisance", timedelta(0), "bad_duration"),
        ("nuisance", timedelta(minutes=-5), "bad_duration"),
        ("nuisance", timedelta(hours=8, seconds=1), "bad_duration"),
    ],
)
def test_shelving_needs_a_reason_and_a_bounded_duration(
    app: PlantApplication, reason: str, duration: timedelta, code: str
) -> None:
    source = started(app, S.UNACK_ACTIVE)
    with pytest.raises(ShelveRefused) as refused:
        app.shelve_alarm(
            alarm_id=source.alarm_id, actor="ana", reason=reason, duration=duration, at=source.now
        )
    assert refused.value.code == code


@pytest.mark.parametrize(
    ("start", "code"), [(S.SHELVED, "already_shelved"), (S.OUT_OF_SERVICE, "out_of_service")]
)
def test_a_shelved_or_out_of_service_alarm_cannot_be_shelved(
    app: PlantApplication, start: AlarmState, code: str
) -> None:
    source = started(app, start)
    with pytest.raises(ShelveRefused) as refused:
        perform(source, "shelve")
    assert refused.value.code == code


def test_removal_from_service_needs_a_reason(app: PlantApplication) -> None:
    source = started(app, S.UNACK_ACTIVE)
    with pytest.raises(RemovalRefused) as refused:
        app.remove_alarm_from_service(
            alarm_id=source.alarm_id, actor="ana", reason=" ", at=source.now
        )
    assert refused.value.code == "reason_required"


def test_every_operator_action_on_an_unknown_alarm_is_not_found(app: PlantApplication) -> None:
    unknown, at = uuid4(), Source(app).now
    actions: list[Callable[[], object]] = [
        lambda: app.acknowledge_alarm(alarm_id=unknown, actor="ana", comment="", at=at),
        lambda: app.shelve_alarm(
            alarm_id=unknown, actor="ana", reason="r", duration=timedelta(hours=1), at=at
        ),
        lambda: app.unshelve_alarm(alarm_id=unknown, actor="ana", at=at),
        lambda: app.unshelve_if_due(unknown, at),
        lambda: app.remove_alarm_from_service(alarm_id=unknown, actor="ana", reason="r", at=at),
        lambda: app.return_alarm_to_service(alarm_id=unknown, actor="ana", at=at),
        lambda: app.reset_alarm_latch(alarm_id=unknown, actor="ana", at=at),
        lambda: app.end_alarm_chattering_if_quiet(unknown, at),
    ]
    for action in actions:
        with pytest.raises(AlarmNotFound):
            action()


def test_every_refusal_is_an_alarm_action_refusal() -> None:
    for error in (
        NothingToAcknowledge,
        ShelveRefused,
        NotShelved,
        RemovalRefused,
        NotOutOfService,
        LatchResetRefused,
    ):
        assert issubclass(error, AlarmActionRefused)
