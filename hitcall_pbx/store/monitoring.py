"""Stored monitoring sessions (migration 0013): the SQL both the dialing process and the
REST API read them with."""

from __future__ import annotations

import uuid
from typing import Any

from .db import Executor

SESSION_COLUMNS = """id, supervisor, supervisor_user_id, phone_agent_id, attempt_id, campaign_id, agent_id, mode,
                     modes, started_at, ended_at, end_reason"""


async def list_sessions(
    pool: Executor,
    *,
    active: bool,
    campaigns: frozenset[int] | None,
    attempt_id: uuid.UUID | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Stored sessions, newest first (`campaigns` None: every campaign)."""
    rows = await pool.fetch(
        f"""SELECT {SESSION_COLUMNS} FROM monitoring_sessions
            WHERE ($1::boolean IS FALSE OR ended_at IS NULL)
              AND ($2::bigint[] IS NULL OR campaign_id = ANY($2::bigint[]))
              AND ($3::uuid IS NULL OR attempt_id = $3)
            ORDER BY started_at DESC, id DESC LIMIT $4""",
        active,
        None if campaigns is None else sorted(campaigns),
        attempt_id,
        limit,
    )
    return [dict(r.items()) for r in rows]


async def open_session(pool: Executor, monitor_id: int) -> dict[str, Any] | None:
    """A session not ended yet, whichever node runs it (None: unknown or ended)."""
    row = await pool.fetchrow(
        f"SELECT {SESSION_COLUMNS} FROM monitoring_sessions WHERE id = $1 AND ended_at IS NULL", monitor_id
    )
    return None if row is None else dict(row.items())
