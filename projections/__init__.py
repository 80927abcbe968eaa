"""Read models, built from the TELEMETRY stream or from the event log. They decide nothing.

Each resumes where it stopped (a durable JetStream consumer,
:mod:`projections.consumer`, or a tracked position on the event log) and
writes idempotently, so a redelivered message changes nothing:

- :mod:`projections.live_state`: the latest sample of every tag and every
  device's status, in Redis; read through :mod:`projections.live_reader`.
- :mod:`projections.history`: every sample (thinned per tag by
  :mod:`projections.history_filter`), in the PostgreSQL ``samples`` table
  (:mod:`projections.history_schema`), with its minute and hour rollups
  (:mod:`projections.rollups`); whole partitions past their retention are
  dropped by :mod:`projections.history_retention`.
- :mod:`projections.alarm_views`: the alarm read models, from the event log.
- :mod:`projections.command_metrics`: command figures, from the event log.

Projections may import ``support``, ``domain``, ``plantfile`` and
``eventstore``, nothing else of ours; they never know a PLC.
"""
