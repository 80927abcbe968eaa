"""A command's timeline as data and as the printed table, on the in-memory event store."""

from __future__ import annotations

import json
from datetime import timedelta
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from audit.timeline import Signature, TimelineReplay, build_timeline, command_timeline
from audit.timeline import format_timeline as printed
from domain.application import PlantApplication
from domain.command import CommandStatus, ControlCommand
from domain.errors import CommandNotFound
from domain.operator import operator_id
from tests.unit.domain.plant import T0
from tests.unit.domain.secured_plant import awaiting_approval, challenged, secured_app

SIGNED = T0 + timedelta(seconds=20)
APPROVED = T0 + timedelta(minutes=1)
WRITTEN = APPROVED + timedelta(milliseconds=40)
READ = WRITTEN + timedelta(milliseconds=15)


@pytest.fixture
def app() -> PlantApplication:
    return secured_app()


def approved_and_written(app: PlantApplication) -> UUID:
    """Ana's critical valve write: signed by her, refused to her as approver, approved by Bob."""
    command_id = awaiting_approval(app, value=40, step=100)
    with pytest.raises(Exception, match="second person"):
        app.approve_command(actor="ana", command_id=command_id, totp_step=101, at=SIGNED)
    app.approve_command(actor="bob", command_id=command_id, totp_step=200, at=APPROVED)
    app.record_dispatch(command_id, WRITTEN)
    app.record_write_succeeded(command_id, 40, READ)
    return command_id


def test_a_critical_write_shows_who_asked_who_signed_what_was_written_and_read(
    app: PlantApplication,
) -> None:
    command_id = approved_and_written(app)

    timeline = command_timeline(app, command_id)

    assert (timeline.device, timeline.tag, timeline.value) == ("valve1", "position", 40)
    assert (timeline.requested_by, timeline.status, timeline.read_back) == (
        "ana",
        CommandStatus.SUCCEEDED,
        40,
    )
    assert [(s.version, s.event, s.status, s.actor) for s in timeline.steps] == [
        (1, "Requested", CommandStatus.REQUESTED, "ana"),
        (2, "ChallengeIssued", CommandStatus.AWAITING_CONFIRMATION, "ana"),
        (3, "Confirmed", CommandStatus.CONFIRMED, "ana"),
        (4, "ApprovalRequested", CommandStatus.AWAITING_APPROVAL, "ana"),
        (5, "ApprovalRefused", CommandStatus.AWAITING_APPROVAL, "ana"),
        (6, "Approved", CommandStatus.CONFIRMED, "bob"),
        (7, "WriteDispatched", CommandStatus.DISPATCHED, "dispatcher"),
        (8, "WriteSucceeded", CommandStatus.SUCCEEDED, "dispatcher"),
    ]
    assert timeline.signatures == (
        Signature("ana", "Ana Gil", "request", "totp", T0, emergency=False),
        Signature("bob", "Bob Ruiz", "approval", "totp", APPROVED, emergency=False),
    )
    steps = {step.event: step for step in timeline.steps}
    assert steps["Requested"].detail == "valve1/position = 40"
    assert steps["ApprovalRefused"].detail == "requester"
    assert steps["WriteDispatched"].written == 40
    assert (steps["WriteSucceeded"].at, steps["WriteSucceeded"].read_back) == (READ, 40)
    assert all(step.written is None for step in timeline.steps if step.event != "WriteDispatched")


def test_the_printed_table_names_both_signers_and_the_outcome(app: PlantApplication) -> None:
    text = printed(command_timeline(app, approved_and_written(app)))

    assert "valve1/position = 40" in text
    assert "succeeded (read back 40)" in text
    assert "Ana Gil (request, totp)" in text
    assert "Bob Ruiz (approval, totp)" in text
    assert "wrote 40" in text
    assert "read back 40" in text
    signatures = text.split("\nsignatures\n")[1].splitlines()
    assert signatures[0].split() == [
        "request", "Ana", "Gil", "(ana),", "totp,", T0.isoformat(),
    ]  # fmt: skip
    assert signatures[1].split() == [
        "approval", "Bob", "Ruiz", "(bob),", "totp,", APPROVED.isoformat(),
    ]  # fmt: skip
    rows = text.split("\n\n")[1].splitlines()
    assert rows[0].split()[:3] == ["at", "v", "step"]
    assert len(rows) == 2 + 8  # the heading, its rule and one row per step


def test_the_json_form_is_plain_json(app: PlantApplication) -> None:
    as_json = command_timeline(app, approved_and_written(app)).to_json()

    assert json.loads(json.dumps(as_json)) == as_json
    steps = as_json["steps"]
    assert isinstance(steps, list)
    approved = steps[5]
    assert isinstance(approved, dict)
    assert approved["signature"] == {
        "username": "bob", "full_name": "Bob Ruiz", "meaning": "approval", "method": "totp",
        "at": APPROVED.isoformat(), "emergency": False,
    }  # fmt: skip
    assert (as_json["status"], as_json["read_back"]) == ("succeeded", 40)


def test_an_emergency_action_is_signed_without_a_second_factor(app: PlantApplication) -> None:
    ticket = app.request_command(actor="ana", device="pump1", tag="running", value=False, at=T0)

    timeline = command_timeline(app, ticket.command_id)

    [signature] = timeline.signatures
    assert (signature.method, signature.meaning, signature.emergency) == ("none", "execution", True)
    assert "emergency action: no second factor" in timeline.steps[-1].detail
    assert "EMERGENCY" in printed(timeline)


def test_a_confirmation_of_the_first_release_has_no_recorded_name(app: PlantApplication) -> None:
    command_id = challenged(app)
    app.recorder.insert_events(
        [
            StoredEvent(
                originator_id=command_id,
                originator_version=3,
                topic=get_topic(ControlCommand.Confirmed),
                state=app.mapper.transcoder.encode(
                    {"timestamp": SIGNED, "method": "totp", "actor": "ana", "at": SIGNED}
                ),
            )
        ]
    )

    timeline = command_timeline(app, command_id)

    assert timeline.signatures == (Signature("ana", "", "execution", "totp", SIGNED, False),)
    assert "(name not recorded) (ana)" in printed(timeline)


def test_only_a_command_has_a_timeline(app: PlantApplication) -> None:
    with pytest.raises(CommandNotFound):
        command_timeline(app, uuid4())
    with pytest.raises(CommandNotFound):
        command_timeline(app, operator_id("ana"))


def test_a_replay_fed_history_and_a_live_feed_yields_each_step_once(
    app: PlantApplication,
) -> None:
    command_id = approved_and_written(app)
    events = app.command_events(command_id)
    replay = TimelineReplay()

    first = list(replay.steps(events[:4]))
    # The live feed overlaps what the history gave, and goes past the end.
    rest = list(replay.steps([*events[2:], *events[-2:]]))

    assert [step.version for step in first + rest] == list(range(1, 9))
    assert replay.finished
    assert build_timeline(command_id, events).steps == tuple(first + rest)
