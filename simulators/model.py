"""A small press: a motor that ramps to its setpoint, warms with load and counts parts.

Pure and deterministic: :meth:`PressModel.step` advances the state by ``dt``
seconds; the caller decides when (the Modbus server ticks it in real time,
tests step it directly).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from plantfile.tags import TagConfig, TagValue
from support.cancellation import raise_if_cancelling

INPUTS = ("running", "speed_setpoint")
COUNTER_WRAP = 2**31  # produced_count lives in an int32 register


@dataclass
class PressModel:
    running: bool = False
    speed_setpoint: float = 0.0  # rpm
    speed: float = 0.0  # rpm
    motor_temperature: float = 20.0  # °C
    produced_count: int = 0

    ramp_rpm_per_second: float = 300.0
    ambient_celsius: float = 20.0
    heating_celsius_per_rpm: float = 0.02  # 3000 rpm settles 60 °C above ambient
    thermal_time_constant_seconds: float = 30.0
    parts_per_revolution: float = 0.1
    _part_fraction: float = 0.0

    def step(self, dt: float) -> None:
        if dt <= 0:
            return
        target = self.speed_setpoint if self.running else 0.0
        max_change = self.ramp_rpm_per_second * dt
        self.speed += max(-max_change, min(max_change, target - self.speed))
        # First-order lag, exact for any dt: temperature never overshoots its equilibrium.
        equilibrium = self.ambient_celsius + self.heating_celsius_per_rpm * self.speed
        decay = math.exp(-dt / self.thermal_time_constant_seconds)
        self.motor_temperature = equilibrium + (self.motor_temperature - equilibrium) * decay
        parts = self._part_fraction + self.speed / 60.0 * dt * self.parts_per_revolution
        whole = math.floor(parts)
        self._part_fraction = parts - whole
        self.produced_count = (self.produced_count + whole) % COUNTER_WRAP

    def outputs(self) -> dict[str, TagValue]:
        """Every value the press exposes, by tag name."""
        return {
            "running": self.running,
            "speed_setpoint": self.speed_setpoint,
            "speed": self.speed,
            "motor_temperature": self.motor_temperature,
            "produced_count": self.produced_count,
        }

    def set_input(self, name: str, value: TagValue) -> None:
        """Apply an operator's write to one of :data:`INPUTS`."""
        if name == "running":
            self.running = bool(value)
        elif name == "speed_setpoint" and isinstance(value, int | float):
            self.speed_setpoint = float(value)
        else:
            raise ValueError(f"{name!r} is not a writable input of the press (value {value!r})")


@dataclass
class ReadCounter:
    """A value that counts the reads of it: each read answers the next number.

    Polled with a device's other tags, it gives each of the device's samples a
    sequence number, so a sample lost or stored twice on the way to the history
    shows as a gap or a repeat (the fault drills check both). It wraps like
    ``produced_count``, in an int32.
    """

    count: int = 0

    def read(self) -> int:
        self.count = (self.count + 1) % COUNTER_WRAP
        return self.count


T = TypeVar("T", bound=TagConfig)


@dataclass(frozen=True)  # no slots: a generic alias's call sets __orig_class__
class Point(Generic[T]):
    """One of the press's values as a protocol serves it: where it lives, and its first value."""

    tag: T
    initial: TagValue


def press_model(points: Iterable[Point[Any]]) -> PressModel:
    """A press whose writable inputs start at the points' first values."""
    model = PressModel()
    for point in points:
        if point.tag.writable:
            model.set_input(point.tag.name, point.initial)
    return model


async def tick_forever(
    model: PressModel, tick_seconds: float, after_step: Callable[[], Awaitable[None] | None]
) -> None:
    """Step ``model`` in real time every ``tick_seconds``, then call ``after_step``
    (which publishes the new outputs in the simulator's protocol), until cancelled."""
    last = time.monotonic()
    while True:
        raise_if_cancelling()  # publishing may have swallowed our cancel
        await asyncio.sleep(tick_seconds)
        now = time.monotonic()
        model.step(now - last)
        last = now
        published = after_step()
        if published is not None:
            await published
