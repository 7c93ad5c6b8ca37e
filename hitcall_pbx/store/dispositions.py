"""Disposition codes in PostgreSQL and what setting one writes.

`record` runs in the caller's transaction: the code on the attempt (live row or CDR),
the rule's do-not-call entry or callback, the contact's next step (when the call has
ended and the contact is not taken again), the ``disposition.set`` webhook event and the
audit row. The rule itself is core.dispositions; a refused request changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ..auth import Actor
from ..core.callbacks import CallbackKind
from ..core.dispositions import ContactEffect, Disposition, contact_effect, disposition_from, find
from ..errors import Conflict, NotFound, ValidationFailed
from ..hooks.events import enqueue
from ..records.cdr import ATTEMPT_TABLES
from . import audit, callbacks
from .db import Connection, Executor

__all__ = [
    "AttemptRef",
    "CallbackSpec",
    "apply_contact_effect",
    "attempt_ref",
    "load",
    "record",
    "replace",
    "set_on_ended_call",
]


async def load(conn: Executor, campaign_id: int) -> tuple[Disposition, ...]:
    rows = await conn.fetch(
        "SELECT * FROM campaign_dispositions WHERE campaign_id = $1 ORDER BY position, code", campaign_id
    )
    return tuple(disposition_from(dict(r), f"dispositions[{i}]") for i, r in enumerate(rows))


async def replace(conn: Connection, campaign_id: int, items: Sequence[Disposition]) -> None:
    """The campaign's whole list becomes `items` (checked by core.dispositions.validate_list)."""
    await conn.execute("DELETE FROM campaign_dispositions WHERE campaign_id = $1", campaign_id)
    if items:
        await conn.executemany(
            """INSERT INTO campaign_dispositions (campaign_id, code, label_fi, label_en, phone_key, rule,
                                                  retry_delay_s, recycle_days, position)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            [
                (
                    campaign_id,
                    d.code,
                    d.label_fi,
                    d.label_en,
                    d.phone_key,
                    d.rule.value,
                    d.retry_delay_s,
                    d.recycle_days,
                    i,
                )
                for i, d in enumerate(items)
            ],
        )


@dataclass(frozen=True)
class AttemptRef:
    """The call a disposition is for."""

    id: uuid.UUID
    campaign_id: int
    contact_id: int | None
    attempt_no: int
    number: str | None
    agent_id: int | None


async def attempt_ref(conn: Executor, attempt_id: uuid.UUID) -> AttemptRef | None:
    """The attempt, live or already a CDR."""
    for table in ATTEMPT_TABLES:
        r = await conn.fetchrow(
            f"SELECT id, campaign_id, contact_id, attempt_no, dialled_number, agent_id FROM {table} WHERE id = $1",
            attempt_id,
        )
        if r is not None:
            return AttemptRef(
                r["id"], r["campaign_id"], r["contact_id"], r["attempt_no"], r["dialled_number"], r["agent_id"]
            )
    return None


@dataclass(frozen=True)
class CallbackSpec:
    """The callback a ``callback`` disposition asks for: `at` None = the campaign's default
    delay moved into the calling window (the phone key); naive = the contact's local time."""

    at: datetime | None
    kind: CallbackKind = CallbackKind.PERSONAL


async def apply_contact_effect(conn: Connection, attempt: AttemptRef, effect: ContactEffect, *, code: str) -> bool:
    """The contact's next step once its call ended (its close committed): only while this
    attempt is the contact's latest and the contact is not taken again. A callback this
    attempt scheduled is cancelled by any other code (the last disposition wins)."""
    if attempt.contact_id is None or effect.status is None:
        return False
    status = await conn.execute(
        """UPDATE contacts SET status = $3, next_attempt_at = $4,
                  attempts = CASE WHEN $5 THEN 0 ELSE attempts END,
                  lost_attempts = CASE WHEN $5 THEN 0 ELSE lost_attempts END,
                  callback_at = NULL, callback_agent_id = NULL
           WHERE id = $1 AND attempts = $2 AND status <> 'in_progress'""",
        attempt.contact_id,
        attempt.attempt_no,
        effect.status,
        effect.retry_at,
        effect.reset_attempts,
    )
    if status.endswith(" 0"):
        return False
    for cb in await conn.fetch(
        """UPDATE callbacks SET state = 'cancelled', closed_at = now()
           WHERE contact_id = $1 AND state = 'scheduled' AND source_attempt_id = $2 RETURNING *""",
        attempt.contact_id,
        attempt.id,
    ):
        await enqueue(
            conn,
            "callback.cancelled",
            f"contact:{attempt.contact_id}",
            callbacks.event_payload(cb, reason=f"disposition {code}"),
        )
    return True


async def record(
    conn: Connection,
    attempt: AttemptRef,
    d: Disposition,
    *,
    agent_id: int,
    actor: Actor,
    now: datetime,
    call_ended: bool,
    callback: CallbackSpec | None,
) -> dict[str, Any]:
    """Everything a disposition writes, in the caller's transaction. `call_ended`: the
    contact's close is committed, so the contact's next step is written now (else the
    caller applies it when the call ends). Returns the ``disposition.set`` payload."""
    effect = contact_effect(d, now)
    cb = None
    if effect.needs_callback:
        if callback is None:
            raise ValidationFailed("a callback disposition needs callback_at", details={"field": "callback_at"})
        if attempt.contact_id is None:
            raise Conflict("the call's contact is gone (erased): no callback", code="no_contact")
        cb = await callbacks.schedule(
            conn,
            contact_id=attempt.contact_id,
            at=callback.at,
            kind=callback.kind,
            agent_id=agent_id if callback.kind is CallbackKind.PERSONAL else None,
            actor=actor,
            now=now,
            source_attempt_id=attempt.id,
            field="callback_at",
        )
    changed = 0
    for table in ATTEMPT_TABLES:
        status = await conn.execute(f"UPDATE {table} SET disposition = $2 WHERE id = $1", attempt.id, d.code)
        changed += int(status.rsplit(" ", 1)[-1])
    if not changed:
        raise NotFound("no call with this attempt id", details={"attempt_id": str(attempt.id)})
    if effect.dnc and attempt.number is not None:
        await conn.execute(
            """INSERT INTO dnc_entries (phone_e164, campaign_id, reason, source, agent_id, attempt_id, created_at)
               VALUES ($1, NULL, $2, 'agent', $3, $4, $5)
               ON CONFLICT (phone_e164) WHERE campaign_id IS NULL DO NOTHING""",
            attempt.number,
            f"disposition {d.code}",
            agent_id,
            attempt.id,
            now,
        )
    applied = call_ended and await apply_contact_effect(conn, attempt, effect, code=d.code)
    payload: dict[str, Any] = {
        "attempt_id": str(attempt.id),
        "campaign_id": attempt.campaign_id,
        "contact_id": attempt.contact_id,
        "agent_id": agent_id,
        "disposition": d.code,
        "label_fi": d.label_fi,
        "label_en": d.label_en,
        "rule": d.rule.value,
        "do_not_call": effect.dnc,
        "callback_id": cb["id"] if cb else None,
        "callback_due_at": cb["due_at"].isoformat() if cb else None,
        "at": now.isoformat(),
    }
    await enqueue(conn, "disposition.set", f"attempt:{attempt.id}", payload)
    await audit.record(
        conn,
        **actor.audit_fields(),
        action="call.disposition",
        object_type="agent",
        object_id=agent_id,
        details={
            "disposition": d.code,
            "rule": d.rule.value,
            "attempt_id": str(attempt.id),
            "contact_updated": applied,
            **({"callback_id": cb["id"]} if cb else {}),
        },
    )
    return payload


async def set_on_ended_call(
    pool: asyncpg.Pool,
    attempt_id: uuid.UUID,
    code: str,
    *,
    agent_id: int,
    actor: Actor,
    now: datetime,
    callback: CallbackSpec | None,
) -> dict[str, Any]:
    """A disposition for a stored attempt of the agent (the process that serves the API
    only): checked against the campaign's list and recorded in one transaction; the
    contact's next step is written when its call has ended."""
    ref = await attempt_ref(pool, attempt_id)
    if ref is None or ref.agent_id != agent_id:
        raise NotFound(
            "no call of this agent with that attempt id",
            details={"field": "attempt_id", "attempt_id": str(attempt_id), "agent_id": agent_id},
        )
    d = find(await load(pool, ref.campaign_id), code)
    async with pool.acquire() as conn, conn.transaction():
        return await record(conn, ref, d, agent_id=agent_id, actor=actor, now=now, call_ended=True, callback=callback)
