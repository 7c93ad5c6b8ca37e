"""`hitcall purge [--dry-run]` and `hitcall records check`.

The recordings store is ``<data dir>/recordings``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import HitCallError, ValidationFailed
from ..settings import Settings
from ..store.db import Database
from .cdr import default_spool_dir
from .purge import PurgeWorker
from .recordings import RecordingStore

__all__ = ["add_parser", "recordings_dir", "run"]


def recordings_dir(settings: Settings) -> Path:
    return settings.data_dir / "recordings"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("purge", help="purge recordings and CDR personal data past their retention deadline")
    p.add_argument("--dry-run", action="store_true", help="count what would be purged, change nothing")
    p.add_argument("--batch-size", type=int, default=1000, help="rows per transaction (default 1000)")
    p.add_argument("--json", action="store_true")

    r = subparsers.add_parser("records", help="recordings store maintenance")
    actions = r.add_subparsers(dest="records_action", required=True, metavar="ACTION")
    c = actions.add_parser("check", help="report rows whose file is missing or differs, and orphan files")
    c.add_argument("--json", action="store_true")


def _out(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


async def _purge(db: Database, store: RecordingStore, spool_dir: Path, args: argparse.Namespace) -> int:
    worker = PurgeWorker(db.pool, store, batch_size=args.batch_size, spool_dir=spool_dir)
    report = await worker.run_once(dry_run=args.dry_run)
    if report.skipped:
        sys.stderr.write("hitcall purge: another node is purging now; nothing done (run it again later)\n")
        return 1
    if args.json:
        _out(report.as_dict())
    else:
        words = ("would purge", "would anonymise", "would delete")
        purged, anonymised, deleted = words if report.dry_run else ("purged", "anonymised", "deleted")
        sys.stdout.write(
            f"{purged} {report.recordings_purged} recordings, {anonymised} {report.attempts_anonymised} CDRs, "
            f"{deleted} {report.monitoring_sessions_deleted} monitoring sessions"
            f" in {report.seconds:.1f} s\n"
        )
    if report.recordings_failed:
        sys.stderr.write(f"hitcall purge: {report.recordings_failed} recording files could not be deleted\n")
        return 1
    return 0


async def _check(db: Database, store: RecordingStore, args: argparse.Namespace) -> int:
    report = await store.check(db.pool)
    if args.json:
        _out(report.as_dict())
    else:
        for p in report.problems:
            line = f"{p.problem:<16} {p.path}"
            if p.recording_id:
                line += f"  recording {p.recording_id}"
            if p.expected is not None:
                line += f"  expected {p.expected} got {p.actual}"
            sys.stdout.write(line + "\n")
        sys.stdout.write(f"{report.rows_checked} rows, {report.files_seen} files, {len(report.problems)} problems\n")
    return 0 if report.ok else 1


async def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "purge" and args.batch_size < 1:
        sys.stderr.write("hitcall purge: --batch-size must be at least 1\n")
        return 2
    store = RecordingStore(recordings_dir(settings))
    try:
        async with Database(settings) as db:
            if args.command == "purge":
                return await _purge(db, store, default_spool_dir(settings.data_dir), args)
            return await _check(db, store, args)
    except ValidationFailed as exc:
        sys.stderr.write(f"hitcall {args.command}: {exc.message}\n")
        return 2
    except HitCallError as exc:
        sys.stderr.write(f"hitcall {args.command}: {exc.message}\n")
        return 1
