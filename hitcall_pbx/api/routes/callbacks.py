"""Callbacks: schedule, list, move and cancel.

An agent sees and changes its own callbacks (personal ones for it) and schedules for
contacts of its campaigns; a supervisor those of the campaigns they supervise; admins and
CRM integration tokens reach all.
A time without a UTC offset is the contact's local time; it must be in the future and
inside the campaign's calling window in the contact's zone (422 naming the field
otherwise, nothing stored).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import Field

from ...auth import Role
from ...core.callbacks import CallbackKind, CallbackState
from ...errors import Forbidden, ValidationFailed
from ...store import callbacks as store
from ...store import supervision
from ...store.db import Executor
from ..registry import V1, Ctx, Registry
from ..types import BIGINT_MAX, Id, In, Out, Query

ROLES = frozenset({Role.ADMIN, Role.SUPERVISOR, Role.AGENT, Role.INTEGRATION})

AT = (
    "when to call back: without a UTC offset, the contact's local time (e.g. 2026-12-07T14:30:00); in the future and"
    " inside the campaign's calling window in the contact's time zone"
)


class CallbackIn(In):
    contact_id: Id
    at: datetime = Field(description=AT, examples=["2026-12-07T14:30:00"])
    kind: CallbackKind = Field(default=CallbackKind.ANYONE, description="personal: one agent calls back; anyone")
    agent_id: Id | None = Field(
        default=None, description="personal: the agent (an agent scheduling for itself may leave it out)"
    )


class CallbackMove(In):
    at: datetime = Field(description=AT)
    kind: CallbackKind | None = Field(default=None, description="change whom it is for (with agent_id)")
    agent_id: Id | None = None


class Callback(Out):
    id: int
    campaign_id: int
    contact_id: int
    agent_id: int | None
    kind: CallbackKind
    due_at: datetime
    local_due_at: str = Field(description="due_at in the contact's time zone, as wall-clock time")
    timezone: str
    state: CallbackState
    attempt_id: str | None = None
    source_attempt_id: str | None = None
    created_by: str
    created_at: datetime
    moved_at: datetime | None
    closed_at: datetime | None


class CallbackList(Out):
    items: list[Callback]


class CallbackFilter(Query):
    campaign_id: int | None = Field(default=None, ge=1, le=BIGINT_MAX)
    agent_id: int | None = Field(default=None, ge=1, le=BIGINT_MAX)
    contact_id: int | None = Field(default=None, ge=1, le=BIGINT_MAX)
    state: CallbackState | None = None
    due_from: datetime | None = Field(default=None, description="due_at >= due_from")
    due_until: datetime | None = Field(default=None, description="due_at < due_until")
    limit: int = Field(default=500, ge=1, le=5000)


def _out(row: Any) -> Callback:
    data = dict(row)
    data["local_due_at"] = row["due_at"].astimezone(ZoneInfo(row["timezone"])).replace(tzinfo=None).isoformat()
    for key in ("attempt_id", "source_attempt_id"):
        data[key] = str(row[key]) if row[key] is not None else None
    return Callback.model_validate(data)


def _agent_only(ctx: Ctx) -> int | None:
    """The caller's agent id when the caller is an agent (limited to its own callbacks)."""
    me = ctx.me
    if me.role is not Role.AGENT:
        return None
    if me.agent_id is None:
        raise Forbidden("this user is linked to no agent", code="not_own_agent")
    return me.agent_id


async def _own(ctx: Ctx, conn: Executor, callback_id: int) -> None:
    mine = _agent_only(ctx)
    if mine is not None and (await store.get(conn, callback_id))["agent_id"] != mine:
        raise Forbidden("agents may act only on their own callbacks", code="not_own_agent")
    supervised = await ctx.supervised()
    if supervised is not None and (await store.get(conn, callback_id))["campaign_id"] not in supervised:
        raise Forbidden(
            "the callback is of a campaign you do not supervise",
            details={"field": "callback_id"},
            code="campaign_not_supervised",
        )


async def _agent_in_campaign_of(conn: Executor, agent_id: int, contact_id: int) -> bool:
    return bool(
        await conn.fetchval(
            """SELECT true FROM contacts c JOIN campaign_lists cl ON cl.list_id = c.list_id
               JOIN agent_campaigns ac ON ac.campaign_id = cl.campaign_id
               WHERE c.id = $1 AND ac.agent_id = $2""",
            contact_id,
            agent_id,
        )
    )


