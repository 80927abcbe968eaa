"""Alarm conditions as the plant file declares them (ISA-18.2 / IEC 62682).

A tag lists its conditions under ``alarms:``; a device may add a
``comm_loss_alarm``. The device's supervisor evaluates them at the source
(:mod:`devices.alarm_evaluator`) and publishes each change as an
:class:`~domain.messages.AlarmTransition`.

A condition's own keys are checked here, its tag's type by the tag
(:func:`check_tag_alarms`), and what names another tag of the device by the
device (:func:`check_device_alarms`). Every refusal names the field it is
about (``tags[motor_temperature].alarms[0].limit``), so that the plant file's
errors point at the line to fix.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from domain.messages import AlarmKind, AlarmPriority

if TYPE_CHECKING:
    from plantfile.protocols.base import DeviceConfig
    from plantfile.tags import TagConfig

__all__ = [
    "COMM_LOSS_CONDITION",
    "AlarmCondition",
    "CommLossAlarm",
    "ConditionKind",
    "DiscreteValue",
    "SuppressWhen",
    "check_device_alarms",
    "check_tag_alarms",
    "condition_message",
    "condition_name",
    "tag_conditions",
]

ConditionKind = Literal["hihi", "hi", "lo", "lolo", "deviation", "discrete", "rate_of_change"]
# A discrete value: true/false for a bool tag, a number (a state code) for a numeric one.
DiscreteValue = bool | int | float

HIGH_KINDS = frozenset({"hihi", "hi"})
LOW_KINDS = frozenset({"lo", "lolo"})
MAGNITUDE_KINDS = frozenset({"deviation", "rate_of_change"})
# The device's communication-loss alarm: a name no tag condition may take.
COMM_LOSS_CONDITION = "comm_loss"

CONDITION_NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"


class SuppressWhen(BaseModel):
    """Suppression by design: the condition is suppressed while ``tag`` equals ``equals``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tag: str = Field(min_length=1, description="another tag of the same device")
    equals: DiscreteValue = Field(description="the value of that tag that suppresses the alarm")


class AlarmCondition(BaseModel):
    """One alarm condition on a tag."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(
        None,
        pattern=CONDITION_NAME_PATTERN,
        description="unique within the device; <tag>_<kind> by default",
    )
    kind: ConditionKind
    limit: float | None = Field(
        None,
        allow_inf_nan=False,
        validate_default=True,
        description=(
            "hihi/hi/lo/lolo: the alarm limit; deviation: the allowed absolute difference"
            " from the setpoint tag; rate_of_change: the allowed change per second"
        ),
    )
    setpoint_tag: str | None = Field(
        None, validate_default=True, description="deviation: the tag the value is compared with"
    )
    equals: DiscreteValue | None = Field(
        None, validate_default=True, description="discrete: the tag value that is abnormal"
    )
    priority: AlarmPriority
    deadband: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="in the tag's unit (per second for rate_of_change): how far back past"
        " the limit the value must return before the alarm clears",
    )
    on_delay: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="seconds the condition must hold to activate"
    )
    off_delay: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="seconds the condition must be gone to clear"
    )
    latch: bool = Field(False, description="once raised, the alarm stays latched until reset")
    suppress_when: SuppressWhen | None = None
    message: str = Field("", description="what the operator reads; generated when empty")

    @field_validator("limit")
    @classmethod
    def _limit_fits_kind(cls, limit: float | None, info: ValidationInfo) -> float | None:
        kind = info.data.get("kind")
        if kind is None:  # the kind itself is refused
            return limit
        if kind == "discrete":
            if limit is not None:
                raise ValueError("a discrete alarm has no limit: it names the value in 'equals'")
            return limit
        if limit is None:
            raise ValueError(f"a {kind} alarm needs a limit")
        if kind == "deviation" and limit < 0:
            raise ValueError("the allowed deviation cannot be negative")
        if kind == "rate_of_change" and limit <= 0:
            raise ValueError("the allowed rate of change must be above 0")
        return limit

    @field_validator("setpoint_tag")
    @classmethod
    def _setpoint_fits_kind(cls, setpoint: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if kind == "deviation" and not setpoint:
            raise ValueError("a deviation alarm needs the setpoint tag it compares with")
        if kind not in (None, "deviation") and setpoint is not None:
            raise ValueError("only a deviation alarm has a setpoint tag")
        return setpoint

    @field_validator("equals")
    @classmethod
    def _equals_fits_kind(
        cls, equals: DiscreteValue | None, info: ValidationInfo
    ) -> DiscreteValue | None:
        kind = info.data.get("kind")
        if kind == "discrete" and equals is None:
            raise ValueError("a discrete alarm needs the abnormal value in 'equals'")
        if kind not in (None, "discrete") and equals is not None:
            raise ValueError("only a discrete alarm has 'equals'")
        if isinstance(equals, float) and not math.isfinite(equals):
            raise ValueError("'equals' must be finite")
        return equals

    @field_validator("deadband")
    @classmethod
    def _deadband_fits_kind(cls, deadband: float, info: ValidationInfo) -> float:
        kind, limit = info.data.get("kind"), info.data.get("limit")
        if kind == "discrete" and deadband:
            raise ValueError("a discrete alarm has no deadband")
        if kind in MAGNITUDE_KINDS and limit is not None and deadband and deadband > limit:
            raise ValueError(f"the deadband ({deadband:g}) is larger than the limit ({limit:g})")
        return deadband

    @property
    def alarm_kind(self) -> AlarmKind:
        return AlarmKind(self.kind)


class CommLossAlarm(BaseModel):
    """The device's communication-loss alarm: on while its connection is lost."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    priority: AlarmPriority
    on_delay: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="seconds the connection must stay lost"
    )
    message: str = Field("", description="what the operator reads; generated when empty")


