"""Loading the rows of a daily compliance report from Postgres."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import asyncpg

from ..errors import NotFound
from .compute import CampaignDay, InboundDay, callback_day, campaign_day, day_bounds, inbound_day, monitoring_day

_INBOUND_ROWS = """SELECT outcome, ring_s, talk_s FROM call_attempts
                   WHERE direction = 'inbound' AND created_at >= $1 AND created_at < $2"""


async def campaigns_for_day(conn: asyncpg.Connection | asyncpg.Pool, day: date) -> list[int]:
    """Campaigns with any activity that day (calls, inbound ones included, or dial blocks)."""
    start, end = day_bounds(day)
    rows = await conn.fetch(
        """SELECT campaign_id FROM call_attempts
           WHERE created_at >= $1 AND created_at < $2 AND campaign_id IS NOT NULL
           UNION SELECT campaign_id FROM dial_blocks WHERE day = $3
           UNION SELECT campaign_id FROM callbacks
                 WHERE (created_at >= $1 AND created_at < $2) OR (closed_at >= $1 AND closed_at < $2)
           UNION SELECT campaign_id FROM monitoring_sessions
                 WHERE started_at >= $1 AND started_at < $2 AND campaign_id IS NOT NULL
           ORDER BY 1""",
        start,
        end,
        day,
    )
    return [r["campaign_id"] for r in rows]


async def load_campaign_day(
    pool: asyncpg.Pool, campaign_id: int, day: date, *, now: datetime | None = None
) -> CampaignDay:
    start, end = day_bounds(day)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        campaign = await conn.fetchrow("SELECT id, name, abandon_cap FROM campaigns WHERE id = $1", campaign_id)
        if campaign is None:
            raise NotFound(f"campaign {campaign_id} does not exist", details={"field": "campaign"})
        # The outbound calls: the abandon rate is theirs alone.
        attempts = await conn.fetch(
            """SELECT created_at, answered_at, bridged_at, abandoned, outcome, ring_s, answer_to_bridge_ms
               FROM call_attempts
               WHERE campaign_id = $1 AND direction = 'outbound' AND created_at >= $2 AND created_at < $3""",
            campaign_id,
            start,
            end,
        )
        inbound = await conn.fetch(_INBOUND_ROWS + " AND campaign_id = $3", start, end, campaign_id)
        month = await conn.fetchrow(
            """SELECT count(*) FILTER (WHERE abandoned) AS abandoned,
                      count(*) FILTER (WHERE bridged_at IS NOT NULL) AS connects
               FROM call_attempts
               WHERE campaign_id = $1 AND direction = 'outbound' AND created_at >= $2 AND created_at < $3""",
            campaign_id,
            end - timedelta(days=30),
            end,
        )
        blocks = {
            r["reason"]: r["blocked"]
            for r in await conn.fetch(
                "SELECT reason, blocked FROM dial_blocks WHERE campaign_id = $1 AND day = $2", campaign_id, day
            )
        }
        rec = await conn.fetchrow(
            """SELECT count(*) FILTER (WHERE created_at >= $2 AND created_at < $3) AS stored,
                      count(*) FILTER (WHERE purged_at >= $2 AND purged_at < $3) AS purged,
                      count(*) FILTER (WHERE held_until IS NOT NULL AND purged_at IS NULL
                                       AND created_at < $3) AS on_hold
               FROM recordings WHERE campaign_id = $1""",
            campaign_id,
            start,
            end,
        )
        intervals = await conn.fetch(
            """SELECT l.state, l.started_at, l.ended_at FROM agent_state_log l
               WHERE l.agent_id IN (SELECT agent_id FROM agent_campaigns WHERE campaign_id = $1)
                 AND l.started_at < $3 AND (l.ended_at IS NULL OR l.ended_at > $2)""",
            campaign_id,
            start,
            end,
        )
        callback_rows = await conn.fetch(
            """SELECT state, created_at, due_at, closed_at FROM callbacks
               WHERE campaign_id = $1 AND created_at < $3 AND (closed_at IS NULL OR closed_at >= $2)""",
            campaign_id,
            start,
            end,
        )
        monitoring_rows = await conn.fetch(
            """SELECT supervisor, started_at, ended_at, end_reason FROM monitoring_sessions
               WHERE campaign_id = $1 AND started_at >= $2 AND started_at < $3""",
            campaign_id,
            start,
            end,
        )
    # Aggregates without GROUP BY always return exactly one row.
    assert month is not None and rec is not None
    return campaign_day(
        campaign,
        day,
        attempts,
        abandoned_30d=month["abandoned"],
        connects_30d=month["connects"],
        blocks=blocks,
        recordings_stored=rec["stored"],
        recordings_purged=rec["purged"],
        recordings_on_hold=rec["on_hold"],
        agent_intervals=intervals,
        now=now or datetime.now(UTC),
        inbound=inbound_day(inbound),
        callbacks=callback_day(callback_rows, day, now or datetime.now(UTC)),
        monitoring=monitoring_day(monitoring_rows),
    )


async def load_inbound_without_campaign(conn: asyncpg.Connection | asyncpg.Pool, day: date) -> InboundDay:
    """The day's inbound calls whose caller matched no campaign."""
    start, end = day_bounds(day)
    return inbound_day(await conn.fetch(_INBOUND_ROWS + " AND campaign_id IS NULL", start, end))


async def load_report(
    pool: asyncpg.Pool, day: date, campaign_id: int | None = None, *, now: datetime | None = None
) -> list[CampaignDay]:
    """The day's report for one campaign, or for every campaign active that day."""
    ids = [campaign_id] if campaign_id is not None else await campaigns_for_day(pool, day)
    return [await load_campaign_day(pool, cid, day, now=now) for cid in ids]
