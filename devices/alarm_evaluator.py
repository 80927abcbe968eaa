"""Alarm evaluation at the source: a device's telemetry in, alarm transitions out.

:class:`AlarmEvaluator` is pure: no I/O, time from an injected monotonic
``clock``. The device's supervisor feeds it every batch it publishes
(:meth:`~AlarmEvaluator.evaluate`), every change of its connection
(:meth:`~AlarmEvaluator.connection`), and calls :meth:`~AlarmEvaluator.tick`
when :meth:`~AlarmEvaluator.next_due` says a delay runs out, so that on- and
off-delays end on time between samples. Each returns the transitions to publish.

For each condition the evaluator keeps:

- whether the process condition *holds* now. Limits use a deadband: a ``hi``
  holds from ``value >= limit`` until ``value < limit - deadband`` (``lo``:
  from ``value <= limit`` until ``value > limit + deadband``); ``deviation``
  and ``rate_of_change`` hold from ``|difference| > limit`` (``|rate| >
  limit``) until it is ``<= limit - deadband``; ``discrete`` holds while the
  value equals ``equals``. A rate is taken between consecutive good samples.
- whether the alarm is *active*: the condition has held for ``on_delay``
  seconds (active), or been gone for ``off_delay`` seconds (normal), on the
  clock, without a break. A transition's ``ts`` is when the delay ran out,
  counted from the sample that started it.
- whether it is *suppressed*: the ``suppress_when`` tag's good value equals
  the configured one. Suppression hides, it does not stop evaluation: a
  suppressed alarm still goes active and normal.

A sample that is not good neither raises nor clears anything, whatever value it
holds (the supervisor keeps a tag's last known value in its bad samples): the
condition keeps its state, a delay under way stops (it starts again from the
next good sample), and a rate starts again from the next two good samples. The
same holds for the setpoint of a deviation and the tag of a suppression.

A condition's first state is announced once it is known, normal included, so
that after a restart of the supervisor an alarm that cleared meanwhile clears
downstream too (the recorder records nothing for a transition that changes
nothing). ``latch`` is passed on: the alarm's record latches, the source only
reports the process.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.messages import (
    AlarmKind,
    AlarmPriority,
    AlarmTransition,
    Quality,
    Sample,
    TagValue,
    TelemetryBatch,
)
from plantfile.alarm_conditions import (
    COMM_LOSS_CONDITION,
    HIGH_KINDS,
    LOW_KINDS,
    BoundCondition,
    comm_loss_message,
    condition_message,
    tag_conditions,
)
from plantfile.protocols.base import DeviceConfig

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class _Definition:
    """What a transition says about the condition besides its state."""

    name: str
    kind: AlarmKind
    priority: AlarmPriority
    tag: str
    latch: bool
    limit: float | None
    message: str
    on_delay: float
    off_delay: float


class _ConditionState:
    """One condition's evaluation state."""

    def __init__(self, definition: _Definition) -> None:
        self.definition = definition
        # Whether the condition holds; None while unknown (no good value yet, or
        # a bad one since): nothing then raises or clears the alarm.
        self.holds: bool | None = None
        self.since = 0.0  # clock time when ``holds`` took its value
        self.since_ts: datetime | None = None  # the same moment, wall clock
        self.active: bool | None = None  # None until the first state is known
        self.suppressed: bool | None = None
        self.suppressed_ts: datetime | None = None
        self.value: TagValue = None  # what decided it, for the transition
        # The last announced (active, suppressed); None before the first.
        self.published: tuple[bool, bool] | None = None

    def observe(self, holds: bool, value: TagValue, now: float, ts: datetime) -> None:
        self.value = value
        if holds != self.holds:
            self.holds, self.since, self.since_ts = holds, now, ts

    def hold(self) -> None:
        """No good value: keep the state, and forget any delay under way."""
        self.holds = None

    def suppress(self, suppressed: bool, ts: datetime) -> None:
        if suppressed != self.suppressed:
            self.suppressed, self.suppressed_ts = suppressed, ts

    def due(self) -> float | None:
        """When a delay under way runs out (clock time), or None."""
        if self.holds is None or self.holds == self.active:
            return None
        return self.since + self._delay()

    def settle(self, now: float) -> None:
        """Take the state the condition has held for its delay."""
        due = self.due()
        if due is not None and now >= due:
            self.active = self.holds

    def _delay(self) -> float:
        if self.holds:
            return self.definition.on_delay
        # The first state, normal, is known at once; only clearing an alarm waits.
        return self.definition.off_delay if self.active else 0.0

    def change(self, device: str, area: str) -> AlarmTransition | None:
        """The transition announcing the current state, if it differs from the last one."""
        if self.active is None:
            return None
        state = (self.active, bool(self.suppressed))
        previous, self.published = self.published, state
        if state == previous:
            return None
        definition = self.definition
        moments: list[datetime] = []
        if previous is None or previous[0] != self.active:
            # The moment the delay that just ran out ended, counted from its first sample.
            if self.active:
                delay = definition.on_delay
            else:
                delay = definition.off_delay if previous is not None and previous[0] else 0.0
            assert self.since_ts is not None  # set with the first ``holds``
            moments.append(self.since_ts + timedelta(seconds=delay))
        if (previous is None or previous[1] != state[1]) and self.suppressed_ts is not None:
            moments.append(self.suppressed_ts)
        return AlarmTransition(
            transition_id=uuid.uuid4().hex,
            device=device,
            condition=definition.name,
            kind=definition.kind,
            priority=definition.priority,
            area=area,
            tag=definition.tag,
            active=self.active,
            suppressed=state[1],
            latch=definition.latch,
            value=self.value,
            limit=definition.limit,
            message=definition.message,
            ts=max(moments),
        )