def register(reg: Registry) -> None:
    @reg.add(
        "GET",
        f"{V1}/callbacks",
        summary="List callbacks",
        tag="callbacks",
        roles=ROLES,
        scope="callbacks:read",
        query=CallbackFilter,
        response=CallbackList,
        description="Soonest first. An agent sees only its own (agent_id is its own).",
    )
    async def list_callbacks(ctx: Ctx) -> CallbackList:
        q: CallbackFilter = ctx.query
        mine = _agent_only(ctx)
        flt = store.CallbackFilter(
            campaign_id=q.campaign_id,
            agent_id=mine if mine is not None else q.agent_id,
            contact_id=q.contact_id,
            state=q.state.value if q.state else None,
            due_from=q.due_from,
            due_until=q.due_until,
            campaign_ids=await ctx.supervised(),
        )
        rows = await store.list_callbacks(ctx.pool, flt, limit=q.limit)
        return CallbackList(items=[_out(r) for r in rows])

    @reg.add(
        "POST",
        f"{V1}/callbacks",
        summary="Schedule a callback",
        tag="callbacks",
        roles=ROLES,
        scope="callbacks:write",
        body=CallbackIn,
        response=Callback,
        status=201,
        description="A callback the contact already has is replaced (cancelled). 422 naming `at` for a time in the"
        " past or outside the calling window, `agent_id` for an agent not on the contact's campaign; 409 for a"
        " contact that may not be called (do-not-call, objection, restriction).",
    )
    async def schedule_callback(ctx: Ctx) -> Callback:
        b: CallbackIn = ctx.body
        agent_id = b.agent_id
        mine = _agent_only(ctx)
        async with ctx.tx() as conn:
            if mine is not None:
                if b.kind is CallbackKind.PERSONAL and agent_id not in (None, mine):
                    raise Forbidden("an agent schedules personal callbacks for itself only", code="not_own_agent")
                if b.kind is CallbackKind.PERSONAL:
                    agent_id = mine
                if not await _agent_in_campaign_of(conn, mine, b.contact_id):
                    raise Forbidden("the contact is not in a campaign of this agent", code="not_own_agent")
            if ctx.me.role is Role.SUPERVISOR and not await supervision.supervises_contact(
                conn, ctx.me.user_id, b.contact_id
            ):
                raise Forbidden(
                    "the contact is in no campaign you supervise",
                    details={"field": "contact_id"},
                    code="campaign_not_supervised",
                )
            if b.kind is CallbackKind.ANYONE and agent_id is not None:
                raise ValidationFailed("a callback for anyone names no agent", details={"field": "agent_id"})
            row = await store.schedule(
                conn,
                contact_id=b.contact_id,
                at=b.at,
                kind=b.kind,
                agent_id=agent_id,
                actor=ctx.actor,
                now=datetime.now(UTC),
            )
        return _out(row)

    @reg.add(
        "GET",
        f"{V1}/callbacks/{{callback_id}}",
        summary="Get a callback",
        tag="callbacks",
        roles=ROLES,
        scope="callbacks:read",
        response=Callback,
    )
    async def get_callback(ctx: Ctx) -> Callback:
        callback_id = ctx.params["callback_id"]
        await _own(ctx, ctx.pool, callback_id)
        return _out(await store.get(ctx.pool, callback_id))

    @reg.add(
        "POST",
        f"{V1}/callbacks/{{callback_id}}/move",
        summary="Move a scheduled callback",
        tag="callbacks",
        roles=ROLES,
        scope="callbacks:write",
        body=CallbackMove,
        response=Callback,
        description="409 when the callback is no longer scheduled or its contact is being dialled right now.",
    )
    async def move_callback(ctx: Ctx) -> Callback:
        b: CallbackMove = ctx.body
        callback_id = ctx.params["callback_id"]
        mine = _agent_only(ctx)
        if mine is not None and b.kind is not None and b.agent_id not in (None, mine):
            raise Forbidden("an agent schedules personal callbacks for itself only", code="not_own_agent")
        agent_id = mine if mine is not None and b.kind is CallbackKind.PERSONAL else b.agent_id
        async with ctx.tx() as conn:
            await _own(ctx, conn, callback_id)
            row = await store.move(
                conn, callback_id, at=b.at, kind=b.kind, agent_id=agent_id, actor=ctx.actor, now=datetime.now(UTC)
            )
        return _out(row)

    @reg.add(
        "POST",
        f"{V1}/callbacks/{{callback_id}}/cancel",
        summary="Cancel a scheduled callback",
        tag="callbacks",
        roles=ROLES,
        scope="callbacks:write",
        response=Callback,
        description="The contact goes back to the list. 409 when the callback is no longer scheduled or its"
        " contact is being dialled right now.",
    )
    async def cancel_callback(ctx: Ctx) -> Callback:
        callback_id = ctx.params["callback_id"]
        async with ctx.tx() as conn:
            await _own(ctx, conn, callback_id)
            row = await store.cancel(conn, callback_id, actor=ctx.actor, now=datetime.now(UTC))
        return _out(row)
