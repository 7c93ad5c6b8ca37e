"""Callbacks in PostgreSQL: schedule, move, cancel, list.

A callback is a `callbacks` row; the open one of a contact (at most one) is mirrored
in ``contacts.callback_at`` / ``callback_agent_id``, which the hopper reads (status
``callback``, or the contact's live attempt keeps it for after the call). The rules
(time in the contact's zone, in the future, inside the calling window) are
core.callbacks; every change writes its webhook event and audit row in the caller's
transaction, so a refused request changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

import asyncpg

from ..auth import Actor
from ..core.callbacks import CallbackKind, check_time, default_time, local_to_utc
from ..core.compliance import CallingWindow
from ..core.phone import callee_timezone
from ..errors import Conflict, NotFound, ValidationFailed
from ..hooks.events import enqueue
from . import audit
from .db import Connection, Executor

__all__ = ["CallbackFilter", "cancel", "get", "list_callbacks", "move", "schedule"]

_CONTACT = """
SELECT c.id, c.phone_e164, c.timezone, c.status, c.attempts, c.processing_restricted, c.marketing_prohibited,
       cl.campaign_id, k.window_start, k.window_end, k.window_days, k.callback_delay_s,
       EXISTS (SELECT 1 FROM dnc_entries d WHERE d.phone_e164 = c.phone_e164
               AND (d.campaign_id IS NULL OR d.campaign_id = cl.campaign_id)) AS dnc
FROM contacts c
LEFT JOIN campaign_lists cl ON cl.list_id = c.list_id
LEFT JOIN campaigns k ON k.id = cl.campaign_id
WHERE c.id = $1
FOR UPDATE OF c
"""


def _time(value: Any) -> time:
    return value if isinstance(value, time) else time.fromisoformat(str(value))


def _window(row: asyncpg.Record) -> CallingWindow:
    return CallingWindow(
        start=_time(row["window_start"]), end=_time(row["window_end"]), weekdays=frozenset(row["window_days"])
    )


async def _contact(conn: Connection, contact_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(_CONTACT, contact_id)
    if row is None:
        raise NotFound(f"contact {contact_id} not found", details={"field": "contact_id", "contact_id": contact_id})
    if row["campaign_id"] is None:
        raise ValidationFailed(
            "the contact's list belongs to no campaign: no calling window to schedule in",
            details={"field": "contact_id"},
        )
    if row["status"] == "dnc" or row["dnc"] or row["processing_restricted"] or row["marketing_prohibited"]:
        raise Conflict(
            "the contact may not be called (do-not-call, objection or restriction): no callback",
            code="not_callable",
            details={"field": "contact_id"},
        )
    return row


async def _check_agent(conn: Connection, kind: CallbackKind, agent_id: int | None, campaign_id: int) -> int | None:
    if kind is CallbackKind.ANYONE:
        return None
    if agent_id is None:
        raise ValidationFailed("a personal callback names its agent", details={"field": "agent_id"})
    ok = await conn.fetchval(
        """SELECT true FROM agent_campaigns ac JOIN agents a ON a.id = ac.agent_id
           WHERE ac.agent_id = $1 AND ac.campaign_id = $2 AND NOT a.disabled""",
        agent_id,
        campaign_id,
    )
    if not ok:
        raise ValidationFailed(
            f"agent {agent_id} does not work on the contact's campaign {campaign_id}", details={"field": "agent_id"}
        )
    return agent_id


def _when(row: asyncpg.Record, at: datetime | None, now: datetime, field: str) -> tuple[datetime, str]:
    tz = callee_timezone(row["phone_e164"], row["timezone"])
    window = _window(row)
    if at is None:
        return default_time(now=now, tz=tz, window=window, delay=timedelta(seconds=row["callback_delay_s"])), tz
    return check_time(local_to_utc(at, tz, field=field), now=now, tz=tz, window=window, field=field), tz


def event_payload(cb: asyncpg.Record, **extra: Any) -> dict[str, Any]:
    """A callback webhook event's payload: the callback row as it now stands, and `extra`."""
    return {
        "callback_id": cb["id"],
        "campaign_id": cb["campaign_id"],
        "contact_id": cb["contact_id"],
        "agent_id": cb["agent_id"],
        "kind": cb["kind"],
        "due_at": cb["due_at"].isoformat(),
        "timezone": cb["timezone"],
        "state": cb["state"],
        **extra,
    }