class AlarmEvaluator:
    """Evaluates one device's alarm conditions; every method returns the transitions to publish."""

    def __init__(self, device: DeviceConfig, clock: Clock) -> None:
        self._device = device.id
        self._area = device.area
        self._clock = clock
        self._conditions: list[_TagCondition] = [
            _TagCondition(bound) for bound in tag_conditions(device.tags)
        ]
        self._by_tag: dict[str, list[_TagCondition]] = {}
        for condition in self._conditions:
            self._by_tag.setdefault(condition.tag, []).append(condition)
        self._comm_loss: _ConditionState | None = None
        if device.comm_loss_alarm is not None:
            alarm = device.comm_loss_alarm
            self._comm_loss = _ConditionState(
                _Definition(
                    name=COMM_LOSS_CONDITION,
                    kind=AlarmKind.COMM_LOSS,
                    priority=alarm.priority,
                    tag="",
                    latch=False,
                    limit=None,
                    message=comm_loss_message(device.id, alarm),
                    on_delay=alarm.on_delay,
                    off_delay=0.0,
                )
            )
        self._latest: dict[str, Sample] = {}

    @property
    def conditions(self) -> tuple[str, ...]:
        """The names of the conditions evaluated, the communication-loss alarm's last."""
        names = tuple(c.state.definition.name for c in self._conditions)
        return names + ((COMM_LOSS_CONDITION,) if self._comm_loss is not None else ())

    def evaluate(self, batch: TelemetryBatch) -> list[AlarmTransition]:
        """Take in every sample of a batch of the device; the transitions it causes."""
        if not self._conditions:
            return self.tick()
        now = self._clock()
        seen: set[str] = set()
        for sample in batch.samples:
            self._latest[sample.tag] = sample
            seen.add(sample.tag)
            for condition in self._by_tag.get(sample.tag, ()):
                condition.track_rate(sample)
        for condition in self._conditions:
            if seen.intersection(condition.inputs):
                condition.evaluate(self._latest, now)
            if condition.suppressor is not None and condition.suppressor in seen:
                condition.evaluate_suppression(self._latest)
        return self.tick()

    def connection(self, connected: bool, ts: datetime) -> list[AlarmTransition]:
        """The supervisor's connection was made (True) or lost (False) at ``ts``."""
        if self._comm_loss is not None:
            self._comm_loss.observe(not connected, None, self._clock(), ts)
        return self.tick()

    def tick(self) -> list[AlarmTransition]:
        """End the delays that have run out; the transitions they cause."""
        now = self._clock()
        transitions: list[AlarmTransition] = []
        for state in self._states():
            state.settle(now)
            transition = state.change(self._device, self._area)
            if transition is not None:
                transitions.append(transition)
        return transitions

    def next_due(self) -> float | None:
        """The clock time when the next delay under way runs out, or None if none is."""
        dues = [due for state in self._states() if (due := state.due()) is not None]
        return min(dues, default=None)

    def _states(self) -> Iterable[_ConditionState]:
        yield from (condition.state for condition in self._conditions)
        if self._comm_loss is not None:
            yield self._comm_loss


