"""Sessions: rotating refresh tokens, reuse detection, logout, revocation, expiry, snapshots."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from eventsourcing.application import project_aggregate

from domain.application import PlantApplication
from domain.errors import SessionInvalid
from domain.operator import Operator, SessionView, operator_id
from tests.unit.domain.plant import T0, fields, names, operator_events
from tests.unit.domain.secured_plant import secured_app

SOURCE = "10.0.0.7"
LIFETIME = timedelta(hours=12)
SOON = T0 + timedelta(minutes=10)


@pytest.fixture
def app() -> PlantApplication:
    app = secured_app()
    log_in(app, "ana", "s1")
    return app


def log_in(app: PlantApplication, username: str, sid: str, at: datetime = T0) -> None:
    app.log_in(
        username=username,
        password_matches=True,
        source=SOURCE,
        session_id=sid,
        refresh_hash=f"{sid}-0",
        at=at,
    )


def refresh(
    app: PlantApplication, presented: str, new: str, at: datetime = SOON, sid: str = "s1"
) -> Operator:
    return app.refresh_session(
        username="ana",
        session_id=sid,
        presented_hash=presented,
        new_hash=new,
        source="10.0.0.8",
        at=at,
    )


def session_refused(app: PlantApplication, at: datetime = SOON, sid: str = "s1") -> str:
    with pytest.raises(SessionInvalid) as refused:
        app.authenticate(username="ana", session_id=sid, at=at)
    return refused.value.reason


def test_refresh_rotates_the_token(app: PlantApplication) -> None:
    refresh(app, "s1-0", "s1-1")
    refresh(app, "s1-1", "s1-2", at=SOON + timedelta(minutes=1))
    events = operator_events(app, "ana", after=3)
    assert [(type(e).__name__, fields(e)) for e in events] == [
        (
            "SessionRefreshed",
            {
                "session_id": "s1",
                "generation": generation,
                "refresh_hash": f"s1-{generation}",
                "source": "10.0.0.8",
                "actor": "ana",
                "at": at,
            },
        )
        for generation, at in ((1, SOON), (2, SOON + timedelta(minutes=1)))
    ]
    (view,) = app.open_sessions(SOON)
    assert view.refreshes == 2
    assert app.authenticate(username="ana", session_id="s1", at=SOON).username == "ana"


def test_reusing_a_replaced_token_revokes_the_session(app: PlantApplication) -> None:
    refresh(app, "s1-0", "s1-1")
    refresh(app, "s1-1", "s1-2")
    # Someone presents the first token again: the thief or the owner, the session ends.
    with pytest.raises(SessionInvalid) as reused:
        refresh(app, "s1-0", "stolen-1")
    assert reused.value.reason == "refresh_reused"
    revoked = operator_events(app, "ana")[-1]
    assert (type(revoked).__name__, fields(revoked)) == (
        "SessionRevoked",
        {"session_id": "s1", "reason": "refresh_reused", "actor": "system", "at": SOON},
    )
    # The token that was current is no good either, and the session no longer authenticates.
    with pytest.raises(SessionInvalid) as current:
        refresh(app, "s1-2", "s1-3")
    assert current.value.reason == "ended"
    assert session_refused(app) == "ended"
    assert app.open_sessions(SOON) == []


def test_an_unrelated_token_is_refused_without_ending_the_session(app: PlantApplication) -> None:
    version = app.get_operator("ana").version
    with pytest.raises(SessionInvalid) as refused:
        refresh(app, "someone-elses", "x")
    assert refused.value.reason == "invalid"
    assert app.get_operator("ana").version == version
    refresh(app, "s1-0", "s1-1")
    assert names(operator_events(app, "ana"))[-1] == "SessionRefreshed"


def test_an_unknown_session_or_operator(app: PlantApplication) -> None:
    assert session_refused(app, sid="nope") == "ended"
    with pytest.raises(SessionInvalid) as unknown:
        refresh(app, "s1-0", "s1-1", sid="nope")
    assert unknown.value.reason == "ended"
    with pytest.raises(SessionInvalid):
        app.authenticate(username="ghost", session_id="s1", at=SOON)
    with pytest.raises(SessionInvalid):
        app.refresh_session(
            username="ghost",
            session_id="s1",
            presented_hash="a",
            new_hash="b",
            source=SOURCE,
            at=SOON,
        )


def test_log_out(app: PlantApplication) -> None:
    assert app.log_out(username="ana", session_id="s1", at=SOON) is True
    logged_out = operator_events(app, "ana")[-1]
    assert (type(logged_out).__name__, fields(logged_out)) == (
        "LoggedOut",
        {"session_id": "s1", "actor": "ana", "at": SOON},
    )
    assert session_refused(app) == "ended"
    assert app.log_out(username="ana", session_id="s1", at=SOON) is False
    assert names(operator_events(app, "ana")).count("LoggedOut") == 1


def test_an_admin_revokes_a_session(app: PlantApplication) -> None:
    log_in(app, "ana", "s2")
    assert app.revoke_session(
        username="ana", session_id="s1", reason="lost laptop", actor="admin", at=SOON
    )
    revoked = operator_events(app, "ana")[-1]
    assert (type(revoked).__name__, fields(revoked)) == (
        "SessionRevoked",
        {"session_id": "s1", "reason": "lost laptop", "actor": "admin", "at": SOON},
    )
    assert session_refused(app) == "ended"
    # Only that one: the other session goes on.
    assert app.authenticate(username="ana", session_id="s2", at=SOON).username == "ana"
    assert not app.revoke_session(
        username="ana", session_id="s1", reason="again", actor="admin", at=SOON
    )


def test_a_session_expires_after_its_lifetime(app: PlantApplication) -> None:
    end = T0 + LIFETIME
    refresh(app, "s1-0", "s1-1", at=end - timedelta(seconds=1))
    # Refreshing does not extend it: a session lasts one shift.
    assert app.authenticate(username="ana", session_id="s1", at=end - timedelta(seconds=1))
    assert session_refused(app, at=end) == "expired"
    with pytest.raises(SessionInvalid) as expired:
        refresh(app, "s1-1", "s1-2", at=end)
    assert expired.value.reason == "expired"
    assert app.open_sessions(end) == []


def test_the_session_lifetime_is_recorded_at_login(app: PlantApplication) -> None:
    (view,) = app.open_sessions(T0)
    assert view == SessionView(
        session_id="s1",
        username="ana",
        source=SOURCE,
        started_at=T0,
        expires_at=T0 + LIFETIME,
        refreshes=0,
    )


def test_disabling_an_operator_ends_their_sessions(app: PlantApplication) -> None:
    log_in(app, "ana", "s2")
    app.disable_operator(username="ana", reason="left", actor="admin", at=SOON)
    assert session_refused(app) == "disabled"
    with pytest.raises(SessionInvalid) as refused:
        refresh(app, "s1-0", "s1-1")
    assert refused.value.reason == "disabled"
    assert app.open_sessions(SOON) == []
    # Enabling again does not bring the old sessions back.
    app.enable_operator(username="ana", actor="admin", at=SOON)
    assert session_refused(app) == "ended"
    assert session_refused(app, sid="s2") == "ended"


def test_open_sessions_lists_only_the_open_ones(app: PlantApplication) -> None:
    log_in(app, "ana", "s2")
    log_in(app, "bob", "b1")
    log_in(app, "carl", "c1", at=T0 - LIFETIME)  # already over
    log_in(app, "vera", "v1")
    app.log_out(username="ana", session_id="s2", at=SOON)
    app.revoke_session(username="vera", session_id="v1", reason="x", actor="admin", at=SOON)
    assert [(v.username, v.session_id) for v in app.open_sessions(SOON)] == [
        ("ana", "s1"),
        ("bob", "b1"),
    ]


def test_a_new_login_forgets_the_sessions_that_ran_out(app: PlantApplication) -> None:
    later = T0 + LIFETIME + timedelta(hours=1)
    log_in(app, "ana", "s2", at=later)
    assert [v.session_id for v in app.get_operator("ana").open_sessions(later)] == ["s2"]
    assert session_refused(app, at=later) == "ended"


def test_an_operator_with_many_events_reloads_from_a_snapshot_identically(
    app: PlantApplication,
) -> None:
    for generation in range(1, 61):
        refresh(app, f"s1-{generation - 1}", f"s1-{generation}", at=SOON)
    for step in range(1000, 1010):
        ana = app.get_operator("ana")
        ana.use_totp_step(step, SOON)
        app.save(ana)
    ana_id = operator_id("ana")
    snapshots = list(app.snapshots.get(ana_id)) if app.snapshots else []
    assert [s.originator_version for s in snapshots] == [50]
    loaded = app.get_operator("ana")
    assert loaded.version == 3 + 60 + 10
    replayed: Operator | None = project_aggregate(None, app.events.get(ana_id))
    assert replayed is not None
    assert loaded == replayed
    assert (loaded.last_totp_step, loaded.scopes) == (1009, ("area:north",))
    # What the snapshot holds still decides: an old token is still known as replaced.
    with pytest.raises(SessionInvalid) as reused:
        refresh(app, "s1-7", "s1-x")
    assert reused.value.reason == "refresh_reused"
