"""Each tag's last known value, held while the tag cannot be read (seed 003: "Sin conexión a
PLC → usa último valor conocido").

A supervisor turns every reading into a sample here: a good one is remembered
with its time, and one that is not good becomes a ``bad`` sample that keeps
the last good value (``None`` only for a tag never read good since the
supervisor started), the time it was read (``value_ts``) and the reason. Its
own ``ts`` is when the quality was known, so the history gets a row for the
change instead of a gap, and nothing downstream mistakes the held value for a
fresh one (see ADR 0031).
"""

from __future__ import annotations

from datetime import datetime

from domain.messages import Quality, QualityReason, Sample, TagValue
from plantfile.tags import TagConfig


class LastKnownValues:
    """The last good value of each tag of one device, and when it was read."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[TagValue, datetime]] = {}

    def good(self, tag: TagConfig, value: TagValue, ts: datetime) -> Sample:
        """A good sample, remembered as the tag's last known value."""
        self._values[tag.name] = (value, ts)
        return Sample(tag.name, value, Quality.GOOD, tag.unit, ts)

    def held(self, tag: TagConfig, reason: QualityReason, ts: datetime) -> Sample:
        """A bad sample at ``ts`` that holds the tag's last known value, saying why."""
        value, read_at = self._values.get(tag.name, (None, None))
        return Sample(tag.name, value, Quality.BAD, tag.unit, ts, reason=reason, value_ts=read_at)
