"""docs/security.md prints the permission matrix of ``domain/permissions.py``: checked here.

The table under ``## Permission matrix`` has one row per action (its name in
backticks, the GraphQL fields it opens, ``yes``/``no`` for scoped) and one
column per role (✓ allowed, — not). It must say exactly what
:data:`~domain.permissions.ROLE_ACTIONS` and
:data:`~domain.permissions.SCOPED_ACTIONS` say: every role, every action, every
cell. The fields it names must exist, and every root field of the schema must
be named somewhere in that section, in the table or in the notes after it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from graphql import build_schema
from strawberry.printer import print_schema

from api.graphql.schema import schema
from domain.permissions import ROLE_ACTIONS, SCOPED_ACTIONS, Action, Role

SECURITY_MD = Path(__file__).resolve().parents[3] / "docs" / "security.md"
SECTION = "## Permission matrix"
ALLOWED, DENIED = "✓", "—"
SCOPED = {"yes": True, "no": False}


def _section() -> str:
    text = SECURITY_MD.read_text(encoding="utf-8")
    assert SECTION in text, f"docs/security.md has no '{SECTION}' section"
    after = text.split(SECTION, 1)[1]
    return after.split("\n## ", 1)[0]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table() -> tuple[list[str], list[list[str]]]:
    """The header and the rows of the first table of the section."""
    lines = [line for line in _section().splitlines() if line.startswith("|")]
    assert len(lines) > 2, "the permission matrix has no rows"
    header, rule, *rows = lines
    assert set(rule.replace("|", "").replace("-", "").strip()) <= {":", " ", ""}
    return _cells(header), [_cells(row) for row in rows]


def _matrix() -> tuple[dict[str, set[str]], dict[str, bool], dict[str, set[str]]]:
    """(role → actions allowed, action → scoped, action → GraphQL fields), as documented."""
    header, rows = _table()
    assert header[:3] == ["action", "GraphQL fields", "scoped"], header
    roles = header[3:]
    allowed: dict[str, set[str]] = {role: set() for role in roles}
    scoped: dict[str, bool] = {}
    fields: dict[str, set[str]] = {}
    for row in rows:
        assert len(row) == len(header), f"a row with {len(row)} cells, not {len(header)}: {row}"
        match = re.fullmatch(r"`([\w.]+)`", row[0])
        assert match, f"the first cell must be an action in backticks: {row[0]!r}"
        action = match[1]
        assert action not in scoped, f"two rows for {action}"
        assert row[2] in SCOPED, f"{action}: scoped must be yes or no, not {row[2]!r}"
        scoped[action] = SCOPED[row[2]]
        fields[action] = set(re.findall(r"`(\w+)`", row[1]))
        for role, cell in zip(roles, row[3:], strict=True):
            assert cell in (ALLOWED, DENIED), f"{action}/{role}: {cell!r} is neither ✓ nor —"
            if cell == ALLOWED:
                allowed[role].add(action)
    return allowed, scoped, fields


def test_every_role_has_a_column_and_no_other_column_is_a_role() -> None:
    header, _ = _table()
    assert sorted(header[3:]) == sorted(role.value for role in Role)


def test_every_action_has_a_row() -> None:
    _, scoped, _ = _matrix()
    assert sorted(scoped) == sorted(action.value for action in Action)


@pytest.mark.parametrize("role", list(Role), ids=str)
def test_the_column_of_each_role_is_the_code(role: Role) -> None:
    allowed, _, _ = _matrix()
    assert allowed[role.value] == {action.value for action in ROLE_ACTIONS[role]}


def test_the_scoped_column_is_the_code() -> None:
    _, scoped, _ = _matrix()
    assert {action for action, is_scoped in scoped.items() if is_scoped} == {
        action.value for action in SCOPED_ACTIONS
    }


def _root_fields() -> set[str]:
    printed = build_schema(print_schema(schema))
    names: set[str] = set()
    for root in (printed.query_type, printed.mutation_type, printed.subscription_type):
        assert root is not None
        names |= set(root.fields)
    return names


def test_the_fields_named_in_the_matrix_exist() -> None:
    _, _, fields = _matrix()
    unknown = sorted(set().union(*fields.values()) - _root_fields())
    assert not unknown, f"the permission matrix names fields the schema lacks: {unknown}"


def test_every_root_field_is_placed_in_the_permission_section() -> None:
    section = _section()
    missing = sorted(name for name in _root_fields() if f"`{name}`" not in section)
    assert not missing, f"docs/security.md's permission matrix does not place {missing}"


def test_no_field_is_named_for_two_actions() -> None:
    _, _, fields = _matrix()
    seen: dict[str, str] = {}
    for action, names in fields.items():
        for name in names:
            assert name not in seen, f"{name} is listed for {seen[name]} and {action}"
            seen[name] = action
