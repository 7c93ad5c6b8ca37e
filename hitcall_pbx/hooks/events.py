"""CRM webhook event types and the transactional outbox write.

`enqueue` is called inside the transaction of the change that causes the event,
so an event exists if and only if its change was committed.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..store.db import Connection

EVENT_TYPES = (
    "call.originated",
    "call.answered",
    "call.bridged",
    "call.ended",
    "call.abandoned",
    "agent.state_changed",
    "preview.offered",
    "recording.ready",
    "recording.purged",
    "recording.paused",
    "recording.resumed",
    "contact.opted_out",
    "campaign.state_changed",
    "alarm.raised",
    "alarm.cleared",
    "disposition.set",
    "callback.scheduled",
    "callback.moved",
    "callback.cancelled",
    "transfer.started",
    "transfer.completed",
    "transfer.cancelled",
    "transfer.failed",
    "conference.started",
    "monitoring.started",
    "monitoring.changed",
    "monitoring.ended",
)


async def enqueue(conn: Connection, event_type: str, subject: str, payload: dict[str, Any]) -> uuid.UUID:
    """Write one event to the outbox. `subject` orders delivery (e.g. "attempt:<id>", "agent:7")."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    event_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO webhook_outbox (event_id, event_type, subject, payload) VALUES ($1, $2, $3, $4)",
        event_id,
        event_type,
        subject,
        payload,
    )
    return event_id
