from __future__ import annotations

import pytest

from simulators.model import PressModel


def test_speed_ramps_at_a_fixed_rate_and_holds_at_the_setpoint() -> None:
    press = PressModel(running=True, speed_setpoint=1200)
    press.step(1.0)
    assert press.speed == pytest.approx(press.ramp_rpm_per_second)
    for _ in range(10):
        press.step(1.0)
    assert press.speed == 1200


def test_stopping_ramps_down_to_zero() -> None:
    press = PressModel(running=False, speed_setpoint=1200, speed=200)
    press.step(1.0)
    assert press.speed == 0


def test_temperature_lags_toward_ambient_plus_load() -> None:
    press = PressModel(running=True, speed_setpoint=3000, speed=3000)
    equilibrium = press.ambient_celsius + press.heating_celsius_per_rpm * 3000
    press.step(press.thermal_time_constant_seconds)
    rise = equilibrium - press.ambient_celsius
    assert press.motor_temperature == pytest.approx(press.ambient_celsius + rise * 0.632, rel=1e-3)
    press.step(1000 * press.thermal_time_constant_seconds)
    assert press.motor_temperature == pytest.approx(equilibrium)


def test_the_counter_counts_whole_parts_only() -> None:
    press = PressModel(running=True, speed_setpoint=600, speed=600)  # 10 rev/s, 1 part/s
    press.step(0.5)
    assert press.produced_count == 0
    press.step(0.5)
    assert press.produced_count == 1
    press.step(9.0)
    assert press.produced_count == 10


def test_only_inputs_can_be_set() -> None:
    press = PressModel()
    press.set_input("running", True)
    press.set_input("speed_setpoint", 1500)
    assert (press.running, press.speed_setpoint) == (True, 1500.0)
    with pytest.raises(ValueError, match="not a writable input"):
        press.set_input("speed", 10)
