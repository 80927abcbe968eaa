"""Read models built from the TELEMETRY stream.

Each projection is fed by its own durable JetStream consumer
(:mod:`projections.consumer`), so it resumes where it stopped, and writes
idempotently, so a redelivered message changes nothing:

- :mod:`projections.live_state`: the latest sample of every tag and every
  device's status, in Redis; read through :mod:`projections.live_reader`.
- :mod:`projections.history`: every sample, in the PostgreSQL ``samples`` table
  (:mod:`projections.history_schema`).

Projections may import ``domain``, nothing else of ours; they never know a PLC.
"""
