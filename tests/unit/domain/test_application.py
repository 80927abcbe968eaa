"""The use cases of PlantApplication, each path happy and bad, on the in-memory store."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest

from domain.application import CommandPolicy, PlantApplication
from domain.command import CommandStatus, ControlCommand
from domain.errors import (
    CommandClosed,
    CommandNotFound,
    CommandRefused,
    ConfirmationRefused,
    ConfirmationTooLate,
    InvalidTransition,
    NotRequester,
    OperatorExists,
    UnknownOperator,
)
from domain.operator import operator_id
from tests.unit.domain.plant import T0, event_names, make_app, make_catalog, replayed

LATE = T0 + timedelta(seconds=31)


def request(app: PlantApplication, actor: str = "ana", value: object = 1500) -> UUID:
    ticket = app.request_command(actor=actor, device="pump1", tag="speed", value=value, at=T0)
    return ticket.command_id


def confirmed(app: PlantApplication, step: int = 100) -> UUID:
    command_id = request(app)
    app.confirm_command(actor="ana", command_id=command_id, totp_step=step, at=T0)
    return command_id


# -- request ---------------------------------------------------------------------------------


def test_request_issues_a_totp_challenge(app: PlantApplication) -> None:
    ticket = app.request_command(actor="ana", device="pump1", tag="speed", value=1500, at=T0)
    assert ticket.challenge == "totp"
    assert ticket.expires_at == T0 + timedelta(seconds=30)
    events = app.command_events(ticket.command_id)
    assert [type(e).__name__ for e in events] == ["Requested", "ChallengeIssued"]
    requested, challenge = events
    assert (requested.device, requested.tag, requested.value) == ("pump1", "speed", 1500)  # type: ignore[attr-defined]
    assert challenge.expires_at == ticket.expires_at  # type: ignore[attr-defined]
    assert all(e.actor == "ana" and e.at == T0 for e in events)  # type: ignore[attr-defined]
    command = app.get_command(ticket.command_id)
    assert command.status is CommandStatus.AWAITING_CONFIRMATION
    assert not command.is_terminal
    assert (command.requested_by, command.value, command.expires_at) == (
        "ana",
        1500,
        T0 + timedelta(seconds=30),
    )


def test_confirm_window_is_configurable() -> None:
    app = PlantApplication(
        make_catalog(), command_policy=CommandPolicy(confirm_window=timedelta(seconds=5))
    )
    app.register_operator(
        username="ana",
        full_name="Ana",
        roles=["operator"],
        password_hash="h",
        totp_secret_sealed="S",
        actor="admin",
        at=T0,
    )
    app.grant_permission(username="ana", scope="device:pump1", actor="admin", at=T0)
    ticket = app.request_command(actor="ana", device="pump1", tag="speed", value=1, at=T0)
    assert ticket.expires_at == T0 + timedelta(seconds=5)


@pytest.mark.parametrize(
    ("device", "tag", "value", "reason", "recorded"),
    [
        ("boiler", "speed", 1, "unknown_device", 1),
        ("pump1", "torque", 1, "unknown_tag", 1),
        ("pump1", "flow", 10, "not_writable", 10),
        ("pump1", "speed", "1500", "not_a_number", "'1500'"),
        ("pump1", "speed", math.nan, "not_a_number", "nan"),
        ("pump1", "speed", True, "not_a_number", True),
        ("pump1", "speed", None, "not_a_number", "None"),
        ("pump1", "speed", 3000.5, "out_of_limits", 3000.5),
        ("valve1", "position", 2.5, "not_a_number", 2.5),
    ],
)
def test_every_rejection_is_recorded_with_its_reason(
    app: PlantApplication, device: str, tag: str, value: object, reason: str, recorded: object
) -> None:
    with pytest.raises(CommandRefused) as refused:
        app.request_command(actor="ana", device=device, tag=tag, value=value, at=T0)
    assert refused.value.reason == reason
    command_id = refused.value.command_id
    requested, rejected = app.command_events(command_id)
    assert requested.value == recorded  # type: ignore[attr-defined]
    assert type(requested.value) is type(recorded)  # type: ignore[attr-defined]
    assert (rejected.reason, rejected.detail) == (reason, refused.value.detail)  # type: ignore[attr-defined]
    assert rejected.actor == "ana"  # type: ignore[attr-defined]
    command = app.get_command(command_id)
    assert command.status is CommandStatus.REJECTED
    assert command.is_terminal
    assert (command.reason, command.detail) == (reason, refused.value.detail)


def test_an_integer_tag_records_the_value_it_will_write(app: PlantApplication) -> None:
    ticket = app.request_command(actor="ana", device="valve1", tag="position", value=40.0, at=T0)
    value = app.get_command(ticket.command_id).value
    assert value == 40
    assert type(value) is int


def test_a_huge_garbage_value_is_recorded_shortened(app: PlantApplication) -> None:
    with pytest.raises(CommandRefused) as refused:
        app.request_command(actor="ana", device="pump1", tag="speed", value="x" * 10_000, at=T0)
    assert len(str(app.get_command(refused.value.command_id).value)) == 200


# -- confirm ---------------------------------------------------------------------------------


def test_confirm_spends_the_step_and_confirms_in_one_save(app: PlantApplication) -> None:
    command_id = request(app)
    command = app.confirm_command(actor="ana", command_id=command_id, totp_step=100, at=T0)
    assert command.status is CommandStatus.CONFIRMED
    assert event_names(app, command_id)[-1] == "Confirmed"
    confirmation = app.command_events(command_id)[-1]
    assert (confirmation.method, confirmation.actor) == ("totp", "ana")  # type: ignore[attr-defined]
    operator = app.find_operator("ana")
    assert operator is not None
    assert operator.last_totp_step == 100


def test_confirm_at_the_deadline_is_in_time(app: PlantApplication) -> None:
    command_id = request(app)
    deadline = T0 + timedelta(seconds=30)
    command = app.confirm_command(actor="ana", command_id=command_id, totp_step=1, at=deadline)
    assert command.status is CommandStatus.CONFIRMED


def test_three_wrong_codes_end_the_command(app: PlantApplication) -> None:
    command_id = request(app)
    for attempts_left in (2, 1, 0):
        with pytest.raises(ConfirmationRefused) as refused:
            app.confirm_command(actor="ana", command_id=command_id, totp_step=None, at=T0)
        assert (refused.value.reason, refused.value.attempts_left) == ("wrong_code", attempts_left)
    failures = app.command_events(command_id)[2:]
    assert [(e.attempt, e.final) for e in failures] == [(1, False), (2, False), (3, True)]  # type: ignore[attr-defined]
    command = app.get_command(command_id)
    assert (command.status, command.failures, command.reason) == (
        CommandStatus.CONFIRMATION_FAILED,
        3,
        "wrong_code",
    )
    with pytest.raises(CommandClosed) as closed:
        app.confirm_command(actor="ana", command_id=command_id, totp_step=200, at=T0)
    assert closed.value.status == "confirmation_failed"


def test_a_good_code_after_two_wrong_ones_still_confirms(app: PlantApplication) -> None:
    command_id = request(app)
    for _ in range(2):
        with pytest.raises(ConfirmationRefused):
            app.confirm_command(actor="ana", command_id=command_id, totp_step=None, at=T0)
    command = app.confirm_command(actor="ana", command_id=command_id, totp_step=7, at=T0)
    assert (command.status, command.failures) == (CommandStatus.CONFIRMED, 2)


def test_a_totp_step_is_accepted_once_even_across_commands(app: PlantApplication) -> None:
    confirmed(app, step=100)
    second = request(app)
    for step in (100, 99):
        with pytest.raises(ConfirmationRefused) as refused:
            app.confirm_command(actor="ana", command_id=second, totp_step=step, at=T0)
        assert refused.value.reason == "code_reused"
    assert event_names(app, second)[-2:] == ["ConfirmationFailed", "ConfirmationFailed"]
    operator = app.find_operator("ana")
    assert operator is not None
    assert operator.last_totp_step == 100
    command = app.confirm_command(actor="ana", command_id=second, totp_step=101, at=T0)
    assert command.status is CommandStatus.CONFIRMED


def test_steps_are_per_operator(app: PlantApplication) -> None:
    confirmed(app, step=100)
    bobs = app.request_command(actor="bob", device="pump1", tag="speed", value=1, at=T0)
    command = app.confirm_command(actor="bob", command_id=bobs.command_id, totp_step=100, at=T0)
    assert command.status is CommandStatus.CONFIRMED


def test_confirm_after_expiry_records_the_expiry_then_refuses(app: PlantApplication) -> None:
    command_id = request(app)
    with pytest.raises(ConfirmationTooLate):
        app.confirm_command(actor="ana", command_id=command_id, totp_step=100, at=LATE)
    expired = app.command_events(command_id)[-1]
    assert type(expired).__name__ == "Expired"
    assert (expired.actor, expired.at) == ("ana", LATE)  # type: ignore[attr-defined]
    assert app.get_command(command_id).status is CommandStatus.EXPIRED
    operator = app.find_operator("ana")
    assert operator is not None
    assert operator.last_totp_step is None
    with pytest.raises(CommandClosed):
        app.confirm_command(actor="ana", command_id=command_id, totp_step=101, at=LATE)


def test_a_wrong_code_after_expiry_is_too_late_not_a_failure(app: PlantApplication) -> None:
    command_id = request(app)
    with pytest.raises(ConfirmationTooLate):
        app.confirm_command(actor="ana", command_id=command_id, totp_step=None, at=LATE)
    assert "ConfirmationFailed" not in event_names(app, command_id)


def test_only_the_requester_confirms(app: PlantApplication) -> None:
    command_id = request(app)
    with pytest.raises(NotRequester) as refused:
        app.confirm_command(actor="bob", command_id=command_id, totp_step=100, at=LATE)
    assert refused.value.actor == "bob"
    assert event_names(app, command_id) == ["Requested", "ChallengeIssued"]


def test_confirm_twice_is_an_invalid_transition(app: PlantApplication) -> None:
    command_id = confirmed(app)
    with pytest.raises(InvalidTransition) as refused:
        app.confirm_command(actor="ana", command_id=command_id, totp_step=101, at=T0)
    assert (refused.value.status, refused.value.action) == ("confirmed", "confirm")


def test_commands_need_a_registered_operator(app: PlantApplication) -> None:
    # The requester is now looked up first: a ghost gets no command recorded at all.
    before = app.recorder.max_notification_id()
    with pytest.raises(UnknownOperator) as unknown:
        request(app, actor="ghost")
    assert unknown.value.username == "ghost"
    assert app.recorder.max_notification_id() == before


def test_unknown_command(app: PlantApplication) -> None:
    with pytest.raises(CommandNotFound):
        app.confirm_command(actor="ana", command_id=uuid4(), totp_step=1, at=T0)
    with pytest.raises(CommandNotFound):
        app.get_command(uuid4())
    # An operator's id names an aggregate, but not a command.
    with pytest.raises(CommandNotFound):
        app.get_command(operator_id("ana"))
    assert app.command_events(uuid4()) == []


# -- cancel and expire -----------------------------------------------------------------------


def test_cancel_before_and_after_confirmation(app: PlantApplication) -> None:
    for command_id in (request(app), confirmed(app)):
        app.cancel_command(actor="ana", command_id=command_id, at=T0)
        assert app.get_command(command_id).status is CommandStatus.CANCELLED
        assert event_names(app, command_id)[-1] == "Cancelled"


def test_cancel_refusals(app: PlantApplication) -> None:
    command_id = request(app)
    with pytest.raises(NotRequester):
        app.cancel_command(actor="bob", command_id=command_id, at=T0)
    app.confirm_command(actor="ana", command_id=command_id, totp_step=1, at=T0)
    app.record_dispatch(command_id, T0)
    with pytest.raises(InvalidTransition):
        app.cancel_command(actor="ana", command_id=command_id, at=T0)


def test_cancel_after_the_deadline_records_the_expiry(app: PlantApplication) -> None:
    command_id = request(app)
    with pytest.raises(CommandClosed) as closed:
        app.cancel_command(actor="ana", command_id=command_id, at=LATE)
    assert closed.value.status == "expired"
    assert event_names(app, command_id)[-1] == "Expired"


def test_expire_command(app: PlantApplication) -> None:
    command_id = request(app)
    assert app.expire_command(command_id, T0 + timedelta(seconds=30)) is False
    assert app.expire_command(command_id, LATE) is True
    assert app.command_events(command_id)[-1].actor == "system"  # type: ignore[attr-defined]
    assert app.expire_command(command_id, LATE) is False
    assert event_names(app, command_id).count("Expired") == 1


def test_a_confirmed_command_does_not_expire(app: PlantApplication) -> None:
    command_id = confirmed(app)
    assert app.expire_command(command_id, LATE + timedelta(hours=1)) is False


# -- dispatch and outcome --------------------------------------------------------------------


def test_write_succeeds_with_read_back(app: PlantApplication) -> None:
    command_id = confirmed(app)
    app.record_dispatch(command_id, T0)
    app.record_write_succeeded(command_id, 1499.8, T0)
    command = app.get_command(command_id)
    assert (command.status, command.read_back) == (CommandStatus.SUCCEEDED, 1499.8)
    assert event_names(app, command_id)[-2:] == ["WriteDispatched", "WriteSucceeded"]
    assert app.command_events(command_id)[-1].actor == "dispatcher"  # type: ignore[attr-defined]


def test_write_fails_with_reason(app: PlantApplication) -> None:
    command_id = confirmed(app)
    app.record_dispatch(command_id, T0, actor="dispatcher-2")
    app.record_write_failed(command_id, "device_offline", T0)
    command = app.get_command(command_id)
    assert (command.status, command.reason) == (CommandStatus.WRITE_FAILED, "device_offline")


def test_no_dispatch_before_confirmation(app: PlantApplication) -> None:
    command_id = request(app)
    with pytest.raises(InvalidTransition) as refused:
        app.record_dispatch(command_id, T0)
    assert refused.value.action == "dispatch"
    with pytest.raises(InvalidTransition):
        app.record_write_succeeded(command_id, 1, T0)
    assert event_names(app, command_id) == ["Requested", "ChallengeIssued"]


def test_no_result_before_dispatch(app: PlantApplication) -> None:
    command_id = confirmed(app)
    with pytest.raises(InvalidTransition):
        app.record_write_failed(command_id, "timeout", T0)


# -- terminal means terminal -----------------------------------------------------------------


def _rejected(app: PlantApplication) -> UUID:
    with pytest.raises(CommandRefused) as refused:
        request(app, value=-5)
    return refused.value.command_id


def _expired(app: PlantApplication) -> UUID:
    command_id = request(app)
    app.expire_command(command_id, LATE)
    return command_id


def _cancelled(app: PlantApplication) -> UUID:
    command_id = request(app)
    app.cancel_command(actor="ana", command_id=command_id, at=T0)
    return command_id


def _failed_confirmation(app: PlantApplication) -> UUID:
    command_id = request(app)
    for _ in range(3):
        with pytest.raises(ConfirmationRefused):
            app.confirm_command(actor="ana", command_id=command_id, totp_step=None, at=T0)
    return command_id


def _succeeded(app: PlantApplication) -> UUID:
    command_id = confirmed(app, step=50)
    app.record_dispatch(command_id, T0)
    app.record_write_succeeded(command_id, 1500, T0)
    return command_id


def _write_failed(app: PlantApplication) -> UUID:
    command_id = confirmed(app, step=50)
    app.record_dispatch(command_id, T0)
    app.record_write_failed(command_id, "nack", T0)
    return command_id


TERMINAL_ROUTES = [_rejected, _expired, _cancelled, _failed_confirmation, _succeeded, _write_failed]

ACTIONS: list[Callable[[PlantApplication, UUID], object]] = [
    lambda app, cid: app.confirm_command(actor="ana", command_id=cid, totp_step=999, at=T0),
    lambda app, cid: app.confirm_command(actor="ana", command_id=cid, totp_step=None, at=T0),
    lambda app, cid: app.cancel_command(actor="ana", command_id=cid, at=T0),
    lambda app, cid: app.record_dispatch(cid, T0),
    lambda app, cid: app.record_write_succeeded(cid, 1, T0),
    lambda app, cid: app.record_write_failed(cid, "x", T0),
]


@pytest.mark.parametrize("route", TERMINAL_ROUTES, ids=lambda r: r.__name__.strip("_"))
@pytest.mark.parametrize("action", ACTIONS, ids=range(len(ACTIONS)))
def test_nothing_happens_after_a_terminal_event(
    app: PlantApplication,
    route: Callable[[PlantApplication], UUID],
    action: Callable[[PlantApplication, UUID], object],
) -> None:
    command_id = route(app)
    before = event_names(app, command_id)
    assert app.get_command(command_id).is_terminal
    with pytest.raises(CommandClosed):
        action(app, command_id)
    assert app.expire_command(command_id, LATE + timedelta(days=1)) is False
    assert event_names(app, command_id) == before


@pytest.mark.parametrize("route", TERMINAL_ROUTES, ids=lambda r: r.__name__.strip("_"))
def test_events_replay_to_the_same_state(
    app: PlantApplication, route: Callable[[PlantApplication], UUID]
) -> None:
    command_id = route(app)
    assert replayed(app, command_id) == app.get_command(command_id)


def test_command_events_after_a_version(app: PlantApplication) -> None:
    command_id = confirmed(app)
    later = app.command_events(command_id, after_version=2)
    assert [(type(e).__name__, e.originator_version) for e in later] == [("Confirmed", 3)]


# -- operators -------------------------------------------------------------------------------


def test_register_and_find_operator(app: PlantApplication) -> None:
    uid = app.register_operator(
        username="carla",
        full_name="Carla Ruiz",
        roles=["supervisor"],
        password_hash="h",
        totp_secret_sealed="S",
        actor="admin",
        at=T0,
    )
    assert uid == operator_id("carla")
    operator = app.find_operator("carla")
    assert operator is not None
    assert (operator.full_name, operator.roles, operator.totp_secret_sealed) == (
        "Carla Ruiz",
        ("supervisor",),
        "S",
    )
    assert app.find_operator("nobody") is None


def test_registering_twice_is_refused(app: PlantApplication) -> None:
    with pytest.raises(OperatorExists) as exists:
        app.register_operator(
            username="ana",
            full_name="Another Ana",
            roles=["admin"],
            password_hash="h",
            totp_secret_sealed="S",
            actor="admin",
            at=T0,
        )
    assert exists.value.username == "ana"
    operator = app.find_operator("ana")
    assert operator is not None
    assert operator.full_name == "Ana"


# -- edges -----------------------------------------------------------------------------------


def test_times_must_be_timezone_aware(app: PlantApplication) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        app.request_command(
            actor="ana", device="pump1", tag="speed", value=1, at=datetime(2025, 1, 1)
        )


def test_times_are_stored_in_utc(app: PlantApplication) -> None:
    local = T0.astimezone(timezone(timedelta(hours=2)))
    ticket = app.request_command(actor="ana", device="pump1", tag="speed", value=1, at=local)
    assert app.command_events(ticket.command_id)[0].at.utcoffset() == timedelta(0)  # type: ignore[attr-defined]
    assert ticket.expires_at.tzinfo is UTC


def test_the_process_environment_never_picks_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSISTENCE_MODULE", "eventsourcing.postgres")
    monkeypatch.setenv("PLANTAPPLICATION_PERSISTENCE_MODULE", "eventsourcing.postgres")
    app = make_app()
    assert request(app)


def test_a_concurrent_change_is_decided_again_on_fresh_state(
    app: PlantApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    command_id = request(app)
    stale = app.get_command(command_id)
    app.cancel_command(actor="ana", command_id=command_id, at=T0)
    loads: list[ControlCommand] = [stale]
    fresh_get = app.get_command

    def get_command(cid: UUID) -> ControlCommand:
        return loads.pop() if loads else fresh_get(cid)

    monkeypatch.setattr(app, "get_command", get_command)
    # The stale copy still awaits confirmation; saving on it conflicts, the retry sees the cancel.
    with pytest.raises(CommandClosed):
        app.confirm_command(actor="ana", command_id=command_id, totp_step=5, at=T0)
    assert event_names(app, command_id)[-1] == "Cancelled"
    # The losing save was atomic: the TOTP step was not spent either.
    operator = app.find_operator("ana")
    assert operator is not None
    assert operator.last_totp_step is None
