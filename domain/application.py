"""PlantApplication: the use cases, each one "load, let the aggregate decide, save".

Every method takes the time (``at``, timezone-aware) and the acting user from
its caller and answers with a result or a :class:`~domain.errors.DomainError`.
A refusal that must stay on record (a rejected request, a failed or late
confirmation) is saved first and raised afterwards.

A command passes the whole safety chain here, in this order, and each refusal
is a ``Rejected`` event with its reason: its size (``input_too_large``, see
:mod:`domain.bounds`), the requester's permission on the device
(``forbidden``), the plant mode (``read_only``, ``simulation_mode``), the rate
limit (``rate_limited``, not for emergency actions), then the tag's
own contract. Permission and mode are checked again when the write is released
(the requester's confirmation, or the second person's approval of a critical
tag), because either can change while a command waits.

Operators, logins, sessions and the plant mode are in :mod:`domain.access`;
enrolling and recovering the second factor in :mod:`domain.enrolment`.

Wrong codes count twice: against the command (its requester has three
attempts, the third wrong one ends it) and against the person who gave them,
on every command, in a sliding window (:mod:`domain.second_factor`). An
approver's wrong code counts against the approver only: a second person
cannot end someone else's command by guessing.

Alarms, the floods of their areas, operators and the operator directory are
snapshotted every 50 events: a long-lived alarm (years of Raised and Cleared),
operator (years of logins) or directory (every failed login of an unknown name)
loads from its latest snapshot and the events after it, once that snapshot
was found to agree with its events (:mod:`domain.checked_snapshots`).

Persistence is the eventsourcing library's, chosen by ``env`` alone: with no
``env`` it is the in-memory store (unit tests); the composition root passes
the PostgreSQL settings. Unlike the library's default, the process
environment is never read here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import DomainEvent
from eventsourcing.utils import Environment

from domain.alarm import SYSTEM, Alarm, AlarmState
from domain.alarm import alarm_id as derive_alarm_id
from domain.alarm_cache import AlarmCache
from domain.alarm_flood import AlarmFlood, flood_id
from domain.bounds import MAX_ID_LENGTH, MAX_TEXT_LENGTH, check_length, clipped, oversized_request
from domain.catalog import TagCatalog
from domain.checked_snapshots import BatchReads, CheckedSnapshots
from domain.command import (
    CONFIRMATION_METHOD,
    EMERGENCY_METHOD,
    REJECTION_REASONS,
    CommandStatus,
    ConfirmationFailure,
    ControlCommand,
    RejectionReason,
)
from domain.enrolment import EnrolmentUseCases
from domain.errors import (
    AlarmNotFound,
    CommandClosed,
    CommandNotFound,
    CommandRefused,
    ConfirmationRefused,
    ConfirmationTooLate,
    DispatchTooLate,
    Forbidden,
    InvalidWrite,
    SecondFactorRefused,
    SecondPersonRequired,
)
from domain.history_retention import HistoryPartition
from domain.messages import AlarmTransition
from domain.operator import LoginPolicy, Operator
from domain.operator_directory import OperatorDirectory
from domain.permissions import Action, is_allowed
from domain.plant_configuration import DevicesChange, PlantConfiguration, configuration_id
from domain.plant_mode import Mode
from domain.second_factor import command_target
from domain.time import retry_on_conflict, utc

AggregateT = TypeVar("AggregateT", Alarm, AlarmFlood)

DEFAULT_CONFIRM_WINDOW = timedelta(seconds=30)
# How long a critical write waits for its second person once the requester has signed.
DEFAULT_APPROVAL_WINDOW = timedelta(minutes=5)
# Commands per minute per user (seed 000): a guard against human error, not a quota.
DEFAULT_COMMAND_RATE_LIMIT = 5
# A write released this long ago and still not dispatched (a crash, a database
# outage, a restart in between) is stale: the operator no longer expects it.
DEFAULT_DISPATCH_WINDOW = timedelta(seconds=10)
# The longest an operator may shelve an alarm: a shelved alarm must come back on its own.
DEFAULT_MAX_SHELVE = timedelta(hours=8)


@dataclass(frozen=True)
class CommandTicket:
    """What the requester needs to answer the challenge in time."""

    command_id: UUID
    challenge: str
    expires_at: datetime


@dataclass(frozen=True)
class AlarmChange:
    """What one batch of transitions did to one alarm: its new state and the events recorded."""

    alarm_id: UUID
    device: str
    condition: str
    state: AlarmState
    events: tuple[str, ...]


@dataclass(frozen=True)
class CommandPolicy:
    """The limits of the command chain, from the settings."""

    confirm_window: timedelta = DEFAULT_CONFIRM_WINDOW
    approval_window: timedelta = DEFAULT_APPROVAL_WINDOW
    rate_limit: int = DEFAULT_COMMAND_RATE_LIMIT
    # A released command must be dispatched within this, or it expires unwritten.
    dispatch_window: timedelta = DEFAULT_DISPATCH_WINDOW


class PlantApplication(CheckedSnapshots, EnrolmentUseCases):
    snapshotting_intervals = {Alarm: 50, AlarmFlood: 50, Operator: 50, OperatorDirectory: 50}

    def __init__(
        self,
        catalog: TagCatalog,
        env: Mapping[str, str] | None = None,
        command_policy: CommandPolicy | None = None,
        max_shelve: timedelta = DEFAULT_MAX_SHELVE,
        plant_id: str = "plant",
        login_policy: LoginPolicy | None = None,
        batch_reads: BatchReads | None = None,
    ) -> None:
        self.catalog = catalog
        self.batch_reads = batch_reads
        self.command_policy = command_policy or CommandPolicy()
        self.max_shelve = max_shelve
        self.plant_id = plant_id
        self.login_policy = login_policy or LoginPolicy()
        super().__init__(env)

    def construct_env(self, name: str, env: Mapping[str, str] | None = None) -> Environment:
        # The library merges os.environ in here; the domain takes its settings from
        # the composition root only, so a stray variable can never redirect the store.
        # Overriding it also skips the library's switch that turns snapshots on for
        # ``snapshotting_intervals``, so that is done here.
        settings = {"IS_SNAPSHOTTING_ENABLED": "y"} if self.snapshotting_intervals else {}
        return Environment(name, {**settings, **(env or {})})

    # -- the plant's configuration ------------------------------------------------------------

    def record_plant_configuration(
        self,
        *,
        plant_id: str,
        devices: Mapping[str, str],
        source: str,
        problems: Sequence[str],
        actor: str,
        at: datetime,
    ) -> DevicesChange | None:
        """Record the devices now run (id → configuration fingerprint), if anything changed."""
        at = utc(at)
        try:
            configuration: PlantConfiguration = self.repository.get(configuration_id(plant_id))
        except AggregateNotFoundError:
            configuration = PlantConfiguration(plant_id=plant_id, actor=actor, at=at)
        change = configuration.record(
            devices=devices, source=source, problems=problems, actor=actor, at=at
        )
        self.save(configuration)
        return change

    def record_history_partition_dropped(
        self,
        *,
        table: str,
        partition: str,
        start: datetime,
        end: datetime,
        rows: int,
        retention_days: int,
        at: datetime,
    ) -> UUID:
        """Record that the retention policy dropped ``partition`` of ``table``; its record's id."""
        dropped = HistoryPartition(
            table=table,
            partition=partition,
            start=utc(start),
            end=utc(end),
            rows=rows,
            retention_days=retention_days,
            actor=SYSTEM,
            at=utc(at),
        )
        self.save(dropped)
        return dropped.id

    def plant_configuration(self, plant_id: str) -> PlantConfiguration | None:
        try:
            configuration: PlantConfiguration = self.repository.get(configuration_id(plant_id))
        except AggregateNotFoundError:
            return None
        return configuration

    # -- commands ----------------------------------------------------------------------------

    def request_command(
        self,
        *,
        actor: str,
        device: str,
        tag: str,
        value: object,
        at: datetime,
        recent_requests: int | None = 0,
    ) -> CommandTicket:
        """Record the request, then its rejection, its challenge or its emergency release.

        ``recent_requests`` is how many commands ``actor`` asked for in the last
        minute, this one included (the API counts them across its processes);
        ``None`` when it could not be counted: ordinary commands are then refused,
        emergency actions are not (they are never rate-limited).
        """
        at = utc(at)
        operator = self.get_operator(actor)
        oversized = oversized_request(device, tag, value)
        if oversized is not None:
            self._refuse_oversized_request(actor, device, tag, value, oversized, at)
        checked: float | int | bool | None = None
        contract: tuple[RejectionReason, str] | None = None
        try:
            checked = self.catalog.check_write(device, tag, value)
        except InvalidWrite as invalid:
            contract = (REJECTION_REASONS[type(invalid)], str(invalid))
        emergency = checked is not None and self.catalog.lookup(device, tag).is_emergency(checked)
        command = ControlCommand.request(
            device=device, tag=tag, value=value if checked is None else checked, actor=actor, at=at
        )
        refusal = self._policy_refusal(operator, device, Action.REQUEST_COMMAND, emergency)
        if refusal is None and not emergency:
            refusal = self._rate_refusal(recent_requests)
        refusal = refusal or contract
        if refusal is not None:
            reason, detail = refusal
            command.reject(reason=reason, detail=detail, actor=actor, at=at)
            self.save(command)
            raise CommandRefused(command.id, reason, detail)
        if emergency:
            command.authorize_emergency(signer_name=operator.full_name, actor=actor, at=at)
            self.save(command)
            return CommandTicket(command.id, EMERGENCY_METHOD, at)
        expires_at = at + self.command_policy.confirm_window
        command.issue_challenge(expires_at=expires_at, actor=actor, at=at)
        self.save(command)
        return CommandTicket(command.id, CONFIRMATION_METHOD, expires_at)

    def _refuse_oversized_request(
        self, actor: str, device: str, tag: str, value: object, detail: str, at: datetime
    ) -> NoReturn:
        """Record a request too large to decide on as rejected, cut to size (ADR 0002, 0022)."""
        command = ControlCommand.request(
            device=clipped(device, MAX_ID_LENGTH),
            tag=clipped(tag, MAX_ID_LENGTH),
            value=value,
            actor=actor,
            at=at,
        )
        reason = RejectionReason.INPUT_TOO_LARGE
        command.reject(reason=reason, detail=detail, actor=actor, at=at)
        self.save(command)
        raise CommandRefused(command.id, reason, detail)

    @retry_on_conflict
    def confirm_command(
        self, *, actor: str, command_id: UUID, totp_step: int | None, at: datetime
    ) -> ControlCommand:
        """Answer the challenge; ``totp_step`` is ``None`` when the code was wrong.

        The API verifies the TOTP code against the operator's secret and passes
        the time step it matched; the domain decides whether that step may
        still be used, and counts failures. A critical tag's command then waits
        for a second person's approval instead of being released.
        """
        at = utc(at)
        command = self.get_command(command_id)
        command.check_confirmable(actor)
        if self._expire_if_overdue(command, actor, at):
            raise ConfirmationTooLate(command_id)
        operator = self._answering_operator(command, actor, Action.REQUEST_COMMAND, at)
        self._spend_code(command, operator, totp_step, at)
        critical = self.catalog.lookup(command.device, command.tag).critical
        command.confirm(
            signer_name=operator.full_name,
            approval_until=at + self.command_policy.approval_window if critical else None,
            actor=actor,
            at=at,
        )
        # One atomic save: the step is spent if and only if the command is confirmed.
        self.save(command, operator)
        return command

    @retry_on_conflict
    def approve_command(
        self, *, actor: str, command_id: UUID, totp_step: int | None, at: datetime
    ) -> ControlCommand:
        """A second person's signed approval of a critical write, which releases it."""
        at = utc(at)
        command = self._command_to_approve(command_id, actor, at)
        operator = self._answering_operator(command, actor, Action.APPROVE_COMMAND, at)
        self._spend_code(command, operator, totp_step, at)
        command.approve(signer_name=operator.full_name, actor=actor, at=at)
        self.save(command, operator)
        return command

    @retry_on_conflict
    def decline_command(
        self, *, actor: str, command_id: UUID, reason: str, at: datetime
    ) -> ControlCommand:
        """The second person refuses a critical write: it ends without being written."""
        check_length("reason", reason, MAX_TEXT_LENGTH)
        at = utc(at)
        command = self._command_to_approve(command_id, actor, at)
        self._answering_operator(command, actor, Action.APPROVE_COMMAND, at)
        command.decline(reason=reason.strip() or "declined", actor=actor, at=at)
        self.save(command)
        return command

    @retry_on_conflict
    def cancel_command(self, *, actor: str, command_id: UUID, at: datetime) -> None:
        at = utc(at)
        command = self.get_command(command_id)
        command.check_cancellable(actor)
        if self._expire_if_overdue(command, actor, at):
            raise CommandClosed(command_id, command.status)
        command.cancel(actor=actor, at=at)
        self.save(command)

    @retry_on_conflict
    def expire_command(self, command_id: UUID, at: datetime, actor: str = "system") -> bool:
        """Record ``Expired`` if the command still awaits a person past its deadline."""
        at = utc(at)
        return self._expire_if_overdue(self.get_command(command_id), actor, at)

    @retry_on_conflict
    def record_dispatch(
        self, command_id: UUID, at: datetime, actor: str = "dispatcher"
    ) -> ControlCommand:
        """Record that the command's write leaves now, if it still may; the command to write.

        The write is only sent once this has returned: every reason not to send it
        is decided here, on the command as stored now, not as the dispatcher
        loaded it. Raises:

        - :class:`~domain.errors.InvalidTransition` or
          :class:`~domain.errors.CommandClosed` when it is no longer released
          (cancelled, rejected, or dispatched by another dispatcher since);
        - :class:`~domain.errors.DispatchTooLate`, recorded as ``Expired``
          (``not_dispatched``), when it was released longer than the dispatch
          window ago (a crash, a database outage or a restart in between);
        - :class:`~domain.errors.CommandRefused`, recorded as ``Rejected``, when
          the plant mode, or the permission of whoever released it, no longer
          allows the write.
        """
        at = utc(at)
        command = self.get_command(command_id)
        command.check_dispatchable()
        window = self.command_policy.dispatch_window
        if command.is_stale(at, window):
            command.expire_undispatched(dispatch_window=window, actor=actor, at=at)
            self.save(command)
            raise DispatchTooLate(command.id, window)
        refusal = self._dispatch_refusal(command)
        if refusal is not None:
            reason, detail = refusal
            command.reject(reason=reason, detail=detail, actor=actor, at=at)
            self.save(command)
            raise CommandRefused(command.id, reason, detail)
        command.dispatch(actor=actor, at=at)
        self.save(command)
        return command

    def _dispatch_refusal(self, command: ControlCommand) -> tuple[RejectionReason, str] | None:
        """Why the plant refuses this released write now: its mode, or a signer's permission."""
        requester = self.get_operator(command.requested_by)
        refusal = self._policy_refusal(
            requester, command.device, Action.REQUEST_COMMAND, command.emergency
        )
        if refusal is None and command.approved_by is not None:
            approver = self.get_operator(command.approved_by)
            refusal = self._policy_refusal(approver, command.device, Action.APPROVE_COMMAND)
        return refusal

    @retry_on_conflict
    def record_write_succeeded(
        self,
        command_id: UUID,
        read_back: float | int | bool | None,
        at: datetime,
        actor: str = "dispatcher",
    ) -> None:
        command = self.get_command(command_id)
        command.write_succeeded(read_back=read_back, actor=actor, at=utc(at))
        self.save(command)

    @retry_on_conflict
    def record_write_failed(
        self, command_id: UUID, reason: str, at: datetime, actor: str = "dispatcher"
    ) -> None:
        command = self.get_command(command_id)
        command.write_failed(reason=reason, actor=actor, at=utc(at))
        self.save(command)

    def get_command(self, command_id: UUID) -> ControlCommand:
        try:
            command: object = self.repository.get(command_id)
        except AggregateNotFoundError:
            raise CommandNotFound(command_id) from None
        # Another aggregate's id (an operator's) is not a command either.
        if not isinstance(command, ControlCommand):
            raise CommandNotFound(command_id)
        return command

    def command_events(self, command_id: UUID, after_version: int = 0) -> list[DomainEvent]:
        """The command's stored events after ``after_version``, oldest first (empty if none)."""
        # Every event of a ControlCommand is an aggregate event, hence a DomainEvent.
        return cast(list[DomainEvent], list(self.events.get(command_id, gt=after_version)))

    def _expire_if_overdue(self, command: ControlCommand, actor: str, at: datetime) -> bool:
        """Record ``Expired`` (and save it) if the command's window has closed."""
        if not command.is_overdue(at):
            return False
        command.expire(actor=actor, at=at)
        self.save(command)
        return True

    def _policy_refusal(
        self, operator: Operator, device: str, action: Action, emergency: bool = False
    ) -> tuple[RejectionReason, str] | None:
        """Why the plant refuses ``operator`` this command now, or ``None``."""
        info = self.catalog.device_info(device)
        if not (
            operator.enabled
            and is_allowed(operator.roles, operator.scopes, action, device=device, area=info.area)
        ):
            return RejectionReason.FORBIDDEN, f"{operator.username!r} may not {action} on {device}"
        mode = self.plant_mode()
        if mode is Mode.READ_ONLY:
            kind = "emergency action" if emergency else "command"
            return RejectionReason.READ_ONLY, f"the plant is read-only: no {kind} is accepted"
        if mode is Mode.SIMULATION and not info.simulated:
            return (
                RejectionReason.SIMULATION_MODE,
                f"the plant is in simulation mode and {device} is a real device",
            )
        return None

    def _rate_refusal(self, recent_requests: int | None) -> tuple[RejectionReason, str] | None:
        if recent_requests is None:
            return RejectionReason.RATE_LIMITED, "the commands of the last minute cannot be counted"
        if recent_requests > self.command_policy.rate_limit:
            return (
                RejectionReason.RATE_LIMITED,
                f"more than {self.command_policy.rate_limit} commands in one minute",
            )
        return None

    def _answering_operator(
        self, command: ControlCommand, actor: str, action: Action, at: datetime
    ) -> Operator:
        """The operator answering ``command``, once the plant still allows its write.

        Permission and mode may have changed since the request: if the command
        can no longer go ahead it is rejected (recorded) and the refusal raised.
        A would-be approver without permission is recorded and refused, and the
        command waits on for someone who has it.
        """
        operator = self.get_operator(actor)
        refusal = self._policy_refusal(operator, command.device, action, command.emergency)
        if refusal is None:
            return operator
        reason, detail = refusal
        if action is Action.APPROVE_COMMAND and reason is RejectionReason.FORBIDDEN:
            command.refuse_approval(reason=reason.value, actor=actor, at=at)
            self.save(command)
            raise Forbidden(actor, action.value, command.device)
        command.reject(reason=reason, detail=detail, actor=actor, at=at)
        self.save(command)
        raise CommandRefused(command.id, reason, detail)

    def _command_to_approve(self, command_id: UUID, actor: str, at: datetime) -> ControlCommand:
        """The command awaiting ``actor``'s approval, with its requester still allowed to ask.

        A closed window is recorded as such first, whoever answers late.
        """
        command = self.get_command(command_id)
        if self._expire_if_overdue(command, actor, at):
            raise ConfirmationTooLate(command_id)
        try:
            command.check_approvable(actor)
        except SecondPersonRequired:
            # Trying to approve one's own critical write is worth a line in the record.
            command.refuse_approval(reason="requester", actor=actor, at=at)
            self.save(command)
            raise
        # The requester may have been disabled or lost the scope while the command waited.
        requester = self.get_operator(command.requested_by)
        refusal = self._policy_refusal(requester, command.device, Action.REQUEST_COMMAND)
        if refusal is not None:
            reason, detail = refusal
            command.reject(reason=reason, detail=detail, actor=actor, at=at)
            self.save(command)
            raise CommandRefused(command.id, reason, detail)
        return command

    def _spend_code(
        self, command: ControlCommand, operator: Operator, totp_step: int | None, at: datetime
    ) -> None:
        """Use the matched TOTP step, or record the refusal and raise it.

        A person whose second factor is locked is refused before their code is
        looked at, and the command is left as it was.
        """
        refusal = operator.answer_second_factor(
            totp_step, target=command_target(command.id), policy=self.second_factor_policy, at=at
        )
        if refusal is None:
            return
        if not isinstance(refusal, SecondFactorRefused):
            self.save(operator)
            raise refusal
        reason, actor = ConfirmationFailure(refusal.reason), operator.username
        if command.status is CommandStatus.AWAITING_APPROVAL:
            # On the record, but the requester's attempts are not the approver's to spend.
            command.refuse_approval(reason=reason.value, actor=actor, at=at)
        else:
            command.fail_confirmation(reason=reason, actor=actor, at=at)
        self.save(command, operator)
        raise ConfirmationRefused(command.id, reason, command.attempts_left, refusal.codes_left)

    # -- alarms ------------------------------------------------------------------------------

    @retry_on_conflict
    def record_alarm_transitions(
        self,
        transitions: Sequence[AlarmTransition],
        at: datetime,
        cache: AlarmCache | None = None,
    ) -> list[AlarmChange]:
        """Record a burst of source transitions, in order, with one atomic save.

        Each alarm is taken from ``cache`` or loaded (all those of the batch
        with one batched load), or defined, once, and applies its transitions
        in order; the floods of the areas concerned count the activations. All
        of it is saved together, so a batch is recorded entirely or not at all
        and a recorder that crashes before acking can simply deliver it again.
        A transition's time is its source time, never later than ``at``.

        The aggregates saved are kept in ``cache`` for the next batch; those of
        a batch that fails (a conflict among them) are forgotten, so that its
        retry loads them afresh (see :mod:`domain.alarm_cache`).
        """
        cache = AlarmCache(capacity=0) if cache is None else cache
        involved: list[UUID] = []
        try:
            alarms, floods, changes = self._record_alarm_batch(
                transitions, utc(at), cache, involved
            )
        except BaseException:
            cache.forget(involved)
            raise
        cache.keep([*alarms, *floods])
        return changes

    def _record_alarm_batch(
        self,
        transitions: Sequence[AlarmTransition],
        now: datetime,
        cache: AlarmCache,
        involved: list[UUID],
    ) -> tuple[list[Alarm], list[AlarmFlood], list[AlarmChange]]:
        """The batch decided and saved: its alarms, its floods and what changed."""
        keys = [derive_alarm_id(t.device, t.condition) for t in transitions]
        involved.extend(dict.fromkeys(keys))
        alarms = self._cached_or_loaded(keys, cache, Alarm)
        activations: dict[str, list[datetime]] = defaultdict(list)
        for key, transition in zip(keys, transitions, strict=True):
            seen_at = min(utc(transition.ts), now)
            alarm = alarms.get(key)
            if alarm is None:
                if not Alarm.worth_defining(transition):
                    continue
                alarm = alarms[key] = Alarm.define(transition, seen_at)
            recorded = alarm.record(transition, seen_at)
            if "Raised" in recorded and alarm.annunciated:
                activations[alarm.area].append(seen_at)
        changed = [alarm for alarm in alarms.values() if alarm.pending_events]
        for alarm in changed:
            alarm.catch_up(now)
        areas = sorted({a.area for a in changed})
        involved.extend(flood_id(area) for area in areas)
        floods = self._count_activations(areas, activations, now, cache)
        # Saving drains the pending events: read them first.
        changes = [_alarm_change(alarm) for alarm in changed]
        self.save(*changed, *floods)
        return list(alarms.values()), floods, changes

    def _cached_or_loaded(
        self, keys: Sequence[UUID], cache: AlarmCache, kind: type[AggregateT]
    ) -> dict[UUID, AggregateT]:
        """Those of these ids that exist as ``kind``: kept ones, then one batched load."""
        found: dict[UUID, AggregateT] = {}
        missing: list[UUID] = []
        for key in dict.fromkeys(keys):
            kept = cache.get(key, kind)
            if kept is None:
                missing.append(key)
            else:
                found[key] = kept
        loaded = self.checked_repository.get_many(missing) if missing else {}
        for key, aggregate in loaded.items():
            # Another aggregate's id (a command's) is not an alarm or a flood either.
            if isinstance(aggregate, kind):
                found[key] = aggregate
        return found

    @retry_on_conflict
    def acknowledge_alarm(self, *, alarm_id: UUID, actor: str, comment: str, at: datetime) -> Alarm:
        check_length("comment", comment, MAX_TEXT_LENGTH)
        return self._act_on_alarm(
            alarm_id, at, lambda alarm, now: alarm.acknowledge(actor=actor, comment=comment, at=now)
        )

    @retry_on_conflict
    def shelve_alarm(
        self, *, alarm_id: UUID, actor: str, reason: str, duration: timedelta, at: datetime
    ) -> Alarm:
        """Hide the alarm for ``duration``, at most ``max_shelve``; it returns by itself."""
        check_length("reason", reason, MAX_TEXT_LENGTH)
        longest = self.max_shelve
        return self._act_on_alarm(
            alarm_id,
            at,
            lambda alarm, now: alarm.shelve(
                actor=actor, reason=reason, duration=duration, longest=longest, at=now
            ),
        )

    @retry_on_conflict
    def unshelve_alarm(self, *, alarm_id: UUID, actor: str, at: datetime) -> Alarm:
        return self._act_on_alarm(
            alarm_id, at, lambda alarm, now: alarm.unshelve(actor=actor, at=now)
        )

    @retry_on_conflict
    def unshelve_if_due(self, alarm_id: UUID, at: datetime) -> bool:
        """Record the automatic ``Unshelved`` (actor ``system``) if the shelve ran out by ``at``."""
        return self._record_if_due(alarm_id, lambda alarm: alarm.unshelve_if_due(utc(at)))

    @retry_on_conflict
    def end_alarm_chattering_if_quiet(self, alarm_id: UUID, at: datetime) -> bool:
        """Record ``ChatteringEnded`` if a quiet minute completed by ``at`` (for a sweeper)."""
        return self._record_if_due(alarm_id, lambda alarm: alarm.end_chattering_if_quiet(utc(at)))

    @retry_on_conflict
    def remove_alarm_from_service(
        self, *, alarm_id: UUID, actor: str, reason: str, at: datetime
    ) -> Alarm:
        check_length("reason", reason, MAX_TEXT_LENGTH)
        return self._act_on_alarm(
            alarm_id,
            at,
            lambda alarm, now: alarm.remove_from_service(actor=actor, reason=reason, at=now),
        )

    @retry_on_conflict
    def return_alarm_to_service(self, *, alarm_id: UUID, actor: str, at: datetime) -> Alarm:
        return self._act_on_alarm(
            alarm_id, at, lambda alarm, now: alarm.return_to_service(actor=actor, at=now)
        )

    @retry_on_conflict
    def reset_alarm_latch(self, *, alarm_id: UUID, actor: str, at: datetime) -> Alarm:
        return self._act_on_alarm(
            alarm_id, at, lambda alarm, now: alarm.reset_latch(actor=actor, at=now)
        )

    def _act_on_alarm(
        self, alarm_id: UUID, at: datetime, act: Callable[[Alarm, datetime], None]
    ) -> Alarm:
        """An operator's action on an alarm caught up to ``at``, decided and saved."""
        at = utc(at)
        alarm = self._caught_up_alarm(alarm_id, at)
        act(alarm, at)
        self.save(alarm)
        return alarm

    def _record_if_due(self, alarm_id: UUID, due: Callable[[Alarm], bool]) -> bool:
        """Save what ``due`` recorded on the alarm, if anything (the sweepers' use cases)."""
        alarm = self.get_alarm(alarm_id)
        if not due(alarm):
            return False
        self.save(alarm)
        return True

    def get_alarm(self, alarm_id: UUID) -> Alarm:
        alarm = self._find_alarm(alarm_id)
        if alarm is None:
            raise AlarmNotFound(alarm_id)
        return alarm

    def alarm_events(self, alarm_id: UUID, after_version: int = 0) -> list[DomainEvent]:
        """The alarm's stored events after ``after_version``, oldest first (empty if none)."""
        return cast(list[DomainEvent], list(self.events.get(alarm_id, gt=after_version)))

    def alarm_flood(self, area: str) -> AlarmFlood | None:
        try:
            flood: object = self.repository.get(flood_id(area))
        except AggregateNotFoundError:
            return None
        return flood if isinstance(flood, AlarmFlood) else None

    @retry_on_conflict
    def end_alarm_flood_if_over(self, area: str, at: datetime) -> bool:
        """Record ``FloodEnded`` if the area's flood ended by ``at`` (for a sweeper)."""
        flood = self.alarm_flood(area)
        if flood is None or not flood.end_if_over(utc(at)):
            return False
        self.save(flood)
        return True

    def _find_alarm(self, alarm_id: UUID) -> Alarm | None:
        try:
            alarm: object = self.repository.get(alarm_id)
        except AggregateNotFoundError:
            return None
        # Another aggregate's id (a command's) is not an alarm either.
        return alarm if isinstance(alarm, Alarm) else None

    def _caught_up_alarm(self, alarm_id: UUID, at: datetime) -> Alarm:
        """The alarm with what time alone ended by ``at`` recorded, so that it decides on today."""
        alarm = self.get_alarm(alarm_id)
        alarm.catch_up(at)
        return alarm

    def _count_activations(
        self,
        areas: Sequence[str],
        activations: Mapping[str, list[datetime]],
        now: datetime,
        cache: AlarmCache,
    ) -> list[AlarmFlood]:
        """Each concerned area's flood, with the batch's annunciated activations counted."""
        floods: list[AlarmFlood] = []
        existing = self._cached_or_loaded([flood_id(area) for area in areas], cache, AlarmFlood)
        for area in areas:
            flood = existing.get(flood_id(area))
            times = activations.get(area, [])
            if times:
                flood = flood or AlarmFlood(area=area, actor=SYSTEM, at=min(times))
                flood.count(times, now)
            elif flood is not None:
                flood.end_if_over(now)
            if flood is not None:
                floods.append(flood)
        return floods


def _alarm_change(alarm: Alarm) -> AlarmChange:
    return AlarmChange(
        alarm_id=alarm.id,
        device=alarm.device,
        condition=alarm.condition,
        state=alarm.state,
        events=tuple(type(e).__name__ for e in alarm.pending_events),
    )
