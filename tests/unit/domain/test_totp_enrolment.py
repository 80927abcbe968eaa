"""The first factor never replaces the second: enrolling over a secret, tokens, recovery.

People of :mod:`tests.unit.domain.secured_plant`, plus a second admin, Rita
(``root``), so that a recovery has its two admins.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from domain.application import PlantApplication
from domain.errors import (
    Forbidden,
    InputTooLarge,
    OperatorAccountError,
    SecondFactorLocked,
    SecondFactorRefused,
    SessionInvalid,
)
from domain.operator import Operator, operator_id
from tests.unit.domain.plant import T0, fields, names, operator_events
from tests.unit.domain.secured_plant import secured_app

SOON = T0 + timedelta(minutes=1)
# A part of an enrolment token as the API records it: its hash.
NEW_TOKEN, REQUESTER_PART, APPROVER_PART = "hash:new", "hash:ada", "hash:rita"


@pytest.fixture
def app() -> PlantApplication:
    app = secured_app()
    app.register_operator(
        username="root", full_name="Rita Root", roles=["admin"], password_hash="argon2:root",
        totp_secret_sealed="sealed:root", actor="admin", at=T0,
    )  # fmt: skip
    app.log_in(
        username="ana", password_matches=True, source="hmi", session_id="ana-1",
        refresh_hash="r", at=T0,
    )  # fmt: skip
    return app


def events_since(app: PlantApplication, username: str, version: int) -> list[tuple[str, Any]]:
    return [(type(e).__name__, fields(e)) for e in operator_events(app, username, after=version)]


def request(
    app: PlantApplication, actor: str = "admin", step: int | None = 7, at: datetime = T0
) -> None:
    app.request_totp_recovery(
        username="ana", reason="phone lost", token_hash=REQUESTER_PART, actor=actor,
        totp_step=step, at=at,
    )  # fmt: skip


def approve(
    app: PlantApplication, actor: str = "root", step: int | None = 9, at: datetime = SOON
) -> None:
    app.approve_totp_recovery(
        username="ana", token_hash=APPROVER_PART, actor=actor, totp_step=step, at=at
    )


def enrol_with(
    app: PlantApplication, *hashes: str, username: str = "ana", at: datetime = SOON
) -> None:
    app.enroll_totp_with_token(
        username=username,
        presented_hashes=list(hashes),
        totp_secret_sealed=f"sealed:{username}-2",
        at=at,
    )


# -- enrolling over a secret ---------------------------------------------------------------


def test_enrolling_over_a_secret_needs_a_code_of_it(app: PlantApplication) -> None:
    before = app.get_operator("ana").version
    with pytest.raises(SecondFactorRefused) as refused:
        app.enroll_totp(username="ana", totp_step=None, totp_secret_sealed="sealed:eve", at=T0)
    assert refused.value.reason == "wrong_code"
    assert app.get_operator("ana").totp_secret_sealed == "sealed:ana"
    assert events_since(app, "ana", before) == [
        (
            "SecondFactorFailed",
            {
                "reason": "wrong_code",
                "target": "enrolment",
                "failures": 1,
                "actor": "ana",
                "at": T0,
            },
        )
    ]
    app.enroll_totp(username="ana", totp_step=40, totp_secret_sealed="sealed:ana-2", at=SOON)
    assert app.get_operator("ana").totp_secret_sealed == "sealed:ana-2"
    assert events_since(app, "ana", before + 1) == [
        ("TotpStepUsed", {"step": 40, "actor": "ana", "at": SOON}),
        (
            "TotpEnrolled",
            {"totp_secret_sealed": "sealed:ana-2", "method": "code", "actor": "ana", "at": SOON},
        ),
    ]
    # The code is spent: it signs nothing else.
    with pytest.raises(SecondFactorRefused) as replayed:
        app.enroll_totp(username="ana", totp_step=40, totp_secret_sealed="sealed:x", at=SOON)
    assert replayed.value.reason == "code_reused"


# -- a new account's token ---------------------------------------------------------------


def register_pending(app: PlantApplication, username: str = "nina") -> None:
    app.register_operator(
        username=username, full_name="Nina New", roles=["operator"], password_hash="argon2:nina",
        enrolment_token_hash=NEW_TOKEN, actor="admin", at=T0,
    )  # fmt: skip


def test_a_new_account_has_no_secret_and_enrols_once_with_its_token(app: PlantApplication) -> None:
    register_pending(app)
    nina = app.get_operator("nina")
    assert (nina.totp_enrolled, nina.enrolment_token_expires_at) == (
        False,
        T0 + timedelta(hours=72),
    )
    assert names(operator_events(app, "nina")) == ["Registered", "EnrolmentTokenIssued"]
    assert fields(operator_events(app, "nina")[1]) == {
        "token_hash": NEW_TOKEN, "expires_at": T0 + timedelta(hours=72), "actor": "admin", "at": T0,
    }  # fmt: skip
    # The password alone does not enrol her: there is no code to give.
    with pytest.raises(OperatorAccountError) as refused:
        app.enroll_totp(username="nina", totp_step=5, totp_secret_sealed="sealed:eve", at=SOON)
    assert refused.value.code == "totp_not_enrolled"
    app.enroll_totp_with_token(
        username="nina", presented_hashes=[NEW_TOKEN], totp_secret_sealed="sealed:nina", at=SOON
    )
    nina = app.get_operator("nina")
    assert (nina.totp_enrolled, nina.totp_secret_sealed, nina.enrolment_token_expires_at) == (
        True,
        "sealed:nina",
        None,
    )
    assert fields(operator_events(app, "nina")[-1])["method"] == "token"
    # Once only.
    with pytest.raises(SecondFactorRefused) as again:
        app.enroll_totp_with_token(
            username="nina", presented_hashes=[NEW_TOKEN], totp_secret_sealed="sealed:x", at=SOON
        )
    assert again.value.reason == "invalid_enrolment_token"
    assert app.get_operator("nina").totp_secret_sealed == "sealed:nina"


@pytest.mark.parametrize(
    ("presented", "when"),
    [
        (["hash:guess"], SOON),
        ([], SOON),
        ([NEW_TOKEN, "hash:extra"], SOON),
        ([NEW_TOKEN], T0 + timedelta(hours=72)),  # the token ran out
    ],
    ids=["wrong", "none", "extra-part", "expired"],
)
def test_a_token_that_does_not_work_counts_as_a_wrong_code(
    app: PlantApplication, presented: list[str], when: datetime
) -> None:
    register_pending(app)
    with pytest.raises(SecondFactorRefused) as refused:
        app.enroll_totp_with_token(
            username="nina", presented_hashes=presented, totp_secret_sealed="sealed:x", at=when
        )
    assert (refused.value.reason, refused.value.codes_left) == ("invalid_enrolment_token", 4)
    last = operator_events(app, "nina")[-1]
    assert (type(last).__name__, fields(last)["target"]) == ("SecondFactorFailed", "enrolment")
    assert not app.get_operator("nina").totp_enrolled


def test_guessing_tokens_locks_like_guessing_codes(app: PlantApplication) -> None:
    register_pending(app)
    for n in range(5):
        with pytest.raises(SecondFactorRefused):
            enrol_with(app, f"hash:guess{n}", username="nina", at=T0)
    with pytest.raises(SecondFactorLocked):
        enrol_with(app, NEW_TOKEN, username="nina", at=T0)
    assert not app.get_operator("nina").totp_enrolled


# -- recovering a lost authenticator -------------------------------------------------------


def test_a_recovery_needs_a_second_admin_and_ends_the_sessions(app: PlantApplication) -> None:
    before = app.get_operator("ana").version
    request(app)
    ana = app.get_operator("ana")
    assert (ana.totp_recovery_requested_by(T0), ana.totp_secret_sealed) == ("admin", "sealed:ana")
    # The admin who asked cannot approve; nothing changes.
    with pytest.raises(OperatorAccountError) as same:
        approve(app, actor="admin")
    assert same.value.code == "second_person_required"
    app.authenticate(username="ana", session_id="ana-1", at=SOON)  # still logged in
    approve(app)
    ana = app.get_operator("ana")
    assert (ana.totp_enrolled, ana.totp_recovery_requested_by(SOON)) == (False, None)
    with pytest.raises(SessionInvalid):
        app.authenticate(username="ana", session_id="ana-1", at=SOON)
    assert events_since(app, "ana", before) == [
        (
            "TotpRecoveryRequested",
            {
                "reason": "phone lost", "token_hash": REQUESTER_PART, "signer_name": "Ada Admin",
                "expires_at": T0 + timedelta(hours=1), "actor": "admin", "at": T0,
            },
        ),
        (
            "TotpRecoveryApproved",
            {
                "token_hash": APPROVER_PART, "token_expires_at": SOON + timedelta(hours=72),
                "signer_name": "Rita Root", "actor": "root", "at": SOON,
            },
        ),
    ]  # fmt: skip
    # Each admin signed with their own code: the steps are spent on them.
    assert ("TotpStepUsed", {"step": 7, "actor": "admin", "at": T0}) in events_since(
        app, "admin", 0
    )
    assert ("TotpStepUsed", {"step": 9, "actor": "root", "at": SOON}) in events_since(
        app, "root", 0
    )


def test_only_both_parts_together_enrol_and_only_once(app: PlantApplication) -> None:
    request(app)
    approve(app)
    for alone in ([REQUESTER_PART], [APPROVER_PART]):
        with pytest.raises(SecondFactorRefused):
            enrol_with(app, *alone)
    # The parts in either order, as the operator typed them.
    enrol_with(app, APPROVER_PART, REQUESTER_PART)
    ana = app.get_operator("ana")
    assert (ana.totp_secret_sealed, fields(operator_events(app, "ana")[-1])["method"]) == (
        "sealed:ana-2",
        "token",
    )
    with pytest.raises(SecondFactorRefused):
        enrol_with(app, REQUESTER_PART, APPROVER_PART)


def test_a_recovery_starts_the_count_of_wrong_codes_afresh(app: PlantApplication) -> None:
    for n in range(5):
        with pytest.raises(SecondFactorRefused):
            app.enroll_totp(
                username="ana", totp_step=None, totp_secret_sealed="s", at=T0 + timedelta(seconds=n)
            )
    request(app)
    approve(app)
    enrol_with(app, REQUESTER_PART, APPROVER_PART)
    assert app.get_operator("ana").totp_secret_sealed == "sealed:ana-2"


def test_each_admin_signs_with_their_own_code(app: PlantApplication) -> None:
    before = app.get_operator("ana").version
    with pytest.raises(SecondFactorRefused):
        request(app, step=None)
    assert app.get_operator("ana").version == before  # nothing asked
    last = operator_events(app, "admin")[-1]
    assert (type(last).__name__, fields(last)["target"]) == ("SecondFactorFailed", "recovery:ana")
    request(app)
    with pytest.raises(SecondFactorRefused):
        approve(app, step=None)
    assert app.get_operator("ana").totp_secret_sealed == "sealed:ana"
    app.authenticate(username="ana", session_id="ana-1", at=SOON)


@pytest.mark.parametrize("signer", ["bob", "vera"])
def test_only_admins_sign_a_recovery(app: PlantApplication, signer: str) -> None:
    with pytest.raises(Forbidden):
        request(app, actor=signer)
    request(app)
    with pytest.raises(Forbidden):
        approve(app, actor=signer)
    assert app.get_operator("ana").totp_enrolled


def test_a_disabled_admin_signs_nothing(app: PlantApplication) -> None:
    request(app)
    app.disable_operator(username="root", reason="left", actor="admin", at=T0)
    with pytest.raises(Forbidden):
        approve(app)


def test_nobody_recovers_their_own_second_factor(app: PlantApplication) -> None:
    with pytest.raises(OperatorAccountError) as own:
        app.request_totp_recovery(
            username="root", reason="mine", token_hash="h", actor="root", totp_step=1, at=T0
        )
    assert own.value.code == "self"
    app.request_totp_recovery(
        username="root", reason="hers", token_hash="h", actor="admin", totp_step=1, at=T0
    )
    with pytest.raises(OperatorAccountError) as approving_own:
        app.approve_totp_recovery(
            username="root", token_hash="h2", actor="root", totp_step=2, at=T0
        )
    assert approving_own.value.code == "self"


def test_one_request_at_a_time_and_it_lapses(app: PlantApplication) -> None:
    request(app)
    with pytest.raises(OperatorAccountError) as pending:
        request(app, actor="root", step=3, at=SOON)
    assert pending.value.code == "recovery_pending"
    lapsed = T0 + timedelta(hours=1)
    with pytest.raises(OperatorAccountError) as gone:
        approve(app, at=lapsed)
    assert gone.value.code == "no_recovery_request"
    assert app.get_operator("ana").totp_enrolled
    # Lapsed, it no longer blocks a new request.
    request(app, actor="root", step=3, at=lapsed)
    assert app.get_operator("ana").totp_recovery_requested_by(lapsed) == "root"


def test_a_recovery_reason_is_bounded(app: PlantApplication) -> None:
    with pytest.raises(InputTooLarge):
        app.request_totp_recovery(
            username="ana", reason="x" * 501, token_hash="h", actor="admin", totp_step=1, at=T0
        )


def test_an_enrolment_of_the_first_release_replays_as_by_password() -> None:
    app = secured_app()
    stored = StoredEvent(
        originator_id=operator_id("ana"),
        originator_version=app.get_operator("ana").version + 1,
        topic=get_topic(Operator.TotpEnrolled),
        state=app.mapper.transcoder.encode(
            {
                "timestamp": SOON, "originator_topic": get_topic(Operator),
                "totp_secret_sealed": "sealed:old", "actor": "ana", "at": SOON,
            }
        ),
    )  # fmt: skip
    app.recorder.insert_events([stored])
    assert app.get_operator("ana").totp_secret_sealed == "sealed:old"
    assert fields(operator_events(app, "ana")[-1])["method"] == "password"
    assert Operator.TotpEnrolled.class_version == 2
