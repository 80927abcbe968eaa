"""Opens the event-sourced application on PostgreSQL, the one way every entry point does.

The runtime and the CLI both come through here, so whichever writes the first
event, the events table is already append-only (see :mod:`eventstore.guard`).
"""

from __future__ import annotations

from datetime import timedelta

from domain.application import DEFAULT_CONFIRM_WINDOW, PlantApplication
from domain.catalog import TagCatalog
from eventstore.guard import install_append_only_guard
from eventstore.postgres import event_store_env

EVENTS_TABLE = "plantapplication_events"


def open_application(
    database_url: str, catalog: TagCatalog, confirm_window: timedelta = DEFAULT_CONFIRM_WINDOW
) -> PlantApplication:
    """The application with its append-only events table. Blocking: call it off the event loop."""
    app = PlantApplication(
        catalog, env=event_store_env(database_url), confirm_window=confirm_window
    )
    try:
        install_append_only_guard(database_url, EVENTS_TABLE)
    except BaseException:
        app.close()
        raise
    return app
