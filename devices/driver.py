"""The contract every protocol driver fulfils for its supervisor.

A driver owns one connection to one device and moves *raw* values (see
:mod:`plantfile.tags`); scaling, timing, reconnecting and publishing are the
supervisor's. It never reconnects by itself and never knows NATS.

Failures are reported at two levels:

- a tag that cannot be read (an illegal address, an exception response, a
  timeout on a connection that stays up) comes back as a :class:`Reading` with
  ``Quality.BAD``, its reason logged, while the other tags of the batch are
  still read;
- a lost or refused connection raises
  :class:`~devices.device_errors.DeviceConnectionError` from any method.

``write`` raises :class:`~devices.device_errors.DeviceRequestError` only when
nothing was written for certain (the device refused, or the write was never
sent), and :class:`~devices.device_errors.WriteOutcomeUnknown` when the write
went out and no answer says what the device did with it (none in time, one that
cannot be read): the device may have applied it. See :mod:`devices.device_errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, NamedTuple, Protocol, TypeVar

from domain.messages import Quality
from plantfile.tags import RawValue, TagConfig


class Reading(NamedTuple):
    """One tag's raw value, ``None`` unless the quality is good."""

    value: RawValue | None
    quality: Quality


BAD_READING = Reading(None, Quality.BAD)


class Driver(Protocol):
    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None:
        """Open the connection; raises DeviceConnectionError when the device is unreachable."""

    async def close(self) -> None:
        """Close the connection; safe to call when it is already closed."""

    async def read(self, tags: Sequence[TagConfig]) -> dict[str, Reading]:
        """A reading for every tag, keyed by tag name."""

    async def write(self, tag: TagConfig, value: RawValue) -> None:
        """Write one raw value (already checked to fit the tag's type)."""


T = TypeVar("T", bound=TagConfig)


class TagIndex(Generic[T]):
    """A driver's own tags by name: the supervisor hands over protocol-neutral
    :class:`TagConfig` objects, the driver needs where each value lives."""

    def __init__(self, device: str, tags: Sequence[T]) -> None:
        self._device = device
        self._tags = {tag.name: tag for tag in tags}

    def __getitem__(self, tag: TagConfig) -> T:
        try:
            return self._tags[tag.name]
        except KeyError:
            raise KeyError(f"device {self._device} has no tag {tag.name!r}") from None

    def resolve(self, tags: Sequence[TagConfig]) -> list[T]:
        return [self[tag] for tag in tags]
