"""PostgreSQL persistence of the event-sourced domain.

The eventsourcing library stores every domain event in one table per
application. This package configures the library from a database URL
(:mod:`eventstore.postgres`), runs its blocking calls off the event loop
(:mod:`eventstore.executor`) and makes the events table append-only
(:mod:`eventstore.guard`). It may import ``domain``, nothing else of ours.
"""
