"""Alarm conditions, declared in the plant file and evaluated at the source.

:mod:`devices.alarms.conditions` holds the plant file's models (a tag's
``alarms:``, a device's ``comm_loss_alarm``) and their checks;
:mod:`devices.alarms.evaluator` turns a device's telemetry and connection
state into :class:`~domain.messages.AlarmTransition` messages, which the
device's supervisor publishes on ``plant.alarms.<device>``.

Only the models are imported here: the tag and device models depend on them,
and the evaluator depends on those models.
"""

from devices.alarms.conditions import AlarmCondition, CommLossAlarm, SuppressWhen

__all__ = ["AlarmCondition", "CommLossAlarm", "SuppressWhen"]
