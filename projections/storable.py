"""What the stores can hold, checked on a decoded message before anything writes it.

A message can follow its subject's contract and still be unfit to store. Some of
it a store refuses, and would refuse again at every redelivery (a NUL in a text
column, an integer beyond a double). Some of it a store takes and is harmed by:
a sample stamped in the year 9999 wins the live state's compare-and-set for
good; a NUL or a NaN in an alarm transition is recorded for good in the event
store and then refused by every read model that follows the log. So each
consumer's decoder checks here first and raises :class:`Unstorable` with the
kind and a reason that names the field; the consumer dead-letters the message
(:mod:`projections.dead_letter`) and goes on.

Names are held to what a plant file can declare (device ids, tag and condition
names), not to the plant file now loaded: the streams keep messages of devices
and tags that an edited plant file no longer has, and their history is history.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from domain.messages import AlarmTransition, DeviceStatus, TagValue, TelemetryBatch, format_ts
from plantfile.alarm_conditions import CONDITION_NAME_PATTERN
from plantfile.protocols.base import DEVICE_ID_PATTERN
from plantfile.tags import TAG_NAME_PATTERN
from projections.dead_letter import RefusalKind

# No plant's data is older than the Unix epoch: earlier is a clock that was never set.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
# How far ahead of the plant core's clock a publisher's clock may run (a time zone
# mistaken for UTC stays within it); further is a clock gone wrong.
LATEST_AHEAD = timedelta(days=1)
# Counts are served as GraphQL Int, a signed 32-bit integer.
MAX_COUNT = 2**31 - 1

# C0 and C1 controls and DEL; tab, line feed and carriage return are text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_DEVICE = re.compile(DEVICE_ID_PATTERN)
_TAG = re.compile(TAG_NAME_PATTERN)
_CONDITION = re.compile(CONDITION_NAME_PATTERN)
_SHOWN_CHARS = 60


class Unstorable(ValueError):
    """A decoded message that no store should take; ``kind`` says which rule it breaks."""

    def __init__(self, kind: RefusalKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


def check_telemetry(batch: TelemetryBatch, now: datetime) -> TelemetryBatch:
    """``batch`` if every sample can be stored at ``now``; raises :class:`Unstorable`."""
    _name("device", batch.device, _DEVICE)
    _time("batch ts", batch.ts, now)
    for sample in batch.samples:
        _name("tag", sample.tag, _TAG)
        where = f"sample {sample.tag}"
        _text(f"{where}: unit", sample.unit)
        _text(f"{where}: reason", sample.reason)
        _time(f"{where}: ts", sample.ts, now)
        if sample.value_ts is not None:
            _time(f"{where}: value_ts", sample.value_ts, now)
        _number(f"{where}: value", sample.value)
    return batch


def check_status(status: DeviceStatus, now: datetime) -> DeviceStatus:
    """``status`` if it can be stored at ``now``; raises :class:`Unstorable`."""
    _name("device", status.device, _DEVICE)
    _text("detail", status.detail)
    _time("ts", status.ts, now)
    if not 0 <= status.reconnects <= MAX_COUNT:
        raise Unstorable(
            RefusalKind.NUMBER_OUT_OF_RANGE,
            f"reconnects {_shown(status.reconnects)} is not a count from 0 to {MAX_COUNT}",
        )
    return status


def check_transition(transition: AlarmTransition, now: datetime) -> AlarmTransition:
    """``transition`` if it can be recorded at ``now``; raises :class:`Unstorable`."""
    _text("transition_id", transition.transition_id)
    _name("device", transition.device, _DEVICE)
    _name("condition", transition.condition, _CONDITION)
    if transition.tag:  # a communication-loss alarm watches no tag
        _name("tag", transition.tag, _TAG)
    _text("area", transition.area)
    _text("message", transition.message)
    _number("value", transition.value)
    _number("limit", transition.limit)
    _time("ts", transition.ts, now)
    return transition


def _text(what: str, text: str) -> None:
    control = _CONTROL.search(text)
    if control is not None:
        raise Unstorable(
            RefusalKind.CONTROL_CHARACTER,
            f"{what} {_shown(text)} holds the control character"
            f" U+{ord(control.group()):04X} at {control.start()}",
        )
    if _SURROGATE.search(text) is not None:
        raise Unstorable(
            RefusalKind.CONTROL_CHARACTER, f"{what} {_shown(text)} is not valid Unicode"
        )


def _name(what: str, name: str, rule: re.Pattern[str]) -> None:
    _text(what, name)
    if rule.fullmatch(name) is None:
        raise Unstorable(
            RefusalKind.UNKNOWN_NAME,
            f"{what} {_shown(name)} is not a name a plant file can declare ({rule.pattern})",
        )


def _time(what: str, ts: datetime, now: datetime) -> None:
    if ts < EARLIEST:
        problem = "is before 1970"
    elif ts > now + LATEST_AHEAD:
        problem = f"is more than {LATEST_AHEAD} ahead of the plant core's clock ({format_ts(now)})"
    else:
        return
    raise Unstorable(RefusalKind.TIMESTAMP_OUT_OF_RANGE, f"{what} {format_ts(ts)} {problem}")


def _number(what: str, value: TagValue) -> None:
    """A value is stored as a double: it must be finite, and an integer must fit."""
    if value is None or isinstance(value, bool):
        return
    try:
        finite = math.isfinite(float(value))
    except OverflowError:
        finite = False
    if not finite:
        raise Unstorable(
            RefusalKind.NUMBER_OUT_OF_RANGE, f"{what} {_shown(value)} is not a finite double"
        )


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}... ({len(text)} chars)"
