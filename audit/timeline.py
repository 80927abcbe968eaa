"""A command's timeline: every step from its request to its outcome, with the signatures.

One step per stored event of the command, oldest first: when (the event's
``at``), who (``actor``), what (the event's name and a one-line ``detail``),
the status it led to, and on ``Confirmed`` and ``Approved`` the electronic
signature (the signer's user and full name, what it means: ``request``,
``approval`` or ``execution``, how: ``totp``, or ``none`` for an emergency
action; 21 CFR 11.50). ``WriteDispatched`` carries the value sent to the PLC,
``WriteSucceeded`` the value it read back.

GraphQL ``commandTimeline`` and ``commandStatus`` and ``plantcore audit
timeline`` all build their steps here (:class:`TimelineReplay`), so what an
auditor reads on the command line is what the HMI shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from eventsourcing.domain import DomainEvent
from eventsourcing.utils import get_topic

from audit.replay import JsonValue, event_time, jsonable
from domain.application import PlantApplication
from domain.command import TERMINAL_STATUSES, CommandStatus, ControlCommand, RecordedValue
from domain.errors import CommandNotFound
from eventstore.notifications import event_topic

REQUESTED_TOPIC = event_topic(ControlCommand, "Requested")


@dataclass(frozen=True, slots=True)
class Signature:
    """An electronic signature on a command (21 CFR 11.50)."""

    username: str
    full_name: str
    meaning: str  # request, approval or execution
    method: str  # totp, or none for an emergency action
    at: datetime
    emergency: bool


@dataclass(frozen=True, slots=True)
class TimelineStep:
    """One event of a command, with the status it led to."""

    command_id: UUID
    version: int
    event: str
    status: CommandStatus
    at: datetime
    actor: str
    detail: str
    signature: Signature | None
    # The value sent to the PLC (on WriteDispatched) and the value it read back (WriteSucceeded).
    written: RecordedValue | None = None
    read_back: float | int | bool | None = None

    @classmethod
    def from_event(cls, event: DomainEvent, command: ControlCommand) -> TimelineStep:
        """The step ``event`` made, ``command`` being the command just after it."""
        at = event_time(event)
        actor = str(getattr(event, "actor", ""))
        meaning = getattr(event, "meaning", None)
        signature = (
            Signature(
                username=actor,
                full_name=str(getattr(event, "signer_name", "")),
                meaning=str(meaning),
                method=str(getattr(event, "method", "")),
                at=at,
                emergency=bool(getattr(event, "emergency", False)),
            )
            if meaning is not None
            else None
        )
        name = type(event).__name__
        return cls(
            command_id=_uuid(event.originator_id),
            version=event.originator_version,
            event=name,
            status=command.status,
            at=at,
            actor=actor,
            detail=step_detail(event),
            signature=signature,
            written=command.value if name == "WriteDispatched" else None,
            read_back=getattr(event, "read_back", None) if name == "WriteSucceeded" else None,
        )

    def to_json(self) -> dict[str, JsonValue]:
        signature = self.signature
        return {
            "version": self.version,
            "event": self.event,
            "status": self.status.value,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "detail": self.detail,
            "signature": None
            if signature is None
            else {
                "username": signature.username,
                "full_name": signature.full_name,
                "meaning": signature.meaning,
                "method": signature.method,
                "at": signature.at.isoformat(),
                "emergency": signature.emergency,
            },
            "written": jsonable(self.written),
            "read_back": jsonable(self.read_back),
        }


@dataclass(frozen=True, slots=True)
class CommandTimeline:
    """A command as it stands, and every step that brought it there."""

    command_id: UUID
    device: str
    tag: str
    value: RecordedValue
    requested_by: str
    status: CommandStatus
    read_back: float | int | bool | None
    steps: tuple[TimelineStep, ...]

    @property
    def signatures(self) -> tuple[Signature, ...]:
        return tuple(step.signature for step in self.steps if step.signature is not None)

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "command_id": str(self.command_id),
            "device": self.device,
            "tag": self.tag,
            "value": jsonable(self.value),
            "requested_by": self.requested_by,
            "status": self.status.value,
            "read_back": jsonable(self.read_back),
            "steps": [step.to_json() for step in self.steps],
        }


class TimelineReplay:
    """Applies a command's events in order; each new one becomes a :class:`TimelineStep`.

    Events already applied (by version) are skipped, and nothing is applied
    after a terminal status, so history and a live feed can overlap.
    """

    def __init__(self) -> None:
        self._command: ControlCommand | None = None
        self._version = 0

    @property
    def command(self) -> ControlCommand | None:
        return self._command

    @property
    def finished(self) -> bool:
        return self._command is not None and self._command.status in TERMINAL_STATUSES

    def steps(self, events: Iterable[DomainEvent]) -> Iterable[TimelineStep]:
        for event in events:
            if event.originator_version <= self._version or self.finished:
                continue
            self._command = event.mutate(self._command)  # type: ignore[attr-defined]
            self._version = event.originator_version
            assert self._command is not None
            yield TimelineStep.from_event(event, self._command)


def is_command_history(events: Sequence[DomainEvent]) -> bool:
    """Whether ``events`` are a command's (its first is ``Requested``), not another aggregate's."""
    return bool(events) and get_topic(type(events[0])) == REQUESTED_TOPIC


def build_timeline(command_id: UUID, events: Sequence[DomainEvent]) -> CommandTimeline:
    """The timeline of a command from its stored events; :class:`CommandNotFound` if none."""
    if not is_command_history(events):
        raise CommandNotFound(command_id)
    replay = TimelineReplay()
    steps = tuple(replay.steps(events))
    command = replay.command
    assert command is not None
    return CommandTimeline(
        command_id=command_id,
        device=command.device,
        tag=command.tag,
        value=command.value,
        requested_by=command.requested_by,
        status=command.status,
        read_back=command.read_back,
        steps=steps,
    )


def command_timeline(app: PlantApplication, command_id: UUID) -> CommandTimeline:
    """The command's timeline read from the event store. Blocking: call it off the event loop."""
    return build_timeline(command_id, app.command_events(command_id))


