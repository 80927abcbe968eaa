"""The simulator's own record of every write it applied: one JSON object a line.

A fault drill holds the plant core's event log against it: a write the
device applied is a line here whatever the plant core recorded, or failed to
record, before it died. Each line is written and flushed before the device
answers the write, so the record never lags behind what the device did::

    {"time": "2026-05-04T10:00:00.123456+00:00", "tag": "speed_setpoint", "value": 1500}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from plantfile.tags import TagValue
from support.clock import utc_now


@dataclass(frozen=True, slots=True)
class AppliedWrite:
    time: datetime
    tag: str
    value: TagValue


class WriteLog:
    """Appends each applied write to ``path`` (created with its directory if missing)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path

    def record(self, tag: str, value: TagValue) -> None:
        line = json.dumps({"time": utc_now().isoformat(), "tag": tag, "value": value})
        # Opened per write: a reader sees every line whole, and nothing is held open.
        with self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")


def read_write_log(path: Path) -> list[AppliedWrite]:
    """Every write in ``path``, oldest first; none if the simulator never wrote it."""
    if not path.exists():
        return []
    writes = []
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        writes.append(
            AppliedWrite(datetime.fromisoformat(entry["time"]), entry["tag"], entry["value"])
        )
    return writes
