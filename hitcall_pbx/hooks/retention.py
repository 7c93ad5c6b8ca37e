"""Webhook events are kept only as long as they are useful: once every delivery of an
event is settled (delivered, or dead and past its replay window), the event and its
delivery rows are deleted. Payloads name customers (numbers in call.ended, opt-outs),
so the outbox must not become a second, unbounded contact history."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

DEFAULT_KEEP = timedelta(days=30)


async def prune_outbox(pool: asyncpg.Pool, *, now: datetime, keep: timedelta = DEFAULT_KEEP, batch: int = 1000) -> int:
    """Delete settled events created before `now - keep`, `batch` at a time (short
    transactions; safe to run in several processes). Returns how many were deleted."""
    if keep <= timedelta(0):
        raise ValueError("keep must be positive")
    cutoff = now - keep
    total = 0
    while True:
        deleted = await pool.fetchval(
            """WITH doomed AS (
                   SELECT o.id FROM webhook_outbox o
                   WHERE o.created_at < $1 AND o.dispatched_at IS NOT NULL
                     AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                                     WHERE d.outbox_id = o.id AND d.state = 'pending')
                   ORDER BY o.created_at LIMIT $2 FOR UPDATE SKIP LOCKED),
               d AS (DELETE FROM webhook_outbox o USING doomed WHERE o.id = doomed.id RETURNING 1)
               SELECT count(*) FROM d""",
            cutoff,
            batch,
        )
        total += deleted
        if deleted < batch:
            return total
