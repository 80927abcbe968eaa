"""Every text a person sends is bounded by the use cases (domain.bounds), whoever calls them.

What a person asks to record (a reason, a comment, a new operator's names, a
scope) is refused over its bound, and nothing is stored. What the plant
records about a refusal (a rejected command's device, tag and value, an
unknown username, a denied target, a source address) is stored, cut to size.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from domain.application import PlantApplication
from domain.bounds import (
    CUT_MARK,
    MAX_FULL_NAME_LENGTH,
    MAX_ID_LENGTH,
    MAX_INT64,
    MAX_RECORDED_LENGTH,
    MAX_SCOPE_LENGTH,
    MAX_TEXT_LENGTH,
    MAX_USERNAME_LENGTH,
    MIN_INT64,
    clipped,
    recorded_repr,
)
from domain.catalog import TagCatalog, TagLimits, ValueKind
from domain.command import recordable
from domain.errors import CommandRefused, InputTooLarge, LoginRefused
from domain.operator_directory import directory_id
from domain.plant_mode import Mode
from tests.unit.domain.plant import (
    PLANT_TAGS,
    T0,
    fields,
    make_app,
    operator_events,
    stored_events,
)
from tests.unit.domain.secured_plant import awaiting_approval, secured_app
from tests.unit.domain.test_alarm_source import Source

# A tag without limits: any number of its kind would be written.
FREE = TagLimits("pump1", "free", "", writable=True, kind=ValueKind.INTEGER, low=None, high=None)


@pytest.fixture
def app() -> PlantApplication:
    app = make_app()
    app.catalog = TagCatalog((*PLANT_TAGS, FREE))
    return app


def _stored(app: PlantApplication) -> int:
    return app.recorder.max_notification_id() or 0


def _refused(app: PlantApplication, field: str, limit: int, act: Callable[[], object]) -> None:
    """``act`` raises InputTooLarge for ``field`` at ``limit``, and nothing is stored."""
    before = _stored(app)
    with pytest.raises(InputTooLarge) as refused:
        act()
    assert (refused.value.field, refused.value.limit) == (field, limit)
    assert _stored(app) == before


# -- what a person asks to record: refused over the bound, accepted at it ----------------------


def _register(app: PlantApplication, username: str, full_name: str = "Eve") -> object:
    return app.register_operator(
        username=username, full_name=full_name, roles=["operator"], password_hash="h",
        totp_secret_sealed="s", actor="admin", at=T0,
    )  # fmt: skip


def test_a_new_operators_username_and_full_name_are_bounded(app: PlantApplication) -> None:
    _refused(app, "username", MAX_USERNAME_LENGTH, lambda: _register(app, "e" * 65))
    _refused(app, "full_name", MAX_FULL_NAME_LENGTH, lambda: _register(app, "eve", "E" * 129))
    _register(app, "e" * MAX_USERNAME_LENGTH, "E" * MAX_FULL_NAME_LENGTH)
    assert app.get_operator("e" * 64).full_name == "E" * 128


def test_reasons_of_account_and_plant_changes_are_bounded(app: PlantApplication) -> None:
    long, longest = "r" * (MAX_TEXT_LENGTH + 1), "r" * MAX_TEXT_LENGTH
    _refused(
        app, "reason", MAX_TEXT_LENGTH,
        lambda: app.disable_operator(username="bob", reason=long, actor="ana", at=T0),
    )  # fmt: skip
    _refused(
        app, "reason", MAX_TEXT_LENGTH,
        lambda: app.set_plant_mode(mode=Mode.READ_ONLY, reason=long, actor="ana", at=T0),
    )  # fmt: skip
    _refused(
        app, "reason", MAX_TEXT_LENGTH,
        lambda: app.revoke_session(
            username="bob", session_id="s", reason=long, actor="ana", at=T0
        ),
    )  # fmt: skip
    app.disable_operator(username="bob", reason=longest, actor="ana", at=T0)
    assert app.set_plant_mode(mode=Mode.READ_ONLY, reason=longest, actor="ana", at=T0).reason == (
        longest
    )


def test_scopes_are_bounded(app: PlantApplication) -> None:
    scope = "device:" + "d" * MAX_ID_LENGTH
    for use_case in (app.grant_permission, app.revoke_permission):
        _refused(
            app, "scope", MAX_SCOPE_LENGTH,
            lambda use_case=use_case: use_case(  # type: ignore[misc]
                username="bob", scope=scope + "d", actor="admin", at=T0
            ),
        )  # fmt: skip
    assert app.grant_permission(username="bob", scope=scope, actor="admin", at=T0)


def test_a_decline_reason_is_bounded() -> None:
    app = secured_app()
    command_id = awaiting_approval(app)
    _refused(
        app, "reason", MAX_TEXT_LENGTH,
        lambda: app.decline_command(
            actor="bob", command_id=command_id, reason="n" * 501, at=T0
        ),
    )  # fmt: skip
    declined = app.decline_command(actor="bob", command_id=command_id, reason="n" * 500, at=T0)
    assert declined.reason == "n" * 500


def test_alarm_comments_and_reasons_are_bounded(app: PlantApplication) -> None:
    source = Source(app)
    source.send(active=True)
    alarm, long = source.alarm_id, "c" * (MAX_TEXT_LENGTH + 1)
    acknowledge, shelve, remove = (
        app.acknowledge_alarm, app.shelve_alarm, app.remove_alarm_from_service
    )  # fmt: skip
    hour = timedelta(hours=1)
    _refused(
        app, "comment", MAX_TEXT_LENGTH,
        lambda: acknowledge(alarm_id=alarm, actor="ana", comment=long, at=T0),
    )  # fmt: skip
    _refused(
        app, "reason", MAX_TEXT_LENGTH,
        lambda: shelve(alarm_id=alarm, actor="ana", reason=long, duration=hour, at=T0),
    )  # fmt: skip
    _refused(
        app, "reason", MAX_TEXT_LENGTH,
        lambda: remove(alarm_id=alarm, actor="ana", reason=long, at=T0),
    )  # fmt: skip
    longest = "c" * MAX_TEXT_LENGTH
    app.acknowledge_alarm(alarm_id=alarm, actor="ana", comment=longest, at=T0)
    app.remove_alarm_from_service(alarm_id=alarm, actor="ana", reason=longest, at=T0)
    assert app.get_alarm(alarm).out_of_service_reason == longest


# -- what the plant records about a refusal: kept, cut to size --------------------------------


def _rejected(
    app: PlantApplication, device: str, tag: str, value: object
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields of a refused request's Requested and Rejected."""
    with pytest.raises(CommandRefused) as refused:
        app.request_command(actor="ana", device=device, tag=tag, value=value, at=T0)
    requested, rejected = stored_events(app, refused.value.command_id)
    assert refused.value.reason == rejected.reason  # type: ignore[attr-defined]
    return fields(requested), fields(rejected)


