"""The per-person bound on wrong codes: its sliding window, what counts, who unlocks, replays."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from domain.application import PlantApplication
from domain.errors import (
    ConfirmationRefused,
    OperatorAccountError,
    SecondFactorLocked,
    SecondFactorRefused,
)
from domain.operator import LoginPolicy, Operator, operator_id
from domain.second_factor import SecondFactorPolicy
from tests.unit.domain.plant import T0, fields, names, operator_events
from tests.unit.domain.secured_plant import challenged, secured_app

WINDOW = timedelta(minutes=15)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def app() -> PlantApplication:
    return secured_app()


def wrong_confirmation(app: PlantApplication, when: datetime, actor: str = "ana") -> int:
    """A wrong code for a new command of ``actor``'s; the codes they have left."""
    ticket = app.request_command(actor=actor, device="pump1", tag="speed", value=10, at=when)
    with pytest.raises(ConfirmationRefused) as refused:
        app.confirm_command(actor=actor, command_id=ticket.command_id, totp_step=None, at=when)
    return refused.value.codes_left


def confirms(app: PlantApplication, when: datetime, step: int) -> bool:
    ticket = app.request_command(actor="ana", device="pump1", tag="speed", value=20, at=when)
    try:
        app.confirm_command(actor="ana", command_id=ticket.command_id, totp_step=step, at=when)
    except SecondFactorLocked:
        return False
    return True


def test_each_wrong_code_says_how_many_are_left(app: PlantApplication) -> None:
    assert [wrong_confirmation(app, at(n)) for n in range(5)] == [4, 3, 2, 1, 0]
    events = operator_events(app, "ana")
    failed = [fields(e) for e in events if type(e).__name__ == "SecondFactorFailed"]
    assert [(f["reason"], f["failures"], f["target"][:8]) for f in failed] == [
        ("wrong_code", n, "command:") for n in range(1, 6)
    ]
    locked = events[-1]
    assert (type(locked).__name__, fields(locked)["until"]) == (
        "SecondFactorLockedOut",
        at(0) + WINDOW,
    )


def test_the_window_slides_the_lockout_away(app: PlantApplication) -> None:
    for n in range(5):
        wrong_confirmation(app, at(n * 60))
    # Locked until the oldest of the five leaves the 15-minute window.
    until = at(0) + WINDOW
    assert not confirms(app, until - timedelta(microseconds=1), step=100)
    assert confirms(app, until, step=101)
    # Four failures are still in the window: one more wrong code locks again.
    assert wrong_confirmation(app, until) == 0
    assert not confirms(app, until + timedelta(seconds=1), step=102)


def test_the_limit_and_the_window_are_the_policys() -> None:
    policy = SecondFactorPolicy(max_failures=2, failure_window=timedelta(minutes=1))
    app = secured_app(login_policy=LoginPolicy(second_factor=policy))
    assert [wrong_confirmation(app, at(n)) for n in range(2)] == [1, 0]
    assert not confirms(app, at(59), step=100)
    assert confirms(app, at(60), step=101)


def test_wrong_codes_for_an_enrolment_count_as_well(app: PlantApplication) -> None:
    for n in range(4):
        wrong_confirmation(app, at(n))
    with pytest.raises(SecondFactorRefused) as refused:
        app.enroll_totp(username="ana", totp_step=None, totp_secret_sealed="sealed:x", at=at(4))
    assert (refused.value.reason, refused.value.codes_left) == ("wrong_code", 0)
    assert not confirms(app, at(5), step=100)


def test_another_admin_unlocks_but_nobody_unlocks_themselves(app: PlantApplication) -> None:
    for n in range(5):
        wrong_confirmation(app, at(n), actor="admin")
    with pytest.raises(OperatorAccountError) as refused:
        app.unlock_second_factor(username="admin", actor="admin", at=at(10))
    assert refused.value.code == "self"
    assert app.get_operator("admin").second_factor_locked_until(SecondFactorPolicy(), at(10))
    app.register_operator(
        username="root", full_name="Rita Root", roles=["admin"], password_hash="argon2:root",
        totp_secret_sealed="sealed:root", actor="admin", at=T0,
    )  # fmt: skip
    assert app.unlock_second_factor(username="admin", actor="root", at=at(10)) is True
    assert (
        app.get_operator("admin").second_factor_locked_until(SecondFactorPolicy(), at(10)) is None
    )
    assert (
        names(operator_events(app, "admin"))[-1],
        fields(operator_events(app, "admin")[-1]),
    ) == (
        "SecondFactorUnlocked",
        {"actor": "root", "at": at(10)},
    )
    # Nothing left to unlock: nothing recorded.
    assert app.unlock_second_factor(username="admin", actor="root", at=at(11)) is False


def test_a_lockout_survives_a_snapshot(app: PlantApplication) -> None:
    for n in range(5):
        wrong_confirmation(app, at(n))
    # Then enough logins for the operator to load from a snapshot taken after the failures.
    for n in range(100):
        app.log_in(
            username="ana", password_matches=True, source="hmi", session_id=f"s{n}",
            refresh_hash="r", at=at(10 + n),
        )  # fmt: skip
    assert app.snapshots is not None
    [snapshot] = app.snapshots.get(operator_id("ana"), desc=True, limit=1)
    assert snapshot.originator_version > len(names(operator_events(app, "ana"))) - 50
    assert len(snapshot.state["_totp_failures"]) == 5  # type: ignore[attr-defined]
    loaded = app.get_operator("ana")
    assert loaded.second_factor_locked_until(SecondFactorPolicy(), at(200)) == at(0) + WINDOW


def test_a_snapshot_from_before_the_bound_upcasts_to_no_failures() -> None:
    state: dict[str, object] = {"_username": "olga", "_totp_secret_sealed": "aesgcm:v1:x"}
    Operator.upcast_v1_v2(state)
    assert (state["_enrolment"], state["_recovery"], state["_totp_failures"]) == (None, None, [])
    assert Operator.class_version == 2


def test_the_window_is_bounded_by_what_an_operator_remembers() -> None:
    with pytest.raises(ValueError, match="failure_window"):
        SecondFactorPolicy(failure_window=timedelta(hours=25))
    with pytest.raises(ValueError, match="max_failures"):
        SecondFactorPolicy(max_failures=0)


def test_challenged_commands_stay_open_while_their_requester_is_locked(
    app: PlantApplication,
) -> None:
    waiting = challenged(app)
    for n in range(5):
        wrong_confirmation(app, at(n))
    with pytest.raises(SecondFactorLocked):
        app.confirm_command(actor="ana", command_id=waiting, totp_step=100, at=at(6))
    assert app.get_command(waiting).attempts_left == 3
