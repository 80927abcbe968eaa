"""The plant's decisions: aggregates, their events and the use cases that drive them.

- :mod:`domain.errors`: the one tree of errors the domain raises.
- :mod:`domain.bounds`: how long each text a user sends may be, and what a
  refusal keeps of it.
- :mod:`domain.catalog`: which tags exist and what may be written to them.
- :mod:`domain.command`: the ``ControlCommand`` aggregate (request, second
  factor, dispatch, outcome).
- :mod:`domain.operator`: the ``Operator`` aggregate (identity, credentials,
  last TOTP step used).
- :mod:`domain.application`: ``PlantApplication``, the use cases on top of the
  eventsourcing library's event store.
- :mod:`domain.messages`: the NATS wire contracts shared by every side.

The package is pure: no network, no SQL, no NATS, no environment. Time and the
acting user are passed in and stamped on every event; persistence is whatever
the composition root configures (the in-memory store when it configures none).
"""
