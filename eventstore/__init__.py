"""PostgreSQL persistence of the event-sourced domain, and what reads its log.

The eventsourcing library stores every domain event in one table per
application. This package configures the library from a database URL
(:mod:`eventstore.postgres`), runs its blocking calls off the event loop
(:mod:`eventstore.executor`), makes the events table append-only
(:mod:`eventstore.guard`) and hash-chained (:mod:`eventstore.chain`), reads
the notification log (:mod:`eventstore.notification_reader`), hands it to
followers with stored positions (:mod:`eventstore.log_tail`,
:mod:`eventstore.tracking`) and relays every event to NATS
(:mod:`eventstore.event_relay`). It may import ``support``, ``domain`` and
``plantfile``, nothing else of ours (``tests/unit/test_layering.py``).
"""
