"""What a notification of the log names: its event's stored topic and its aggregate's id."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic


def originator_uuid(notification: Notification) -> UUID:
    """The originator id as a UUID (the PostgreSQL recorder's type; text ids are parsed)."""
    originator_id = notification.originator_id
    return originator_id if isinstance(originator_id, UUID) else UUID(originator_id)


def event_topic(aggregate: type, event_name: str) -> str:
    """The stored topic of an aggregate's nested event class, e.g. ``ControlCommand.Confirmed``."""
    return f"{get_topic(aggregate)}.{event_name}"
