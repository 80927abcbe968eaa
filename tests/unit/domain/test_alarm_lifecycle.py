"""Random source transitions and operator actions against one alarm, with a controlled clock.

A small model, written from the transition table and not from the aggregate,
says what each step should do: which actions are refused (and why), and the
state after each one. After every step the stored events must tell a lawful
story on their own: every event has an actor and a time, an acknowledgement
only follows a Raised, a latched alarm only returns to normal by a reset,
chattering starts right after an activation, and the alarm as loaded (from
a snapshot, once there are enough events) is the alarm its events replay to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from domain.alarm import CHATTER_ACTIVATIONS, CHATTER_WINDOW, Alarm, AlarmState
from domain.application import DEFAULT_MAX_SHELVE, PlantApplication
from domain.errors import (
    AlarmActionRefused,
    AlarmNotFound,
    DomainError,
    LatchResetRefused,
    NothingToAcknowledge,
    NotOutOfService,
    NotShelved,
    RemovalRefused,
    ShelveRefused,
)
from domain.messages import AlarmTransition
from tests.unit.domain.plant import make_app
from tests.unit.domain.test_alarm_source import Source

S = AlarmState
LONGEST_SHELVE = DEFAULT_MAX_SHELVE
SOURCE_EVENTS = {"Raised", "Cleared", "Suppressed", "Unsuppressed"}
SHELVE_DURATIONS = (timedelta(0), timedelta(hours=1), LONGEST_SHELVE, LONGEST_SHELVE * 1.01)
SHOWN = {S.UNACK_ACTIVE, S.ACK_ACTIVE, S.RTN_UNACK, S.LATCHED}


@dataclasses.dataclass
class Model:
    """What the alarm should be, from the transition table alone."""

    latch: bool
    exists: bool = False
    active: bool = False
    suppressed: bool = False
    out_of_service: bool = False
    shelved_until: datetime | None = None
    latched: bool = False
    raised: bool = False  # raised since the last normal
    acknowledged: bool = False

    def isa(self) -> AlarmState:
        if self.active:
            return S.ACK_ACTIVE if self.acknowledged else S.UNACK_ACTIVE
        if self.latched:
            return S.LATCHED
        return S.RTN_UNACK if self.raised else S.NORMAL

    def state(self) -> AlarmState:
        if self.out_of_service:
            return S.OUT_OF_SERVICE
        if self.shelved_until is not None:
            return S.SHELVED
        return S.SUPPRESSED if self.suppressed else self.isa()

    def caught_up(self, now: datetime) -> Model:
        if self.shelved_until is not None and self.shelved_until <= now:
            return dataclasses.replace(self, shelved_until=None)
        return dataclasses.replace(self)

    def settle(self) -> None:
        if not self.active and not self.latched and self.acknowledged:
            self.raised = self.acknowledged = False

    def follow(self, active: bool, suppressed: bool) -> bool:
        """Apply a source transition; whether it records a source event."""
        changed = suppressed != self.suppressed or active != self.active
        self.suppressed = suppressed
        if active and not self.active:
            self.active, self.raised, self.acknowledged = True, True, False
        elif self.active and not active:
            self.active = False
            self.latched = self.latched or self.latch
            self.settle()
        return changed


def _derived(alarm: Alarm) -> AlarmState:
    """The state from the alarm's own flags, by the documented precedence."""
    if alarm.out_of_service:
        return S.OUT_OF_SERVICE
    if alarm.shelved_until is not None:
        return S.SHELVED
    if alarm.suppressed:
        return S.SUPPRESSED
    if alarm.active:
        return S.ACK_ACTIVE if alarm.acknowledged else S.UNACK_ACTIVE
    if alarm.latched:
        return S.LATCHED
    return S.RTN_UNACK if alarm.raised_at is not None else S.NORMAL


class AlarmLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.app: PlantApplication = make_app()
        self.source = Source(self.app)
        self.model = Model(latch=False)
        # Transitions the alarm recorded a source event for: their redelivery must do nothing.
        self.remembered: list[AlarmTransition] = []
        # The events checked so far, replayed one by one.
        self.replay: Alarm | None = None
        self.checked = 0
        self.raised_since_normal = False

    # Operator actions on an alarm that does not exist yet teach nothing (the table tests
    # them): every run starts with the first activation.
    @initialize(latch=st.booleans(), suppressed=st.booleans())
    def first_activation(self, latch: bool, suppressed: bool) -> None:
        self.source = Source(self.app, latch=latch)
        self.model = Model(latch=latch)
        self.transition(active=True, suppressed=suppressed)

    @property
    def now(self) -> datetime:
        return self.source.now

    # -- rules --------------------------------------------------------------------------------

    # Steps around the chattering minute, and long enough for a shelve to run out.
    @rule(seconds=st.sampled_from([0, 1, 20, 59, 60, 61, 1800, 3600, 8 * 3600]))
    def tick(self, seconds: int) -> None:
        self.source.tick(seconds)

    # Mostly unsuppressed, so that most runs see what the operators see.
    @rule(active=st.booleans(), suppressed=st.sampled_from([False, False, False, True]))
    def transition(self, active: bool, suppressed: bool) -> None:
        transition = self.source.transition(active=active, suppressed=suppressed)
        changes = self.source.record(transition)
        if not self.model.exists and not (active or suppressed):
            assert changes == []
            return
        self.model = self.model.caught_up(self.now)
        self.model.exists = True
        if self.model.follow(active, suppressed):
            self.remembered.append(transition)
            assert changes
        if changes:
            assert changes[0].state is self.source.state()
            assert changes[0].events

    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        if not self.remembered:
            return
        transition = data.draw(st.sampled_from(self.remembered))
        before = self.source.events()
        assert self.source.record(transition) == []
        assert self.source.events() == before

    @rule()
    def acknowledge(self) -> None:
        self._operator(
            lambda: self.app.acknowledge_alarm(
                alarm_id=self.source.alarm_id, actor="ana", comment="seen", at=self.now
            ),
            refusal=lambda m: None if m.raised and not m.acknowledged else NothingToAcknowledge,
            effect=self._acknowledged,
        )

    @rule(reason=st.sampled_from(["", "nuisance"]), duration=st.sampled_from(SHELVE_DURATIONS))
    def shelve(self, reason: str, duration: timedelta) -> None:
        def refusal(m: Model) -> str | None:
            if m.out_of_service:
                return "out_of_service"
            if m.shelved_until is not None:
                return "already_shelved"
            if not reason:
                return "reason_required"
            if not timedelta(0) < duration <= LONGEST_SHELVE:
                return "bad_duration"
            return None

        def effect(m: Model) -> None:
            m.shelved_until = self.now + duration

        self._operator(
            lambda: self.app.shelve_alarm(
                alarm_id=self.source.alarm_id,
                actor="ana",
                reason=reason,
                duration=duration,
                at=self.now,
            ),
            refusal=lambda m: None if refusal(m) is None else (ShelveRefused, refusal(m)),
            effect=effect,
        )

    @rule()
    def unshelve(self) -> None:
        self._operator(
            lambda: self.app.unshelve_alarm(
                alarm_id=self.source.alarm_id, actor="bob", at=self.now
            ),
            refusal=lambda m: NotShelved if m.shelved_until is None else None,
            effect=lambda m: setattr(m, "shelved_until", None),
        )

    @rule()
    def unshelve_if_due(self) -> None:
        if not self.model.exists:
            return
        due = self.model.shelved_until is not None and self.model.shelved_until <= self.now
        assert self.app.unshelve_if_due(self.source.alarm_id, self.now) is due
        if due:
            self.model.shelved_until = None

    @rule(reason=st.sampled_from(["", "maintenance"]))
    def remove_from_service(self, reason: str) -> None:
        def refusal(m: Model) -> tuple[type[DomainError], str] | None:
            if m.out_of_service:
                return RemovalRefused, "already_out_of_service"
            return None if reason else (RemovalRefused, "reason_required")

        self._operator(
            lambda: self.app.remove_alarm_from_service(
                alarm_id=self.source.alarm_id, actor="ana", reason=reason, at=self.now
            ),
            refusal=refusal,
            effect=lambda m: setattr(m, "out_of_service", True),
        )

    @rule()
    def return_to_service(self) -> None:
        self._operator(
            lambda: self.app.return_alarm_to_service(
                alarm_id=self.source.alarm_id, actor="ana", at=self.now
            ),
            refusal=lambda m: None if m.out_of_service else NotOutOfService,
            effect=lambda m: setattr(m, "out_of_service", False),
        )

    @rule()
    def reset_latch(self) -> None:
        def refusal(m: Model) -> tuple[type[DomainError], str] | None:
            if not m.latched:
                return LatchResetRefused, "not_latched"
            return (LatchResetRefused, "still_active") if m.active else None

        def effect(m: Model) -> None:
            m.latched = False
            m.settle()

        self._operator(
            lambda: self.app.reset_alarm_latch(
                alarm_id=self.source.alarm_id, actor="ana", at=self.now
            ),
            refusal=refusal,
            effect=effect,
        )

    # -- the model's judgement of an operator action ------------------------------------------

    @staticmethod
    def _acknowledged(m: Model) -> None:
        m.acknowledged = True
        m.settle()

    def _operator(
        self,
        action: Callable[[], object],
        refusal: Callable[[Model], object],
        effect: Callable[[Model], None],
    ) -> None:
        """Run an action the model judges on the alarm brought up to now."""
        before = self.source.events() if self.model.exists else []
        try:
            action()
        except DomainError as refused:
            error: DomainError | None = refused
        else:
            error = None
        if not self.model.exists:
            assert isinstance(error, AlarmNotFound), error
            return
        caught_up = self.model.caught_up(self.now)
        expected = refusal(caught_up)
        if expected is None:
            assert error is None, error
            effect(caught_up)
            self.model = caught_up
            return
        kind, code = expected if isinstance(expected, tuple) else (expected, None)
        assert isinstance(error, kind), error
        assert isinstance(error, AlarmActionRefused)
        assert code is None or error.code == code, (error.code, code)
        assert self.source.events() == before, "a refused action recorded something"

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def state_is_the_models(self) -> None:
        if not self.model.exists:
            return
        alarm = self.source.alarm()
        assert alarm.state is self.model.state(), (alarm.state, self.model)
        assert alarm.isa_state is self.model.isa()
        assert (alarm.acknowledged, alarm.latched) == (self.model.acknowledged, self.model.latched)
        assert alarm.shelved_until == self.model.shelved_until
        assert alarm.state is _derived(alarm)
        assert alarm.annunciated == (alarm.state in SHOWN)
        assert not alarm.acknowledged or self.model.raised

    @invariant()
    def the_story_is_lawful(self) -> None:
        if not self.model.exists:
            return
        events = self.app.alarm_events(self.source.alarm_id)
        for index in range(self.checked, len(events)):
            self._check_event(events, index)
        self.checked = len(events)
        assert self.replay == self.source.alarm(), "loading and replaying disagree"

    def _check_event(self, events: Sequence[object], index: int) -> None:
        event, name = events[index], type(events[index]).__name__
        actor, at = event.actor, event.at  # type: ignore[attr-defined]
        assert isinstance(actor, str)
        assert actor
        assert at.tzinfo is not None
        assert at <= self.now
        if name in SOURCE_EVENTS:
            assert actor == "device:press-1"
        before = self.replay.isa_state if self.replay else S.NORMAL
        self.replay = event.mutate(self.replay)  # type: ignore[attr-defined]
        assert self.replay is not None
        after = self.replay.isa_state
        if name == "Raised":
            self.raised_since_normal = True
        if name == "Acknowledged":
            assert self.raised_since_normal, "acknowledged with nothing raised"
        if before is S.LATCHED and after is S.NORMAL:
            assert name == "LatchReset", f"{name} unlatched the alarm"
        if after is S.NORMAL:
            self.raised_since_normal = False
        assert not self.replay.acknowledged or self.raised_since_normal
        if name == "ChatteringStarted":
            self._check_chattering_started(events, index)

    @staticmethod
    def _check_chattering_started(events: Sequence[object], index: int) -> None:
        event = events[index]
        assert type(events[index - 1]).__name__ == "Raised"
        window_start = event.at - CHATTER_WINDOW  # type: ignore[attr-defined]
        raised = [
            e
            for e in events[:index]
            if type(e).__name__ == "Raised" and e.at > window_start  # type: ignore[attr-defined]
        ]
        assert len(raised) >= CHATTER_ACTIVATIONS


AlarmLifecycle.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_alarm_lifecycle = AlarmLifecycle.TestCase
