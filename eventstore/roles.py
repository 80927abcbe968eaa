"""Database roles, each with the least privilege its use of the plant's database needs.

Four roles, named from a prefix (``plantcore`` by default):

- ``<prefix>_owner`` (NOLOGIN) owns the tables, their triggers and functions.
  Nobody logs in as it; an administrator acts for it through ``plantcore db init``.
- ``<prefix>_runtime`` (LOGIN) is what ``plantcore run`` connects as. It owns
  nothing, so it can neither disable a trigger nor alter, truncate or drop a
  table; on the record it may only INSERT and SELECT.
- ``<prefix>_auditor`` (LOGIN) may only SELECT: ``plantcore audit`` and the
  checkpoint signer need nothing more.
- ``<prefix>_analyst`` (LOGIN) may only SELECT from the views made for
  analysts (history, the alarm journal, the command list): no table at all.

This module makes the roles, hands objects to the owner and sets each role's
privileges on them to exactly what it is told (whatever else a role held on
those objects is revoked), so running it again repairs rather than adds up.
Which object gets which privilege is the composition root's policy
(:mod:`plantcore.db_init`). It also tells a process what its own connection may
do (:func:`connection_rights`), so that the runtime can refuse to run with more.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

DEFAULT_PREFIX = "plantcore"
_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,40}")


class Kind(Enum):
    """What an object is, as ``ALTER … OWNER`` and ``GRANT … ON`` spell it."""

    TABLE = "TABLE"
    SEQUENCE = "SEQUENCE"
    FUNCTION = "FUNCTION"
    TYPE = "TYPE"
    SCHEMA = "SCHEMA"
    DATABASE = "DATABASE"


@dataclass(frozen=True)
class PlantRoles:
    owner: str
    runtime: str
    auditor: str
    analyst: str

    @classmethod
    def named(cls, prefix: str = DEFAULT_PREFIX) -> PlantRoles:
        """The four roles of ``prefix`` (a plain lower-case identifier)."""
        if not _PREFIX.fullmatch(prefix):
            raise ValueError(
                f"a role prefix is a plain lower-case identifier (letters, digits, _): {prefix!r}"
            )
        return cls(f"{prefix}_owner", f"{prefix}_runtime", f"{prefix}_auditor", f"{prefix}_analyst")

    @property
    def logins(self) -> tuple[str, str, str]:
        """The roles that connect, and so whose privileges are granted, never implied."""
        return self.runtime, self.auditor, self.analyst


@dataclass(frozen=True)
class Grant:
    """``privileges`` on one object for one role; an empty tuple grants nothing."""

    kind: Kind
    name: str  # as SQL names it: a table, or a function with its argument types
    role: str
    privileges: tuple[str, ...]


@dataclass(frozen=True)
class ConnectionRights:
    """What the role a connection runs as could do to a table beyond using it."""

    role: str
    superuser: bool
    # A member of the table's owner (or the owner itself); None if there is no such table.
    owns_table: bool | None
    # CREATEROLE lets a role make itself a member of any role but a superuser, the owner too.
    createrole: bool
    # CREATE on the current schema: it could create the table were it missing.
    creates_tables: bool

    @property
    def excess(self) -> str | None:
        """Why this role may alter the table (or make itself able to), or None."""
        if self.superuser:
            return f"{self.role} is a superuser"
        if self.owns_table:
            return f"{self.role} owns the events table"
        if self.createrole:
            return f"{self.role} has CREATEROLE, so it can make itself the owner"
        return None


def connection_rights(conn: psycopg.Connection[TupleRow], table: str) -> ConnectionRights:
    row = conn.execute(
        "SELECT current_user::text, r.rolsuper, r.rolcreaterole,"
        " (SELECT pg_has_role(current_user, c.relowner, 'MEMBER') FROM pg_class c"
        "   WHERE c.oid = to_regclass(%s)),"
        " has_schema_privilege(current_schema(), 'CREATE')"
        " FROM pg_roles r WHERE r.rolname = current_user",
        (table,),
    ).fetchone()
    assert row is not None
    role, superuser, createrole, owns, creates = row
    return ConnectionRights(role, superuser, owns, createrole, creates)


def role_url(database_url: str, role: str, password: str | None = None) -> str:
    """``database_url`` with the user (and password) replaced: the same server and database."""
    parts = urlsplit(database_url)
    user = quote(role, safe="")
    if password:
        user += ":" + quote(password, safe="")
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    netloc = f"{user}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def ensure_roles(
    conn: psycopg.Connection[TupleRow], roles: PlantRoles, passwords: dict[str, str]
) -> None:
    """Create the roles if missing and hold them to their attributes; idempotent.

    None of them is a superuser or may create databases or roles, replicate or
    bypass row security; the login roles belong to no other role (a membership
    granted by hand, say in the owner, is revoked). A password is set for a role
    in ``passwords``; any other role's password is left as it is.
    """
    for role in (roles.owner, *roles.logins):
        # Roles belong to the server, not to a database: the init of another database
        # may create the same one at the same time, and no lock spans databases.
        with (
            contextlib.suppress(psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation),
            conn.transaction(),
        ):
            conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
        login = sql.SQL("LOGIN" if role in roles.logins else "NOLOGIN")
        conn.execute(
            sql.SQL(
                "ALTER ROLE {} {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
            ).format(sql.Identifier(role), login)
        )
        if role in passwords:
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(passwords[role])
                )
            )
    for role in roles.logins:
        memberships = conn.execute(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
            " JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s",
            (role,),
        ).fetchall()
        for (group,) in memberships:
            conn.execute(
                sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), sql.Identifier(role))
            )


def give_to_owner(
    conn: psycopg.Connection[TupleRow], owner: str, objects: Iterable[tuple[Kind, str]]
) -> None:
    """Make ``owner`` the owner of each object (a table's indexes and sequences follow it)."""
    for kind, name in objects:
        conn.execute(
            sql.SQL("ALTER {} {} OWNER TO {}").format(
                sql.SQL(kind.value), sql.SQL(name), sql.Identifier(owner)
            )
        )


def grant_exactly(
    conn: psycopg.Connection[TupleRow], grants: Sequence[Grant], roles: Iterable[str]
) -> None:
    """Each of ``roles`` ends with exactly the privileges ``grants`` give it on their objects.

    Everything ``roles`` held on an object named in ``grants`` is revoked first,
    and so is PUBLIC's right to execute a function named there: such a function
    runs with its owner's rights, so only a role granted it may call it.
    """
    roles = list(roles)
    objects = dict.fromkeys((grant.kind, grant.name) for grant in grants)
    for kind, name in objects:
        holders: list[sql.Composable] = [sql.Identifier(role) for role in roles]
        if kind is Kind.FUNCTION:
            holders.append(sql.SQL("PUBLIC"))
        conn.execute(
            sql.SQL("REVOKE ALL ON {} {} FROM {}").format(
                sql.SQL(kind.value), sql.SQL(name), sql.SQL(", ").join(holders)
            )
        )
    for grant in grants:
        if grant.privileges:
            conn.execute(
                sql.SQL("GRANT {} ON {} {} TO {}").format(
                    sql.SQL(", ").join(sql.SQL(privilege) for privilege in grant.privileges),
                    sql.SQL(grant.kind.value),
                    sql.SQL(grant.name),
                    sql.Identifier(grant.role),
                )
            )
