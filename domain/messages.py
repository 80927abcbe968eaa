"""The wire contracts shared by supervisors, projections, the API and integrators.

Every payload on NATS is JSON with a ``schema`` version. Encoding and decoding
are pure functions here so that every side of a subject agrees on one shape and
each can be tested without a server. ``decode_*`` raises :class:`MalformedMessage`
with the reason when a payload does not match; callers log it and move on (a
projection moves it to the dead-letter stream, a supervisor replies with an error).

Subjects (documented in ``docs/nats.md``):

- ``plant.telemetry.<device>``: one :class:`TelemetryBatch` per poll cycle.
- ``plant.status.<device>``: :class:`DeviceStatus` on every state change and as
  a heartbeat.
- ``plant.write.<device>``: request/reply, :class:`WriteRequest` answered by
  :class:`WriteReply`.
- ``plant.alarms.<device>``: one :class:`AlarmTransition` per change of an
  alarm condition, evaluated at the source.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

SCHEMA_VERSION = 1

TELEMETRY_SUBJECT = "plant.telemetry.{device}"
STATUS_SUBJECT = "plant.status.{device}"
WRITE_SUBJECT = "plant.write.{device}"
ALARM_SUBJECT = "plant.alarms.{device}"

TagValue = float | int | bool | None

# How far the clocks of the dispatcher's host and a supervisor's host may differ
# (keep them in step with NTP): a write's deadline is set this long before the
# dispatcher stops waiting, so a late write is refused even by a clock behind.
DEFAULT_WRITE_CLOCK_SKEW = timedelta(seconds=1)


class MalformedMessage(ValueError):
    """A payload that does not follow its subject's contract."""


class Quality(StrEnum):
    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


class QualityReason(StrEnum):
    """Why a sample is not good; a sample that is not good holds the tag's last good value."""

    # The device is unreachable: the connection was lost or refused.
    COMM_LOSS = "comm_loss"
    # The connection is up, but the tag's read gave no good value (the device refused
    # the address, timed out on it, or marked the value bad or uncertain).
    READ_FAILED = "read_failed"
    # The device answered with a value no sample can carry (a float register holding NaN).
    INVALID_VALUE = "invalid_value"


class ConnectionState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    STOPPED = "stopped"


class WriteErrorKind(StrEnum):
    BAD_REQUEST = "bad_request"
    UNKNOWN_TAG = "unknown_tag"
    NOT_WRITABLE = "not_writable"
    OUT_OF_LIMITS = "out_of_limits"
    DEVICE_OFFLINE = "device_offline"
    # The device refused the write, or it never left: nothing was written.
    WRITE_FAILED = "write_failed"
    # The write may or may not have reached the device (the connection dropped
    # mid-write, its answer came late, could not be read or did not say, or the
    # read-back failed): only reading the tag tells.
    OUTCOME_UNKNOWN = "outcome_unknown"
    BUSY = "busy"
    # The write arrived, or waited in the device's queue, past its deadline or its
    # expiry and was not written.
    EXPIRED = "expired"


