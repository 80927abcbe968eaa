"""A plant with areas, a simulated device, a critical tag, emergency values and people.

Devices:

- ``pump1`` (area ``north``): ``speed`` (0 is an emergency stop), ``running`` (``False``
  is one), ``flow`` (read-only);
- ``valve1`` (area ``north``): ``position``, critical (two persons), 0 is an emergency close;
- ``mixer9`` (no area): ``speed``;
- ``sim1`` (area ``south``, simulated): ``speed``.

People (registered by ``admin`` at ``T0``):

========  =============  ==========  ==================
username  full name      roles       scopes
========  =============  ==========  ==================
admin     Ada Admin      admin       plant
ana       Ana Gil        operator    area:north
bob       Bob Ruiz       operator    plant
carl      Carl Ortiz     operator    device:pump1
vera      Vera Sanz      viewer      plant
sam       Sam Service    service     plant
========  =============  ==========  ==================
"""

from __future__ import annotations

from uuid import UUID

from domain.application import CommandPolicy, PlantApplication
from domain.catalog import DeviceInfo, TagCatalog, TagLimits, ValueKind
from domain.operator import LoginPolicy
from tests.unit.domain.plant import T0

NUMBER, INTEGER, BOOL = ValueKind.NUMBER, ValueKind.INTEGER, ValueKind.BOOL
STOP = (0,)

SECURED_TAGS = (
    TagLimits("pump1", "speed", "rpm", True, NUMBER, 0, 3000, emergency_values=STOP),
    TagLimits("pump1", "running", "", True, BOOL, None, None, emergency_values=(False,)),
    TagLimits("pump1", "flow", "m3/h", False, NUMBER, 0, 50),
    TagLimits(
        "valve1", "position", "%", True, INTEGER, 0, 100, critical=True, emergency_values=STOP
    ),
    TagLimits("mixer9", "speed", "rpm", True, NUMBER, 0, 100),
    TagLimits("sim1", "speed", "rpm", True, NUMBER, 0, 100),
)

DEVICES = {
    "pump1": DeviceInfo(area="north"),
    "valve1": DeviceInfo(area="north"),
    "mixer9": DeviceInfo(),
    "sim1": DeviceInfo(area="south", simulated=True),
}

PEOPLE = (
    ("admin", "Ada Admin", "admin", "plant"),
    ("ana", "Ana Gil", "operator", "area:north"),
    ("bob", "Bob Ruiz", "operator", "plant"),
    ("carl", "Carl Ortiz", "operator", "device:pump1"),
    ("vera", "Vera Sanz", "viewer", "plant"),
    ("sam", "Sam Service", "service", "plant"),
)


def secured_catalog() -> TagCatalog:
    return TagCatalog(SECURED_TAGS, DEVICES)


def secured_app(
    command_policy: CommandPolicy | None = None, login_policy: LoginPolicy | None = None
) -> PlantApplication:
    app = PlantApplication(
        secured_catalog(), command_policy=command_policy, login_policy=login_policy
    )
    for username, full_name, role, scope in PEOPLE:
        app.register_operator(
            username=username,
            full_name=full_name,
            roles=[role],
            password_hash=f"argon2:{username}",
            totp_secret_sealed=f"sealed:{username}",
            actor="admin",
            at=T0,
        )
        app.grant_permission(username=username, scope=scope, actor="admin", at=T0)
    return app


def challenged(
    app: PlantApplication,
    actor: str = "ana",
    device: str = "pump1",
    tag: str = "speed",
    value: object = 1500,
) -> UUID:
    """A command that waits for its requester's code."""
    ticket = app.request_command(actor=actor, device=device, tag=tag, value=value, at=T0)
    assert ticket.challenge == "totp"
    return ticket.command_id


def awaiting_approval(app: PlantApplication, value: int = 50, step: int = 100) -> UUID:
    """Ana's write to the critical valve, signed by her and waiting for a second person."""
    command_id = challenged(app, device="valve1", tag="position", value=value)
    app.confirm_command(actor="ana", command_id=command_id, totp_step=step, at=T0)
    return command_id
