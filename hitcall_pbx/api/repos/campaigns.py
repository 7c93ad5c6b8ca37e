"""Campaigns: rows, state changes and live statistics."""

from __future__ import annotations

from typing import Any

import asyncpg

from . import sql
from .sql import Conn

SETTINGS = (
    "name", "mode", "caller_id", "ring_timeout_s", "max_attempts", "retry_busy_s", "retry_no_answer_s",
    "retry_congestion_s", "retry_machine_s", "wrap_up_s", "abandon_cap", "info_message_sound", "amd_enabled",
    "record_calls", "recording_announcement", "window_start", "window_end", "window_days", "priority",
    "preview_offer_timeout_s", "max_lines_per_agent", "retention_recordings_months", "retention_cdr_months",
    "company_name", "callback_number", "callback_skip_delay_s", "callback_delay_s", "callback_grace_s",
    "disposition_required", "voicemail_drop", "voicemail_message",
)  # fmt: skip

_SELECT = """SELECT c.*, COALESCE((SELECT array_agg(l.list_id ORDER BY l.list_id) FROM campaign_lists l
                                    WHERE l.campaign_id = c.id), '{}') AS list_ids
             FROM campaigns c"""


async def get(conn: Conn, campaign_id: int, *, for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE OF c" if for_update else ""
    return await conn.fetchrow(f"{_SELECT} WHERE c.id = $1{lock}", campaign_id)


async def list_all(conn: Conn, state: str | None) -> list[asyncpg.Record]:
    return await conn.fetch(f"{_SELECT} WHERE $1::text IS NULL OR c.state = $1 ORDER BY c.id", state)


async def insert(conn: Conn, data: dict[str, Any]) -> int:
    return await sql.insert(conn, "campaigns", data, SETTINGS)


async def update(conn: Conn, campaign_id: int, data: dict[str, Any]) -> bool:
    return await sql.update(conn, "campaigns", campaign_id, data, SETTINGS)


async def set_state(conn: Conn, campaign_id: int, state: str) -> None:
    await conn.execute("UPDATE campaigns SET state = $2 WHERE id = $1", campaign_id, state)


async def delete(conn: Conn, campaign_id: int) -> bool:
    return await sql.delete(conn, "campaigns", campaign_id)


async def exists(conn: Conn, campaign_id: int) -> bool:
    return bool(await conn.fetchval("SELECT true FROM campaigns WHERE id = $1", campaign_id))


async def abandon_counts(conn: Conn, campaign_id: int, tz: str) -> asyncpg.Record:
    """Abandoned and agent-connected outbound attempts today (calendar day in `tz`) and over
    30 days (inbound calls are not in the abandon rate)."""
    row = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE abandoned AND created_at >= day0)             AS day_abandoned,
                  count(*) FILTER (WHERE bridged_at IS NOT NULL AND created_at >= day0) AS day_connected,
                  count(*) FILTER (WHERE abandoned)                                     AS period_abandoned,
                  count(*) FILTER (WHERE bridged_at IS NOT NULL)                        AS period_connected
           FROM all_attempts,
                LATERAL (SELECT date_trunc('day', now() AT TIME ZONE $2) AT TIME ZONE $2 AS day0) d
           WHERE campaign_id = $1 AND direction = 'outbound' AND created_at >= now() - interval '30 days'""",
        campaign_id,
        tz,
    )
    assert row is not None  # an aggregate without GROUP BY returns exactly one row
    return row


async def agents_by_state(conn: Conn, campaign_id: int) -> dict[str, int]:
    rows = await conn.fetch(
        """SELECT a.state, count(*) AS n FROM agents a JOIN agent_campaigns ac ON ac.agent_id = a.id
           LEFT JOIN users u ON u.id = a.user_id
           WHERE ac.campaign_id = $1 AND NOT a.disabled AND (u.role IS NULL OR u.role = 'agent')
           GROUP BY a.state""",
        campaign_id,
    )
    return {r["state"]: r["n"] for r in rows}


async def calls_by_state(conn: Conn, campaign_id: int) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT state, count(*) AS n FROM live_attempts WHERE campaign_id = $1 AND direction = 'outbound'"
        " GROUP BY state",
        campaign_id,
    )
    return {r["state"]: r["n"] for r in rows}
