"""``plantcore audit``: prove the event log whole, export it, and sign its checkpoints.

- ``plantcore audit verify``: recompute the hash chain of the events table
  (or, with ``--file``, of an export, without any database), check signed
  checkpoints, and check every stored snapshot against its events. Exit 0 when
  intact, 1 with the findings when not (the first bad position first), 2 when
  it cannot check (usage, a missing file or key, no database).
- ``plantcore audit export --from POS|TIME --to POS|TIME --out PATH``: NDJSON
  with the chain proof; times are ISO 8601 with a zone and select by record time.
- ``plantcore audit keygen --out PATH``: a new Ed25519 signing key (file mode
  0600); prints the public key for auditors.
- ``plantcore audit checkpoint``: sign the chain head now (or ``--every``
  SECONDS), to the checkpoint file and NATS ``plant.audit.checkpoints``.
- ``plantcore audit signer``: the checkpoint signer as a process of its own,
  every ``PLANTCORE_AUDIT_CHECKPOINT_SECONDS`` until stopped, so that the key
  stays away from the runtime (and its database role need only read).
- ``plantcore audit replay`` and ``plantcore audit timeline``: see
  :mod:`plantcore.audit_inspect`.

Settings: ``PLANTCORE_AUDIT_SIGNING_KEY`` or ``PLANTCORE_AUDIT_SIGNING_KEY_FILE``,
``PLANTCORE_AUDIT_CHECKPOINT_FILE``, ``PLANTCORE_AUDIT_CHECKPOINT_SECONDS``,
``PLANTCORE_AUDIT_PUBLIC_KEY_FILE``; the options here win over them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.chain_check import Kind, NoHashChain, Report, verify_database
from audit.checkpoints import (
    Checkpoint,
    CheckpointWriter,
    InvalidCheckpoint,
    generate_signing_key,
    key_id,
    load_public_key,
    load_signing_key,
    private_key_text,
    public_key_text,
    public_keys,
    read_checkpoints,
    run_checkpoints,
    sign_head,
    verified_heads,
)
from audit.export import ExportFormatError, export_range, position_at, verify_file
from audit.progress import Progress
from audit.snapshot_check import SnapshotSource, plant_mapper, snapshots_table_of
from plantcore.audit_inspect import add_inspect_commands, run_inspect_command
from plantcore.open_application import EVENTS_TABLE
from plantcore.settings import MissingSecret, Settings, audit_signing_key
from plantcore.streams import ensure_audit_stream
from support.private_file import create_private, open_new_private


class UsageError(Exception):
    """Exit 2: the command cannot run as asked."""


def add_audit_commands(subparsers: Any) -> None:
    """Add ``audit`` and its commands to the ``plantcore`` sub-parsers."""
    audit = subparsers.add_parser("audit", help="verify, export and sign the event log's chain")
    commands = audit.add_subparsers(dest="audit_command", required=True)

    verify = commands.add_parser("verify", help="prove the event log (or an export) unaltered")
    verify.add_argument("--file", type=Path, help="an export to verify offline, no database")
    verify.add_argument("--checkpoints", type=Path, help="a file of signed checkpoints")
    verify.add_argument(
        "--public-key",
        dest="public_keys",
        type=Path,
        action="append",
        default=[],
        help="the checkpoints' public key (PEM); repeat for keys used before a rotation",
    )
    verify.add_argument("--quiet", action="store_true", help="no progress on stderr")
    verify.add_argument("--table", default=EVENTS_TABLE, help=argparse.SUPPRESS)

    export = commands.add_parser("export", help="export positions or times as NDJSON")
    export.add_argument("--from", dest="start", help="first position, or ISO time with zone")
    export.add_argument("--to", dest="end", help="last position, or ISO time with zone")
    export.add_argument("--out", type=Path, required=True, help="the file to write ('-': stdout)")
    export.add_argument("--table", default=EVENTS_TABLE, help=argparse.SUPPRESS)

    keygen = commands.add_parser("keygen", help="a new checkpoint signing key")
    keygen.add_argument("--out", type=Path, required=True, help="the private key file to create")

    checkpoint = commands.add_parser("checkpoint", help="sign the chain head now")
    checkpoint.add_argument("--every", type=float, help="keep signing every SECONDS")
    signer = commands.add_parser(
        "signer", help="sign the chain head whenever it moved, as a process of its own"
    )
    signer.add_argument(
        "--every", type=float, help="seconds between checkpoints (or the settings')"
    )
    for signing in (checkpoint, signer):
        signing.add_argument("--signing-key", type=Path, help="the private key file")
        signing.add_argument("--out", type=Path, help="the checkpoint file to append to")
        signing.add_argument("--no-nats", action="store_true", help="do not publish on NATS")
        signing.add_argument("--table", default=EVENTS_TABLE, help=argparse.SUPPRESS)

    add_inspect_commands(commands)  # replay and timeline


def run_audit(args: argparse.Namespace) -> int:
    if getattr(args, "inspect_command", None) is not None:
        return run_inspect_command(args)
    commands = {
        "verify": _verify,
        "export": _export,
        "keygen": _keygen,
        "checkpoint": _checkpoint,
        "signer": _signer,
    }
    try:
        return commands[args.audit_command](args)
    except UsageError as exc:
        print(f"plantcore audit: {exc}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as exc:
        print(f"plantcore audit: cannot reach the database: {exc}", file=sys.stderr)
        return 2
    except NoHashChain as exc:
        print(f"plantcore audit: {exc}", file=sys.stderr)
        return 2


# -- settings ------------------------------------------------------------------


def _settings() -> Settings:
    return Settings()


def _signing_key(settings: Settings, path: Path | None) -> Ed25519PrivateKey | None:
    try:
        if path is not None:
            return load_signing_key(path)
        return audit_signing_key(settings)
    except (ValueError, MissingSecret) as exc:
        raise UsageError(str(exc)) from None


# -- verify --------------------------------------------------------------------


def _public_keys(args: argparse.Namespace, settings: Settings | None) -> list[Ed25519PublicKey]:
    paths: list[Path] = list(args.public_keys)
    if not paths and settings is not None and settings.audit_public_key_file is not None:
        paths.append(settings.audit_public_key_file)
    try:
        keys = [load_public_key(path) for path in paths]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not keys and settings is not None:
        signing = _signing_key(settings, None)
        if signing is not None:
            keys.append(signing.public_key())
    return keys


def _checkpoints(args: argparse.Namespace, settings: Settings | None) -> list[Checkpoint] | None:
    path: Path | None = args.checkpoints
    if path is None and settings is not None:
        configured = settings.audit_checkpoint_file
        if configured is not None and configured.exists():
            path = configured
    if path is None:
        return None
    try:
        return read_checkpoints(path)
    except OSError as exc:
        raise UsageError(f"cannot read the checkpoints: {exc}") from None
    except InvalidCheckpoint as exc:
        raise UsageError(str(exc)) from None


def _verify(args: argparse.Namespace) -> int:
    # Offline, nothing of the plant's configuration is needed (nor read).
    settings = None if args.file is not None else _settings()
    checkpoints = _checkpoints(args, settings)
    keys = _public_keys(args, settings)
    if checkpoints is not None and not keys:
        raise UsageError("checking checkpoints needs their public key: pass --public-key")
    started = time.monotonic()
    if args.file is not None:
        try:
            report = verify_file(args.file, keys or None, checkpoints)
        except OSError as exc:
            raise UsageError(f"cannot read the export: {exc}") from None
        except ExportFormatError as exc:
            print(f"TAMPERED: {args.file} is not a whole export: {exc}")
            return 1
    else:
        assert settings is not None
        heads, refused = verified_heads(checkpoints or [], public_keys(keys))
        progress = None if args.quiet else Progress("audit verify")
        report = verify_database(
            settings.database_url,
            args.table,
            expected=heads,
            on_rows=None if progress is None else progress.update,
            snapshots=SnapshotSource(snapshots_table_of(args.table), plant_mapper()),
        ).with_findings(refused)
    return _print_report(
        report, time.monotonic() - started, len(checkpoints or ()), quiet=args.quiet
    )


def _print_report(report: Report, seconds: float, checkpoints: int, *, quiet: bool) -> int:
    rate = f", {report.rows / seconds:,.0f} events/s" if seconds > 0 and report.rows else ""
    span = (
        f"positions {report.first_position} to {report.last_position}"
        if report.first_position is not None
        else "no events"
    )
    checked = ""
    if checkpoints:
        refused = sum(1 for finding in report.findings if finding.kind is Kind.BAD_CHECKPOINT)
        outside = checkpoints - report.checkpoints_checked - refused
        notes = []
        if refused:
            notes.append(f"{refused} refused: not signed by a key given")
        if outside:
            notes.append(f"{outside} outside the range")
        checked = (
            f"; {report.checkpoints_matched} of {report.checkpoints_checked} checkpoints match"
            + (f" ({', '.join(notes)})" if notes else "")
        )
    elif not quiet:
        print(
            "plantcore audit: no checkpoints checked: a chain recomputed as a whole would"
            " pass; give --checkpoints and --public-key",
            file=sys.stderr,
        )
    if report.snapshots_checked:
        checked += (
            f"; {report.snapshots_matched} of {report.snapshots_checked} snapshots agree with"
            " their events"
        )
    summary = f"{report.rows} events ({span}) in {seconds:.1f}s{rate}{checked}"
    first = report.first
    if first is None:
        head = report.head_hash.hex() if report.head_hash is not None else "none"
        print(f"intact: {summary}; head hash {head}")
        return 0
    print(f"TAMPERED: first bad position {first.position}: {first.kind}: {first.explanation}")
    print(f"{len(report.findings)} finding(s) in {summary}:")
    for finding in report.findings:
        print(f"  {finding}")
    return 1


# -- export --------------------------------------------------------------------


def _bound(text: str | None, database_url: str, table: str, *, end: bool) -> int | None:
    if text is None:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{text!r} is neither a position nor an ISO 8601 time") from None
    if at.tzinfo is None:
        raise UsageError(f"the time {text!r} needs a zone (Z or +01:00)")
    position = position_at(database_url, table, at, end=end)
    if position is None:
        # No event at or after (before) that time: an empty range.
        return 2**63 - 1 if not end else -(2**63)
    return position


def _export(args: argparse.Namespace) -> int:
    settings = _settings()
    first = _bound(args.start, settings.database_url, args.table, end=False)
    last = _bound(args.end, settings.database_url, args.table, end=True)
    if args.out == Path("-"):
        summary = export_range(
            settings.database_url, args.table, sys.stdout, first=first, last=last
        )
    else:
        # It holds what the log holds (password hashes, sealed TOTP secrets): 0600, like a key.
        partial = args.out.with_name(args.out.name + ".partial")
        try:
            partial.unlink(missing_ok=True)  # left by an export that was killed
            with io.TextIOWrapper(open_new_private(partial), encoding="utf-8") as out:
                summary = export_range(
                    settings.database_url, args.table, out, first=first, last=last
                )
            partial.replace(args.out)
        except OSError as exc:
            raise UsageError(f"cannot write the export: {exc}") from None
        finally:
            partial.unlink(missing_ok=True)
    span = (
        f"positions {summary.first_position} to {summary.last_position}"
        if summary.count
        else "no events in that range"
    )
    print(f"exported {summary.count} events ({span}) to {args.out}", file=sys.stderr)
    return 0


# -- keys and checkpoints ------------------------------------------------------


def _keygen(args: argparse.Namespace) -> int:
    key = generate_signing_key()
    try:
        create_private(args.out, private_key_text(key).encode("ascii"))
    except FileExistsError:
        raise UsageError(f"{args.out} exists; not overwriting a key") from None
    except OSError as exc:
        raise UsageError(f"cannot create {args.out}: {exc}") from None
    print(public_key_text(key), end="")
    print(
        f"key id {key_id(key)}; the private key is in {args.out} (mode 0600): keep it where"
        " the database's administrators cannot read it; give auditors the public key above",
        file=sys.stderr,
    )
    return 0


def _checkpoint(args: argparse.Namespace) -> int:
    return _sign(args, _settings(), every=args.every)


def _signer(args: argparse.Namespace) -> int:
    settings = _settings()
    every = args.every if args.every is not None else settings.audit_checkpoint_seconds
    return _sign(args, settings, every=every)


def _sign(args: argparse.Namespace, settings: Settings, *, every: float | None) -> int:
    key = _signing_key(settings, args.signing_key)
    if key is None:
        raise UsageError("set PLANTCORE_AUDIT_SIGNING_KEY_FILE or pass --signing-key")
    path = args.out or settings.audit_checkpoint_file
    if path is None and args.no_nats:
        raise UsageError("nowhere to write: pass --out, or publish on NATS")
    if every is not None and every <= 0:
        raise UsageError("--every needs a positive number of seconds")
    if every is not None:
        print(
            f"plantcore audit: signing the chain head every {every:g} s with key {key_id(key)}",
            file=sys.stderr,
            flush=True,
        )
    return asyncio.run(
        _checkpoints_to(settings, args.table, key, path, nats=not args.no_nats, every=every)
    )


async def _checkpoints_to(
    settings: Settings,
    table: str,
    key: Ed25519PrivateKey,
    path: Path | None,
    *,
    nats: bool,
    every: float | None,
) -> int:
    import nats as nats_client

    client = None
    if nats:
        # Signing on and on, it outlives any NATS outage; a single checkpoint gives up soon.
        client = await nats_client.connect(
            settings.nats_url,
            connect_timeout=5,
            max_reconnect_attempts=3 if every is None else -1,
        )
    try:
        js = None if client is None else client.jetstream()
        if js is not None:
            await ensure_audit_stream(js)
        writer = CheckpointWriter(path, js)
        if every is None:
            checkpoint = await sign_head(settings.database_url, table, key, writer)
            if checkpoint is None:
                print("plantcore audit: nothing to sign: the log is empty", file=sys.stderr)
            else:
                print(checkpoint.to_json())
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await run_checkpoints(settings.database_url, table, key, writer, interval=every, stop=stop)
        return 0
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                await client.drain()
