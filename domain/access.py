"""The use cases of access control: operators, logins, sessions and the plant mode.

A mix-in of :class:`~domain.application.PlantApplication`, kept apart because
it is a subject of its own. Each method loads, lets the aggregate decide and
saves; a refusal that must stay on record (a failed login, a reused refresh
token) is saved first and raised afterwards.

Who may call the administrative ones (``operators.manage``,
``sessions.manage``, ``plant.mode``) is checked by the caller against the
permission matrix; the rules that protect the plant from its own admins (the
last admin cannot be disabled or demoted) are checked here.

Every use case that names an operator takes the name in any form a person
types it: a new name is stored in its normal form, and :meth:`find_operator`
finds an account by any form of its name (:mod:`domain.usernames`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from domain.bounds import (
    MAX_FULL_NAME_LENGTH,
    MAX_SCOPE_LENGTH,
    MAX_TEXT_LENGTH,
    check_length,
    clipped,
)
from domain.errors import (
    InputTooLarge,
    InvalidUsername,
    LoginRefused,
    OperatorAccountError,
    OperatorExists,
    SessionInvalid,
    UnknownOperator,
)
from domain.operator import LoginPolicy, Operator, SessionView, operator_id
from domain.operator_directory import OperatorDirectory, directory_id
from domain.permissions import Action, Role, actions_of, is_allowed
from domain.plant_mode import Mode, PlantMode, plant_mode_id
from domain.time import retry_on_conflict, utc
from domain.usernames import normalise_username

SYSTEM = "system"
T = TypeVar("T")


class AccessUseCases(Application[UUID]):
    plant_id: str = "plant"
    login_policy: LoginPolicy = LoginPolicy()

    # -- operators ---------------------------------------------------------------------------

    def register_operator(
        self,
        *,
        username: str,
        full_name: str,
        roles: Iterable[str],
        password_hash: str,
        actor: str,
        at: datetime,
        totp_secret_sealed: str = "",
        enrolment_token_hash: str = "",
    ) -> UUID:
        """Register and list an operator; raises :class:`OperatorExists`.

        A new account normally has no secret yet: it enrols itself with the
        one-time token whose hash is ``enrolment_token_hash``, so that whoever
        created it never holds its authenticator. ``totp_secret_sealed``
        registers one already enrolled (tests, imports).
        """
        username = normalise_username(username)
        check_length("full_name", full_name, MAX_FULL_NAME_LENGTH)
        at = utc(at)
        for _ in range(3):
            operator = Operator.register(
                username=username,
                full_name=full_name,
                roles=roles,
                password_hash=password_hash,
                totp_secret_sealed=totp_secret_sealed,
                actor=actor,
                at=at,
            )
            if enrolment_token_hash:
                lifetime = self.login_policy.second_factor.enrolment_token_lifetime
                operator.issue_enrolment_token(
                    enrolment_token_hash, expires_at=at + lifetime, actor=actor, at=at
                )
            directory = self._directory(actor, at)
            if directory.usernames_like(username):  # itself, or a name from before folding alike
                raise OperatorExists(username)
            directory.list_operator(username, actor=actor, at=at)
            try:
                self.save(operator, directory)
            except IntegrityError as exc:
                if self.find_operator(username) is not None:
                    raise OperatorExists(username) from exc
                continue  # another registration moved the directory on: list again
            return operator.id
        raise OperatorExists(username)

    def find_operator(self, username: str) -> Operator | None:
        """The account ``username`` names, in whatever form it is typed.

        Its exact stored name first, so that every account from before names
        were normalised stays reachable, even one whose name folds like
        another's; then the name's normal form; then the one account from
        before whose name folds to it. A form that folds to two such names
        finds none: each is reached by its exact name only.
        """
        found = self._stored_as(username)
        if found is not None:
            return found
        try:
            key = normalise_username(username)
        except (InvalidUsername, InputTooLarge):
            return None  # no name registered since could be this one
        if key != username and (found := self._stored_as(key)) is not None:
            return found
        directory = self._find_directory()
        older = directory.usernames_like(key) if directory is not None else ()
        return self._stored_as(older[0]) if len(older) == 1 else None

    def _stored_as(self, username: str) -> Operator | None:
        try:
            operator: Operator = self.repository.get(operator_id(username))
        except AggregateNotFoundError:
            return None
        return operator

    def get_operator(self, username: str) -> Operator:
        operator = self.find_operator(username)
        if operator is None:
            raise UnknownOperator(username)
        return operator

    def list_operators(self) -> list[Operator]:
        directory = self._find_directory()
        names = directory.usernames if directory else ()
        return [op for op in (self.find_operator(name) for name in names) if op is not None]

    def is_operator_allowed(
        self, username: str, action: Action, *, device: str | None = None, area: str = ""
    ) -> bool:
        operator = self.find_operator(username)
        return (
            operator is not None
            and operator.enabled
            and is_allowed(operator.roles, operator.scopes, action, device=device, area=area)
        )

    @retry_on_conflict
    def disable_operator(self, *, username: str, reason: str, actor: str, at: datetime) -> bool:
        check_length("reason", reason, MAX_TEXT_LENGTH)
        operator = self.get_operator(username)
        self._keep_an_admin(operator, without_roles=operator.roles)
        return self._change(operator, lambda op: op.disable(reason=reason, actor=actor, at=utc(at)))

    @retry_on_conflict
    def enable_operator(self, *, username: str, actor: str, at: datetime) -> bool:
        return self._change(
            self.get_operator(username), lambda op: op.enable(actor=actor, at=utc(at))
        )

    @retry_on_conflict
    def grant_role(self, *, username: str, role: str, actor: str, at: datetime) -> bool:
        return self._change(
            self.get_operator(username), lambda op: op.grant_role(role, actor=actor, at=utc(at))
        )

    @retry_on_conflict
    def revoke_role(self, *, username: str, role: str, actor: str, at: datetime) -> bool:
        operator = self.get_operator(username)
        self._keep_an_admin(operator, without_roles=(role,))
        return self._change(operator, lambda op: op.revoke_role(role, actor=actor, at=utc(at)))

    @retry_on_conflict
    def grant_permission(self, *, username: str, scope: str, actor: str, at: datetime) -> bool:
        check_length("scope", scope, MAX_SCOPE_LENGTH)
        return self._change(
            self.get_operator(username),
            lambda op: op.grant_permission(scope, actor=actor, at=utc(at)),
        )

    @retry_on_conflict
    def revoke_permission(self, *, username: str, scope: str, actor: str, at: datetime) -> bool:
        check_length("scope", scope, MAX_SCOPE_LENGTH)
        return self._change(
            self.get_operator(username),
            lambda op: op.revoke_permission(scope, actor=actor, at=utc(at)),
        )

    @retry_on_conflict
    def set_password(self, *, username: str, password_hash: str, actor: str, at: datetime) -> None:
        operator = self.get_operator(username)
        operator.set_password(password_hash, actor=actor, at=utc(at))
        self.save(operator)

    @retry_on_conflict
    def unlock_operator(self, *, username: str, actor: str, at: datetime) -> bool:
        return self._change(
            self.get_operator(username), lambda op: op.unlock(actor=actor, at=utc(at))
        )

    @retry_on_conflict
    def record_access_denied(
        self, *, username: str, action: str, target: str, source: str, at: datetime
    ) -> None:
        """Record a refusal of the permission matrix on the operator it refused."""
        operator = self.get_operator(username)
        operator.deny(action=action, target=clipped(target), source=clipped(source), at=utc(at))
        self.save(operator)

    # -- logins and sessions -----------------------------------------------------------------

    @retry_on_conflict
    def log_in(
        self,
        *,
        username: str,
        password_matches: bool,
        source: str,
        session_id: str,
        refresh_hash: str,
        at: datetime,
    ) -> Operator:
        """Record the attempt and open a session; raises :class:`LoginRefused` once recorded."""
        at, source = utc(at), clipped(source)
        operator = self.find_operator(username)
        if operator is None:
            directory = self._directory(SYSTEM, at)
            directory.record_unknown_login(username, source=source, at=at)
            self.save(directory)
            raise LoginRefused(username, "invalid_credentials")
        refusal = operator.log_in(
            password_matches=password_matches,
            source=source,
            session_id=session_id,
            refresh_hash=refresh_hash,
            policy=self.login_policy,
            at=at,
        )
        self.save(operator)
        if refusal is not None:
            raise refusal
        return operator

    @retry_on_conflict
    def check_password(
        self, *, username: str, password_matches: bool, source: str, at: datetime
    ) -> None:
        """A password re-entered to change a credential; a wrong one counts toward lockout.

        Raises :class:`LoginRefused` once a refusal is recorded, as a login would:
        a stolen access token must not become an unthrottled password oracle.
        """
        operator = self.get_operator(username)
        refusal = operator.check_password(
            password_matches=password_matches,
            source=clipped(source),
            policy=self.login_policy,
            at=utc(at),
        )
        if refusal is not None:
            self.save(operator)
            raise refusal

    @retry_on_conflict
    def refresh_session(
        self,
        *,
        username: str,
        session_id: str,
        presented_hash: str,
        new_hash: str,
        source: str,
        at: datetime,
    ) -> Operator:
        """Rotate a session's refresh token; raises :class:`SessionInvalid` (reuse recorded)."""
        operator = self.find_operator(username)
        if operator is None:
            raise SessionInvalid("ended")
        refusal = operator.refresh(
            session_id=session_id,
            presented_hash=presented_hash,
            new_hash=new_hash,
            source=clipped(source),
            at=utc(at),
        )
        self.save(operator)
        if refusal is not None:
            raise refusal
        return operator

    def authenticate(self, *, username: str, session_id: str, at: datetime) -> Operator:
        """The operator of an open session; raises :class:`SessionInvalid`."""
        operator = self.find_operator(username)
        if operator is None:
            raise SessionInvalid("ended")
        operator.check_session(session_id, utc(at))
        return operator

    @retry_on_conflict
    def log_out(self, *, username: str, session_id: str, at: datetime) -> bool:
        return self._change(
            self.get_operator(username), lambda op: op.log_out(session_id, at=utc(at))
        )

    @retry_on_conflict
    def revoke_session(
        self, *, username: str, session_id: str, reason: str, actor: str, at: datetime
    ) -> bool:
        check_length("reason", reason, MAX_TEXT_LENGTH)
        return self._change(
            self.get_operator(username),
            lambda op: op.revoke_session(session_id, reason=reason, actor=actor, at=utc(at)),
        )

    def open_sessions(self, at: datetime) -> list[SessionView]:
        at = utc(at)
        return [s for op in self.list_operators() for s in op.open_sessions(at)]

    # -- the plant mode ----------------------------------------------------------------------

    def plant_mode(self) -> Mode:
        found = self._find_plant_mode()
        return found.mode if found else Mode.NORMAL

    def find_plant_mode(self) -> PlantMode | None:
        return self._find_plant_mode()

    @retry_on_conflict
    def set_plant_mode(self, *, mode: Mode, reason: str, actor: str, at: datetime) -> PlantMode:
        check_length("reason", reason, MAX_TEXT_LENGTH)
        at = utc(at)
        plant_mode = self._find_plant_mode()
        if plant_mode is None:
            if mode is Mode.NORMAL:
                return PlantMode(self.plant_id, actor=actor, at=at)  # unchanged: not recorded
            plant_mode = PlantMode(self.plant_id, actor=actor, at=at)
        if plant_mode.change(mode, reason=reason, actor=actor, at=at):
            self.save(plant_mode)
        return plant_mode

    # -- helpers -----------------------------------------------------------------------------

    def _change(self, operator: Operator, decide: Callable[[Operator], bool]) -> bool:
        changed = decide(operator)
        if changed:
            self.save(operator)
        return changed

    def _keep_an_admin(self, operator: Operator, *, without_roles: Iterable[str]) -> None:
        """Refuse a change that would leave no enabled admin to manage the plant's accounts."""
        if Role.ADMIN.value not in without_roles or Role.ADMIN.value not in operator.roles:
            return
        others = [
            op
            for op in self.list_operators()
            if op.username != operator.username
            and op.enabled
            and Action.MANAGE_OPERATORS in actions_of(op.roles)
        ]
        if not others:
            raise OperatorAccountError(
                operator.username, "last_admin", "the plant would be left without an admin"
            )

    def _find_directory(self) -> OperatorDirectory | None:
        return self._get(directory_id(self.plant_id), OperatorDirectory)

    def _directory(self, actor: str, at: datetime) -> OperatorDirectory:
        return self._find_directory() or OperatorDirectory(self.plant_id, actor=actor, at=at)

    def _find_plant_mode(self) -> PlantMode | None:
        return self._get(plant_mode_id(self.plant_id), PlantMode)

    def _get(self, aggregate_id: UUID, kind: type[T]) -> T | None:
        try:
            found: object = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, kind) else None