@pytest.mark.parametrize(
    ("device", "tag", "value", "recorded_device", "recorded_tag"),
    [
        ("d" * 5000, "speed", 1, "d" * (MAX_ID_LENGTH - 1) + CUT_MARK, "speed"),
        ("pump1", "t" * 5000, 1, "pump1", "t" * (MAX_ID_LENGTH - 1) + CUT_MARK),
        ("pump1", "speed", "v" * 100_000, "pump1", "speed"),
        ("pump1", "speed", {"k": ["v"] * 10_000}, "pump1", "speed"),
    ],
    ids=["device", "tag", "string value", "object value"],
)
def test_an_oversized_request_is_rejected_and_recorded_cut_to_size(
    app: PlantApplication,
    device: str,
    tag: str,
    value: object,
    recorded_device: str,
    recorded_tag: str,
) -> None:
    requested, rejected = _rejected(app, device, tag, value)

    assert rejected["reason"] == "input_too_large"
    assert (requested["device"], requested["tag"]) == (recorded_device, recorded_tag)
    assert requested["value"] == recordable(value)
    assert len(str(requested["value"])) <= MAX_RECORDED_LENGTH
    assert len(rejected["detail"]) <= MAX_RECORDED_LENGTH


@pytest.mark.parametrize(
    "value",
    [MAX_INT64 + 1, MIN_INT64 - 1, 10**400, -(10**5000)],
    ids=["2**63", "-2**63-1", "10**400", "-10**5000"],
)
def test_an_integer_beyond_64_bits_is_rejected_even_where_no_limit_would_stop_it(
    app: PlantApplication, value: int
) -> None:
    requested, rejected = _rejected(app, "pump1", "free", value)

    assert rejected["reason"] == "input_too_large"
    assert requested["value"] == recorded_repr(value)
    assert len(requested["value"]) <= MAX_RECORDED_LENGTH


