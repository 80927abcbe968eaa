"""The device layer: talks to PLCs and turns their memory into normalised samples.

One :class:`~devices.supervisor.DeviceSupervisor` per device owns the device's
connection (a :class:`~devices.driver.Driver`, one module per protocol under
``devices/drivers/``), polls it at a steady cadence, scales raw values with the
tag definitions of :mod:`plantfile.tags`, and hands telemetry batches and status
to a ``TelemetrySink``. It also serves writes between polls on the same
connection, and evaluates alarm conditions at the source
(:mod:`devices.alarm_evaluator`). What the supervisors publish waits in an
outbox on disk (:mod:`devices.outbox`) until JetStream has stored it. Only
:mod:`devices.nats_bridge` knows NATS; drivers know only their protocol. The
plant file's models come from :mod:`plantfile`.
"""
