"""Settled webhook events are pruned after the keep window; nothing still owed to a receiver is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hitcall_pbx.hooks.events import enqueue
from hitcall_pbx.hooks.retention import prune_outbox

NOW = datetime.now(UTC)


async def _event(db, *, age_days: float, dispatched: bool, delivery: str | None, sub: int) -> int:
    async with db.acquire() as conn:
        await enqueue(conn, "call.ended", "attempt:x", {"dialled_number": "+358401234567"})
        oid = await conn.fetchval("SELECT max(id) FROM webhook_outbox")
        created = NOW - timedelta(days=age_days)
        await conn.execute(
            "UPDATE webhook_outbox SET created_at = $2, dispatched_at = $3 WHERE id = $1",
            oid,
            created,
            created if dispatched else None,
        )
        if delivery is not None:
            await conn.execute(
                """INSERT INTO webhook_deliveries (outbox_id, subscription_id, state, delivered_at)
                   VALUES ($1, $2, $3, $4)""",
                oid,
                sub,
                delivery,
                created if delivery == "delivered" else None,
            )
        return oid


async def test_only_settled_events_past_the_window_are_deleted_in_batches(db):
    sub = await db.fetchval(
        "INSERT INTO webhook_subscriptions (url, secret, event_types) VALUES ('https://crm.example/h', "
        "'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', '{call.ended}') RETURNING id"
    )
    gone = [await _event(db, age_days=40, dispatched=True, delivery="delivered", sub=sub) for _ in range(5)]
    gone.append(await _event(db, age_days=40, dispatched=True, delivery="dead", sub=sub))
    gone.append(await _event(db, age_days=40, dispatched=True, delivery=None, sub=sub))  # no subscriber
    kept = [
        await _event(db, age_days=40, dispatched=True, delivery="pending", sub=sub),  # still owed
        await _event(db, age_days=40, dispatched=False, delivery=None, sub=sub),  # not fanned out yet
        await _event(db, age_days=10, dispatched=True, delivery="delivered", sub=sub),  # inside the window
        await _event(db, age_days=10, dispatched=True, delivery="dead", sub=sub),  # still replayable
    ]
    assert await prune_outbox(db, now=NOW, keep=timedelta(days=30), batch=2) == len(gone)
    left = [r["id"] for r in await db.fetch("SELECT id FROM webhook_outbox ORDER BY id")]
    assert left == sorted(kept)
    assert await db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE outbox_id = ANY($1::bigint[])", gone) == 0
    assert await prune_outbox(db, now=NOW, keep=timedelta(days=30)) == 0  # idempotent


async def test_keep_must_be_positive(db):
    with pytest.raises(ValueError):
        await prune_outbox(db, now=NOW, keep=timedelta(0))
