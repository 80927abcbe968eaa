"""The documentation says what the code does: checked here, without any service.

- ``docs/schema.graphql`` is the schema strawberry prints for the API.
- ``docs/events.md`` has a row, with the right fields, for every event of every
  aggregate in ``domain/``, and no row for an event that does not exist.
  Which classes count as events is cross-checked against the events the
  application really stores on the in-memory event store.
- ``docs/graphql.md`` covers every root field and every ``extensions.code``.
- ``docs/decisions/`` is indexed and each record has its three parts.

When the first two fail, run ``.venv/bin/python docs/regenerate.py`` and fill
in any ``TODO`` cell it leaves in docs/events.md.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.utils import get_topic
from graphql import build_schema
from strawberry.printer import print_schema

from api import context
from api.graphql import error_codes as graphql_errors
from api.graphql.schema import BAD_REQUEST, schema
from domain.alarm import alarm_id
from domain.application import PlantApplication
from domain.catalog import DeviceInfo, TagCatalog, TagLimits, ValueKind
from domain.command import ConfirmationFailure, RejectionReason
from domain.errors import (
    CommandRefused,
    ConfirmationRefused,
    DomainError,
    LoginRefused,
    SecondPersonRequired,
    SessionInvalid,
)
from domain.messages import (
    AlarmKind,
    AlarmPriority,
    AlarmTransition,
    QualityReason,
    WriteErrorKind,
)
from domain.plant_mode import Mode
from plantcore.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"
REGENERATE = "run `.venv/bin/python docs/regenerate.py` (then fill in any TODO cell)"
T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)


def _load_regenerate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_regenerate", DOCS / "regenerate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


regenerate = _load_regenerate()


def _read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


# -- the GraphQL schema ------------------------------------------------------------------


def test_schema_graphql_is_the_printed_schema() -> None:
    assert _read("schema.graphql") == print_schema(schema) + "\n", (
        f"docs/schema.graphql is out of date: {REGENERATE}"
    )


def test_the_plant_file_schema_is_the_models_schema() -> None:
    assert _read("plant-file.schema.json") == regenerate.plant_file_schema(), (
        f"docs/plant-file.schema.json is out of date: {REGENERATE}"
    )


def test_the_demo_plant_file_names_the_schema_for_editors() -> None:
    first = (ROOT / "config" / "demo-plant.yaml").read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=../docs/plant-file.schema.json"


# -- the event catalogue -----------------------------------------------------------------


def _documented_rows() -> dict[tuple[str, str], list[str]]:
    """(aggregate, event) → the fields of its row, parsed independently of the generator."""
    _, section, _ = regenerate.split_events_md(_read("events.md"))
    rows: dict[tuple[str, str], list[str]] = {}
    aggregate = ""
    for line in section.splitlines():
        if line.startswith("### "):
            aggregate = line[4:].strip()
            continue
        match = re.fullmatch(r"\| `(\w+)` \| (.+) \| ((?:`\w+`(?:, )?)*) \| (.+) \|", line)
        if match:
            key = (aggregate, match[1])
            assert key not in rows, f"docs/events.md has two rows for {key}"
            rows[key] = re.findall(r"`(\w+)`", match[3])
        else:
            assert not line.startswith("| `"), f"docs/events.md: a row I cannot read: {line}"
    return rows


def _code_events() -> dict[tuple[str, str], list[str]]:
    return {
        (aggregate.__name__, event.__name__): regenerate.event_fields(event)
        for aggregate in regenerate.aggregates()
        for event in regenerate.recorded_events(aggregate)
    }


def test_every_aggregate_of_the_domain_is_found() -> None:
    # If this fails, the introspection lost an aggregate (or a new one needs a section).
    assert {a.__name__ for a in regenerate.aggregates()} >= {
        "ControlCommand",
        "Operator",
        "OperatorDirectory",
        "PlantMode",
    }


def test_every_event_has_a_row_with_its_fields() -> None:
    documented = _documented_rows()
    missing = sorted(set(_code_events()) - set(documented))
    assert not missing, f"events without a row in docs/events.md: {missing}; {REGENERATE}"
    for key, fields in _code_events().items():
        assert documented[key] == fields, (
            f"docs/events.md lists {documented[key]} for {key}, the code has {fields}; {REGENERATE}"
        )


def test_every_row_names_an_existing_event() -> None:
    stale = sorted(set(_documented_rows()) - set(_code_events()))
    assert not stale, f"rows of docs/events.md for events that do not exist: {stale}"


def test_events_md_is_what_the_generator_writes() -> None:
    current = _read("events.md")
    assert "TODO" not in current, "docs/events.md has a TODO cell: describe the new event"
    assert regenerate.events_md(current) == current, f"docs/events.md is stale: {REGENERATE}"


def test_documented_topic_prefixes_are_the_stored_ones() -> None:
    events_md = _read("events.md")
    for aggregate in regenerate.aggregates():
        assert f"Stored topic: `{get_topic(aggregate)}.<event>`" in events_md


def _catalog() -> TagCatalog:
    return TagCatalog(
        [
            TagLimits("press", "setpoint", "rpm", True, ValueKind.NUMBER, 0.0, 3000.0),
            # Two persons for a pressure; writing ``False`` to ``running`` is an emergency stop.
            TagLimits("press", "pressure", "bar", True, ValueKind.NUMBER, 0.0, 9.0, critical=True),
            TagLimits(
                "press", "running", "", True, ValueKind.BOOL, None, None, emergency_values=(False,)
            ),
        ],
        {"press": DeviceInfo(area="hall")},
    )


def _stored_topics(app: PlantApplication) -> Iterator[str]:
    for notification in app.recorder.select_notifications(start=1, limit=1000):
        yield notification.topic


def _every_path(app: PlantApplication) -> None:
    """Drive commands, operators, the directory and the plant mode through every event."""
    app.register_operator(
        username="ana",
        full_name="Ana",
        roles=["operator"],
        password_hash="hash",
        totp_secret_sealed="sealed",
        actor="admin",
        at=T0,
    )
    app.grant_permission(username="ana", scope="plant", actor="admin", at=T0)
    with pytest.raises(CommandRefused):
        app.request_command(actor="ana", device="press", tag="setpoint", value=None, at=T0)
    ok = app.request_command(actor="ana", device="press", tag="setpoint", value=1.0, at=T0)
    with pytest.raises(ConfirmationRefused):
        app.confirm_command(actor="ana", command_id=ok.command_id, totp_step=None, at=T0)
    app.confirm_command(actor="ana", command_id=ok.command_id, totp_step=1, at=T0)
    app.record_dispatch(ok.command_id, T0)
    app.record_write_succeeded(ok.command_id, 1.0, T0)
    failed = _confirmed(app, step=2)
    app.record_dispatch(failed, T0)
    app.record_write_failed(failed, "device offline", T0)
    cancelled = app.request_command(actor="ana", device="press", tag="setpoint", value=2, at=T0)
    app.cancel_command(actor="ana", command_id=cancelled.command_id, at=T0)
    late = app.request_command(actor="ana", device="press", tag="setpoint", value=3, at=T0)
    assert app.expire_command(late.command_id, T0 + timedelta(minutes=5))
    app.record_plant_configuration(
        plant_id="demo", devices={"press": "digest"}, source="plant.yaml", problems=[],
        actor="plantcore", at=T0,
    )  # fmt: skip
    app.record_history_partition_dropped(
        table="samples", partition="samples_p20250101", start=T0, end=T0, rows=0,
        retention_days=30, at=T0,
    )  # fmt: skip
    _every_alarm_path(app)
    _every_access_path(app)
    _every_approval_path(app)


def _alarm_transition(serial: int, condition: str, active: bool, **changes: Any) -> AlarmTransition:
    fields: dict[str, Any] = {
        "transition_id": f"t{serial}", "device": "press", "condition": condition,
        "kind": AlarmKind.HI, "priority": AlarmPriority.HIGH, "area": "hall", "tag": "temp",
        "active": active, "suppressed": False, "latch": False, "value": 90.0, "limit": 80.0,
        "message": "hot", "ts": T0 + timedelta(seconds=serial),
    }  # fmt: skip
    return AlarmTransition(**(fields | changes))


def _every_alarm_path(app: PlantApplication) -> None:
    """Alarms through every event, and a flood in their area that starts and ends."""
    later = T0 + timedelta(minutes=1)
    # Eleven alarms at once: Defined and Raised each, and a flood.
    app.record_alarm_transitions([_alarm_transition(i, f"c{i}", True) for i in range(11)], later)
    # c0 now latches (Reconfigured), clears and comes back twice: chattering, then latched.
    flips = [_alarm_transition(20 + i, "c0", i % 2 == 1, latch=True) for i in range(5)]
    app.record_alarm_transitions(flips, later)
    suppression = [
        _alarm_transition(30, "c1", True, suppressed=True),
        _alarm_transition(31, "c1", True, suppressed=False),
    ]
    app.record_alarm_transitions(suppression, later)
    alarm, at = alarm_id("press", "c0"), T0 + timedelta(minutes=2)
    assert app.end_alarm_chattering_if_quiet(alarm, at)
    app.acknowledge_alarm(alarm_id=alarm, actor="ana", comment="seen", at=at)
    app.reset_alarm_latch(alarm_id=alarm, actor="ana", at=at)
    app.shelve_alarm(alarm_id=alarm, actor="ana", reason="r", duration=timedelta(hours=1), at=at)
    app.unshelve_alarm(alarm_id=alarm, actor="ana", at=at)
    app.remove_alarm_from_service(alarm_id=alarm, actor="ana", reason="r", at=at)
    app.return_alarm_to_service(alarm_id=alarm, actor="ana", at=at)
    assert app.end_alarm_flood_if_over("hall", T0 + timedelta(hours=1))


def _every_access_path(app: PlantApplication) -> None:
    """A second operator through every account, login and session event, and the plant mode."""
    app.register_operator(
        username="bob", full_name="Bob", roles=["operator"], password_hash="hash",
        totp_secret_sealed="sealed", actor="admin", at=T0,
    )  # fmt: skip
    for scope in ("plant", "device:press"):
        app.grant_permission(username="bob", scope=scope, actor="admin", at=T0)
    app.revoke_permission(username="bob", scope="device:press", actor="admin", at=T0)
    app.grant_role(username="bob", role="supervisor", actor="admin", at=T0)
    app.revoke_role(username="bob", role="supervisor", actor="admin", at=T0)
    app.set_password(username="bob", password_hash="hash2", actor="bob", at=T0)
    app.enroll_totp(username="bob", totp_step=1, totp_secret_sealed="sealed2", at=T0)
    _every_second_factor_path(app)
    for _ in range(app.login_policy.max_failures):  # the last one locks the account
        with pytest.raises(LoginRefused):
            _log_in(app, "bob", matches=False, session="s0")
    app.unlock_operator(username="bob", actor="admin", at=T0)
    app.record_access_denied(username="bob", action="plant.mode", target="", source="hmi", at=T0)
    _log_in(app, "bob", matches=True, session="s1", refresh="r1")
    app.refresh_session(
        username="bob", session_id="s1", presented_hash="r1", new_hash="r2", source="hmi", at=T0
    )
    with pytest.raises(SessionInvalid):  # r1 again: a copied token, the session is revoked
        app.refresh_session(
            username="bob", session_id="s1", presented_hash="r1", new_hash="r3", source="x", at=T0
        )
    _log_in(app, "bob", matches=True, session="s2")
    assert app.log_out(username="bob", session_id="s2", at=T0)
    with pytest.raises(LoginRefused):
        _log_in(app, "nobody", matches=False, session="s3")
    app.disable_operator(username="bob", reason="on leave", actor="admin", at=T0)
    app.enable_operator(username="bob", actor="admin", at=T0)
    app.set_plant_mode(mode=Mode.READ_ONLY, reason="maintenance", actor="bob", at=T0)
    app.set_plant_mode(mode=Mode.NORMAL, reason="done", actor="bob", at=T0)


def _every_second_factor_path(app: PlantApplication) -> None:
    """A new account enrols with its token; bob locks, is unlocked, and is recovered by two."""
    for admin in ("ada", "rita"):
        app.register_operator(
            username=admin, full_name=admin.title(), roles=["admin"], password_hash="hash",
            totp_secret_sealed="sealed", actor="cli", at=T0,
        )  # fmt: skip
    app.register_operator(
        username="nina", full_name="Nina", roles=["viewer"], password_hash="hash",
        enrolment_token_hash="token", actor="ada", at=T0,
    )  # fmt: skip
    app.enroll_totp_with_token(
        username="nina", presented_hashes=["token"], totp_secret_sealed="sealed", at=T0
    )
    for _ in range(app.second_factor_policy.max_failures + 1):  # the last one is refused
        with pytest.raises(DomainError):
            app.enroll_totp(username="bob", totp_step=None, totp_secret_sealed="x", at=T0)
    app.unlock_second_factor(username="bob", actor="ada", at=T0)
    app.request_totp_recovery(
        username="bob", reason="lost", token_hash="a", actor="ada", totp_step=1, at=T0
    )
    app.approve_totp_recovery(username="bob", token_hash="b", actor="rita", totp_step=1, at=T0)
    app.enroll_totp_with_token(
        username="bob", presented_hashes=["a", "b"], totp_secret_sealed="sealed3", at=T0
    )


def _log_in(
    app: PlantApplication, username: str, *, matches: bool, session: str, refresh: str = "r"
) -> None:
    app.log_in(
        username=username, password_matches=matches, source="10.0.0.9", session_id=session,
        refresh_hash=refresh, at=T0,
    )  # fmt: skip


def _every_approval_path(app: PlantApplication) -> None:
    """A critical write approved, one declined, and an emergency stop (ana and bob sign)."""
    approved = app.request_command(actor="ana", device="press", tag="pressure", value=5, at=T0)
    app.confirm_command(actor="ana", command_id=approved.command_id, totp_step=10, at=T0)
    with pytest.raises(SecondPersonRequired):
        app.approve_command(actor="ana", command_id=approved.command_id, totp_step=11, at=T0)
    app.approve_command(actor="bob", command_id=approved.command_id, totp_step=10, at=T0)
    declined = app.request_command(actor="ana", device="press", tag="pressure", value=6, at=T0)
    app.confirm_command(actor="ana", command_id=declined.command_id, totp_step=11, at=T0)
    app.decline_command(actor="bob", command_id=declined.command_id, reason="too high", at=T0)
    app.request_command(actor="ana", device="press", tag="running", value=False, at=T0)


def _confirmed(app: PlantApplication, step: int) -> UUID:
    ticket = app.request_command(actor="ana", device="press", tag="setpoint", value=4, at=T0)
    app.confirm_command(actor="ana", command_id=ticket.command_id, totp_step=step, at=T0)
    return ticket.command_id


def test_introspected_events_are_exactly_the_stored_ones() -> None:
    app = PlantApplication(_catalog())
    _every_path(app)
    stored = set(_stored_topics(app))
    introspected = {
        get_topic(event)
        for aggregate in regenerate.aggregates()
        for event in regenerate.recorded_events(aggregate)
    }
    assert stored == introspected


# -- docs/graphql.md ---------------------------------------------------------------------


def _error_codes() -> set[str]:
    """Every ``extensions.code`` the API can send, gathered from the code that sends them."""
    lines = (graphql_errors.__doc__ or "").splitlines()
    rules = [i for i, line in enumerate(lines) if line.startswith("====")]
    assert len(rules) == 3, "the table in api/graphql/error_codes.py's docstring changed shape"
    codes = {
        code
        for line in lines[rules[1] + 1 : rules[2]]
        for code in re.findall(r"``(\w+)``", line.split("  ")[0])
    }
    # Codes the mapping sends literally, whether or not its docstring lists them.
    source = Path(graphql_errors.__file__).read_text(encoding="utf-8")
    codes |= set(re.findall(r'api_error\(\s*message,\s*"(\w+)"', source))
    codes |= {graphql_errors.FORBIDDEN, graphql_errors.INVALID_CREDENTIALS}
    codes |= {graphql_errors.NOT_FOUND, graphql_errors.UNKNOWN_DEVICE}
    codes |= {context.UNAUTHENTICATED, context.FORBIDDEN}
    codes |= {BAD_REQUEST}
    codes |= {reason.value for reason in RejectionReason}
    codes |= {reason.value for reason in ConfirmationFailure}
    return codes


def test_graphql_md_documents_every_error_code() -> None:
    graphql_md = _read("graphql.md")
    undocumented = sorted(code for code in _error_codes() if f"`{code}`" not in graphql_md)
    assert not undocumented, f"docs/graphql.md lacks the error codes {undocumented}"


def test_graphql_md_documents_every_root_field() -> None:
    graphql_md = _read("graphql.md")
    printed = build_schema(print_schema(schema))
    for root in (printed.query_type, printed.mutation_type, printed.subscription_type):
        assert root is not None
        for name in root.fields:
            assert f"### `{name}`" in graphql_md, f"docs/graphql.md has no section `{name}`"


# -- docs/nats.md -----------------------------------------------------------------------------


def test_nats_md_documents_every_write_error_kind() -> None:
    nats_md = _read("nats.md")
    missing = sorted(kind.value for kind in WriteErrorKind if f"`{kind.value}`" not in nats_md)
    assert not missing, f"docs/nats.md lacks the write error kinds {missing}"


def test_nats_md_documents_every_quality_reason() -> None:
    nats_md = _read("nats.md")
    missing = sorted(
        reason.value for reason in QualityReason if f"| `{reason.value}` |" not in nats_md
    )
    assert not missing, f"docs/nats.md lacks a row for the quality reasons {missing}"


# -- README.md ------------------------------------------------------------------------------


def test_the_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = sorted(
        name for name in Settings.model_fields if f"`PLANTCORE_{name.upper()}`" not in readme
    )
    assert not missing, f"README.md's configuration table lacks {missing}"


# -- docs/decisions/ ---------------------------------------------------------------------


def test_every_decision_is_indexed_and_complete() -> None:
    decisions = DOCS / "decisions"
    index = (decisions / "README.md").read_text(encoding="utf-8")
    records = sorted(path for path in decisions.glob("[0-9][0-9][0-9][0-9]-*.md"))
    assert records
    for path in records:
        assert f"({path.name})" in index, f"docs/decisions/README.md does not link {path.name}"
        text = path.read_text(encoding="utf-8")
        for part in ("## Context", "## Decision", "## Consequences"):
            assert part in text, f"{path.name} has no '{part}'"
