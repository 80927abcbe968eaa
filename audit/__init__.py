"""Auditing the event log: prove it whole, and read the record back.

- :mod:`audit.chain_check`: recompute the hash chain and classify any tampering.
- :mod:`audit.checkpoints`: Ed25519-signed checkpoints of the chain head, to a
  file and to NATS, so that a rewritten chain is caught against a copy kept elsewhere.
- :mod:`audit.export`: NDJSON exports with their chain proof, verified offline.
- :mod:`audit.progress`: progress with a rate and an estimate, on stderr.
- :mod:`audit.replay`, :mod:`audit.read_models`, :mod:`audit.timeline`: aggregates
  as they stood at a time, read models rebuilt and compared, command timelines.
"""