async def _audit(conn: Connection, actor: Actor, action: str, cb: asyncpg.Record, **details: Any) -> None:
    await audit.record(
        conn,
        **actor.audit_fields(),
        action=action,
        object_type="callback",
        object_id=str(cb["id"]),
        details={"contact_id": cb["contact_id"], "campaign_id": cb["campaign_id"], **details},
    )


async def schedule(
    conn: Connection,
    *,
    contact_id: int,
    at: datetime | None,
    kind: CallbackKind,
    agent_id: int | None,
    actor: Actor,
    now: datetime,
    source_attempt_id: uuid.UUID | None = None,
    field: str = "at",
) -> asyncpg.Record:
    """Schedule a callback for the contact (in the caller's transaction). `at`: naive =
    the contact's local time, aware = as given, None = the campaign's default delay moved
    into the calling window. A callback the contact already has is replaced: done when it
    is the one being dialled now, else cancelled."""
    row = await _contact(conn, contact_id)
    agent = await _check_agent(conn, kind, agent_id, row["campaign_id"])
    due, tz = _when(row, at, now, field)
    replaced = await conn.fetch(
        """UPDATE callbacks SET state = CASE WHEN $2 AND due_at <= $3 THEN 'done' ELSE 'cancelled' END,
                                closed_at = $3
           WHERE contact_id = $1 AND state = 'scheduled' RETURNING *""",
        contact_id,
        row["status"] == "in_progress",
        now,
    )
    await conn.execute(
        """UPDATE contacts SET callback_at = $2, callback_agent_id = $3,
                  status = CASE WHEN status = 'in_progress' THEN status ELSE 'callback' END
           WHERE id = $1""",
        contact_id,
        due,
        agent,
    )
    cb = await conn.fetchrow(
        """INSERT INTO callbacks (campaign_id, contact_id, agent_id, kind, due_at, timezone, source_attempt_id,
                                  created_by, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *""",
        row["campaign_id"],
        contact_id,
        agent,
        kind.value,
        due,
        tz,
        source_attempt_id,
        actor.name,
        now,
    )
    assert cb is not None  # INSERT ... RETURNING gives the row
    for old in replaced:
        await enqueue(conn, "callback.cancelled", f"contact:{contact_id}", event_payload(old, replaced_by=cb["id"]))
    await enqueue(
        conn,
        "callback.scheduled",
        f"contact:{contact_id}",
        event_payload(
            cb, source_attempt_id=str(source_attempt_id) if source_attempt_id else None, created_by=actor.name
        ),
    )
    await _audit(conn, actor, "callback.schedule", cb, due_at=due.isoformat(), kind=kind.value, agent_id=agent)
    return cb


async def _open(conn: Connection, callback_id: int) -> asyncpg.Record:
    cb = await conn.fetchrow("SELECT * FROM callbacks WHERE id = $1 FOR UPDATE", callback_id)
    if cb is None:
        raise NotFound(f"callback {callback_id} not found", details={"callback_id": callback_id})
    if cb["state"] != "scheduled":
        raise Conflict(f"the callback is {cb['state']}", code="callback_closed", details={"state": cb["state"]})
    return cb


async def get(conn: Executor, callback_id: int) -> asyncpg.Record:
    cb = await conn.fetchrow("SELECT * FROM callbacks WHERE id = $1", callback_id)
    if cb is None:
        raise NotFound(f"callback {callback_id} not found", details={"callback_id": callback_id})
    return cb


def _not_dialling(row: asyncpg.Record) -> None:
    if row["status"] == "in_progress":
        raise Conflict("the contact is being dialled or offered right now", code="contact_busy")


