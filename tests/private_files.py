"""Watching how a secret's file comes to exist, to prove it was never readable by others.

A file written with the default mode and ``chmod``-ed to 0600 afterwards is
readable by anyone, under a permissive umask, between the two calls; a file
"created" with ``O_CREAT`` alone reuses whatever already stands at that path
(a file of wider mode, another user's symlink) and keeps its mode. The
interpreter's audit events (``open``, ``os.chmod``, ``os.rename``) show every
creation, its flags and every change of mode, from any thread:
:func:`watching_files` records them under a chosen umask, and
:meth:`FileWatch.assert_private` checks one file against them.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PRIVATE_MODE = 0o600


@dataclass
class FileWatch:
    """What happened to files while watching: creations with their flags, chmods, renames."""

    creations: list[tuple[str, int]] = field(default_factory=list)
    # Each chmod with the mode the file had just before it.
    chmods: list[tuple[str, int | None]] = field(default_factory=list)
    renames: list[tuple[str, str]] = field(default_factory=list)

    def assert_private(self, path: Path, *, exclusive: bool = True) -> None:
        """``path`` was created with mode 0600 and, if ``exclusive``, by an ``O_EXCL`` open.

        The file may have been made under another name and renamed into place
        (an atomic replace); what counts is how each of its names was created.
        Never chmod-ed: under a umask of 0 its mode now is its mode at creation.
        """
        target = str(path)
        names = {target} | {source for source, destination in self.renames if destination == target}
        created = [flags for name, flags in self.creations if name in names]
        assert created, f"{path} was not created while watched"
        widened = [(name, mode) for name, mode in self.chmods if name in names]
        assert not widened, (
            f"{path} was chmod-ed after it was created; before that it had mode"
            f" {', '.join(oct(mode) for _, mode in widened if mode is not None)}"
        )
        if exclusive:
            reused = [flags for flags in created if not flags & os.O_EXCL]
            assert not reused, (
                f"{path} was opened with O_CREAT but not O_EXCL: an existing file or symlink"
                " at that path is written through, keeping its own mode"
            )
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == PRIVATE_MODE, f"{path} has mode {oct(mode)}, not 0o600"


_watches: list[FileWatch] = []


def _mode(path: str) -> int | None:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None


def _record(event: str, args: tuple[object, ...]) -> None:
    if not _watches:
        return
    if event == "open":
        path, _, flags = args
        if not isinstance(flags, int) or not flags & os.O_CREAT:
            return
        if isinstance(path, str | bytes | os.PathLike):
            for watch in _watches:
                watch.creations.append((os.fsdecode(path), flags))
    elif event == "os.chmod":
        target = args[0]
        name = os.fsdecode(target) if isinstance(target, str | bytes | os.PathLike) else ""
        for watch in _watches:
            watch.chmods.append((name, _mode(name) if name else None))
    elif event == "os.rename":
        source, destination = args[0], args[1]
        if isinstance(source, str | bytes | os.PathLike) and isinstance(
            destination, str | bytes | os.PathLike
        ):
            for watch in _watches:
                watch.renames.append((os.fsdecode(source), os.fsdecode(destination)))


sys.addaudithook(_record)  # audit hooks cannot be removed: it records only while watching


@contextmanager
def watching_files(*, umask: int = 0) -> Iterator[FileWatch]:
    """Record file creations, chmods and renames, with the process's umask set to ``umask``."""
    watch = FileWatch()
    previous = os.umask(umask)
    _watches.append(watch)
    try:
        yield watch
    finally:
        _watches.remove(watch)
        os.umask(previous)
