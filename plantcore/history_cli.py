"""``plantcore history export``: the arguments, the progress on a terminal, the exit code.

Exit 0 with the file written, 2 when the export cannot run as asked (an unknown
device or tag, ``--from`` not before ``--to``, an output that cannot be
written, no database): the message names what is wrong and no file is left.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from audit.progress import Progress
from plantcore.history_export import Bucket, ExportError, ExportRequest, Format, export_history
from plantcore.settings import Settings


def _time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None


def add_history_commands(subparsers: Any) -> None:
    """Add ``history`` and its commands to the ``plantcore`` sub-parsers."""
    history = subparsers.add_parser("history", help="the plant's stored history")
    commands = history.add_subparsers(dest="history_command", required=True)
    export = commands.add_parser(
        "export", help="one device's tags over a time range, to a CSV or Parquet file"
    )
    export.add_argument("--device", required=True)
    export.add_argument("--tags", required=True, help="comma-separated tag names")
    export.add_argument(
        "--from", dest="start", type=_time, required=True, help="ISO 8601 with a zone"
    )
    export.add_argument("--to", dest="end", type=_time, required=True, help="exclusive")
    export.add_argument(
        "--bucket",
        type=Bucket,
        choices=list(Bucket),
        default=Bucket.RAW,
        help="raw samples (the default), or the 1-minute or 1-hour rollups",
    )
    export.add_argument("--format", type=Format, choices=list(Format), default=Format.CSV)
    export.add_argument("--output", type=Path, required=True, help="the file to write")
    export.add_argument("--quiet", action="store_true", help="no progress on stderr")


def run_history(args: argparse.Namespace) -> int:
    request = ExportRequest(
        device=args.device,
        tags=tuple(tag.strip() for tag in args.tags.split(",") if tag.strip()),
        start=args.start,
        end=args.end,
        bucket=args.bucket,
    )
    # Only on a terminal: a redirected stderr (a scheduled job) gets no progress lines.
    progress = (
        None if args.quiet or not sys.stderr.isatty() else Progress("history export", unit="rows")
    )
    try:
        request.check()
        with psycopg.connect(Settings().database_url) as conn:
            rows = export_history(
                conn,
                request,
                args.output,
                args.format,
                on_rows=None if progress is None else progress.update,
            )
    except (ExportError, psycopg.OperationalError) as exc:
        print(f"plantcore: {exc}", file=sys.stderr)
        return 2
    print(f"{rows} rows written to {args.output}")
    return 0
