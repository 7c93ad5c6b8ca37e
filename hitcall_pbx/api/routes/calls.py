"""Live calls (from the dialing engine) and CDRs (from the records layer). An agent sees
only its own calls, a supervisor the live calls of the campaigns they supervise."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from ...auth import Role
from ...errors import NotFound, ValidationFailed
from ..deps import CdrFilter, CdrPage, LiveCall
from ..registry import V1, Ctx, Registry
from ..repos import agents as agents_repo
from ..types import BIGINT_MAX, Out, Query

LIVE = frozenset({Role.ADMIN, Role.SUPERVISOR, Role.AGENT})
CDRS = frozenset({Role.ADMIN, Role.SUPERVISOR, Role.COMPLIANCE, Role.INTEGRATION, Role.AGENT})


class LiveCallList(Out):
    items: list[LiveCall]


class LiveFilter(Query):
    campaign_id: int | None = Field(default=None, ge=1, le=BIGINT_MAX)
    agent_id: int | None = Field(default=None, ge=1, le=BIGINT_MAX, description="an agent gets only its own calls")


class CdrParams(CdrFilter):
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=200, description="next_cursor of the previous page")


def _agent_scope(ctx: Ctx, agent_id: int | None) -> int | None:
    """The agent filter to apply: an agent is limited to its own agent."""
    if ctx.me.role is Role.AGENT:
        ctx.own_agent_only(agent_id if agent_id is not None else ctx.me.agent_id)
        return ctx.me.agent_id
    return agent_id


async def _cdr_filter(ctx: Ctx) -> CdrFilter:
    q: CdrFilter = ctx.query
    data = q.model_dump(include=set(CdrFilter.model_fields))
    data["agent_id"] = _agent_scope(ctx, q.agent_id)
    if ctx.me.role is Role.SUPERVISOR:  # a supervisor names one of the campaigns they supervise
        if q.campaign_id is None:
            raise ValidationFailed(
                "a supervisor names one of the campaigns they supervise", details={"field": "campaign_id"}
            )
        await ctx.supervised_campaign_only(q.campaign_id)
    return CdrFilter.model_validate(data)


def register(reg: Registry) -> None:
    @reg.add(
        "GET",
        f"{V1}/calls",
        summary="Live calls",
        tag="calls",
        roles=LIVE,
        scope="calls:read",
        query=LiveFilter,
        response=LiveCallList,
    )
    async def list_live_calls(ctx: Ctx) -> LiveCallList:
        agent_id = _agent_scope(ctx, ctx.query.agent_id)
        supervised = await ctx.supervised()
        if supervised is not None and ctx.query.campaign_id is not None:
            await ctx.supervised_campaign_only(ctx.query.campaign_id)
        calls = await ctx.deps.dialer.live_calls(campaign_id=ctx.query.campaign_id, agent_id=agent_id)
        if supervised is not None:
            calls = [c for c in calls if c.campaign_id in supervised]
        if calls:  # the customers' numbers were read
            await ctx.audit(ctx.pool, "call.list", None, None, {"calls": len(calls)})
        return LiveCallList(items=calls)

    @reg.add(
        "POST",
        f"{V1}/calls/{{attempt_id}}/hangup",
        summary="Hang up a live call",
        tag="calls",
        roles=LIVE,
        scope="calls:control",
    )
    async def hang_up_call(ctx: Ctx) -> None:
        attempt_id = ctx.params["attempt_id"]
        found, owner = await agents_repo.attempt_agent(ctx.pool, attempt_id)
        if not found:
            raise NotFound(f"call {attempt_id} not found", details={"attempt_id": str(attempt_id)})
        if ctx.me.role is Role.AGENT:
            ctx.own_agent_only(owner)
        if ctx.me.role is Role.SUPERVISOR:
            await ctx.supervised_campaign_only(
                await ctx.pool.fetchval("SELECT campaign_id FROM all_attempts WHERE id = $1", attempt_id)
            )
        await ctx.deps.dialer.hang_up(attempt_id, actor=ctx.actor)

    @reg.add(
        "GET",
        f"{V1}/cdrs",
        summary="Query CDRs (newest first)",
        tag="cdrs",
        roles=CDRS,
        scope="cdrs:read",
        query=CdrParams,
        response=CdrPage,
        description="An agent gets its own calls only; a supervisor names a campaign they supervise (campaign_id)."
        " A page with calls is audited (cdr.query).",
    )
    async def query_cdrs(ctx: Ctx) -> CdrPage:
        flt = await _cdr_filter(ctx)
        page = await ctx.deps.cdrs.query(flt, limit=ctx.query.limit, cursor=ctx.query.cursor)
        if page.items:  # the customers' numbers were read
            details = {**flt.model_dump(mode="json", exclude_none=True), "cdrs": len(page.items)}
            await ctx.audit(ctx.pool, "cdr.query", None, None, details)
        return page

    @reg.add(
        "GET",
        f"{V1}/cdrs.csv",
        summary="Export CDRs as CSV",
        tag="cdrs",
        roles=CDRS,
        scope="cdrs:read",
        query=CdrFilter,
        media="text/csv",
    )
    async def export_cdrs(ctx: Ctx) -> web.StreamResponse:
        flt = await _cdr_filter(ctx)
        await ctx.audit(ctx.pool, "cdr.export", None, None, flt.model_dump(mode="json", exclude_none=True))
        headers = {"Content-Type": "text/csv; charset=utf-8", "Content-Disposition": 'attachment; filename="cdrs.csv"'}
        return await ctx.stream(headers, ctx.deps.cdrs.export_csv(flt))
