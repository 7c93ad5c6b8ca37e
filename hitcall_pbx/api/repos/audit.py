"""Reading the audit log."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from .sql import Conn


async def find(
    conn: Conn,
    *,
    actor: str | None,
    action: str | None,
    object_type: str | None,
    object_id: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    after_id: int | None,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT id, at, actor, actor_role, action, object_type, object_id, details, host(source_ip) AS source_ip
           FROM audit_log
           WHERE id > COALESCE($1, 0) AND ($2::text IS NULL OR actor = $2)
             AND ($3::text IS NULL OR action = $3 OR action LIKE $3 || '.%')
             AND ($4::text IS NULL OR object_type = $4) AND ($5::text IS NULL OR object_id = $5)
             AND ($6::timestamptz IS NULL OR at >= $6) AND ($7::timestamptz IS NULL OR at < $7)
           ORDER BY id LIMIT $8""",
        after_id,
        actor,
        action,
        object_type,
        object_id,
        since,
        until,
        limit,
    )


async def seen_recently(
    conn: Conn, *, action: str, object_type: str, object_id: str, actor: str, credential: str, window_s: float
) -> bool:
    """Whether `actor` with `credential` already has an `action` row on the object within the
    last `window_s` seconds (database time)."""
    return await conn.fetchval(
        """SELECT EXISTS (
               SELECT 1 FROM audit_log
               WHERE object_type = $1 AND object_id = $2 AND action = $3 AND actor = $4
                 AND details->>'credential' = $5 AND at > now() - make_interval(secs => $6))""",
        object_type,
        object_id,
        action,
        actor,
        credential,
        window_s,
    )
