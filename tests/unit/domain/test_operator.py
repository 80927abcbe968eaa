from __future__ import annotations

from datetime import timedelta

import pytest

from domain.errors import CodeReused
from domain.operator import Operator, operator_id
from tests.unit.domain.plant import T0


def new_operator(username: str = "ana") -> Operator:
    return Operator(
        username=username,
        full_name="Ana Gil",
        role="operator",
        password_hash="argon2-hash",
        totp_secret="BASE32SECRET",
        actor="admin",
        at=T0,
    )


def test_id_is_derived_from_the_username() -> None:
    assert new_operator("ana").id == operator_id("ana") == new_operator("ana").id
    assert operator_id("ana") != operator_id("bob")


def test_registered_event_carries_who_and_when() -> None:
    (registered,) = new_operator().collect_events()
    assert type(registered).__name__ == "Registered"
    assert (registered.actor, registered.at, registered.username) == ("admin", T0, "ana")  # type: ignore[attr-defined]


def test_steps_only_move_forward() -> None:
    assert new_operator().last_totp_step is None
    operator = new_operator()
    operator.use_totp_step(100, T0)
    operator.use_totp_step(101, T0 + timedelta(seconds=30))
    for step in (101, 100, 5):
        with pytest.raises(CodeReused) as reused:
            operator.use_totp_step(step, T0)
        assert (reused.value.username, reused.value.step) == ("ana", step)
    assert operator.last_totp_step == 101
    used = operator.collect_events()[1:]
    assert [(e.step, e.actor) for e in used] == [(100, "ana"), (101, "ana")]  # type: ignore[attr-defined]


def test_repr_never_shows_credentials() -> None:
    text = repr(new_operator())
    assert "ana" in text
    assert "argon2-hash" not in text
    assert "BASE32SECRET" not in text
