"""Agents, their campaign assignments, preview offers and call ownership."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from . import sql
from .sql import Conn

COLUMNS = ("number", "name", "pin_hash", "endpoint", "user_id", "disabled")

_SELECT = """SELECT a.id, a.number, a.name, a.endpoint, a.user_id, a.disabled, a.state, a.pause_code, a.state_since,
                    a.created_at, a.updated_at, (a.pin_hash IS NOT NULL) AS has_pin,
                    COALESCE((SELECT array_agg(ac.campaign_id ORDER BY ac.campaign_id) FROM agent_campaigns ac
                              WHERE ac.agent_id = a.id), '{}') AS campaign_ids
             FROM agents a"""


async def list_all(conn: Conn, *, state: str | None, campaign_id: int | None) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""{_SELECT} WHERE ($1::text IS NULL OR a.state = $1)
              AND ($2::bigint IS NULL
                   OR EXISTS (SELECT 1 FROM agent_campaigns x WHERE x.agent_id = a.id AND x.campaign_id = $2))
            ORDER BY a.id""",
        state,
        campaign_id,
    )


async def get(conn: Conn, agent_id: int, *, for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE OF a" if for_update else ""
    return await conn.fetchrow(f"{_SELECT} WHERE a.id = $1{lock}", agent_id)


async def insert(conn: Conn, data: dict[str, Any]) -> int:
    return await sql.insert(conn, "agents", data, COLUMNS)


async def update(conn: Conn, agent_id: int, data: dict[str, Any]) -> bool:
    return await sql.update(conn, "agents", agent_id, data, COLUMNS)


async def delete(conn: Conn, agent_id: int) -> bool:
    return await sql.delete(conn, "agents", agent_id)


async def has_history(conn: Conn, agent_id: int) -> bool:
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM agent_state_log WHERE agent_id = $1)
                   OR EXISTS (SELECT 1 FROM all_attempts WHERE agent_id = $1)""",
            agent_id,
        )
    )


async def set_campaigns(conn: Conn, agent_id: int, campaign_ids: list[int]) -> None:
    await conn.execute(
        "DELETE FROM agent_campaigns WHERE agent_id = $1 AND NOT campaign_id = ANY($2::bigint[])",
        agent_id,
        campaign_ids,
    )
    await conn.execute(
        """INSERT INTO agent_campaigns (agent_id, campaign_id) SELECT $1, unnest($2::bigint[])
           ON CONFLICT DO NOTHING""",
        agent_id,
        campaign_ids,
    )


async def missing_campaigns(conn: Conn, campaign_ids: list[int]) -> list[int]:
    rows = await conn.fetch(
        "SELECT u.cid FROM unnest($1::bigint[]) AS u(cid)"
        " WHERE NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.id = u.cid)",
        campaign_ids,
    )
    return [r["cid"] for r in rows]


async def user_role(conn: Conn, user_id: int) -> str | None:
    return await conn.fetchval("SELECT role FROM users WHERE id = $1", user_id)


async def open_offer(conn: Conn, agent_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT o.id, o.agent_id, o.campaign_id, o.contact_id, o.offered_at, o.expires_at,
                  c.phone_e164, c.name, c.title, c.organisation, c.external_id, c.extra
           FROM preview_offers o JOIN contacts c ON c.id = o.contact_id
           WHERE o.agent_id = $1 AND o.decision IS NULL""",
        agent_id,
    )


async def attempt_agent(conn: Conn, attempt_id: uuid.UUID) -> tuple[bool, int | None]:
    """(whether the attempt exists, its agent)."""
    row = await conn.fetchrow("SELECT agent_id FROM all_attempts WHERE id = $1", attempt_id)
    return (row is not None, None if row is None else row["agent_id"])


async def agent_campaigns(conn: Conn, agent_id: int) -> list[int]:
    rows = await conn.fetch("SELECT campaign_id FROM agent_campaigns WHERE agent_id = $1 ORDER BY 1", agent_id)
    return [r["campaign_id"] for r in rows]


async def contact_campaign(conn: Conn, contact_id: int) -> int | None:
    """The campaign whose list holds the contact (None: no such contact, or its list is in no campaign)."""
    return await conn.fetchval(
        "SELECT cl.campaign_id FROM contacts c JOIN campaign_lists cl ON cl.list_id = c.list_id WHERE c.id = $1",
        contact_id,
    )
