"""Agents: CRUD, state, and the dialing engine's agent controls (pause, wrap-up,
disposition, preview offers). An agent may act only on itself."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from ...auth import Role
from ...core.callbacks import CallbackKind
from ...errors import Conflict, Forbidden, NotFound, ValidationFailed
from ...store.supervision import supervised_campaigns
from ..deps import RecordingPauseStatus
from ..registry import V1, Ctx, Registry, found
from ..repos import agents as repo
from ..types import BIGINT_MAX, UNSET, Code, Id, In, Out, Patch, Phone, Query, Text

MANAGE = frozenset({Role.ADMIN, Role.SUPERVISOR})
CONTROL = frozenset({Role.ADMIN, Role.SUPERVISOR, Role.AGENT})
# Users who may have a phone (an agent row): an agent's row takes calls; a supervisor's
# or admin's row is the phone they monitor calls from, its campaigns the ones they supervise.
PHONE_ROLES = frozenset({Role.AGENT, Role.SUPERVISOR, Role.ADMIN})
State = Literal["ready", "reserved", "on_call", "wrap_up", "paused", "logged_out"]
NUMBER = r"^[0-9]{1,10}$"
PIN = r"^[0-9]{4,12}$"
ENDPOINT = r"^[A-Za-z0-9_.-]{1,80}$"
CampaignIds = list[Id]


class AgentCreate(In):
    number: str = Field(pattern=NUMBER, description="typed on the phone keypad at login")
    name: Text
    pin: str | None = Field(default=None, pattern=PIN, description="login PIN; stored as an argon2id hash")
    endpoint: str | None = Field(default=None, pattern=ENDPOINT, description="PJSIP endpoint of the agent's phone")
    user_id: Id | None = Field(
        default=None,
        description="the user who is this agent (role agent), or whose phone this is (role supervisor or admin:"
        " the phone monitors calls of this row's campaigns and takes none)",
    )
    disabled: bool = False
    campaign_ids: CampaignIds = Field(default_factory=list, max_length=1000)


class AgentUpdate(Patch):
    number: str = Field(default=UNSET, pattern=NUMBER)
    name: Text = UNSET
    pin: str | None = Field(default=None, pattern=PIN, description="null removes the PIN")
    endpoint: str | None = Field(default=None, pattern=ENDPOINT)
    user_id: Id | None = None
    disabled: bool = UNSET
    campaign_ids: CampaignIds = Field(default=UNSET, max_length=1000)


class Agent(Out):
    id: int
    number: str
    name: str
    endpoint: str | None
    user_id: int | None
    disabled: bool
    has_pin: bool
    state: State
    pause_code: str | None
    state_since: datetime
    campaign_ids: list[int]
    created_at: datetime
    updated_at: datetime


class AgentList(Out):
    items: list[Agent]


class AgentFilter(Query):
    state: State | None = None
    campaign_id: int | None = Field(default=None, ge=1, le=BIGINT_MAX)


class AgentStatus(Out):
    agent_id: int
    state: State
    pause_code: str | None
    state_since: datetime


class PauseIn(In):
    pause_code: Code = Field(examples=["lunch"])


class DispositionIn(In):
    disposition: str = Field(
        pattern=r"^[A-Za-z0-9_.-]{1,64}$", examples=["sale"], description="a code of the call's campaign"
    )
    attempt_id: uuid.UUID | None = Field(default=None, description="null = the agent's current or last call")
    callback_at: datetime | None = Field(
        default=None,
        description="for a code with rule callback (required then): when to call back; without a UTC offset it"
        " is the contact's local time. Must be in the future and inside the campaign's calling window.",
        examples=["2026-12-07T14:30:00"],
    )
    callback_kind: CallbackKind = Field(
        default=CallbackKind.PERSONAL, description="personal: this agent calls back; anyone: any agent"
    )


class SkipIn(In):
    reason: str | None = Field(default=None, max_length=200)


class PreviewOffer(Out):
    id: int
    agent_id: int
    campaign_id: int
    contact_id: int
    phone: str
    name: str | None
    title: str | None
    organisation: str | None
    external_id: str | None
    extra: dict[str, Any]
    offered_at: datetime
    expires_at: datetime


class Accepted(Out):
    attempt_id: uuid.UUID


class ManualDialIn(In):
    campaign_id: Id | None = Field(default=None, description="the campaign of the call; required with number")
    number: Phone | None = Field(default=None, description="a number to dial (give number or contact_id)")
    contact_id: Id | None = Field(default=None, description="a contact of a campaign to dial")


async def _load(conn: Any, agent_id: int, *, for_update: bool = False) -> Any:
    return found(await repo.get(conn, agent_id, for_update=for_update), "agent", "agent_id", agent_id)


async def _existing(ctx: Ctx) -> int:
    """The path's agent id, 404 when there is no such agent."""
    return (await _load(ctx.pool, ctx.params["agent_id"]))["id"]


