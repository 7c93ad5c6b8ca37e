"""Reports: the agent productivity report per day. An agent sees only itself, a supervisor
the agents of the campaigns they supervise (the campaigns of their own phone's agent row),
an admin every agent."""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from ...auth import Role
from ...core.agent_report import DEFAULT_REPORT_TZ, report_zone
from ...errors import Forbidden
from ...report.agents import load_agent_report
from ...store.supervision import supervised_agents
from ..registry import V1, Ctx, Registry
from ..types import BIGINT_MAX, Out, Query, TimeZone

REPORTS = frozenset({Role.ADMIN, Role.SUPERVISOR, Role.AGENT})


class AgentReportQuery(Query):
    date: dt.date | None = Field(default=None, description="the day as YYYY-MM-DD in `tz` (default: today there)")
    tz: TimeZone = Field(default=DEFAULT_REPORT_TZ, description="the time zone of the report's days")
    agent_id: int | None = Field(default=None, ge=1, le=BIGINT_MAX, description="one agent only")


class AgentDayOut(Out):
    agent_id: int
    number: str | None
    name: str | None
    day: dt.date
    logged_in_s: float = Field(description="ready + reserved + talk + wrap-up + paused")
    ready_s: float
    reserved_s: float = Field(description="a call being dialled or offered for the agent")
    talk_s: float
    wrap_up_s: float
    paused_s: float
    pause_s: dict[str, float] = Field(description="paused seconds per pause code")
    calls: int = Field(description="the day's call records that name the agent")
    connects: int = Field(description="calls that reached the agent")
    dispositions: dict[str, int] = Field(description="calls per disposition code")
    average_handle_s: float | None = Field(description="(talk + wrap-up) / connects; none without connects")
    occupancy: float | None = Field(description="(talk + wrap-up) / logged in")


class AgentReport(Out):
    day: dt.date
    time_zone: str
    agents: list[AgentDayOut]


async def _visible_agents(ctx: Ctx, agent_id: int | None) -> list[int] | None:
    """The agent ids the caller may see (None: every agent), narrowed to `agent_id`."""
    me = ctx.me
    if me.role is Role.AGENT:
        ctx.own_agent_only(agent_id if agent_id is not None else me.agent_id)
        return [me.agent_id] if me.agent_id is not None else []
    if me.role is Role.SUPERVISOR:
        visible = await supervised_agents(ctx.pool, me.user_id)
        if agent_id is None:
            return visible
        if agent_id not in visible:
            raise Forbidden(
                "the agent works on no campaign you supervise",
                details={"field": "agent_id"},
                code="agent_not_supervised",
            )
        return [agent_id]
    return None if agent_id is None else [agent_id]


def register(reg: Registry) -> None:
    @reg.add(
        "GET",
        f"{V1}/reports/agents",
        summary="Agent productivity per agent and day",
        tag="reports",
        roles=REPORTS,
        scope="reports:read",
        query=AgentReportQuery,
        response=AgentReport,
        description="Per agent: logged-in, ready, reserved, talk, wrap-up and pause time (per pause code) on"
        " the day in `tz` (23 or 25 hours when the clocks change), calls, connects, dispositions and the average"
        " handle time. An agent sees only itself; a supervisor the agents of the campaigns they supervise; an"
        " admin every agent. Each request is audited (report.agents).",
    )
    async def agent_report(ctx: Ctx) -> AgentReport:
        q: AgentReportQuery = ctx.query
        zone = report_zone(q.tz)
        day = q.date or dt.datetime.now(zone).date()
        ids = await _visible_agents(ctx, q.agent_id)
        days = await load_agent_report(ctx.pool, day, zone, agent_ids=ids, now=ctx.deps.clock())
        details = {"day": day.isoformat(), "tz": zone.key, "agents": len(days)}
        if q.agent_id is not None:
            details["agent_id"] = q.agent_id
        await ctx.audit(ctx.pool, "report.agents", None, None, details)
        return AgentReport(day=day, time_zone=zone.key, agents=[AgentDayOut.model_validate(d.as_dict()) for d in days])
