"""Webhook subscriptions and the deliveries list. `owner` narrows every query to one owner's
subscriptions (an integration user's); None = all of them (an admin)."""

from __future__ import annotations

from typing import Any

import asyncpg

from . import sql
from .sql import Conn

COLUMNS = ("url", "secret", "event_types", "description", "active", "owner_id")
_PUBLIC = "id, url, event_types, description, active, owner_id, created_at, updated_at"
_OWNED = "($1::bigint IS NULL OR owner_id = $1)"


async def list_subscriptions(conn: Conn, *, owner: int | None) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {_PUBLIC} FROM webhook_subscriptions WHERE {_OWNED} ORDER BY id", owner)


async def get_subscription(
    conn: Conn, subscription_id: int, *, owner: int | None, for_update: bool = False
) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        f"SELECT {_PUBLIC} FROM webhook_subscriptions WHERE {_OWNED} AND id = $2{lock}", owner, subscription_id
    )


async def insert_subscription(conn: Conn, data: dict[str, Any]) -> int:
    return await sql.insert(conn, "webhook_subscriptions", data, COLUMNS)


async def update_subscription(conn: Conn, subscription_id: int, data: dict[str, Any]) -> bool:
    return await sql.update(conn, "webhook_subscriptions", subscription_id, data, COLUMNS)


async def delete_subscription(conn: Conn, subscription_id: int) -> bool:
    return await sql.delete(conn, "webhook_subscriptions", subscription_id)


async def is_integration_user(conn: Conn, user_id: int) -> bool:
    return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1 AND role = 'integration')", user_id)


async def list_deliveries(
    conn: Conn, *, owner: int | None, state: str | None, subscription_id: int | None, limit: int, after_id: int | None
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT d.id, d.subscription_id, d.state, d.attempts, d.next_attempt_at, d.last_status, d.last_error,
                  d.created_at, d.delivered_at, o.event_id, o.event_type, o.subject
           FROM webhook_deliveries d JOIN webhook_outbox o ON o.id = d.outbox_id
           JOIN webhook_subscriptions s ON s.id = d.subscription_id
           WHERE d.id > COALESCE($1, 0) AND ($2::text IS NULL OR d.state = $2)
             AND ($3::bigint IS NULL OR d.subscription_id = $3)
             AND ($5::bigint IS NULL OR s.owner_id = $5)
           ORDER BY d.id LIMIT $4""",
        after_id,
        state,
        subscription_id,
        limit,
        owner,
    )


async def missing_deliveries(conn: Conn, delivery_ids: list[int], *, owner: int | None) -> list[int]:
    """The ids among `delivery_ids` that name no delivery of `owner`'s subscriptions."""
    rows = await conn.fetch(
        """SELECT u.did FROM unnest($1::bigint[]) AS u(did)
           WHERE NOT EXISTS (
               SELECT 1 FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id
               WHERE d.id = u.did AND ($2::bigint IS NULL OR s.owner_id = $2))""",
        delivery_ids,
        owner,
    )
    return [r["did"] for r in rows]