async def _status(ctx: Ctx) -> AgentStatus:
    row = await _load(ctx.pool, ctx.params["agent_id"])
    return AgentStatus(
        agent_id=row["id"], state=row["state"], pause_code=row["pause_code"], state_since=row["state_since"]
    )


async def _supervised_row(ctx: Ctx, conn: Any, row: Any) -> None:
    """A supervisor changes the agents of the campaigns they supervise, never a phone of a
    supervisor or admin (its campaigns are what that person supervises)."""
    if ctx.me.role is not Role.SUPERVISOR:
        return
    await ctx.supervised_agent_only(row["id"])
    if row["user_id"] is not None and await repo.user_role(conn, row["user_id"]) != Role.AGENT.value:
        raise Forbidden(
            "only an admin changes a supervisor's or admin's phone", details={"field": "agent_id"}, code="admin_only"
        )


async def _prepare(ctx: Ctx, conn: Any, data: dict[str, Any]) -> list[int] | None:
    """Check references and hash the PIN; returns the campaign ids to assign (None = keep)."""
    role: str | None = None
    if data.get("user_id") is not None:
        role = await repo.user_role(conn, data["user_id"])
        if role is None:
            raise ValidationFailed(f"user {data['user_id']} does not exist", details={"field": "user_id"})
        if role not in PHONE_ROLES:
            raise ValidationFailed(
                "the linked user must have role agent, supervisor or admin", details={"field": "user_id"}
            )
    campaign_ids = data.pop("campaign_ids", None)
    if campaign_ids:
        missing = await repo.missing_campaigns(conn, campaign_ids)
        if missing:
            raise ValidationFailed(f"campaigns do not exist: {missing}", details={"field": "campaign_ids"})
    if ctx.me.role is Role.SUPERVISOR:
        # A phone's campaigns are what its supervisor supervises: only an admin gives them out.
        if data.get("user_id") is not None and role is not None and role != Role.AGENT.value:
            raise Forbidden(
                "only an admin links a phone to a supervisor or admin", details={"field": "user_id"}, code="admin_only"
            )
        mine = await supervised_campaigns(conn, ctx.me.user_id)
        if campaign_ids and not set(campaign_ids) <= mine:
            raise Forbidden(
                "a supervisor assigns agents to the campaigns they supervise only",
                details={"field": "campaign_ids"},
                code="campaign_not_supervised",
            )
    if "pin" in data:
        pin = data.pop("pin")
        data["pin_hash"] = None if pin is None else await ctx.deps.passwords.hash_async(pin)
    return campaign_ids