class _TagCondition:
    """A condition on a tag: how its samples make it hold."""

    def __init__(self, bound: BoundCondition) -> None:
        condition = bound.condition
        self.condition = condition
        self.tag = bound.tag.name
        self.inputs = frozenset(
            (self.tag,) if condition.setpoint_tag is None else (self.tag, condition.setpoint_tag)
        )
        self.suppressor = condition.suppress_when.tag if condition.suppress_when else None
        self.state = _ConditionState(
            _Definition(
                name=bound.name,
                kind=condition.alarm_kind,
                priority=condition.priority,
                tag=self.tag,
                latch=condition.latch,
                limit=condition.limit,
                message=condition_message(bound.tag, condition),
                on_delay=condition.on_delay,
                off_delay=condition.off_delay,
            )
        )
        self._previous: Sample | None = None  # the last good sample, for a rate
        self._rate: float | None = None

    def track_rate(self, sample: Sample) -> None:
        if self.condition.kind != "rate_of_change":
            return
        if sample.quality is not Quality.GOOD or _number(sample.value) is None:
            self._previous, self._rate = None, None
            return
        previous, self._previous = self._previous, sample
        if previous is None:
            self._rate = None
            return
        seconds = (sample.ts - previous.ts).total_seconds()
        if seconds <= 0:
            self._previous = previous  # not later: keep the baseline, decide nothing
            return
        value, before = _number(sample.value), _number(previous.value)
        assert value is not None
        assert before is not None
        self._rate = (value - before) / seconds

    def evaluate(self, latest: dict[str, Sample], now: float) -> None:
        sample = latest.get(self.tag)
        if sample is None or sample.quality is not Quality.GOOD:
            self.state.hold()
            return
        decided = self._decide(sample, latest)
        if decided is None:
            self.state.hold()
            return
        holds, value = decided
        self.state.observe(holds, value, now, sample.ts)

    def evaluate_suppression(self, latest: dict[str, Sample]) -> None:
        when = self.condition.suppress_when
        assert when is not None
        sample = latest.get(when.tag)
        if sample is None or sample.quality is not Quality.GOOD or sample.value is None:
            return  # unknown: the suppression stays as it was
        self.state.suppress(_equal(sample.value, when.equals), sample.ts)

    def _decide(self, sample: Sample, latest: dict[str, Sample]) -> tuple[bool, TagValue] | None:
        """Whether the condition holds, and the value compared; None when it cannot be told."""
        condition = self.condition
        if condition.kind == "discrete":
            return _equal(sample.value, condition.equals), sample.value
        value, limit = _number(sample.value), condition.limit
        if value is None or limit is None:
            return None
        active, deadband = bool(self.state.active), condition.deadband
        if condition.kind in HIGH_KINDS:
            return value >= limit or (active and value >= limit - deadband), sample.value
        if condition.kind in LOW_KINDS:
            return value <= limit or (active and value <= limit + deadband), sample.value
        magnitude = self._magnitude(value, latest)
        if magnitude is None:
            return None
        holds = magnitude > limit or (active and magnitude > limit - deadband)
        return holds, round(magnitude, 9)  # a difference or a rate, without float noise

    def _magnitude(self, value: float, latest: dict[str, Sample]) -> float | None:
        """The deviation from the setpoint, or the rate of change, as an absolute value."""
        if self.condition.kind == "rate_of_change":
            return None if self._rate is None else abs(self._rate)
        setpoint = latest.get(self.condition.setpoint_tag or "")
        if setpoint is None or setpoint.quality is not Quality.GOOD:
            return None
        target = _number(setpoint.value)
        return None if target is None else abs(value - target)


def _number(value: TagValue) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _equal(value: TagValue, expected: object) -> bool:
    # true is not 1 here: a bool tag compares with booleans, a number with numbers.
    return isinstance(value, bool) == isinstance(expected, bool) and value == expected


__all__ = ["AlarmEvaluator"]
