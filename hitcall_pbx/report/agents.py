"""The agent productivity report: rows from Postgres (agent_state_log, call_attempts),
figures from `core.agent_report`, output from `agents_render`; `hitcall report agents`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from ..core.agent_report import AgentDay, agent_days, day_window, report_zone
from ..errors import HitCallError, ValidationFailed
from ..settings import Settings
from ..store.db import Database, Executor
from .agents_render import render_agents
from .command import parse_day, write_output

_INTERVALS = """SELECT agent_id, state, pause_code, started_at, ended_at FROM agent_state_log
                WHERE started_at < $2 AND (ended_at IS NULL OR ended_at > $1)
                  AND ($3::bigint[] IS NULL OR agent_id = ANY($3::bigint[]))"""
_CALLS = """SELECT agent_id, created_at, bridged_at, disposition FROM call_attempts
            WHERE agent_id IS NOT NULL AND created_at >= $1 AND created_at < $2
              AND ($3::bigint[] IS NULL OR agent_id = ANY($3::bigint[]))"""
_AGENTS = "SELECT id, number, name FROM agents WHERE id = ANY($1::bigint[])"


async def load_agent_report(
    conn: Executor,
    day: date,
    zone: ZoneInfo,
    *,
    agent_ids: Sequence[int] | None = None,
    now: datetime | None = None,
) -> list[AgentDay]:
    """The day's figures for every agent with time or calls (or for `agent_ids` only)."""
    start, end = day_window(day, zone)
    ids = None if agent_ids is None else list(agent_ids)
    intervals = await conn.fetch(_INTERVALS, start, end, ids)
    calls = await conn.fetch(_CALLS, start, end, ids)
    seen = sorted({r["agent_id"] for r in intervals} | {r["agent_id"] for r in calls})
    agents = {r["id"]: r for r in await conn.fetch(_AGENTS, seen)}
    return agent_days(day, zone, intervals, calls, now=now or datetime.now(UTC), agents=agents)


async def run_agents(settings: Settings, args: argparse.Namespace) -> int:
    """`hitcall report agents`: one readable line and exit 2 on bad input."""
    try:
        zone = report_zone(args.tz)
        day = parse_day(args.date) if args.date else datetime.now(zone).date()
    except ValidationFailed as exc:
        sys.stderr.write(f"hitcall report: {exc.message}\n")
        return 2
    try:
        async with Database(settings) as db:
            days = await load_agent_report(db.pool, day, zone, agent_ids=[args.agent] if args.agent else None)
    except HitCallError as exc:
        sys.stderr.write(f"hitcall report: {exc.message}\n")
        return 1
    write_output(render_agents(days, args.format, day=day, zone=zone), args.out)
    return 0