@pytest.mark.parametrize("value", [MAX_INT64, MIN_INT64], ids=["2**63-1", "-2**63"])
def test_the_largest_64_bit_integers_are_requested_as_they_are(
    app: PlantApplication, value: int
) -> None:
    ticket = app.request_command(actor="ana", device="pump1", tag="free", value=value, at=T0)
    assert app.get_command(ticket.command_id).value == value


def test_a_value_at_the_recorded_size_gets_the_reason_of_its_kind(app: PlantApplication) -> None:
    value = "v" * (MAX_RECORDED_LENGTH - 2)  # its repr has the quotes too: 200 characters
    requested, rejected = _rejected(app, "pump1", "speed", value)
    assert rejected["reason"] == "not_a_number"
    assert requested["value"] == repr(value)


def test_an_unknown_username_and_the_source_of_a_failed_login_are_cut_to_size(
    app: PlantApplication,
) -> None:
    with pytest.raises(LoginRefused):
        app.log_in(
            username="u" * 100_000, password_matches=False, source="s" * 100_000,
            session_id="s1", refresh_hash="r", at=T0,
        )  # fmt: skip
    with pytest.raises(LoginRefused):
        app.log_in(
            username="ana", password_matches=False, source="s" * 100_000,
            session_id="s1", refresh_hash="r", at=T0,
        )  # fmt: skip

    [unknown] = stored_events(app, directory_id(app.plant_id))[-1:]
    assert type(unknown).__name__ == "UnknownLoginFailed"
    assert fields(unknown)["username"] == clipped("u" * 100_000)
    assert fields(unknown)["source"] == clipped("s" * 100_000)
    failed = operator_events(app, "ana")[-1]
    assert type(failed).__name__ == "LoginFailed"
    assert fields(failed)["source"] == clipped("s" * 100_000)


def test_the_source_of_a_session_is_cut_to_size(app: PlantApplication) -> None:
    app.log_in(
        username="ana", password_matches=True, source="s" * 100_000, session_id="s1",
        refresh_hash="r1", at=T0,
    )  # fmt: skip
    app.refresh_session(
        username="ana", session_id="s1", presented_hash="r1", new_hash="r2",
        source="t" * 100_000, at=T0,
    )  # fmt: skip
    with pytest.raises(LoginRefused):
        app.check_password(username="ana", password_matches=False, source="u" * 100_000, at=T0)

    started, refreshed, failed = operator_events(app, "ana")[-3:]
    assert [fields(e)["source"] for e in (started, refreshed, failed)] == [
        clipped(letter * 100_000) for letter in "stu"
    ]
    [session] = app.open_sessions(T0)
    assert session.source == clipped("s" * 100_000)


def test_the_target_and_source_of_a_denied_action_are_cut_to_size(app: PlantApplication) -> None:
    app.record_access_denied(
        username="ana", action="device.view", target="d" * 100_000, source="s" * 100_000, at=T0
    )
    denied = fields(operator_events(app, "ana")[-1])
    assert (denied["target"], denied["source"]) == (clipped("d" * 100_000), clipped("s" * 100_000))


# -- the helpers ---------------------------------------------------------------------------------


def test_clipped_keeps_a_short_text_and_marks_a_cut_one() -> None:
    assert clipped("x" * MAX_RECORDED_LENGTH) == "x" * MAX_RECORDED_LENGTH
    cut = clipped("x" * (MAX_RECORDED_LENGTH + 1))
    assert len(cut) == MAX_RECORDED_LENGTH
    assert cut.endswith(CUT_MARK)


def test_recorded_repr_tells_an_integer_too_long_to_print_by_its_size() -> None:
    assert recorded_repr(2**63) == "9223372036854775808"
    assert recorded_repr(10**5000) == "<an integer of 16610 bits>"
    assert recorded_repr("x" * 1000) == clipped(repr("x" * 1000))
