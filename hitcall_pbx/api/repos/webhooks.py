"""Webhook subscriptions and the deliveries list."""

from __future__ import annotations

from typing import Any

import asyncpg

from . import sql
from .sql import Conn

COLUMNS = ("url", "secret", "event_types", "description", "active")
_PUBLIC = "id, url, event_types, description, active, created_at, updated_at"


async def list_subscriptions(conn: Conn) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {_PUBLIC} FROM webhook_subscriptions ORDER BY id")


async def get_subscription(conn: Conn, subscription_id: int, *, for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(f"SELECT {_PUBLIC} FROM webhook_subscriptions WHERE id = $1{lock}", subscription_id)


async def insert_subscription(conn: Conn, data: dict[str, Any]) -> int:
    return await sql.insert(conn, "webhook_subscriptions", data, COLUMNS)


async def update_subscription(conn: Conn, subscription_id: int, data: dict[str, Any]) -> bool:
    return await sql.update(conn, "webhook_subscriptions", subscription_id, data, COLUMNS)


async def delete_subscription(conn: Conn, subscription_id: int) -> bool:
    return await sql.delete(conn, "webhook_subscriptions", subscription_id)


async def list_deliveries(
    conn: Conn, *, state: str | None, subscription_id: int | None, limit: int, after_id: int | None
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT d.id, d.subscription_id, d.state, d.attempts, d.next_attempt_at, d.last_status, d.last_error,
                  d.created_at, d.delivered_at, o.event_id, o.event_type, o.subject
           FROM webhook_deliveries d JOIN webhook_outbox o ON o.id = d.outbox_id
           WHERE d.id > COALESCE($1, 0) AND ($2::text IS NULL OR d.state = $2)
             AND ($3::bigint IS NULL OR d.subscription_id = $3)
           ORDER BY d.id LIMIT $4""",
        after_id,
        state,
        subscription_id,
        limit,
    )


async def missing_deliveries(conn: Conn, delivery_ids: list[int]) -> list[int]:
    rows = await conn.fetch(
        """SELECT u.did FROM unnest($1::bigint[]) AS u(did)
           WHERE NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.id = u.did)""",
        delivery_ids,
    )
    return [r["did"] for r in rows]
