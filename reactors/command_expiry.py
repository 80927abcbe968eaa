"""Reacts to ChallengeIssued, ApprovalRequested, their answers, time; calls expire_command.

The expiry sweeper: records ``Expired`` for commands nobody answered in time.

A confirmation or approval that comes too late is refused (and recorded) by
the domain anyway; the sweeper makes sure that a command nobody answers also
ends in the event store, and so on every HMI's ``commandStatus``, soon after
its window closes.

It follows the event log (a :class:`~eventstore.log_tail.LogTail` follower).
A command waits for a person in one window at a time, and each window opens
with an event that carries its deadline (``expires_at``):

- ``ChallengeIssued``: the requester's confirmation (its second factor);
- ``ApprovalRequested``: a critical tag's second person, once the requester
  has signed. It is saved with that ``Confirmed`` and follows it in the log:
  the ``Confirmed`` closes the challenge's window, then the
  ``ApprovalRequested`` opens the approval's.

Each opening event puts the command and its deadline in a small pending set
(replacing any earlier window of the command); an event that ends the wait
removes it: ``Confirmed``, ``Approved``, ``ApprovalDeclined``, ``Cancelled``,
``Expired``, ``Rejected`` (the plant went read-only, the requester lost the
permission) and a final ``ConfirmationFailed``. A non-final failed code or a
refused approval (``ApprovalRefused``) leaves the window open. When a deadline
passes it calls ``expire_command``, which records ``Expired`` only if the
command still awaits a person past its deadline.

Its position is a tracking record (named ``expiry-sweeper`` by the runtime)
that never passes the opening event of a window still pending, so after a
restart the tail replays every window still open and the sweeper rebuilds its
pending set from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from eventsourcing.persistence import Notification

from domain.application import PlantApplication
from domain.command import ControlCommand
from domain.errors import DomainError
from eventstore.executor import TRANSIENT_STORE_ERRORS, StoreExecutor
from eventstore.notifications import event_topic, originator_uuid
from eventstore.tracking import PositionStore, TrackedFollower
from support.clock import utc_now

log = logging.getLogger(__name__)

# The events that open a window, each with its deadline ``expires_at``.
WINDOW_TOPICS = frozenset(
    event_topic(ControlCommand, name) for name in ("ChallengeIssued", "ApprovalRequested")
)
FAILED_TOPIC = event_topic(ControlCommand, "ConfirmationFailed")
# The events that end the wait of the window open (a final failure ends it too).
ANSWERED_TOPICS = frozenset(
    event_topic(ControlCommand, name)
    for name in (
        "Confirmed",
        "Approved",
        "ApprovalDeclined",
        "Cancelled",
        "Expired",
        "Rejected",
    )
)


@dataclass(frozen=True, slots=True)
class _Pending:
    expires_at: datetime
    notification_id: int


class ExpirySweeper(TrackedFollower):
    def __init__(
        self,
        app: PlantApplication,
        store_executor: StoreExecutor,
        position: PositionStore,
        *,
        clock: Callable[[], datetime] = utc_now,
        max_sleep: float = 1.0,
        retry_delay: float = 1.0,
    ) -> None:
        super().__init__(position, "sweeper")
        self._app = app
        self._store_executor = store_executor
        self._clock = clock
        self._max_sleep = max_sleep
        self._retry_delay = retry_delay
        self._pending: dict[UUID, _Pending] = {}

    @property
    def pending(self) -> frozenset[UUID]:
        return frozenset(self._pending)

    def deadline(self, command_id: UUID) -> datetime | None:
        """When the open window of a pending command closes; ``None`` if it is not pending."""
        pending = self._pending.get(command_id)
        return None if pending is None else pending.expires_at

    def follow(self, notification: Notification) -> None:
        command_id = originator_uuid(notification)
        # In log order: a critical command's Confirmed closes the challenge's window
        # before the ApprovalRequested saved with it opens the approval's.
        if notification.topic in WINDOW_TOPICS:
            self._open(command_id, notification)
        elif command_id in self._pending and self._answered(notification):
            self._forget(command_id)

    async def run(self) -> None:
        """Expire overdue commands and persist the position, until cancelled.

        Waits for the log tail to load this follower's position first.
        """
        await self._wait_loaded()
        while True:
            await self._sleep_until_due()
            try:
                await self._sweep()
                await self._tracked.save()
            except TRANSIENT_STORE_ERRORS as exc:
                log.warning("event store unavailable, retrying the sweep: %s", exc)
                await asyncio.sleep(self._retry_delay)

    async def _sweep(self) -> None:
        now = self._clock()
        due = [(cid, p) for cid, p in self._pending.items() if now > p.expires_at]
        for command_id, pending in due:
            try:
                expired = await self._store_executor.call(self._app.expire_command, command_id, now)
            except DomainError as exc:
                log.warning("command %s could not be expired: %s", command_id, exc)
                expired = False
            if expired:
                log.info("command %s expired unanswered", command_id)
            # Past its deadline and not expirable means it no longer awaits that answer.
            # But while the store was called, the tail may have delivered the command's
            # next window (confirmed just in time, now awaiting its approval): that one
            # is kept, it has a deadline of its own.
            if self._pending.get(command_id) is pending:
                self._forget(command_id)

    async def _sleep_until_due(self) -> None:
        self._news.clear()
        if self._pending:
            earliest = min(p.expires_at for p in self._pending.values())
            delay = (earliest - self._clock()).total_seconds()
            # A little past the deadline: the domain expires only strictly after it.
            delay = min(max(delay + 0.01, 0.0), self._max_sleep)
        else:
            delay = self._max_sleep
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._news.wait(), timeout=delay)

    def _open(self, command_id: UUID, notification: Notification) -> None:
        event = self._app.mapper.to_domain_event(notification)
        expires_at = getattr(event, "expires_at", None)
        if not isinstance(expires_at, datetime):
            log.error("window of command %s has no deadline: %s", command_id, notification.topic)
            return
        # A command waits in one window at a time: a new one replaces (and releases) the last.
        self._forget(command_id)
        self._pending[command_id] = _Pending(expires_at, notification.id)
        self._tracked.progress.hold(notification.id)

    def _answered(self, notification: Notification) -> bool:
        if notification.topic in ANSWERED_TOPICS:
            return True
        if notification.topic == FAILED_TOPIC:
            event = self._app.mapper.to_domain_event(notification)
            return bool(getattr(event, "final", False))
        return False

    def _forget(self, command_id: UUID) -> None:
        pending = self._pending.pop(command_id, None)
        if pending is not None:
            self._tracked.progress.release(pending.notification_id)
