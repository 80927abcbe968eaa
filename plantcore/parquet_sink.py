"""The Parquet file of ``plantcore history export``: one row group per batch fetched.

pyarrow comes with the ``parquet`` extra; without it the export says so and
writes nothing. Each batch becomes a row group as it arrives, so the file grows
while memory holds one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from plantcore.history_export import ExportError

try:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]
except ImportError as exc:  # the extra is not installed
    raise ExportError(
        "Parquet needs pyarrow: pip install 'plantcore[parquet]' (or use --format csv)"
    ) from exc

_TIME = pa.timestamp("us", tz="UTC")
_TYPES: dict[str, pa.DataType] = {
    "time": _TIME,
    "bucket": _TIME,
    "first_time": _TIME,
    "last_time": _TIME,
    "device": pa.string(),
    "tag": pa.string(),
    "quality": pa.string(),
    "unit": pa.string(),
    "count": pa.int64(),
    "good_count": pa.int64(),
}


class ParquetSink:
    def __init__(self, path: str, columns: Sequence[str]) -> None:
        self._columns = list(columns)
        self._schema = pa.schema([(c, _TYPES.get(c, pa.float64())) for c in self._columns])
        self._writer = pq.ParquetWriter(path, self._schema)

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        table = pa.Table.from_arrays(
            [
                pa.array(values, type=field.type)
                for values, field in zip(zip(*rows, strict=True), self._schema, strict=True)
            ],
            schema=self._schema,
        )
        self._writer.write_table(table)

    def close(self) -> None:
        self._writer.close()
