"""Supervisor monitoring of live calls: listen, whisper (to the agent only) and barge
(three-way), from the supervisor's own SIP phone. Admins monitor every campaign,
supervisors the campaigns of the agent row (phone) linked to their user; agents and
every other role are refused."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from ...auth import Role
from ...core.monitoring import EndReason, MonitorMode
from ...errors import NotFound, Unavailable
from ...store.monitoring import list_sessions, open_session
from ...store.supervision import supervised_campaigns
from ..deps import MonitoringControl
from ..registry import V1, Ctx, Registry
from ..types import In, Out, Query

MONITOR = frozenset({Role.ADMIN, Role.SUPERVISOR})
_DESCRIPTION = (
    "The supervisor's phone (the agent row linked to the user, logged in through the login extension) hears"
    " the call. listen: hears agent and customer, nobody hears the supervisor; whisper: the agent hears the"
    " supervisor, the customer does not; barge: a three-way call. Refusals: 403 role_may_not_monitor,"
    " 403 campaign_not_supervised (not one of the supervisor's campaigns), 404 (no live call),"
    " 409 supervisor_phone_not_logged_in, 409 supervisor_already_monitoring, 409 call_not_connected."
)


class MonitorStart(In):
    mode: MonitorMode = Field(description="listen, whisper (to the agent only) or barge (three-way)")


class MonitorChange(In):
    mode: MonitorMode


class ModeSpan(Out):
    mode: MonitorMode
    at: datetime = Field(description="when this mode began")


class MonitoringSession(Out):
    id: int
    supervisor: str = Field(description="the supervisor's user name")
    supervisor_user_id: int | None = None
    phone_agent_id: int | None = Field(default=None, description="the agent row of the supervisor's phone")
    attempt_id: uuid.UUID
    campaign_id: int | None = None
    agent_id: int | None = Field(default=None, description="the agent talking to the customer")
    mode: MonitorMode = Field(description="the current mode (an ended session: its last)")
    modes: list[ModeSpan]
    started_at: datetime
    ended_at: datetime | None = None
    end_reason: EndReason | None = None


class MonitoringList(Out):
    items: list[MonitoringSession]


class MonitoringFilter(Query):
    active: bool = Field(default=True, description="only sessions not ended yet")
    attempt_id: uuid.UUID | None = None
    limit: int = Field(default=100, ge=1, le=1000)


def _monitor(ctx: Ctx) -> MonitoringControl:
    if ctx.deps.monitoring is None:
        raise Unavailable(
            "live call control runs in the dialing process (hitcall serve without --api-only)",
            code="dialer_elsewhere",
        )
    return ctx.deps.monitoring


def _on_call(ctx: Ctx, view: dict[str, Any]) -> dict[str, Any]:
    if str(view["attempt_id"]) != str(ctx.params["attempt_id"]):
        raise NotFound(
            f"monitoring session {ctx.params['monitor_id']} is not on call {ctx.params['attempt_id']}",
            details={"monitor_id": ctx.params["monitor_id"], "attempt_id": str(ctx.params["attempt_id"])},
        )
    return view


def register(reg: Registry) -> None:
    @reg.add(
        "POST",
        f"{V1}/calls/{{attempt_id}}/monitor",
        summary="Start monitoring a live call from your phone",
        tag="monitoring",
        roles=MONITOR,
        scope="calls:monitor",
        body=MonitorStart,
        response=MonitoringSession,
        status=201,
        description=_DESCRIPTION,
    )
    async def start_monitoring(ctx: Ctx) -> MonitoringSession:
        me = ctx.me
        view = await _monitor(ctx).start_session(
            user_id=me.user_id,
            username=me.username,
            role=me.role.value,
            attempt_id=str(ctx.params["attempt_id"]),
            mode=ctx.body.mode,
            actor=ctx.actor,
        )
        return MonitoringSession.model_validate(view)

    @reg.add(
        "PATCH",
        f"{V1}/calls/{{attempt_id}}/monitor/{{monitor_id}}",
        summary="Switch a monitoring session's mode (listen, whisper, barge)",
        tag="monitoring",
        roles=MONITOR,
        scope="calls:monitor",
        body=MonitorChange,
        response=MonitoringSession,
        description="Your own session (an admin: anyone's). 409 same_mode, 409 session_ended.",
    )
    async def change_monitoring(ctx: Ctx) -> MonitoringSession:
        monitor = _monitor(ctx)
        monitor_id = ctx.params["monitor_id"]
        _on_call(ctx, await _find(ctx, monitor, monitor_id))
        view = await monitor.change(
            monitor_id, ctx.body.mode, user_id=ctx.me.user_id, role=ctx.me.role.value, actor=ctx.actor
        )
        return MonitoringSession.model_validate(view)

    @reg.add(
        "DELETE",
        f"{V1}/calls/{{attempt_id}}/monitor/{{monitor_id}}",
        summary="Stop monitoring",
        tag="monitoring",
        roles=MONITOR,
        scope="calls:monitor",
        response=MonitoringSession,
        description="Your own session (an admin: anyone's). The ended session is returned.",
    )
    async def stop_monitoring(ctx: Ctx) -> MonitoringSession:
        monitor = _monitor(ctx)
        monitor_id = ctx.params["monitor_id"]
        _on_call(ctx, await _find(ctx, monitor, monitor_id))
        view = await monitor.stop(monitor_id, user_id=ctx.me.user_id, role=ctx.me.role.value, actor=ctx.actor)
        return MonitoringSession.model_validate(view)

    @reg.add(
        "GET",
        f"{V1}/monitoring",
        summary="Monitoring sessions (newest first)",
        tag="monitoring",
        roles=MONITOR,
        scope="calls:monitor",
        query=MonitoringFilter,
        response=MonitoringList,
        description="A supervisor sees the sessions on the campaigns they supervise, an admin all.",
    )
    async def list_monitoring(ctx: Ctx) -> MonitoringList:
        q: MonitoringFilter = ctx.query
        campaigns = None if ctx.me.role is Role.ADMIN else await supervised_campaigns(ctx.pool, ctx.me.user_id)
        rows = await list_sessions(
            ctx.pool, active=q.active, campaigns=campaigns, attempt_id=q.attempt_id, limit=q.limit
        )
        return MonitoringList(items=[MonitoringSession.model_validate(r) for r in rows])


async def _find(ctx: Ctx, monitor: MonitoringControl, monitor_id: int) -> dict[str, Any]:
    """A live session of this node, or one another node runs (its stored row)."""
    for view in monitor.active():
        if view["id"] == monitor_id:
            return view
    stored = await open_session(ctx.pool, monitor_id)
    if stored is not None:
        return stored
    raise NotFound(f"no live monitoring session {monitor_id}", details={"monitor_id": monitor_id})
