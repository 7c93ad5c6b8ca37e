"""Do-not-call entries (global or per campaign)."""

from __future__ import annotations

import asyncpg

from .sql import Conn
from .sql import delete as _delete


async def add(conn: Conn, phone: str, campaign_id: int | None, reason: str | None, source: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO dnc_entries (phone_e164, campaign_id, reason, source) VALUES ($1, $2, $3, $4) RETURNING *",
        phone,
        campaign_id,
        reason,
        source,
    )
    assert row is not None  # INSERT ... RETURNING returns the inserted row
    return row


async def get(conn: Conn, entry_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM dnc_entries WHERE id = $1", entry_id)


async def find(
    conn: Conn, *, phone: str | None, campaign_id: int | None, scope: str, limit: int, after_id: int | None
) -> list[asyncpg.Record]:
    """scope: all | global (campaign_id NULL) | campaign (the given campaign_id)."""
    return await conn.fetch(
        """SELECT * FROM dnc_entries
           WHERE id > COALESCE($1, 0) AND ($2::text IS NULL OR phone_e164 = $2)
             AND ($3 = 'all' OR ($3 = 'global' AND campaign_id IS NULL) OR ($3 = 'campaign' AND campaign_id = $4))
           ORDER BY id LIMIT $5""",
        after_id,
        phone,
        scope,
        campaign_id,
        limit,
    )


async def delete(conn: Conn, entry_id: int) -> bool:
    return await _delete(conn, "dnc_entries", entry_id)
