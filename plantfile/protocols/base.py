"""What every device of the plant file has, whatever its protocol."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from plantfile.alarm_conditions import CommLossAlarm, check_device_alarms
from plantfile.tags import TagConfig

# Device ids become NATS subject tokens (plant.telemetry.<device>): no dots, no wildcards.
DEVICE_ID_PATTERN = r"^[A-Za-z0-9_-]+$"


class DeviceConfig(BaseModel):
    """A device; each protocol's subclass adds ``protocol``, its connection block and tag type."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=DEVICE_ID_PATTERN)
    protocol: str  # each protocol's subclass narrows it to its name
    poll_seconds: float | None = Field(None, gt=0, description="overrides the plant's")
    reconnect_delay_seconds: float | None = Field(None, gt=0, description="overrides the plant's")
    reconnect_max_seconds: float | None = Field(None, gt=0, description="overrides the plant's")
    area: str = Field("", description="plant area, for alarms and permissions")
    simulate: bool = Field(
        False,
        description="served by a simulator of its protocol that plantcore runs (simulation mode)",
    )
    tags: Sequence[TagConfig] = Field(min_length=1)
    comm_loss_alarm: CommLossAlarm | None = Field(
        None, description="an alarm while the connection to the device is lost"
    )

    def tag(self, name: str) -> TagConfig | None:
        return next((tag for tag in self.tags if tag.name == name), None)

    @field_validator("reconnect_max_seconds")
    @classmethod
    def _max_not_below_delay(cls, longest: float | None, info: ValidationInfo) -> float | None:
        check_reconnect(info.data.get("reconnect_delay_seconds"), longest)
        return longest

    @model_validator(mode="after")
    def _unique_tags(self) -> Self:
        refuse_duplicates("tag name", (tag.name for tag in self.tags))
        return self

    @model_validator(mode="after")
    def _consistent_alarms(self) -> Self:
        check_device_alarms(self)
        return self


def check_reconnect(delay: float | None, longest: float | None) -> None:
    """Refuse a reconnect maximum shorter than the delay it grows from."""
    if delay is not None and longest is not None and longest < delay:
        raise ValueError(
            f"reconnect_max_seconds {longest:g} s is shorter than reconnect_delay_seconds"
            f" {delay:g} s: the delay only grows up to the maximum"
        )


def refuse_duplicates(what: str, names: Iterable[str]) -> None:
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ValueError(f"duplicate {what}: {', '.join(duplicates)}")
