"""The settings reach the runtime: every PLANTCORE_* knob the README documents has an effect."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from redis.asyncio import BlockingConnectionPool

from api.history_limits import HistoryLimits
from api.secrets import generate_key
from domain.application import CommandPolicy
from domain.operator import LoginPolicy
from plantcore.runtime import runtime_config
from plantcore.settings import MissingSecret, Settings
from plantfile.loader import load_plant_file
from projections.history_schema import RetentionPolicy
from projections.live_client import live_state_client

PLANT = load_plant_file("config/demo-plant.yaml")


@pytest.fixture(autouse=True)
def secrets_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = generate_key()
    monkeypatch.setenv("PLANTCORE_SECRETS_KEY", key)
    return key


def test_the_confirmation_window_and_projection_start_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLANTCORE_COMMAND_CONFIRM_SECONDS", "45")
    monkeypatch.setenv("PLANTCORE_COMMAND_APPROVAL_SECONDS", "120")
    monkeypatch.setenv("PLANTCORE_COMMAND_RATE_PER_MINUTE", "3")
    monkeypatch.setenv("PLANTCORE_LOGIN_MAX_FAILURES", "4")
    monkeypatch.setenv("PLANTCORE_LOGIN_LOCKOUT_MINUTES", "2")
    monkeypatch.setenv("PLANTCORE_LOGIN_LOCKOUT_MAX_MINUTES", "30")
    monkeypatch.setenv("PLANTCORE_SESSION_HOURS", "8")
    monkeypatch.setenv("PLANTCORE_GRAPHQL_MAX_DEPTH", "8")
    monkeypatch.setenv("PLANTCORE_GRAPHQL_MAX_COST", "900")
    monkeypatch.setenv("PLANTCORE_PROJECTIONS_START", "new")
    monkeypatch.setenv("PLANTCORE_CONSUMER_PREFIX", "line2-")

    config = runtime_config(Settings(), plant=PLANT)

    assert config.command_policy == CommandPolicy(
        confirm_window=timedelta(seconds=45),
        approval_window=timedelta(minutes=2),
        rate_limit=3,
    )
    assert config.login_policy == LoginPolicy(
        max_failures=4,
        first_lockout=timedelta(minutes=2),
        longest_lockout=timedelta(minutes=30),
        session_lifetime=timedelta(hours=8),
    )
    assert (config.max_query_depth, config.max_query_cost) == (8, 900)
    assert config.projections_start == "new"
    assert config.consumer_prefix == "line2-"


def test_the_defaults_keep_thirty_seconds_and_catch_up_from_the_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("COMMAND_CONFIRM_SECONDS", "COMMAND_RATE_PER_MINUTE", "PROJECTIONS_START"):
        monkeypatch.delenv(f"PLANTCORE_{name}", raising=False)

    config = runtime_config(Settings(), plant=PLANT)

    assert config.command_policy.confirm_window == timedelta(seconds=30)
    assert config.command_policy.rate_limit == 5
    assert config.login_policy == LoginPolicy()
    assert config.projections_start == "retained"


def test_the_secrets_key_opens_what_it_sealed_and_comes_from_a_file_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, secrets_key: str
) -> None:
    sealed = runtime_config(Settings(), plant=PLANT).secrets.seal("JBSWY3DP", username="ana")
    monkeypatch.delenv("PLANTCORE_SECRETS_KEY")
    key_file = tmp_path / "secrets.key"
    key_file.write_text(secrets_key + "\n")
    monkeypatch.setenv("PLANTCORE_SECRETS_KEY_FILE", str(key_file))

    from_file = runtime_config(Settings(), plant=PLANT).secrets

    assert from_file.open(sealed, username="ana") == "JBSWY3DP"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "set PLANTCORE_SECRETS_KEY or PLANTCORE_SECRETS_KEY_FILE"),
        ({"PLANTCORE_SECRETS_KEY": "eHh4eHh4eHh4eHh4eHh4eA=="}, "must be 32 bytes, not 16"),
        ({"PLANTCORE_SECRETS_KEY_FILE": "/nonexistent/key"}, "PLANTCORE_SECRETS_KEY_FILE"),
    ],
)
def test_a_missing_or_bad_secrets_key_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    monkeypatch.delenv("PLANTCORE_SECRETS_KEY")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(MissingSecret, match=message):
        runtime_config(Settings(), plant=PLANT)


def test_the_history_limits_come_from_the_environment_and_agree_with_its_retention(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLANTCORE_HISTORY_MAX_ROWS", "2000")
    monkeypatch.setenv("PLANTCORE_HISTORY_MAX_SPAN_DAYS", "31")
    monkeypatch.setenv("PLANTCORE_HISTORY_RAW_DAYS", "7")
    monkeypatch.setenv("PLANTCORE_HISTORY_MINUTE_DAYS", "90")
    monkeypatch.setenv("PLANTCORE_HISTORY_HOUR_DAYS", "730")

    config = runtime_config(Settings(), plant=PLANT)

    assert config.history_retention == RetentionPolicy(raw_days=7, minute_days=90, hour_days=730)
    # A request is refused raw samples (or minutes) exactly where retention dropped them.
    assert config.history_limits == HistoryLimits(
        max_rows=2000, max_span_days=31, raw_days=7, minute_days=90
    )


def test_the_history_settings_default_to_the_limits_and_retention_they_feed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("MAX_ROWS", "MAX_SPAN_DAYS", "RAW_DAYS", "MINUTE_DAYS", "HOUR_DAYS"):
        monkeypatch.delenv(f"PLANTCORE_HISTORY_{name}", raising=False)

    config = runtime_config(Settings(), plant=PLANT)

    assert config.history_limits == HistoryLimits()
    assert config.history_retention == RetentionPolicy()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PROJECTIONS_START", "yesterday"),
        ("COMMAND_CONFIRM_SECONDS", "2"),
        ("HISTORY_MAX_ROWS", "0"),
        ("HISTORY_MAX_SPAN_DAYS", "0"),
    ],
)
def test_a_bad_value_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"PLANTCORE_{name}", value)

    with pytest.raises(ValidationError, match=name.lower()):
        Settings()


def test_the_buffer_lies_in_the_state_directory_unless_set_and_holds_100_mib(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("BUFFER_DIR", "BUFFER_MAX_MB"):
        monkeypatch.delenv(f"PLANTCORE_{name}", raising=False)
    monkeypatch.setenv("PLANTCORE_STATE_DIR", str(tmp_path / "state"))

    default = runtime_config(Settings(), plant=PLANT)
    monkeypatch.setenv("PLANTCORE_BUFFER_DIR", str(tmp_path / "buffer"))
    monkeypatch.setenv("PLANTCORE_BUFFER_MAX_MB", "5")
    chosen = runtime_config(Settings(), plant=PLANT)

    assert (default.buffer_dir, default.buffer_max_bytes) == (
        tmp_path / "state" / "buffer",
        100 << 20,
    )
    assert (chosen.buffer_dir, chosen.buffer_max_bytes) == (tmp_path / "buffer", 5 << 20)
    monkeypatch.setenv("PLANTCORE_BUFFER_MAX_MB", "0")
    with pytest.raises(ValidationError, match="buffer_max_mb"):
        Settings()


def test_the_live_state_pool_is_sized_by_the_environment_and_waits_for_a_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLANTCORE_REDIS_MAX_CONNECTIONS", "12")
    monkeypatch.setenv("PLANTCORE_REDIS_WAIT_SECONDS", "2.5")

    config = runtime_config(Settings(), plant=PLANT)
    client = live_state_client(
        config.redis_url,
        max_connections=config.redis_max_connections,
        wait_seconds=config.redis_wait_seconds,
    )

    pool = client.connection_pool
    assert isinstance(pool, BlockingConnectionPool)
    assert (pool.max_connections, pool.timeout) == (12, 2.5)
