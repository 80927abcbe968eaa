"""The Alarm aggregate: one alarm condition of one device, after ISA-18.2 / IEC 62682.

Supervisors evaluate conditions at the source (``domain.messages.AlarmTransition``);
this aggregate keeps what the operators must know about each one: whether the
process is in alarm, whether someone acknowledged it, whether it is latched,
shelved, suppressed by design or out of service, and whether it chatters.

The state is never stored: it is derived from those facts, the first that holds
wins (the order of OPC UA Part 9 and ISA-18.2's state diagram)::

    out_of_service  removed from service by a person (a broken sensor, maintenance)
    shelved         hidden by a person for a bounded time (a nuisance alarm)
    suppressed      hidden by design (the source's suppression holds, e.g. machine stopped)
    unack_active    the process is in alarm, nobody acknowledged it
    ack_active      the process is in alarm, acknowledged
    latched         a latching alarm whose process returned to normal: only a reset clears it
    rtn_unack       the process returned to normal, nobody acknowledged the alarm
    normal          nothing to see

The last five are the ISA states (``isa_state``)::

    normal ──Raised──▶ unack_active ──Acknowledged──▶ ack_active ──Cleared──▶ normal
                           │                                       (latching: latched)
                        Cleared
                           ▼
                       rtn_unack ──Acknowledged──▶ normal
                                                   (latching: latched ──LatchReset──▶ normal)

A new Raised always asks for a new acknowledgement. Hidden alarms keep being
evaluated: a shelved, suppressed or out-of-service alarm records its Raised
and Cleared like any other, and shows them as soon as it is visible again.

Source transitions are recorded exactly once: the aggregate remembers the ids
of the last transitions it recorded and ignores one it has seen, and a
transition that changes nothing (still active after a supervisor restart)
records nothing. Their ``at`` is when the source saw the change, so that a
backlog delivered late keeps its real spacing for chattering and floods.

As in ``domain.command``, the public methods decide and raise a
:class:`~domain.errors.DomainError`; the private ``@event`` methods only assign
state, so replaying an old event never re-runs today's rules. Every attribute
is JSON-shaped (strings for enums, lists for sequences), so a snapshot
restores exactly what a replay gives.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    LatchResetRefused,
    NothingToAcknowledge,
    NotOutOfService,
    NotShelved,
    RemovalRefused,
    ShelveRefused,
)
from domain.messages import AlarmKind, AlarmPriority, AlarmTransition, TagValue

# Fixed forever: changing it would orphan every stored alarm.
ALARM_NAMESPACE = UUID("76742d08-dd69-4a1d-aa2e-55c91b771489")

# The actor of what the plant core decides by itself (chattering, automatic unshelve).
SYSTEM = "system"
# ISA-18.2's chattering alarm: this many activations within the window flags it.
CHATTER_ACTIVATIONS = 3
CHATTER_WINDOW = timedelta(seconds=60)
# Duplicates come from redelivery within seconds: the last 1,000 ids cover them.
REMEMBERED_TRANSITIONS = 1000


class AlarmState(StrEnum):
    NORMAL = "normal"
    UNACK_ACTIVE = "unack_active"
    ACK_ACTIVE = "ack_active"
    RTN_UNACK = "rtn_unack"
    LATCHED = "latched"
    SHELVED = "shelved"
    SUPPRESSED = "suppressed"
    OUT_OF_SERVICE = "out_of_service"


# The states an operator sees on the alarm list.
ANNUNCIATED_STATES = frozenset(
    {AlarmState.UNACK_ACTIVE, AlarmState.ACK_ACTIVE, AlarmState.RTN_UNACK, AlarmState.LATCHED}
)


def alarm_id(device: str, condition: str) -> UUID:
    """The alarm's id, derived from its natural key so that two recorders contend in the store.

    The key is JSON, so no device or condition name can make two keys collide.
    """
    return uuid5(ALARM_NAMESPACE, "alarm:" + json.dumps([device, condition]))


def source_actor(device: str) -> str:
    """The actor of a source transition: the device whose supervisor evaluated it."""
    return "device:" + device


class Alarm(Aggregate):
    @staticmethod
    def create_id(*_: Any, device: str, condition: str, **__: Any) -> UUID:
        return alarm_id(device, condition)

    @classmethod
    def define(cls, transition: AlarmTransition, at: datetime) -> Alarm:
        """A new alarm, as its first transition describes it (the transition is not yet applied)."""
        return cls(
            device=transition.device,
            condition=transition.condition,
            kind=transition.kind.value,
            priority=transition.priority.value,
            area=transition.area,
            tag=transition.tag,
            latch=transition.latch,
            actor=source_actor(transition.device),
            at=at,
        )

    @staticmethod
    def worth_defining(transition: AlarmTransition) -> bool:
        """Whether an unknown alarm's first transition says anything: normal is the default."""
        return transition.active or transition.suppressed

    @event("Defined")
    def __init__(
        self,
        *,
        device: str,
        condition: str,
        kind: str,
        priority: str,
        area: str,
        tag: str,
        latch: bool,
        actor: str,
        at: datetime,
    ) -> None:
        self._device = device
        self._condition = condition
        self._kind = kind
        self._priority = priority
        self._area = area
        self._tag = tag
        self._latch = latch
        self._active = False
        self._acknowledged = False
        self._latched = False
        self._suppressed = False
        self._out_of_service = False
        self._out_of_service_reason: str | None = None
        self._shelved_until: datetime | None = None
        self._shelve_reason: str | None = None
        self._value: TagValue = None
        self._limit: float | None = None
        self._message = ""
        self._raised_at: datetime | None = None
        self._activations: list[datetime] = []
        self._chattering = False
        self._chattering_since: datetime | None = None
        self._transitions: list[str] = []

    # -- what the views read -----------------------------------------------------------------

    @property
    def device(self) -> str:
        return self._device

    @property
    def condition(self) -> str:
        return self._condition

    @property
    def kind(self) -> AlarmKind:
        return AlarmKind(self._kind)

    @property
    def priority(self) -> AlarmPriority:
        return AlarmPriority(self._priority)

    @property
    def area(self) -> str:
        return self._area

    @property
    def tag(self) -> str:
        return self._tag

    @property
    def latch(self) -> bool:
        """Whether the condition is configured to latch."""
        return self._latch

    @property
    def active(self) -> bool:
        """Whether the process condition holds (as the source last said)."""
        return self._active

    @property
    def acknowledged(self) -> bool:
        """Whether the alarm raised since the last normal was acknowledged (False when normal)."""
        return self._acknowledged

    @property
    def latched(self) -> bool:
        """A latching alarm whose process returned to normal, awaiting a reset."""
        return self._latched

    @property
    def suppressed(self) -> bool:
        return self._suppressed

    @property
    def out_of_service(self) -> bool:
        return self._out_of_service

    @property
    def out_of_service_reason(self) -> str | None:
        return self._out_of_service_reason

    @property
    def shelved(self) -> bool:
        return self._shelved_until is not None

    @property
    def shelved_until(self) -> datetime | None:
        return self._shelved_until

    @property
    def shelve_reason(self) -> str | None:
        return self._shelve_reason

    @property
    def value(self) -> TagValue:
        """The value that decided the last source transition."""
        return self._value

    @property
    def limit(self) -> float | None:
        return self._limit

    @property
    def message(self) -> str:
        return self._message

    @property
    def raised_at(self) -> datetime | None:
        """When the alarm now standing was last raised; None once it is back to normal."""
        return self._raised_at

    @property
    def activations(self) -> tuple[datetime, ...]:
        """The activation times of the last minute before the latest one (for chattering)."""
        return tuple(self._activations)

    @property
    def chattering(self) -> bool:
        return self._chattering

    @property
    def chattering_since(self) -> datetime | None:
        return self._chattering_since

    @property
    def needs_acknowledgement(self) -> bool:
        return self._raised_at is not None and not self._acknowledged

    @property
    def isa_state(self) -> AlarmState:
        """The state from the process and the operators' acknowledgement, hidden or not."""
        if self._active:
            return AlarmState.ACK_ACTIVE if self._acknowledged else AlarmState.UNACK_ACTIVE
        if self._latched:
            return AlarmState.LATCHED
        if self._raised_at is not None:
            return AlarmState.RTN_UNACK
        return AlarmState.NORMAL

    @property
    def state(self) -> AlarmState:
        if self._out_of_service:
            return AlarmState.OUT_OF_SERVICE
        if self._shelved_until is not None:
            return AlarmState.SHELVED
        if self._suppressed:
            return AlarmState.SUPPRESSED
        return self.isa_state

    @property
    def annunciated(self) -> bool:
        """Whether the operators' alarm list shows it: not normal, and not hidden."""
        return self.state in ANNUNCIATED_STATES

    def has_recorded(self, transition_id: str) -> bool:
        return transition_id in self._transitions

    def shelve_is_due(self, at: datetime) -> bool:
        return self._shelved_until is not None and self._shelved_until <= at

    def chattering_ends_at(self) -> datetime | None:
        """When the chattering flag's quiet minute completes, given the activations so far.

        It ends once a whole minute that began after the flag was raised holds
        fewer than three activations: so the activations that raised the flag
        cannot also lower it a few seconds later.
        """
        if self._chattering_since is None:
            return None
        start = self._chattering_since
        recent = sorted(self._activations)
        if len(recent) >= CHATTER_ACTIVATIONS:
            start = max(start, recent[-CHATTER_ACTIVATIONS])
        return start + CHATTER_WINDOW

    # -- source transitions ------------------------------------------------------------------

    def record(self, transition: AlarmTransition, at: datetime) -> tuple[str, ...]:
        """Apply one source transition seen at ``at``; the names of the events it recorded.

        A transition already recorded is ignored, and so is one that changes
        nothing. Time-driven endings (a shelve running out, a quiet minute)
        are recorded first, so the events stay in the order they happened.
        """
        if (transition.device, transition.condition) != (self._device, self._condition):
            raise ValueError(
                f"a transition of {transition.device}/{transition.condition} for alarm {self.id}"
            )
        if self.has_recorded(transition.transition_id):
            return ()
        before = len(self.pending_events)
        self.unshelve_if_due(at)
        # An activation at the very end of the quiet minute belongs to that minute.
        ends_at = self.chattering_ends_at()
        if ends_at is not None and ends_at < at:
            self.end_chattering_if_quiet(at)
        actor = source_actor(transition.device)
        self._reconfigure_if_changed(transition, actor, at)
        self._follow_suppression(transition, actor, at)
        self._follow_process(transition, actor, at)
        return tuple(type(e).__name__ for e in self.pending_events[before:])

    def catch_up(self, at: datetime) -> None:
        """Record what time alone has ended by ``at``: a shelve, a chattering spell."""
        self.unshelve_if_due(at)
        self.end_chattering_if_quiet(at)

    def _reconfigure_if_changed(
        self, transition: AlarmTransition, actor: str, at: datetime
    ) -> None:
        configured = (self._kind, self._priority, self._area, self._tag, self._latch)
        sent = (
            transition.kind.value,
            transition.priority.value,
            transition.area,
            transition.tag,
            transition.latch,
        )
        if sent != configured:
            kind, priority, area, tag, latch = sent
            self._record_reconfigured(
                kind=kind, priority=priority, area=area, tag=tag, latch=latch, actor=actor, at=at
            )

    def _follow_suppression(self, transition: AlarmTransition, actor: str, at: datetime) -> None:
        # Suppression first: a condition suppressed and raised at once is never shown.
        if transition.suppressed == self._suppressed:
            return
        record = self._record_suppressed if transition.suppressed else self._record_unsuppressed
        record(**_source_fields(transition), actor=actor, at=at)

    def _follow_process(self, transition: AlarmTransition, actor: str, at: datetime) -> None:
        if transition.active and not self._active:
            self._record_raised(**_source_fields(transition), actor=actor, at=at)
            self._flag_chattering(at)
        elif self._active and not transition.active:
            self._record_cleared(**_source_fields(transition), actor=actor, at=at)

    def _flag_chattering(self, at: datetime) -> None:
        count = len(self._activations)
        if count >= CHATTER_ACTIVATIONS and not self._chattering:
            self._record_chattering_started(count=count, actor=SYSTEM, at=at)

    def end_chattering_if_quiet(self, at: datetime) -> bool:
        """Record ``ChatteringEnded`` (at the moment the quiet minute completed) if it has."""
        ends_at = self.chattering_ends_at()
        if ends_at is None or ends_at > at:
            return False
        self._record_chattering_ended(actor=SYSTEM, at=ends_at)
        return True

    # -- operator actions --------------------------------------------------------------------

    def acknowledge(self, *, actor: str, comment: str, at: datetime) -> None:
        if not self.needs_acknowledgement:
            raise NothingToAcknowledge(self.id, self.state)
        self._record_acknowledged(comment=comment, actor=actor, at=at)

    def shelve(
        self, *, actor: str, reason: str, duration: timedelta, longest: timedelta, at: datetime
    ) -> None:
        """Hide the alarm for ``duration``, at most ``longest``: shelving is never open-ended."""
        if self._out_of_service:
            raise ShelveRefused(self.id, self.state, "out_of_service", "it is out of service")
        if self._shelved_until is not None:
            raise ShelveRefused(
                self.id,
                self.state,
                "already_shelved",
                f"it is already shelved until {self._shelved_until.isoformat()}",
            )
        if not reason.strip():
            raise ShelveRefused(self.id, self.state, "reason_required", "a reason is required")
        if not timedelta(0) < duration <= longest:
            raise ShelveRefused(
                self.id,
                self.state,
                "bad_duration",
                f"the duration must be more than 0 and at most {longest}, got {duration}",
            )
        self._record_shelved(reason=reason.strip(), until=at + duration, actor=actor, at=at)

    def unshelve(self, *, actor: str, at: datetime) -> None:
        if self._shelved_until is None:
            raise NotShelved(self.id, self.state)
        self._record_unshelved(actor=actor, at=at)

    def unshelve_if_due(self, at: datetime) -> bool:
        """Record the automatic ``Unshelved`` (by ``system``, at ``until``) once it is past."""
        if self._shelved_until is None or self._shelved_until > at:
            return False
        self._record_unshelved(actor=SYSTEM, at=self._shelved_until)
        return True

    def remove_from_service(self, *, actor: str, reason: str, at: datetime) -> None:
        if self._out_of_service:
            raise RemovalRefused(
                self.id, self.state, "already_out_of_service", "it is already out of service"
            )
        if not reason.strip():
            raise RemovalRefused(self.id, self.state, "reason_required", "a reason is required")
        self._record_removed_from_service(reason=reason.strip(), actor=actor, at=at)

    def return_to_service(self, *, actor: str, at: datetime) -> None:
        if not self._out_of_service:
            raise NotOutOfService(self.id, self.state)
        self._record_returned_to_service(actor=actor, at=at)

    def reset_latch(self, *, actor: str, at: datetime) -> None:
        """Unlatch a latched alarm; an unacknowledged one still awaits its acknowledgement."""
        if not self._latched:
            raise LatchResetRefused(self.id, self.state, "not_latched", "it is not latched")
        if self._active:
            raise LatchResetRefused(
                self.id, self.state, "still_active", "the process is still in alarm"
            )
        self._record_latch_reset(actor=actor, at=at)

    # -- records (state changes only: these run again on every replay) -----------------------

    @event("Reconfigured")
    def _record_reconfigured(
        self,
        *,
        kind: str,
        priority: str,
        area: str,
        tag: str,
        latch: bool,
        actor: str,
        at: datetime,
    ) -> None:
        self._kind = kind
        self._priority = priority
        self._area = area
        self._tag = tag
        self._latch = latch

    @event("Raised")
    def _record_raised(
        self,
        *,
        transition_id: str,
        value: TagValue,
        limit: float | None,
        message: str,
        actor: str,
        at: datetime,
    ) -> None:
        self._observe(transition_id, value, limit, message)
        self._active = True
        self._acknowledged = False  # a new activation needs a new acknowledgement
        self._raised_at = at
        self._activations = [t for t in self._activations if at - t < CHATTER_WINDOW] + [at]

    @event("Cleared")
    def _record_cleared(
        self,
        *,
        transition_id: str,
        value: TagValue,
        limit: float | None,
        message: str,
        actor: str,
        at: datetime,
    ) -> None:
        self._observe(transition_id, value, limit, message)
        self._active = False
        if self._latch:
            self._latched = True
        self._settle()

    @event("Suppressed")
    def _record_suppressed(
        self,
        *,
        transition_id: str,
        value: TagValue,
        limit: float | None,
        message: str,
        actor: str,
        at: datetime,
    ) -> None:
        self._observe(transition_id, value, limit, message)
        self._suppressed = True

    @event("Unsuppressed")
    def _record_unsuppressed(
        self,
        *,
        transition_id: str,
        value: TagValue,
        limit: float | None,
        message: str,
        actor: str,
        at: datetime,
    ) -> None:
        self._observe(transition_id, value, limit, message)
        self._suppressed = False

    @event("Acknowledged")
    def _record_acknowledged(self, *, comment: str, actor: str, at: datetime) -> None:
        self._acknowledged = True
        self._settle()

    @event("Shelved")
    def _record_shelved(self, *, reason: str, until: datetime, actor: str, at: datetime) -> None:
        self._shelved_until = until
        self._shelve_reason = reason

    @event("Unshelved")
    def _record_unshelved(self, *, actor: str, at: datetime) -> None:
        self._shelved_until = None
        self._shelve_reason = None

    @event("RemovedFromService")
    def _record_removed_from_service(self, *, reason: str, actor: str, at: datetime) -> None:
        self._out_of_service = True
        self._out_of_service_reason = reason

    @event("ReturnedToService")
    def _record_returned_to_service(self, *, actor: str, at: datetime) -> None:
        self._out_of_service = False
        self._out_of_service_reason = None

    @event("LatchReset")
    def _record_latch_reset(self, *, actor: str, at: datetime) -> None:
        self._latched = False
        self._settle()

    @event("ChatteringStarted")
    def _record_chattering_started(self, *, count: int, actor: str, at: datetime) -> None:
        self._chattering = True
        self._chattering_since = at

    @event("ChatteringEnded")
    def _record_chattering_ended(self, *, actor: str, at: datetime) -> None:
        self._chattering = False
        self._chattering_since = None

    def _observe(
        self, transition_id: str, value: TagValue, limit: float | None, message: str
    ) -> None:
        """Keep the source's last word, and remember its transition id (bounded)."""
        self._value = value
        self._limit = limit
        self._message = message
        # One transition may record two events (Suppressed and Raised): its id is kept once.
        if not self._transitions or self._transitions[-1] != transition_id:
            self._transitions.append(transition_id)
            del self._transitions[:-REMEMBERED_TRANSITIONS]

    def _settle(self) -> None:
        """Back to normal once the process is normal, unlatched and acknowledged."""
        if not self._active and not self._latched and self._acknowledged:
            self._acknowledged = False
            self._raised_at = None


def _source_fields(transition: AlarmTransition) -> dict[str, Any]:
    return {
        "transition_id": transition.transition_id,
        "value": transition.value,
        "limit": transition.limit,
        "message": transition.message,
    }