@dataclass(frozen=True, slots=True)
class BoundCondition:
    """A condition with the tag it watches, its position and its resolved name."""

    tag: TagConfig
    tag_index: int
    index: int
    condition: AlarmCondition
    name: str


def condition_name(tag: str, condition: AlarmCondition) -> str:
    return condition.name or f"{tag}_{condition.kind}"


_MESSAGES = {
    "hihi": "{subject} very high: at or above {limit:g}{unit}",
    "hi": "{subject} high: at or above {limit:g}{unit}",
    "lo": "{subject} low: at or below {limit:g}{unit}",
    "lolo": "{subject} very low: at or below {limit:g}{unit}",
    "deviation": "{subject} deviates from {setpoint} by more than {limit:g}{unit}",
    "rate_of_change": "{subject} changes faster than {limit:g}{unit}/s",
    "discrete": "{subject} is {equals}",
}


def condition_message(tag: TagConfig, condition: AlarmCondition) -> str:
    """The condition's message, or one made from the tag and the limit."""
    if condition.message:
        return condition.message
    return _MESSAGES[condition.kind].format(
        subject=tag.description or tag.name,
        unit=f" {tag.unit}" if tag.unit else "",
        limit=condition.limit,
        setpoint=condition.setpoint_tag,
        equals=shown_value(condition.equals),
    )


def shown_value(value: DiscreteValue | None) -> str:
    """A discrete value as the plant file writes it: ``true``, ``false``, ``3``."""
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else f"{value:g}"


def comm_loss_message(device: str, alarm: CommLossAlarm) -> str:
    return alarm.message or f"communication with {device} lost"


def tag_conditions(tags: Sequence[TagConfig]) -> Iterator[BoundCondition]:
    """Every condition of the tags, with its tag and its resolved name, in file order."""
    for tag_index, tag in enumerate(tags):
        for index, condition in enumerate(tag.alarms):
            name = condition_name(tag.name, condition)
            yield BoundCondition(tag, tag_index, index, condition, name)


def check_tag_alarms(tag: TagConfig) -> None:
    """Refuse conditions that do not fit the tag's type (loc relative to the tag)."""
    problems: list[InitErrorDetails] = []
    for index, condition in enumerate(tag.alarms):
        at: tuple[int | str, ...] = ("alarms", index)
        if tag.type == "bool" and condition.kind != "discrete":
            problems.append(
                _problem((*at, "kind"), condition.kind, "a bool tag can only have discrete alarms")
            )
        if condition.kind == "discrete":
            reason = _discrete_mismatch(tag, condition.equals)
            if reason:
                problems.append(_problem((*at, "equals"), condition.equals, reason))
    _raise(type(tag).__name__, problems)


def check_device_alarms(device: DeviceConfig) -> None:
    """Refuse duplicate condition names and references to tags the device lacks."""
    problems: list[InitErrorDetails] = []
    bound = list(tag_conditions(device.tags))
    seen: set[str] = set()
    for b in bound:
        at: tuple[int | str, ...] = ("tags", b.tag_index, "alarms", b.index)
        # The second of two conditions of one name is the duplicate; the
        # communication-loss alarm has its name before any.
        if b.name in seen or (b.name == COMM_LOSS_CONDITION and device.comm_loss_alarm):
            reason = f"duplicate alarm name {b.name!r} in device {device.id}"
            if b.name == COMM_LOSS_CONDITION and device.comm_loss_alarm is not None:
                reason += " (the communication-loss alarm's)"
            problems.append(_problem((*at, "name"), b.condition.name or b.name, reason))
        seen.add(b.name)
        problems.extend(_reference_problems(device, b, at))
    _raise(type(device).__name__, problems)


def _reference_problems(
    device: DeviceConfig, b: BoundCondition, at: tuple[int | str, ...]
) -> Iterator[InitErrorDetails]:
    """What is wrong with the tags a condition names besides its own."""
    condition = b.condition
    if condition.setpoint_tag is not None:
        setpoint = device.tag(condition.setpoint_tag)
        reason = ""
        if setpoint is None:
            reason = f"no tag {condition.setpoint_tag!r} in device {device.id}"
        elif setpoint.name == b.tag.name:
            reason = "the setpoint tag cannot be the tag itself"
        elif setpoint.type == "bool":
            reason = f"the setpoint tag {setpoint.name!r} is a bool, not a number"
        if reason:
            yield _problem((*at, "setpoint_tag"), condition.setpoint_tag, reason)
    when = condition.suppress_when
    if when is not None:
        suppressor = device.tag(when.tag)
        if suppressor is None:
            reason = f"no tag {when.tag!r} in device {device.id}"
            yield _problem((*at, "suppress_when", "tag"), when.tag, reason)
        elif reason := _discrete_mismatch(suppressor, when.equals):
            yield _problem((*at, "suppress_when", "equals"), when.equals, reason)


def _discrete_mismatch(tag: TagConfig, value: DiscreteValue | None) -> str:
    if tag.type == "bool" and not isinstance(value, bool):
        return f"tag {tag.name!r} is a bool: the value must be true or false"
    if tag.type != "bool" and isinstance(value, bool):
        return f"tag {tag.name!r} is a number: the value must be a number"
    return ""


def _problem(loc: tuple[int | str, ...], value: Any, reason: str) -> InitErrorDetails:
    # The reason goes in the context: a name in it is never read as a template.
    error = PydanticCustomError("alarm_config", "{reason}", {"reason": reason})
    return InitErrorDetails(type=error, loc=loc, input=value)


def _raise(title: str, problems: list[InitErrorDetails]) -> None:
    # A ValidationError raised in a validator keeps each problem's own location.
    if problems:
        raise ValidationError.from_exception_data(title, problems)
