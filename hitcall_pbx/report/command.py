"""`hitcall report`: the daily compliance report per campaign; `hitcall report agents`: the
agent productivity report (`report.agents`)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from ..errors import HitCallError, NotFound, ValidationFailed
from ..settings import Settings
from ..store.db import Database
from .compute import CampaignDay, InboundDay
from .query import load_inbound_without_campaign, load_report
from .render import FORMATS, render


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationFailed(
            f"--date must be a date as YYYY-MM-DD, got {text!r}", details={"field": "date"}
        ) from None


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report", help="daily compliance report per campaign, or agent productivity (html, csv or json)"
    )
    p.add_argument(
        "kind",
        nargs="?",
        choices=("campaigns", "agents"),
        default="campaigns",
        help="campaigns: the daily compliance report (default); agents: time, calls and dispositions per agent",
    )
    p.add_argument(
        "--date", default=None, help="day as YYYY-MM-DD: UTC for campaigns, the --tz day for agents (default: today)"
    )
    p.add_argument("--campaign", type=int, default=None, help="campaign id (default: every campaign active that day)")
    p.add_argument("--agent", type=int, default=None, help="agents report: one agent id (default: every agent)")
    p.add_argument("--tz", default=None, help="agents report: the time zone of its days (default: Europe/Helsinki)")
    p.add_argument("--format", choices=FORMATS, default="html")
    p.add_argument("--out", type=Path, default=None, help="file to write (default: standard output)")


def write_files(
    reports: list[CampaignDay],
    day: date,
    directory: Path,
    stem: str,
    *,
    inbound_without_campaign: InboundDay | None = None,
) -> list[Path]:
    """Write the report in every format into `directory`; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    paths = []
    for fmt in FORMATS:
        path = directory / f"{stem}.{fmt}"
        text = render(reports, fmt, day=day, generated_at=now, inbound_without_campaign=inbound_without_campaign)
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


async def run(settings: Settings, args: argparse.Namespace) -> int:
    if getattr(args, "kind", "campaigns") == "agents":
        from .agents import run_agents  # it imports this module

        return await run_agents(settings, args)
    try:
        day = parse_day(args.date) if args.date else datetime.now(UTC).date()
        unmatched = None
        async with Database(settings) as db:
            reports = await load_report(db.pool, day, args.campaign)
            if args.campaign is None:  # the whole day: return calls of no campaign too
                unmatched = await load_inbound_without_campaign(db.pool, day)
    except (ValidationFailed, NotFound) as exc:
        sys.stderr.write(f"hitcall report: {exc.message}\n")
        return 2
    except HitCallError as exc:
        sys.stderr.write(f"hitcall report: {exc.message}\n")
        return 1
    write_output(render(reports, args.format, day=day, inbound_without_campaign=unmatched), args.out)
    return 0


def write_output(text: str, out: Path | None) -> None:
    """A report to stdout, or to the file `--out` names (its directory made), saying so on stderr."""
    if out is None:
        sys.stdout.write(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        sys.stderr.write(f"wrote {out}\n")
