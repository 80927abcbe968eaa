"""Files that hold a key or a credential: their owner's alone from the first byte.

A file written with the default mode and ``chmod``-ed afterwards can be read
by anyone in between (under a permissive umask, by everyone), and an open
with ``O_CREAT`` alone writes through whatever already stands at the path (a
file of wider mode, a symlink someone planted) and keeps its mode. So every
such file is created by an ``O_CREAT | O_EXCL`` open with mode 0600 (the
umask can only narrow it), and replaced by renaming a new one over it. A log
that grows run after run is opened to append, and created with mode 0600 by
that same open when it is missing.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import BinaryIO

PRIVATE_MODE = 0o600
_WRITE = os.O_WRONLY | os.O_CLOEXEC


def open_new_private(path: Path) -> BinaryIO:
    """The new file ``path``, open for writing; :class:`FileExistsError` if anything is there."""
    return os.fdopen(os.open(path, _WRITE | os.O_CREAT | os.O_EXCL, PRIVATE_MODE), "wb")


def create_private(path: Path, data: bytes) -> None:
    """Write ``data`` to the new file ``path``, synced; :class:`FileExistsError` as above."""
    with open_new_private(path) as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def replace_private(path: Path, data: bytes) -> None:
    """Make ``path`` hold ``data``, all at once: readers see the old file or the new one."""
    staged = path.with_name(f".{path.name}.{secrets.token_hex(4)}.new")
    try:
        create_private(staged, data)
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)


def append_private(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path`` and sync it, creating the file with mode 0600 if missing."""
    descriptor = os.open(path, _WRITE | os.O_CREAT | os.O_APPEND, PRIVATE_MODE)
    with os.fdopen(descriptor, "ab") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
