"""Settings, read once from the environment (prefix ``PLANTCORE_``) by the composition root.

Nothing below ``plantcore/`` reads plantcore's settings from the environment:
adapters get these values handed in, so tests can build them with any URLs
they like. (Drivers read a device's password, from the variable its plant-file
block names, through :mod:`support.secret_source` when they connect.)

Secrets (the JWT signing key, the key that seals TOTP secrets, the audit
signing key) come from the environment or from a file named in it (``…_FILE``,
e.g. a Docker or systemd credential), read by :mod:`support.secret_source`,
never from the repository. Only the demo makes its own.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.credentials import TokenSettings
from api.graphql.limits import DEFAULT_MAX_VARIABLES_BYTES
from api.history_limits import DEFAULT_MAX_ROWS, DEFAULT_MAX_SPAN_DAYS
from api.login_lane import DEFAULT_LOGIN_QUEUE
from api.secrets import SecretBox
from api.size_limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_WS_MESSAGE_BYTES
from audit.checkpoints import load_signing_key
from domain.application import CommandPolicy
from domain.operator import LoginPolicy
from domain.second_factor import FAILURE_MEMORY, SecondFactorPolicy
from eventstore.roles import DEFAULT_PREFIX as DEFAULT_ROLE_PREFIX
from projections.history_schema import RetentionPolicy
from projections.live_client import DEFAULT_MAX_CONNECTIONS as DEFAULT_REDIS_MAX_CONNECTIONS
from projections.live_client import DEFAULT_WAIT_SECONDS as DEFAULT_REDIS_WAIT_SECONDS
from support.secret_source import SecretSourceError, read_secret

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

ProjectionsStart = Literal["retained", "new"]
# No GraphQL request of the plant needs more; uvicorn's own WebSocket default is 16 MiB.
MAX_INPUT_BYTES = 16 * 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PLANTCORE_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    # `plantcore db init`: a superuser's URL of the same database, and the roles' prefix.
    db_admin_url: str | None = None
    db_role_prefix: str = DEFAULT_ROLE_PREFIX
    nats_url: str = DEFAULT_NATS_URL
    redis_url: str = DEFAULT_REDIS_URL
    # The live state's Redis pool per process: callers past its size wait for a
    # connection, up to the wait, instead of failing (ADR 0044).
    redis_max_connections: int = Field(default=DEFAULT_REDIS_MAX_CONNECTIONS, ge=1, le=10000)
    redis_wait_seconds: float = Field(default=DEFAULT_REDIS_WAIT_SECONDS, gt=0, le=300)
    plant_file: Path = Path("config/demo-plant.yaml")
    # The signing key of access tokens. Required outside the demo, which makes one per run.
    jwt_secret: SecretStr | None = None
    jwt_secret_file: Path | None = None
    jwt_audience: str = "plantcore"
    access_token_minutes: int = Field(default=15, ge=1, le=60)
    # The key that seals TOTP secrets in the event log (base64url of 32 bytes; make one
    # with `plantcore secrets-key`). Required outside the demo, which keeps its own.
    secrets_key: SecretStr | None = None
    secrets_key_file: Path | None = None
    # Wrong passwords in a row before an account locks; each lockout of a streak
    # lasts twice the one before, from the first to the longest.
    login_max_failures: int = Field(default=5, ge=1, le=100)
    login_lockout_minutes: float = Field(default=1.0, gt=0)
    login_lockout_max_minutes: float = Field(default=60.0, gt=0)
    # Logins one source address may try in any 60 s, refused before any password is checked.
    login_rate_per_minute: int = Field(default=20, ge=1, le=600)
    # Threads that check passwords (Argon2), apart from the commands' executor; none: one
    # less than the cores, at least one. Logins beyond those and the queue are refused.
    login_workers: int | None = Field(default=None, ge=1, le=64)
    login_queue: int = Field(default=DEFAULT_LOGIN_QUEUE, ge=0, le=1000)
    # A session (its refresh tokens) ends this long after login: one shift.
    session_hours: float = Field(default=12.0, gt=0, le=24 * 7)
    # Wrong TOTP codes one person may give, on any command, enrolment or recovery, in
    # a sliding window; past them every answer of theirs is refused until it slides on.
    totp_max_failures: int = Field(default=5, ge=1, le=100)
    totp_failure_window_minutes: float = Field(
        default=15.0, gt=0, le=FAILURE_MEMORY.total_seconds() / 60
    )
    command_confirm_seconds: int = Field(default=30, ge=5, le=300)
    # How long a critical write waits for its second person.
    command_approval_seconds: int = Field(default=300, ge=10, le=3600)
    command_rate_per_minute: int = Field(default=5, ge=1, le=600)
    # A released command not dispatched this long after its release (a crash, a
    # database outage, a restart) is recorded as expired instead of written.
    command_dispatch_seconds: int = Field(default=10, ge=1, le=300)
    # How far the clocks of the dispatcher's and the supervisors' hosts may differ.
    write_clock_skew_ms: int = Field(default=1000, ge=0, le=4000)
    graphql_max_depth: int = Field(default=12, ge=3, le=50)
    graphql_max_cost: int = Field(default=5000, ge=10)
    # What one client may send: an HTTP body, one operation's variables (as compact
    # JSON), one WebSocket message; larger ones are refused before anything reads them.
    http_max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=4096, le=MAX_INPUT_BYTES)
    graphql_max_variables_bytes: int = Field(
        default=DEFAULT_MAX_VARIABLES_BYTES, ge=1024, le=MAX_INPUT_BYTES
    )
    ws_max_message_bytes: int = Field(
        default=DEFAULT_MAX_WS_MESSAGE_BYTES, ge=4096, le=MAX_INPUT_BYTES
    )
    # GraphiQL at /graphql, and introspection (__schema, __type): what an explorer of the
    # API needs, and an attacker too. Off for `plantcore run` unless set; the demo turns
    # on what is not set.
    graphiql: bool = False
    introspection: bool = False
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    telemetry_stream: str = "TELEMETRY"
    # How long the TELEMETRY stream keeps samples for projections that were down.
    telemetry_max_age_hours: int = Field(default=72, ge=1)
    # How long the history keeps raw samples, minute and hour rollups; older partitions
    # are dropped whole, each drop recorded as a HistoryPartitionDropped event.
    history_raw_days: int = Field(default=30, ge=1)
    history_minute_days: int = Field(default=365, ge=1)
    history_hour_days: int = Field(default=1825, ge=1)
    # How often the minute and hour rollups are brought up to the current minute.
    history_rollup_refresh_seconds: float = Field(default=10.0, gt=0, le=3600)
    # What one GraphQL `history` request may ask: rows per answer, days from `from` to `to`.
    history_max_rows: int = Field(default=DEFAULT_MAX_ROWS, ge=1)
    history_max_span_days: int = Field(default=DEFAULT_MAX_SPAN_DAYS, ge=1)
    state_dir: Path = Path("var")
    # The supervisors' store-and-forward buffer: where (by default <state_dir>/buffer; one
    # plant core per directory) and how many MiB of messages it holds for NATS at most.
    buffer_dir: Path | None = None
    buffer_max_mb: int = Field(default=100, ge=1, le=1024 * 1024)
    # Prefix of the durable JetStream consumer names, for several plant cores on one NATS.
    consumer_prefix: str = ""
    # The JetStream stream the event relay publishes every domain event into, and its
    # subjects (plant.events.<Aggregate>.<Event>); how long it keeps them.
    events_stream: str = "EVENTS"
    events_subject_prefix: str = "plant.events"
    events_max_age_hours: int = Field(default=720, ge=1)
    # Signed checkpoints of the event log's hash chain (docs/audit.md): the Ed25519 key
    # that signs them (`plantcore audit keygen`), how often, and the file they are also
    # appended to (by default <state_dir>/audit-checkpoints.jsonl). Without a key the
    # chain is still kept, but no checkpoint is signed.
    audit_signing_key: SecretStr | None = None
    audit_signing_key_file: Path | None = None
    audit_checkpoint_seconds: float = Field(default=60.0, gt=0)
    audit_checkpoint_file: Path | None = None
    # The public key `plantcore audit verify` checks checkpoints with, by default.
    audit_public_key_file: Path | None = None
    # Where a projection starts when its durable consumer is first created:
    # "retained" catches up from what the stream still holds, "new" from now on.
    projections_start: ProjectionsStart = "retained"

    @model_validator(mode="after")
    def _checkpoint_file_in_state_dir(self) -> Settings:
        if self.audit_checkpoint_file is None:
            self.audit_checkpoint_file = self.state_dir / "audit-checkpoints.jsonl"
        return self

    @model_validator(mode="after")
    def _buffer_in_state_dir(self) -> Settings:
        if self.buffer_dir is None:
            self.buffer_dir = self.state_dir / "buffer"
        return self


class MissingSecret(ValueError):
    """A secret the plant core cannot run without was not configured."""


def _secret(value: SecretStr | None, file: Path | None, name: str) -> str | None:
    clear = value.get_secret_value() if value is not None else None
    try:
        secret = read_secret(f"PLANTCORE_{name}", clear, file)
    except SecretSourceError as exc:
        raise MissingSecret(str(exc)) from exc
    # A key never holds white space: what surrounds it in a file is not part of it.
    return None if secret is None else secret.strip()


def jwt_secret(settings: Settings) -> str | None:
    return _secret(settings.jwt_secret, settings.jwt_secret_file, "JWT_SECRET")


def token_settings(settings: Settings) -> TokenSettings:
    """The access-token settings; without a configured secret (the demo), a random one per run."""
    try:
        return TokenSettings(
            secret=jwt_secret(settings) or secrets.token_urlsafe(48),
            audience=settings.jwt_audience,
            ttl=timedelta(minutes=settings.access_token_minutes),
        )
    except ValueError as exc:
        raise MissingSecret(f"PLANTCORE_JWT_SECRET: {exc}") from exc


def secret_box(settings: Settings) -> SecretBox:
    """The box that seals TOTP secrets; raises :class:`MissingSecret` if no key is set."""
    key = _secret(settings.secrets_key, settings.secrets_key_file, "SECRETS_KEY")
    if key is None:
        raise MissingSecret(
            "set PLANTCORE_SECRETS_KEY or PLANTCORE_SECRETS_KEY_FILE"
            " (make one with: plantcore secrets-key)"
        )
    try:
        return SecretBox.from_text(key)
    except ValueError as exc:
        raise MissingSecret(f"PLANTCORE_SECRETS_KEY: {exc}") from exc


def login_policy(settings: Settings) -> LoginPolicy:
    return LoginPolicy(
        max_failures=settings.login_max_failures,
        first_lockout=timedelta(minutes=settings.login_lockout_minutes),
        longest_lockout=timedelta(minutes=settings.login_lockout_max_minutes),
        session_lifetime=timedelta(hours=settings.session_hours),
        second_factor=SecondFactorPolicy(
            max_failures=settings.totp_max_failures,
            failure_window=timedelta(minutes=settings.totp_failure_window_minutes),
        ),
    )


def retention_policy(settings: Settings) -> RetentionPolicy:
    """The days each history table keeps: the runtime's pass and ``db init`` read the same."""
    return RetentionPolicy(
        raw_days=settings.history_raw_days,
        minute_days=settings.history_minute_days,
        hour_days=settings.history_hour_days,
    )


def command_policy(settings: Settings) -> CommandPolicy:
    return CommandPolicy(
        confirm_window=timedelta(seconds=settings.command_confirm_seconds),
        approval_window=timedelta(seconds=settings.command_approval_seconds),
        rate_limit=settings.command_rate_per_minute,
        dispatch_window=timedelta(seconds=settings.command_dispatch_seconds),
    )


def audit_signing_key(settings: Settings) -> Ed25519PrivateKey | None:
    """The key that signs the chain's checkpoints, if one is configured."""
    text = _secret(settings.audit_signing_key, settings.audit_signing_key_file, "AUDIT_SIGNING_KEY")
    if text is None:
        return None
    try:
        return load_signing_key(text)
    except ValueError as exc:
        raise MissingSecret(f"PLANTCORE_AUDIT_SIGNING_KEY: {exc}") from exc
