"""A connection block's password: the variable that holds it, and how it may travel.

A plant file never holds a password: ``password_env`` names the environment
variable that does, and the driver sends what it reads there to the server the
block names. So the variable cannot be one of plantcore's own settings
(``PLANTCORE_*``: the token signing key, the database URL, ...), or whoever can
edit the plant file would receive plantcore's own secrets at a server of their
choice. The driver's reader (:func:`support.secret_source.device_secret`)
refuses the same names again.

A password travels only over an encrypted connection, unless the block says
``allow_unencrypted_password: true``: a consent, written where the risk is
taken, that anyone on the network path can read the password.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

# Every variable plantcore's settings are read from (plantcore/settings.py's env_prefix),
# in any case: pydantic-settings matches it case-insensitively. The reader holds the
# same rule apart, in support/secret_source.py: this package may not import that one.
PLANTCORE_SETTINGS_PREFIX = "PLANTCORE_"


def _not_a_plantcore_setting(name: str) -> str:
    if name.casefold().startswith(PLANTCORE_SETTINGS_PREFIX.casefold()):
        raise ValueError(
            f"{name} is one of plantcore's own settings ({PLANTCORE_SETTINGS_PREFIX}*):"
            " a device's password must be in a variable of its own"
        )
    return name


PasswordVariable = Annotated[
    str,
    Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"),
    AfterValidator(_not_a_plantcore_setting),
]
"""The name of the variable holding a password (or ``<name>_FILE``, its file), never the
password, and never one of plantcore's settings."""

UnencryptedPasswordConsent = Annotated[
    bool,
    Field(
        description="RISK: lets the password travel over an unencrypted connection, readable"
        " by anyone on the network path; only for a device on an isolated network"
    ),
]


def check_password_transport(
    password_env: str | None, *, encrypted: bool, consent: bool, how_to_encrypt: str
) -> None:
    """Raise ValueError for a password over an unencrypted connection without the block's
    consent, or for a consent that consents to nothing (it would mislead a reader)."""
    if password_env is not None and not encrypted and not consent:
        raise ValueError(
            f"a password must not travel unencrypted: {how_to_encrypt}"
            " (or accept that the network can read it: allow_unencrypted_password: true)"
        )
    if consent and (password_env is None or encrypted):
        raise ValueError(
            "allow_unencrypted_password applies only to a password over an unencrypted"
            " connection: drop allow_unencrypted_password"
        )
