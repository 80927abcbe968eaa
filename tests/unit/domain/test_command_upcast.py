"""Commands confirmed by the first release (no signature fields) still load."""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from domain.command import CommandStatus, ControlCommand
from tests.unit.domain.plant import T0, event_names, fields, make_app, replayed


def v1_confirmed() -> dict[str, Any]:
    """The state of a ``Confirmed`` event as the first release stored it."""
    return {"timestamp": T0, "method": "totp", "actor": "ana", "at": T0}


def test_the_upcast_on_a_state_dict() -> None:
    state = v1_confirmed()
    ControlCommand.Confirmed.upcast_v1_v2(state)
    # Always the requester releasing the write; a name that was not recorded is not invented.
    assert state == {
        **v1_confirmed(),
        "meaning": "execution",
        "signer_name": "",
        "emergency": False,
    }


def test_confirmed_is_version_2() -> None:
    assert ControlCommand.Confirmed.class_version == 2


def test_a_stored_v1_confirmation_loads_as_v2() -> None:
    app = make_app()
    ticket = app.request_command(actor="ana", device="pump1", tag="speed", value=10, at=T0)
    stored = StoredEvent(
        originator_id=ticket.command_id,
        originator_version=3,
        topic=get_topic(ControlCommand.Confirmed),
        state=app.mapper.transcoder.encode(v1_confirmed()),
    )
    app.recorder.insert_events([stored])
    command = app.get_command(ticket.command_id)
    assert (command.status, command.emergency, command.version) == (
        CommandStatus.CONFIRMED,
        False,
        3,
    )
    assert event_names(app, ticket.command_id) == ["Requested", "ChallengeIssued", "Confirmed"]
    assert fields(app.command_events(ticket.command_id)[-1]) == {
        "method": "totp",
        "meaning": "execution",
        "signer_name": "",
        "emergency": False,
        "actor": "ana",
        "at": T0,
    }
    assert replayed(app, ticket.command_id) == command
    # The old command goes on under today's code.
    app.record_dispatch(ticket.command_id, T0)
    app.record_write_succeeded(ticket.command_id, 10, T0)
    assert app.get_command(ticket.command_id).status is CommandStatus.SUCCEEDED