def step_detail(event: DomainEvent) -> str:
    """One line on what this step decided, from the attributes the event carries."""
    attrs = vars(event)
    parts: list[str] = []
    if "device" in attrs:
        parts.append(f"{attrs['device']}/{attrs['tag']} = {attrs['value']!r}")
    if "reason" in attrs:
        parts.append(str(attrs["reason"]))
    if attrs.get("detail"):
        parts.append(str(attrs["detail"]))
    if "attempt" in attrs:
        parts.append(f"attempt {attrs['attempt']}")
    if attrs.get("emergency"):
        parts.append("emergency action: no second factor")
    if "expires_at" in attrs:
        parts.append(f"answer by {attrs['expires_at'].isoformat()}")
    if "read_back" in attrs:
        parts.append(f"read back {attrs['read_back']!r}")
    return "; ".join(parts)


def _uuid(value: object) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


# -- the printed table ---------------------------------------------------------------------------


def format_timeline(timeline: CommandTimeline) -> str:
    """The timeline as an auditor reads it on a terminal: a header, then one row per step."""
    header = [
        f"command    {timeline.command_id}",
        f"write      {timeline.device}/{timeline.tag} = {timeline.value!r}",
        f"requested  by {timeline.requested_by}",
        f"status     {timeline.status.value}"
        + ("" if timeline.read_back is None else f" (read back {timeline.read_back!r})"),
    ]
    columns = ("at", "v", "step", "status after", "actor", "signature", "detail")
    rows = [columns] + [
        (
            step.at.isoformat(timespec="milliseconds"),
            str(step.version),
            step.event,
            step.status.value,
            step.actor,
            _signature_text(step.signature),
            _step_text(step),
        )
        for step in timeline.steps
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True))
        + "  "
        + row[-1]
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths) + "  " + "-" * len(columns[-1]))
    signatures = [
        f"  {s.meaning:<9} {s.full_name or '(name not recorded)'} ({s.username}),"
        f" {s.method}{', EMERGENCY' if s.emergency else ''}, {s.at.isoformat()}"
        for s in timeline.signatures
    ]
    parts = [*header, "", *(line.rstrip() for line in lines)]
    if signatures:
        parts += ["", "signatures", *signatures]
    return "\n".join(parts) + "\n"


def _signature_text(signature: Signature | None) -> str:
    if signature is None:
        return ""
    name = signature.full_name or signature.username
    flag = " EMERGENCY" if signature.emergency else ""
    return f"{name} ({signature.meaning}, {signature.method}){flag}"


def _step_text(step: TimelineStep) -> str:
    parts = [step.detail] if step.detail else []
    if step.written is not None:
        parts.append(f"wrote {step.written!r}")
    return "; ".join(parts)
