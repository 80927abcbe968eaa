"""Random sequences of use cases against one command, with a controlled clock.

After every step the stored events must tell a lawful story: no write before a
confirmation, no confirmation after the command was closed, one terminal event
at most and nothing after it, and the status must be what replaying the
stored events gives. A small model also checks that every action that should
succeed does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from domain.application import PlantApplication
from domain.command import CommandStatus
from domain.errors import (
    CommandClosed,
    CommandRefused,
    ConfirmationRefused,
    ConfirmationTooLate,
    DispatchTooLate,
    DomainError,
)
from tests.unit.domain.plant import T0, make_app, replayed

# The status each event leaves behind, written out independently of the aggregate.
STATUS_AFTER = {
    "ChallengeIssued": CommandStatus.AWAITING_CONFIRMATION,
    "Rejected": CommandStatus.REJECTED,
    "Confirmed": CommandStatus.CONFIRMED,
    "Expired": CommandStatus.EXPIRED,
    "Cancelled": CommandStatus.CANCELLED,
    "WriteDispatched": CommandStatus.DISPATCHED,
    "WriteSucceeded": CommandStatus.SUCCEEDED,
    "WriteFailed": CommandStatus.WRITE_FAILED,
}
CLOSING = {"Expired", "Cancelled", "Rejected"}
CONFIRM_WINDOW = timedelta(seconds=30)
DISPATCH_WINDOW = timedelta(seconds=10)

# Mostly writable values (integers listed twice to weigh them): a rejected command
# ends at once and teaches little more.
values = st.one_of(
    st.integers(0, 3000),
    st.integers(0, 3000),
    st.floats(0, 3000),
    st.sampled_from([-1, 3001, math.nan, math.inf, True, "1500", None]),
)


def _is_terminal(event: object) -> bool:
    name = type(event).__name__
    if name == "ConfirmationFailed":
        return bool(event.final)  # type: ignore[attr-defined]
    return name in {"Rejected", "Expired", "Cancelled", "WriteSucceeded", "WriteFailed"}


class CommandLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.app: PlantApplication = make_app()
        self.now = T0
        self.deadline = T0 + CONFIRM_WINDOW
        self.released_at: datetime | None = None
        self.command_id: UUID
        # Ana spent a step before this command, so "reused" has something to reuse.
        operator = self.app.find_operator("ana")
        assert operator is not None
        operator.use_totp_step(1000, T0)
        self.app.save(operator)
        self.spent_step = 1000

    @initialize(value=values)
    def request(self, value: object) -> None:
        try:
            ticket = self.app.request_command(
                actor="ana", device="pump1", tag="speed", value=value, at=self.now
            )
        except CommandRefused as refused:
            self.command_id = refused.command_id
        else:
            self.command_id = ticket.command_id
            assert ticket.expires_at == self.deadline

    # -- the model: what may happen next, judged from the status and our own clock -----------

    def _status(self) -> CommandStatus:
        return self.app.get_command(self.command_id).status

    def _awaiting(self) -> bool:
        return self._status() is CommandStatus.AWAITING_CONFIRMATION

    def _overdue(self) -> bool:
        return self._awaiting() and self.now > self.deadline

    def _attempt(self, action: Callable[[], object]) -> DomainError | None:
        """Run a use case; only domain errors are acceptable refusals."""
        was_terminal = self.app.get_command(self.command_id).is_terminal
        try:
            action()
        except DomainError as refusal:
            if was_terminal and not isinstance(refusal, CommandClosed):
                raise AssertionError(f"closed command refused with {refusal!r}") from refusal
            return refusal
        assert not was_terminal, "an action succeeded on a terminal command"
        return None

    # -- rules (few of them, so that the interesting orders come up often) --------------------

    # Steps that land on, just before and just past the 30 s deadline.
    @rule(seconds=st.sampled_from([0, 1, 29, 30, 31]))
    def tick(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(answer=st.sampled_from(["ok", "wrong", "reused", "stranger"]), back=st.integers(0, 3))
    def confirm(self, answer: str, back: int) -> None:
        before = self.app.command_events(self.command_id)
        overdue = self._overdue()
        in_time = self._awaiting() and not overdue
        actor, step = "ana", None
        if answer == "ok":
            step = self.spent_step + 1 + back
        elif answer == "reused":
            step = self.spent_step - back
        elif answer == "stranger":
            actor, step = "bob", 5000
        refusal = self._attempt(
            lambda: self.app.confirm_command(
                actor=actor, command_id=self.command_id, totp_step=step, at=self.now
            )
        )
        if answer == "stranger":
            assert refusal is not None
            assert self.app.command_events(self.command_id) == before
            return
        if overdue:
            # A late answer leaves the timeout on record, whatever the code.
            assert isinstance(refusal, ConfirmationTooLate), refusal
            assert self._status() is CommandStatus.EXPIRED
        elif answer == "ok":
            assert (refusal is None) == in_time, refusal
            if refusal is None and step is not None:
                self.spent_step = step
                self.released_at = self.now
        else:
            assert isinstance(refusal, ConfirmationRefused) == in_time, refusal
            if isinstance(refusal, ConfirmationRefused):
                assert refusal.reason == ("wrong_code" if answer == "wrong" else "code_reused")
        operator = self.app.find_operator("ana")
        assert operator is not None
        assert operator.last_totp_step == self.spent_step

    @rule()
    def expire(self) -> None:
        overdue = self._overdue()
        assert self.app.expire_command(self.command_id, self.now) is overdue

    @rule()
    def cancel(self) -> None:
        overdue = self._overdue()
        may_cancel = (self._awaiting() and not overdue) or self._status() is CommandStatus.CONFIRMED
        refusal = self._attempt(
            lambda: self.app.cancel_command(actor="ana", command_id=self.command_id, at=self.now)
        )
        assert (refusal is None) == may_cancel, refusal
        if overdue:
            assert self._status() is CommandStatus.EXPIRED

    @rule()
    def dispatch(self) -> None:
        released = self._status() is CommandStatus.CONFIRMED
        assert not released or self.released_at is not None
        stale = released and self.now > self.released_at + DISPATCH_WINDOW  # type: ignore[operator]
        refusal = self._attempt(lambda: self.app.record_dispatch(self.command_id, self.now))
        if stale:
            # Too long after its release: expired on record, never written.
            assert isinstance(refusal, DispatchTooLate), refusal
            last = self.app.command_events(self.command_id)[-1]
            assert (type(last).__name__, last.reason) == ("Expired", "not_dispatched")  # type: ignore[attr-defined]
        else:
            assert (refusal is None) == released, refusal

    @rule(ok=st.booleans(), read_back=st.one_of(st.none(), st.integers(0, 3000)))
    def write_outcome(self, ok: bool, read_back: int | None) -> None:
        may_record = self._status() is CommandStatus.DISPATCHED
        if ok:
            refusal = self._attempt(
                lambda: self.app.record_write_succeeded(self.command_id, read_back, self.now)
            )
        else:
            refusal = self._attempt(
                lambda: self.app.record_write_failed(self.command_id, "device_offline", self.now)
            )
        assert (refusal is None) == may_record, refusal

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def the_story_is_lawful(self) -> None:
        events = self.app.command_events(self.command_id)
        names = [type(e).__name__ for e in events]
        assert names[0] == "Requested"
        assert names[1] in {"Rejected", "ChallengeIssued"}
        if "WriteDispatched" in names:
            assert "Confirmed" in names[: names.index("WriteDispatched")]
        for index, name in enumerate(names):
            if name in CLOSING:
                assert "Confirmed" not in names[index:]
        terminal = [i for i, e in enumerate(events) if _is_terminal(e)]
        assert len(terminal) <= 1
        if terminal:
            assert terminal[0] == len(events) - 1
        assert names.count("ConfirmationFailed") <= 3
        # Past the deadline the only answer on record is the expiry.
        answers = [e for e in events if type(e).__name__ in {"Confirmed", "ConfirmationFailed"}]
        assert all(e.at <= self.deadline for e in answers)  # type: ignore[attr-defined]
        assert all(e.actor and e.at.tzinfo is not None for e in events)  # type: ignore[attr-defined]

    @invariant()
    def status_is_what_the_events_say(self) -> None:
        command = self.app.get_command(self.command_id)
        assert replayed(self.app, self.command_id) == command
        last = self.app.command_events(self.command_id)[-1]
        name = type(last).__name__
        if name == "ConfirmationFailed":
            expected = (
                CommandStatus.CONFIRMATION_FAILED
                if last.final  # type: ignore[attr-defined]
                else CommandStatus.AWAITING_CONFIRMATION
            )
        else:
            expected = STATUS_AFTER[name]
        assert command.status is expected


CommandLifecycle.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_command_lifecycle = CommandLifecycle.TestCase