def format_ts(ts: datetime) -> str:
    """UTC with milliseconds and a ``Z``, the normalised sample's timestamp format."""
    if ts.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_ts(text: object) -> datetime:
    if not isinstance(text, str):
        raise MalformedMessage(f"timestamp must be a string, got {text!r}")
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedMessage(f"bad timestamp {text!r}") from exc
    if ts.tzinfo is None:
        raise MalformedMessage(f"timestamp {text!r} has no time zone")
    return ts.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Sample:
    """One normalised reading of one tag (seed 000's internal format).

    A sample that is not good says why in ``reason`` (a :class:`QualityReason`;
    any other text from a newer publisher is kept as it is) and keeps the tag's
    last good ``value``, read at ``value_ts`` (``None``: at ``ts``, or never when
    ``value`` is ``None`` too). Its ``ts`` is when the quality was known, so each
    change of quality is a sample of its own.
    """

    tag: str
    value: TagValue
    quality: Quality
    unit: str
    ts: datetime
    reason: str = ""
    value_ts: datetime | None = None

    @property
    def lost_its_value(self) -> bool:
        """Whether the sample's ``null`` means a value its publisher does not know.

        A sample that is not good holds its tag's last good value; it has none only
        when its publisher has not read the tag good since it started (a restart
        while the device was away), so the value known before it is still the last
        one. A good ``null`` is a value. No publisher sends a ``null`` with a
        ``value_ts``: such a sample stands as sent.
        """
        return self.quality is not Quality.GOOD and self.value is None and self.value_ts is None

    def holding(self, previous: Sample) -> Sample:
        """This sample, holding ``previous``'s value if it lost its own (see above)."""
        if not self.lost_its_value or previous.value is None:
            return self
        return replace(self, value=previous.value, value_ts=previous.value_time)

    @property
    def value_time(self) -> datetime | None:
        """When ``value`` was read good; ``None`` when there is no value."""
        if self.value is None:
            return None
        return self.value_ts or self.ts

    def to_json(self, formatted_ts: str | None = None) -> dict[str, Any]:
        """The sample's JSON object; ``formatted_ts`` is its ``ts`` already formatted.

        ``reason`` and ``value_ts`` are written only when they say something, so a
        good sample has the shape it always had.
        """
        obj: dict[str, Any] = {
            "tag": self.tag,
            "value": self.value,
            "quality": self.quality.value,
            "unit": self.unit,
            "ts": formatted_ts or format_ts(self.ts),
        }
        if self.reason:
            obj["reason"] = self.reason
        if self.value_ts is not None and self.value_ts != self.ts:
            obj["value_ts"] = format_ts(self.value_ts)
        return obj

    @classmethod
    def from_json(cls, raw: object, shared_ts: tuple[str, datetime] | None = None) -> Sample:
        """The sample of a JSON object; ``shared_ts`` is a time text already parsed, and its
        value (a batch's, which most of its samples share: parsed once, not per sample)."""
        obj = _require_object(raw, "sample")
        value = obj.get("value")
        if value is not None and not isinstance(value, bool | int | float):
            raise MalformedMessage(f"sample value must be a number, bool or null: {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise MalformedMessage(f"sample value must be finite: {value!r}")
        try:
            quality = Quality(_require_str(obj, "quality"))
        except ValueError as exc:
            raise MalformedMessage(f"unknown quality {obj.get('quality')!r}") from exc
        value_ts = obj.get("value_ts")
        return cls(
            tag=_require_str(obj, "tag"),
            value=value,
            quality=quality,
            unit=_optional_str(obj, "unit"),
            ts=_parse_shared(obj.get("ts"), shared_ts),
            reason=_optional_str(obj, "reason"),
            value_ts=None if value_ts is None else parse_ts(value_ts),
        )


@dataclass(frozen=True, slots=True)
class TelemetryBatch:
    """What one supervisor publishes per poll cycle on ``plant.telemetry.<device>``."""

    device: str
    ts: datetime
    samples: tuple[Sample, ...]

    def encode(self) -> bytes:
        batch_ts = format_ts(self.ts)
        return _dump(
            {
                "schema": SCHEMA_VERSION,
                "device": self.device,
                "ts": batch_ts,
                # A poll's samples share the batch's time: formatted once, not per sample.
                "samples": [s.to_json(batch_ts if s.ts == self.ts else None) for s in self.samples],
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> TelemetryBatch:
        obj = _load(data)
        samples = obj.get("samples")
        if not isinstance(samples, list):
            raise MalformedMessage("'samples' must be a list")
        batch_ts = obj.get("ts")
        ts = parse_ts(batch_ts)
        shared = (batch_ts, ts) if isinstance(batch_ts, str) else None
        return cls(
            device=_require_str(obj, "device"),
            ts=ts,
            samples=tuple(Sample.from_json(s, shared) for s in samples),
        )


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """Connection state of one device, on ``plant.status.<device>``."""

    device: str
    state: ConnectionState
    ts: datetime
    detail: str = ""
    reconnects: int = 0

    def encode(self) -> bytes:
        return _dump(
            {
                "schema": SCHEMA_VERSION,
                "device": self.device,
                "state": self.state.value,
                "ts": format_ts(self.ts),
                "detail": self.detail,
                "reconnects": self.reconnects,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> DeviceStatus:
        obj = _load(data)
        try:
            state = ConnectionState(_require_str(obj, "state"))
        except ValueError as exc:
            raise MalformedMessage(f"unknown state {obj.get('state')!r}") from exc
        reconnects = obj.get("reconnects", 0)
        if not isinstance(reconnects, int) or isinstance(reconnects, bool):
            raise MalformedMessage("'reconnects' must be an integer")
        return cls(
            device=_require_str(obj, "device"),
            state=state,
            ts=parse_ts(obj.get("ts")),
            detail=_optional_str(obj, "detail"),
            reconnects=reconnects,
        )


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """A request on ``plant.write.<device>``.

    ``op`` is ``write`` (write ``value``, then read it back) or ``read`` (only
    read back: how the dispatcher settles a write whose outcome it lost).

    A write the dispatcher has stopped waiting for must never reach the PLC
    later, however long it was held up on the way. Two bounds say so:

    - ``deadline``: a wall-clock time (UTC) from which a supervisor refuses the
      write. The dispatcher sets it to when it stops waiting for the reply,
      less the clock skew it allows between its host and the supervisor's
      (:data:`DEFAULT_WRITE_CLOCK_SKEW`). So a request held back by a NATS
      outage (nats-py keeps what it publishes while reconnecting and sends it
      once the server is back) is refused, not written, even by a supervisor
      whose clock runs behind by up to that skew.
    - ``expires_in_ms``, counted from the supervisor's receipt: how long the
      write may wait in the device's queue, whatever the clocks say.
    """

    tag: str
    command_id: str
    op: str = "write"
    value: float | int | bool | None = None
    expires_in_ms: int | None = None
    deadline: datetime | None = None

    def past_deadline(self, now: datetime) -> bool:
        """Whether a supervisor whose clock reads ``now`` must refuse this write."""
        return self.deadline is not None and now >= self.deadline

    def encode(self) -> bytes:
        return _dump(
            {
                "schema": SCHEMA_VERSION,
                "op": self.op,
                "tag": self.tag,
                "command_id": self.command_id,
                "value": self.value,
                "expires_in_ms": self.expires_in_ms,
                "deadline": None if self.deadline is None else format_ts(self.deadline),
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> WriteRequest:
        obj = _load(data)
        op = obj.get("op", "write")
        if op not in ("write", "read"):
            raise MalformedMessage(f"unknown op {op!r}")
        value = obj.get("value")
        if op == "write" and (
            not isinstance(value, bool | int | float)
            or (isinstance(value, float) and not math.isfinite(value))
        ):
            raise MalformedMessage(f"write value must be a finite number or bool: {value!r}")
        expires = obj.get("expires_in_ms")
        if expires is not None and (
            isinstance(expires, bool) or not isinstance(expires, int) or expires <= 0
        ):
            raise MalformedMessage(f"expires_in_ms must be a positive integer: {expires!r}")
        deadline = obj.get("deadline")
        return cls(
            tag=_require_str(obj, "tag"),
            command_id=_optional_str(obj, "command_id"),
            op=op,
            value=value,
            expires_in_ms=expires,
            deadline=None if deadline is None else parse_ts(deadline),
        )


@dataclass(frozen=True, slots=True)
class WriteReply:
    """The supervisor's answer: the value read back after the write, or why not."""

    ok: bool
    tag: str
    read_back: TagValue = None
    error: str = ""
    kind: WriteErrorKind | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return _dump(
            {
                "schema": SCHEMA_VERSION,
                "ok": self.ok,
                "tag": self.tag,
                "read_back": self.read_back,
                "error": self.error,
                "kind": self.kind.value if self.kind else None,
                **self.extra,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> WriteReply:
        obj = _load(data)
        ok = obj.get("ok")
        if not isinstance(ok, bool):
            raise MalformedMessage("'ok' must be a boolean")
        kind_raw = obj.get("kind")
        try:
            kind = WriteErrorKind(kind_raw) if kind_raw is not None else None
        except ValueError as exc:
            raise MalformedMessage(f"unknown error kind {kind_raw!r}") from exc
        read_back = obj.get("read_back")
        if read_back is not None and not isinstance(read_back, bool | int | float):
            raise MalformedMessage(f"'read_back' must be a number or bool: {read_back!r}")
        return cls(
            ok=ok,
            tag=_optional_str(obj, "tag"),
            read_back=read_back,
            error=_optional_str(obj, "error"),
            kind=kind,
        )

    @classmethod
    def failure(cls, tag: str, kind: WriteErrorKind, error: str) -> WriteReply:
        return cls(ok=False, tag=tag, error=error, kind=kind)


class AlarmPriority(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class AlarmKind(StrEnum):
    HIHI = "hihi"
    HI = "hi"
    LO = "lo"
    LOLO = "lolo"
    DEVIATION = "deviation"
    DISCRETE = "discrete"
    RATE_OF_CHANGE = "rate_of_change"
    COMM_LOSS = "comm_loss"


@dataclass(frozen=True, slots=True)
class AlarmTransition:
    """A change of one alarm condition, as the device's supervisor evaluated it.

    ``active`` says whether the process condition now holds (after deadband and
    delays); ``suppressed`` whether the condition's suppression (by design, for
    example while the machine is stopped) holds now. A transition is sent when
    either changes. ``transition_id`` is unique per transition (made at the
    source), so a recorder that sees it twice records it once.
    """

    transition_id: str
    device: str
    condition: str  # unique within the device, e.g. "motor_temperature_hi"
    kind: AlarmKind
    priority: AlarmPriority
    area: str
    tag: str  # the tag the condition watches ("" for comm_loss)
    active: bool
    suppressed: bool
    latch: bool  # the condition is configured to latch: it stays latched until reset
    value: TagValue  # the value that decided it (None for comm_loss)
    limit: float | None  # the limit crossed, where the kind has one
    message: str
    ts: datetime

    def encode(self) -> bytes:
        return _dump(
            {
                "schema": SCHEMA_VERSION,
                "transition_id": self.transition_id,
                "device": self.device,
                "condition": self.condition,
                "kind": self.kind.value,
                "priority": self.priority.value,
                "area": self.area,
                "tag": self.tag,
                "active": self.active,
                "suppressed": self.suppressed,
                "latch": self.latch,
                "value": self.value,
                "limit": self.limit,
                "message": self.message,
                "ts": format_ts(self.ts),
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> AlarmTransition:
        obj = _load(data)
        try:
            kind = AlarmKind(str(obj.get("kind")))
            priority = AlarmPriority(str(obj.get("priority")))
        except ValueError as exc:
            raise MalformedMessage(str(exc)) from exc
        active, suppressed, latch = obj.get("active"), obj.get("suppressed"), obj.get("latch")
        if not all(isinstance(flag, bool) for flag in (active, suppressed, latch)):
            raise MalformedMessage("'active', 'suppressed' and 'latch' must be booleans")
        value = obj.get("value")
        if value is not None and not isinstance(value, bool | int | float):
            raise MalformedMessage(f"'value' must be a number, a bool or null: {value!r}")
        limit = obj.get("limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | float)):
            raise MalformedMessage(f"'limit' must be a number or null: {limit!r}")
        return cls(
            transition_id=_require_str(obj, "transition_id"),
            device=_require_str(obj, "device"),
            condition=_require_str(obj, "condition"),
            kind=kind,
            priority=priority,
            area=_optional_str(obj, "area"),
            tag=_optional_str(obj, "tag"),
            active=bool(active),
            suppressed=bool(suppressed),
            latch=bool(latch),
            value=value,
            limit=None if limit is None else float(limit),
            message=_optional_str(obj, "message"),
            ts=parse_ts(obj.get("ts")),
        )


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def _load(data: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedMessage(f"not JSON: {exc}") from exc
    obj = _require_object(obj, "message")
    schema = obj.get("schema")
    if schema != SCHEMA_VERSION:
        raise MalformedMessage(f"unsupported schema {schema!r}, expected {SCHEMA_VERSION}")
    return obj


def _parse_shared(text: object, shared: tuple[str, datetime] | None) -> datetime:
    if shared is not None and text == shared[0]:
        return shared[1]
    return parse_ts(text)


def _require_object(raw: object, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise MalformedMessage(f"{what} must be a JSON object")
    return raw


def _require_str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedMessage(f"{key!r} must be a non-empty string")
    return value


def _optional_str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedMessage(f"{key!r} must be a string")
    return value
