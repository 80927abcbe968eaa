"""The names and URLs of ``plantcore db init``'s roles, without a database."""

from __future__ import annotations

import pytest

from eventstore.roles import PlantRoles, role_url


def test_the_roles_are_named_from_the_prefix() -> None:
    assert PlantRoles.named("plant_7") == PlantRoles(
        "plant_7_owner", "plant_7_runtime", "plant_7_auditor", "plant_7_analyst"
    )
    assert PlantRoles.named().logins == (
        "plantcore_runtime",
        "plantcore_auditor",
        "plantcore_analyst",
    )


@pytest.mark.parametrize("prefix", ["", "Plant", "plant-core", "plant core", "x;drop", "a" * 42])
def test_a_prefix_that_is_not_a_plain_identifier_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="plain lower-case identifier"):
        PlantRoles.named(prefix)


@pytest.mark.parametrize(
    ("url", "password", "expected"),
    [
        (
            "postgresql://postgres:secret@db.example:5433/plant",
            None,
            "postgresql://plantcore_runtime@db.example:5433/plant",
        ),
        (
            "postgresql://postgres@127.0.0.1/plant?sslmode=require",
            "p@ss:w/rd",
            "postgresql://plantcore_runtime:p%40ss%3Aw%2Frd@127.0.0.1/plant?sslmode=require",
        ),
        (
            "postgresql://postgres:@/postgres?host=/dir",
            None,
            "postgresql://plantcore_runtime@/postgres?host=/dir",
        ),
        (
            "postgresql://postgres@[::1]:5432/plant",
            None,
            "postgresql://plantcore_runtime@[::1]:5432/plant",
        ),
    ],
)
def test_a_role_url_is_the_same_server_and_database_as_that_role(
    url: str, password: str | None, expected: str
) -> None:
    assert role_url(url, "plantcore_runtime", password) == expected
