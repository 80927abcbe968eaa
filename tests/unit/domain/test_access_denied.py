"""A refusal of the permission matrix is recorded on the operator it refused."""

from __future__ import annotations

from domain.application import PlantApplication
from domain.operator import operator_id
from tests.unit.domain.plant import T0


def test_a_refusal_is_an_access_denied_event_with_the_action_target_and_source(
    app: PlantApplication,
) -> None:
    before = app.get_operator("ana").version

    app.record_access_denied(
        username="ana", action="plant.mode", target="", source="10.0.0.7", at=T0
    )
    app.record_access_denied(
        username="ana", action="alarm.shelve", target="pump1", source="10.0.0.7", at=T0
    )

    events = list(app.events.get(operator_id("ana"), gt=before))
    assert [type(e).__name__ for e in events] == ["AccessDenied", "AccessDenied"]
    assert [(e.action, e.target, e.source, e.actor) for e in events] == [  # type: ignore[attr-defined]
        ("plant.mode", "", "10.0.0.7", "ana"),
        ("alarm.shelve", "pump1", "10.0.0.7", "ana"),
    ]
    # A refusal changes nothing the operator may do.
    operator = app.get_operator("ana")
    assert (operator.roles, operator.scopes, operator.enabled) == (("operator",), ("plant",), True)