def register(reg: Registry) -> None:
    @reg.add(
        "GET",
        f"{V1}/agents",
        summary="List agents",
        tag="agents",
        roles=MANAGE,
        scope="agents:read",
        query=AgentFilter,
        response=AgentList,
    )
    async def list_agents(ctx: Ctx) -> AgentList:
        rows = await repo.list_all(ctx.pool, state=ctx.query.state, campaign_id=ctx.query.campaign_id)
        mine = await ctx.supervised()  # a supervisor: the agents of their campaigns
        if mine is not None:
            rows = [r for r in rows if mine.intersection(r["campaign_ids"])]
        return AgentList(items=[Agent.model_validate(dict(r)) for r in rows])

    @reg.add(
        "POST",
        f"{V1}/agents",
        summary="Create an agent",
        tag="agents",
        roles=MANAGE,
        scope="agents:write",
        body=AgentCreate,
        response=Agent,
        status=201,
    )
    async def create_agent(ctx: Ctx) -> Agent:
        data = ctx.body.model_dump()
        async with ctx.tx() as conn:
            campaign_ids = await _prepare(ctx, conn, data)
            agent_id = await repo.insert(conn, data)
            await repo.set_campaigns(conn, agent_id, campaign_ids or [])
            await ctx.audit(conn, "agent.create", "agent", agent_id, {"campaign_ids": campaign_ids or []})
            row = await _load(conn, agent_id)
        await ctx.notify_dialer(ctx.deps.dialer.agent_changed(agent_id))
        return Agent.model_validate(dict(row))

    @reg.add(
        "GET",
        f"{V1}/agents/{{agent_id}}",
        summary="Get an agent",
        tag="agents",
        roles=CONTROL,
        scope="agents:read",
        own_agent=True,
        response=Agent,
    )
    async def get_agent(ctx: Ctx) -> Agent:
        return Agent.model_validate(dict(await _load(ctx.pool, ctx.params["agent_id"])))

    @reg.add(
        "PATCH",
        f"{V1}/agents/{{agent_id}}",
        summary="Change an agent",
        tag="agents",
        roles=MANAGE,
        scope="agents:write",
        body=AgentUpdate,
        response=Agent,
        description="campaign_ids replaces the agent's campaign assignments (a supervisor's: those of the"
        " campaigns they supervise; the agent keeps its other campaigns).",
    )
    async def update_agent(ctx: Ctx) -> Agent:
        agent_id = ctx.params["agent_id"]
        data = ctx.body.changes()
        fields = sorted(data)
        async with ctx.tx() as conn:
            before = await _load(conn, agent_id, for_update=True)
            await _supervised_row(ctx, conn, before)
            campaign_ids = await _prepare(ctx, conn, data)
            await repo.update(conn, agent_id, data)
            details: dict[str, Any] = {"fields": fields}
            if campaign_ids is not None:
                if ctx.me.role is Role.SUPERVISOR:  # what they do not supervise is not theirs to take away
                    mine = await supervised_campaigns(conn, ctx.me.user_id)
                    campaign_ids = sorted(set(campaign_ids) | (set(before["campaign_ids"]) - mine))
                await repo.set_campaigns(conn, agent_id, campaign_ids)
                details["campaign_ids"] = {"before": sorted(before["campaign_ids"]), "after": sorted(campaign_ids)}
            await ctx.audit(conn, "agent.update", "agent", agent_id, details)
            row = await _load(conn, agent_id)
        await ctx.notify_dialer(ctx.deps.dialer.agent_changed(agent_id))
        return Agent.model_validate(dict(row))

    @reg.add(
        "DELETE",
        f"{V1}/agents/{{agent_id}}",
        summary="Delete an agent that never worked",
        tag="agents",
        roles=MANAGE,
        scope="agents:write",
        description="An agent with state history or calls cannot be deleted (409): disable it instead, so"
        " that its time accounting stays.",
    )
    async def delete_agent(ctx: Ctx) -> None:
        agent_id = ctx.params["agent_id"]
        async with ctx.tx() as conn:
            await _supervised_row(ctx, conn, await _load(conn, agent_id, for_update=True))
            if await repo.has_history(conn, agent_id):
                raise Conflict("the agent has worked; disable it instead", code="in_use")
            await repo.delete(conn, agent_id)
            await ctx.audit(conn, "agent.delete", "agent", agent_id)
        await ctx.notify_dialer(ctx.deps.dialer.agent_changed(agent_id))

    @reg.add(
        "GET",
        f"{V1}/agents/{{agent_id}}/state",
        summary="An agent's current state",
        tag="agents",
        roles=CONTROL,
        scope="agents:read",
        own_agent=True,
        response=AgentStatus,
    )
    async def get_agent_state(ctx: Ctx) -> AgentStatus:
        return await _status(ctx)

    @reg.add(
        "POST",
        f"{V1}/agents/{{agent_id}}/pause",
        summary="Pause an agent (with a pause code)",
        tag="agents",
        roles=CONTROL,
        scope="agents:control",
        own_agent=True,
        body=PauseIn,
        response=AgentStatus,
    )
    async def pause_agent(ctx: Ctx) -> AgentStatus:
        await ctx.deps.dialer.pause_agent(await _existing(ctx), ctx.body.pause_code, actor=ctx.actor)
        return await _status(ctx)

    @reg.add(
        "POST",
        f"{V1}/agents/{{agent_id}}/unpause",
        summary="End an agent's pause",
        tag="agents",
        roles=CONTROL,
        scope="agents:control",
        own_agent=True,
        response=AgentStatus,
    )
    async def unpause_agent(ctx: Ctx) -> AgentStatus:
        await ctx.deps.dialer.unpause_agent(await _existing(ctx), actor=ctx.actor)
        return await _status(ctx)

    @reg.add(
        "POST",
        f"{V1}/agents/{{agent_id}}/wrap-up/end",
        summary="End an agent's wrap-up",
        tag="agents",
        roles=CONTROL,
        scope="agents:control",
        own_agent=True,
        response=AgentStatus,
    )
    async def end_wrap_up(ctx: Ctx) -> AgentStatus:
        await ctx.deps.dialer.end_wrap_up(await _existing(ctx), actor=ctx.actor)
        return await _status(ctx)

    @reg.add(
        "POST",
        f"{V1}/agents/{{agent_id}}/logout",
        summary="Log an agent's phone out",
        tag="agents",
        roles=CONTROL,
        scope="agents:control",
        own_agent=True,
        description="Hangs up the agent's call to the login extension, as hanging up the phone does. 404 when the"
        " agent is not logged in; 409 agent_busy while it talks to a customer or one is coming. Audited.",
    )
    async def log_out_agent(ctx: Ctx) -> None:
        await ctx.deps.dialer.log_out_agent(await _existing(ctx), actor=ctx.actor)

    @reg.add(
        "POST",
        f"{V1}/agents/{{agent_id}}/disposition",
        summary="Set the disposition of the agent's call",
        tag="agents",
        roles=CONTROL,
        scope="agents:control",
        own_agent=True,
        body=DispositionIn,
        description="The code must be in the campaign's list (422 naming `disposition` otherwise, nothing"
        " changed); its rule is applied: final, retry, callback (needs `callback_at`), do_not_call (the number"
        " goes on the global do-not-call list), wrong_number, recycle. Stored on the CDR, sent as the"
        " disposition.set webhook event; the last code given wins (a do-not-call entry stays).",
    )
    async def set_disposition(ctx: Ctx) -> None:
        agent_id = await _existing(ctx)
        b: DispositionIn = ctx.body
        if b.attempt_id is not None:
            found, owner = await repo.attempt_agent(ctx.pool, b.attempt_id)
            if not found or owner != agent_id:
                raise NotFound("the agent has no call with this attempt_id", details={"field": "attempt_id"})
        await ctx.deps.dialer.set_disposition(
            agent_id,
            b.disposition,
            attempt_id=b.attempt_id,
            actor=ctx.actor,
            callback_at=b.callback_at,
            callback_kind=b.callback_kind,
        )

    @reg.add(
        "GET",
        f"{V1}/agents/{{agent_id}}/offer",
        summary="The agent's open preview offer",
        tag="agents",
        roles=CONTROL,
        scope="agents:read",
        own_agent=True,
        response=PreviewOffer,
        description="404 when the agent has no open offer. Each read is audited as contact.view.",
    )
    async def get_offer(ctx: Ctx) -> PreviewOffer:
        row = await repo.open_offer(ctx.pool, await _existing(ctx))
        if row is None:
            raise NotFound("the agent has no open preview offer", code="no_offer")
        await ctx.audit(
            ctx.pool, "contact.view", "contact", row["contact_id"], {"agent_id": row["agent_id"], "card": "offer"}
        )
        return PreviewOffer.model_validate({**dict(row), "phone": row["phone_e164"]})

    @reg.add(
        "POST",
        f"{V1}/agents/{{agent_id}}/offer/accept",
        summary="Accept the preview offer (dial it)",
        tag="agents",
        roles=CONTROL,
        scope="agents:control",
        own_agent=True,
        response=Accepted,
    )
    async def accept_offer(ctx: Ctx) -> Accepted:
        attempt_id = await ctx.deps.dialer.accept_offer(await _existing(ctx), actor=ctx.actor)
        return Accepted(attempt_id=attempt_id)

    @reg.add(
        "POST",
        f"{V1}/agents/{{agent_id}}/offer/skip",
        summary="Skip the preview offer",
        tag="agents",
        roles=CONTROL,
        scope="agents:control",
        own_agent=True,
        body=SkipIn,
    )
    async def skip_offer(ctx: Ctx) -> None:
        await ctx.deps.dialer.skip_offer(await _existing(ctx), ctx.body.reason, actor=ctx.actor)

    _RECORDING_PAUSE_ERRORS = (
        " 409 with `error`: `no_current_call` (the agent is not talking to a customer),"
        " `call_not_recorded` (the campaign does not record calls)"
    )

    @reg.add(
        "POST",
        f"{V1}/agents/{{agent_id}}/recording/pause",
        summary="Pause the recording of the agent's current call",
        tag="agents",
        roles=CONTROL,
        scope="agents:control",
        own_agent=True,
        response=RecordingPauseStatus,
        description="For a card payment: the recording goes on as silence until it is resumed, so the file"
        " keeps the call's length. Each paused span (start, end, who) is stored with the recording, audited"
        " (recording.pause / recording.resume) and sent as recording.paused / recording.resumed webhook"
        " events; a span still open when the call ends closes at its end. The agent's phone key `*` does the"
        " same during a call." + _RECORDING_PAUSE_ERRORS + ", `recording_already_paused`.",
    )
    async def pause_recording(ctx: Ctx) -> RecordingPauseStatus:
        return await ctx.deps.dialer.pause_recording(await _existing(ctx), actor=ctx.actor)

    @reg.add(
        "POST",
        f"{V1}/agents/{{agent_id}}/recording/resume",
        summary="Resume the recording of the agent's current call",
        tag="agents",
        roles=CONTROL,
        scope="agents:control",
        own_agent=True,
        response=RecordingPauseStatus,
        description="Ends the open pause." + _RECORDING_PAUSE_ERRORS + ", `recording_not_paused`.",
    )
    async def resume_recording(ctx: Ctx) -> RecordingPauseStatus:
        return await ctx.deps.dialer.resume_recording(await _existing(ctx), actor=ctx.actor)

    @reg.add(
        "POST",
        f"{V1}/agents/{{agent_id}}/dial",
        summary="Manual dial: the agent calls a number or a contact",
        tag="agents",
        roles=CONTROL,
        scope="agents:control",
        own_agent=True,
        body=ManualDialIn,
        response=Accepted,
        status=202,
        description="Dials `number` in campaign `campaign_id`, or the contact `contact_id`, for this agent"
        " only; the call is an attempt like any other (mode manual: CDR, webhook events). Every pre-dial rule"
        " applies: suppression, restriction of processing, do-not-call lists, objection to direct marketing,"
        " the 72-hour rule after an abandoned call and the campaign's calling window in the callee's local"
        " time; a refusal is 409 `dial_refused` with `details.reason` and nothing is dialled. The agent must"
        " be logged in on its phone and ready or paused (409 `agent_not_available`); a paused agent is unpaused"
        " for the call.",
    )
    async def manual_dial(ctx: Ctx) -> Accepted:
        b: ManualDialIn = ctx.body
        if (b.number is None) == (b.contact_id is None):
            raise ValidationFailed("give either number or contact_id", details={"field": "number"})
        if b.number is not None and b.campaign_id is None:
            raise ValidationFailed("campaign_id is required to dial a number", details={"field": "campaign_id"})
        agent_id = await _existing(ctx)
        if ctx.me.role is Role.SUPERVISOR:
            # A supervisor dials for the agents of the campaigns they supervise (their phone's campaigns).
            mine = await supervised_campaigns(ctx.pool, ctx.me.user_id)
            if b.campaign_id is not None and b.campaign_id not in mine:
                raise Forbidden("the campaign is not one you supervise", details={"field": "campaign_id"})
            if b.contact_id is not None and await repo.contact_campaign(ctx.pool, b.contact_id) not in mine:
                raise Forbidden("the contact is in no campaign you supervise", details={"field": "contact_id"})
            if not mine.intersection(await repo.agent_campaigns(ctx.pool, agent_id)):
                raise Forbidden("the agent works on no campaign you supervise", details={"agent_id": agent_id})
        attempt_id = await ctx.deps.dialer.manual_dial(
            agent_id, campaign_id=b.campaign_id, number=b.number, contact_id=b.contact_id, actor=ctx.actor
        )
        return Accepted(attempt_id=attempt_id)