async def move(
    conn: Connection,
    callback_id: int,
    *,
    at: datetime,
    kind: CallbackKind | None,
    agent_id: int | None,
    actor: Actor,
    now: datetime,
) -> asyncpg.Record:
    """Move a scheduled callback to `at` (and change whom it is for, when `kind` is given)."""
    cb = await _open(conn, callback_id)
    row = await _contact(conn, cb["contact_id"])
    _not_dialling(row)
    new_kind = kind or CallbackKind(cb["kind"])
    agent = await _check_agent(conn, new_kind, agent_id if kind is not None else cb["agent_id"], row["campaign_id"])
    due, tz = _when(row, at, now, "at")
    moved = await conn.fetchrow(
        """UPDATE callbacks SET due_at = $2, timezone = $3, kind = $4, agent_id = $5, moved_at = $6
           WHERE id = $1 RETURNING *""",
        callback_id,
        due,
        tz,
        new_kind.value,
        agent,
        now,
    )
    assert moved is not None  # the row is locked by _open
    await conn.execute(
        "UPDATE contacts SET callback_at = $2, callback_agent_id = $3, status = 'callback' WHERE id = $1",
        cb["contact_id"],
        due,
        agent,
    )
    await enqueue(conn, "callback.moved", f"contact:{cb['contact_id']}", event_payload(moved, previous=cb["due_at"]))
    await _audit(conn, actor, "callback.move", moved, due_at=due.isoformat(), previous=cb["due_at"].isoformat())
    return moved


async def cancel(conn: Connection, callback_id: int, *, actor: Actor, now: datetime) -> asyncpg.Record:
    """Cancel a scheduled callback: the contact goes back to the list (new or retry)."""
    cb = await _open(conn, callback_id)
    row = await conn.fetchrow("SELECT status FROM contacts WHERE id = $1 FOR UPDATE", cb["contact_id"])
    assert row is not None  # the callback row goes with its contact
    _not_dialling(row)
    done = await conn.fetchrow(
        "UPDATE callbacks SET state = 'cancelled', closed_at = $2 WHERE id = $1 RETURNING *", callback_id, now
    )
    assert done is not None  # the row is locked by _open
    await conn.execute(
        """UPDATE contacts SET callback_at = NULL, callback_agent_id = NULL,
                  status = CASE WHEN status = 'callback' THEN CASE WHEN attempts > 0 THEN 'retry' ELSE 'new' END
                                ELSE status END
           WHERE id = $1""",
        cb["contact_id"],
    )
    await enqueue(conn, "callback.cancelled", f"contact:{cb['contact_id']}", event_payload(done))
    await _audit(conn, actor, "callback.cancel", done)
    return done


@dataclass(frozen=True)
class CallbackFilter:
    campaign_id: int | None = None
    agent_id: int | None = None
    contact_id: int | None = None
    state: str | None = None
    due_from: datetime | None = None
    due_until: datetime | None = None
    campaign_ids: frozenset[int] | None = None  # None: every campaign


async def list_callbacks(conn: Executor, flt: CallbackFilter, *, limit: int = 500) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT * FROM callbacks
               WHERE ($1::bigint IS NULL OR campaign_id = $1) AND ($2::bigint IS NULL OR agent_id = $2)
                 AND ($3::bigint IS NULL OR contact_id = $3) AND ($4::text IS NULL OR state = $4)
                 AND ($5::timestamptz IS NULL OR due_at >= $5) AND ($6::timestamptz IS NULL OR due_at < $6)
                 AND ($8::bigint[] IS NULL OR campaign_id = ANY($8::bigint[]))
               ORDER BY due_at, id LIMIT $7""",
            flt.campaign_id,
            flt.agent_id,
            flt.contact_id,
            flt.state,
            flt.due_from,
            flt.due_until,
            limit,
            None if flt.campaign_ids is None else sorted(flt.campaign_ids),
        )
    )
