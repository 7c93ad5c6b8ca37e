"""The append-only audit log: who did what, when, to what, from where."""

from __future__ import annotations

from typing import Any

from .db import Executor

SYSTEM = "system"


async def record(
    conn: Executor,
    *,
    actor: str,
    action: str,
    actor_role: str | None = None,
    object_type: str | None = None,
    object_id: str | int | None = None,
    details: dict[str, Any] | None = None,
    source_ip: str | None = None,
) -> int:
    """Append one audit row (inside the caller's transaction when given a connection)."""
    return await conn.fetchval(
        """INSERT INTO audit_log (actor, actor_role, action, object_type, object_id, details, source_ip)
           VALUES ($1, $2, $3, $4, $5, $6, $7::inet) RETURNING id""",
        actor,
        actor_role,
        action,
        object_type,
        None if object_id is None else str(object_id),
        details or {},
        source_ip,
    )
