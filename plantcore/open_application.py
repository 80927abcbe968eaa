"""Opens the event-sourced application on PostgreSQL, the one way every entry point does.

The runtime and the CLI both come through here, so whichever writes the first
event, the events table is already append-only (see :mod:`eventstore.guard`).
"""

from __future__ import annotations

from domain.application import CommandPolicy, PlantApplication
from domain.catalog import TagCatalog
from domain.operator import LoginPolicy
from eventstore.chain import install_hash_chain
from eventstore.guard import install_append_only_guard
from eventstore.postgres import event_store_env

EVENTS_TABLE = "plantapplication_events"


def open_application(
    database_url: str,
    catalog: TagCatalog,
    *,
    plant_id: str = "plant",
    command_policy: CommandPolicy | None = None,
    login_policy: LoginPolicy | None = None,
) -> PlantApplication:
    """The application with its append-only events table. Blocking: call it off the event loop."""
    app = PlantApplication(
        catalog,
        env=event_store_env(database_url),
        command_policy=command_policy,
        plant_id=plant_id,
        login_policy=login_policy,
    )
    try:
        install_append_only_guard(database_url, EVENTS_TABLE)
        install_hash_chain(database_url, EVENTS_TABLE)
    except BaseException:
        app.close()
        raise
    return app


def open_reader(
    database_url: str, catalog: TagCatalog, *, plant_id: str = "plant"
) -> PlantApplication:
    """The application for reading the record only (``plantcore audit replay``, ``timeline``).

    It creates no table and installs nothing, so a role with ``SELECT`` alone
    can use it; anything it would write is refused by the database.
    """
    env = {**event_store_env(database_url), "CREATE_TABLE": "n"}
    return PlantApplication(catalog, env=env, plant_id=plant_id)
