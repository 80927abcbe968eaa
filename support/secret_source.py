"""Where a secret comes from: a value, or a file that a variable names. The one reader of both.

A secret is given either directly (``NAME``) or as the path of a file that
holds it (``NAME_FILE``: a Docker or systemd credential), never both; one line
ending at the end of the file is not part of it. plantcore's own keys
(through its settings), a new operator's password (``plantcore users
create``) and a device's password (the variable its plant-file block names,
through :func:`device_secret`) are all read here, and nowhere else.
"""

from __future__ import annotations

import os
from pathlib import Path

# Every variable plantcore's settings are read from (plantcore/settings.py's env_prefix),
# in any case: pydantic-settings matches it case-insensitively. The plant-file models
# refuse these names first (plantfile/protocols/passwords.py); this package imports
# nothing of plantcore's, so it holds the rule on its own.
PLANTCORE_SETTINGS_PREFIX = "PLANTCORE_"


class SecretSourceError(ValueError):
    """A secret given twice, a secret file that cannot be read, or a secret not a device's."""


def read_secret(name: str, value: str | None, file: str | Path | None) -> str | None:
    """The secret ``name`` from its value or its file; ``None`` if neither is given."""
    if value is not None and file is not None:
        raise SecretSourceError(f"set {name} or {name}_FILE, not both")
    if file is None:
        return value
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretSourceError(f"{name}_FILE: {exc}") from exc
    return text.removesuffix("\n").removesuffix("\r")


def environment_secret(name: str) -> str | None:
    """The secret in the environment variable ``name`` or the file ``name_FILE`` names.

    An empty variable counts as not set.
    """
    return read_secret(name, os.environ.get(name) or None, os.environ.get(f"{name}_FILE") or None)


def device_secret(name: str) -> str | None:
    """A device's secret, from the variable its plant-file block names (or ``name_FILE``).

    Never one of plantcore's own settings: a driver sends what this returns to
    the device's server, so ``PLANTCORE_JWT_SECRET`` here would hand that server
    the key that signs every access token.
    """
    if name.casefold().startswith(PLANTCORE_SETTINGS_PREFIX.casefold()):
        raise SecretSourceError(f"{name} is one of plantcore's own settings: no device reads it")
    return environment_secret(name)
