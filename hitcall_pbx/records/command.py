"""`hitcall cdr export`: CDRs as CSV or JSON on standard output; `hitcall cdr reconcile` (records.reconcile)."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import datetime

import asyncpg

from ..errors import HitCallError, ValidationFailed
from ..settings import Settings
from ..store import audit
from ..store.db import Database
from . import reconcile
from .cdr_query import EXPORT_FORMATS, CdrExport, CdrQuery


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("cdr", help="call detail records")
    sub = p.add_subparsers(dest="cdr_action", required=True, metavar="ACTION")
    e = sub.add_parser("export", help="write CDRs (oldest first) to standard output")
    e.add_argument("--campaign", help="campaign id")
    e.add_argument("--agent", help="agent id")
    e.add_argument("--from", dest="since", help="calls created at or after (ISO 8601 with zone)")
    e.add_argument("--to", dest="until", help="calls created before (ISO 8601 with zone)")
    e.add_argument("--outcome", help="e.g. answered_human, no_answer, busy, abandoned, no_agent")
    e.add_argument("--direction", help="outbound or inbound (default: both)")
    e.add_argument("--format", default="csv", help="csv (default) or json")
    reconcile.add_parser(sub)


def _id(value: str | None, flag: str) -> int | None:
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or int(value) < 1:
        raise ValidationFailed(f"{flag} must be a positive integer, not {value!r}")
    return int(value)


def _when(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(f"{flag} is not an ISO 8601 time: {value!r}") from None
    if parsed.utcoffset() is None:
        raise ValidationFailed(f"{flag} {value!r} has no time zone, e.g. 2026-03-01T00:00+02:00")
    return parsed


def _query(args: argparse.Namespace) -> CdrQuery:
    if args.format not in EXPORT_FORMATS:
        raise ValidationFailed(f"--format must be csv or json, not {args.format!r}")
    campaign_id, agent_id = _id(args.campaign, "--campaign"), _id(args.agent, "--agent")
    since, until = _when(args.since, "--from"), _when(args.until, "--to")
    if since is not None and until is not None and since >= until:
        raise ValidationFailed("--to must be after --from")
    try:
        return CdrQuery(
            campaign_id=campaign_id,
            agent_id=agent_id,
            since=since,
            until=until,
            outcome=args.outcome,
            direction=args.direction,
        )
    except ValidationFailed as exc:  # only the outcome and the direction are left unchecked here
        raise ValidationFailed(f"--{exc.message}") from None


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


async def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.cdr_action == "reconcile":
        return await reconcile.run_reconcile(settings, args)
    try:
        query = _query(args)
    except ValidationFailed as exc:
        sys.stderr.write(f"hitcall cdr export: {exc.message}\n")
        return 2
    try:
        await _export(settings, args, query)
    except (HitCallError, asyncpg.PostgresError, OSError) as exc:
        message = exc.message if isinstance(exc, HitCallError) else f"{type(exc).__name__}: {exc}"
        line = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
        sys.stderr.write(f"hitcall cdr export: {line}\n")
        return 1
    return 0


async def _export(settings: Settings, args: argparse.Namespace, query: CdrQuery) -> None:
    async with Database(settings) as db:
        await audit.record(
            db.pool,
            actor=_actor(),
            actor_role="system",
            action="cdr.export",
            details={
                "format": args.format,
                "campaign_id": query.campaign_id,
                "agent_id": query.agent_id,
                "since": query.since.isoformat() if query.since else None,
                "until": query.until.isoformat() if query.until else None,
                "outcome": query.outcome,
                "direction": query.direction,
            },
        )
        async for chunk in CdrExport(db.pool, query, args.format):
            sys.stdout.write(chunk)
    sys.stdout.flush()
