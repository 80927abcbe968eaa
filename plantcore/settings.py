"""Settings, read once from the environment (prefix ``PLANTCORE_``) by the composition root.

Nothing below ``plantcore/`` reads the environment: adapters get these values
handed in, so tests can build them with any URLs they like.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.auth import TokenSettings

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

ProjectionsStart = Literal["retained", "new"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PLANTCORE_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    nats_url: str = DEFAULT_NATS_URL
    redis_url: str = DEFAULT_REDIS_URL
    plant_file: Path = Path("config/demo-plant.yaml")
    # The signing key of access tokens. Required outside the demo, which makes one per run.
    jwt_secret: SecretStr | None = None
    jwt_audience: str = "plantcore"
    access_token_minutes: int = Field(default=15, ge=1, le=60)
    command_confirm_seconds: int = Field(default=30, ge=5, le=300)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    telemetry_stream: str = "TELEMETRY"
    # How long the TELEMETRY stream keeps samples for projections that were down.
    telemetry_max_age_hours: int = Field(default=72, ge=1)
    state_dir: Path = Path("var")
    # Prefix of the durable JetStream consumer names, for several plant cores on one NATS.
    consumer_prefix: str = ""
    # Where a projection starts when its durable consumer is first created:
    # "retained" catches up from what the stream still holds, "new" from now on.
    projections_start: ProjectionsStart = "retained"


def token_settings(settings: Settings) -> TokenSettings:
    """The access-token settings; without a configured secret (the demo), a random one per run."""
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    return TokenSettings(
        secret=secret or secrets.token_urlsafe(48),
        audience=settings.jwt_audience,
        ttl=timedelta(minutes=settings.access_token_minutes),
    )
