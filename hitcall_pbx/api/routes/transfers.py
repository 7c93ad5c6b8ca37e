"""Transfers and conference of an agent's live call: blind or attended, to a ready agent,
the ready agents of a campaign, or an external number. An agent may act only on its own
call, a supervisor on the calls of the agents of the campaigns they supervise, an admin on
any agent's."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ...core.transfer import parse_target
from ...errors import NotFound, ValidationFailed
from ..deps import TransferStatus
from ..registry import V1, Ctx, Registry
from ..repos import agents as repo
from ..types import Id, In
from .agents import CONTROL

NUMBER_MAX = 64


class TransferTarget(In):
    agent_id: Id | None = Field(default=None, description="a ready agent")
    campaign_id: Id | None = Field(default=None, description="the longest-ready agent of the campaign")
    number: str | None = Field(
        default=None, max_length=NUMBER_MAX, description="an external number (E.164, or Finnish national)"
    )


class TransferIn(In):
    kind: Literal["blind", "attended"] = Field(
        description="blind: the customer goes to the target at once; attended: the customer waits with music"
        " while the agent talks to the target, then complete, cancel or conference"
    )
    target: TransferTarget = Field(description="exactly one of agent_id, campaign_id, number")


async def _check_target(ctx: Ctx, target: TransferTarget) -> None:
    """Exactly one target, a dialable number, an agent or campaign that exists (422 naming the field)."""
    parse_target(target.model_dump(exclude_none=True))
    if target.agent_id is not None and await repo.get(ctx.pool, target.agent_id) is None:
        raise ValidationFailed(f"agent {target.agent_id} does not exist", details={"field": "target.agent_id"})
    if target.campaign_id is not None and await repo.missing_campaigns(ctx.pool, [target.campaign_id]):
        raise ValidationFailed(f"campaign {target.campaign_id} does not exist", details={"field": "target.campaign_id"})


async def _agent(ctx: Ctx) -> int:
    agent_id: int = ctx.params["agent_id"]
    if await repo.get(ctx.pool, agent_id) is None:
        raise NotFound(f"agent {agent_id} not found", details={"agent_id": agent_id})
    return agent_id


def register(reg: Registry) -> None:
    @reg.add(
        "POST",
        f"{V1}/agents/{{agent_id}}/transfer",
        summary="Transfer the agent's customer",
        tag="agents",
        roles=CONTROL,
        scope="agents:control",
        own_agent=True,
        body=TransferIn,
        response=TransferStatus,
        description="409 when the agent has no customer on the line, a transfer is already running, or the"
        " target agent is not ready (no_ready_agent: none of the campaign's). A blind transfer to an agent is"
        " completed at once; to a number it is 'dialing' until the number answers (the call ends if it fails).",
    )
    async def start_transfer(ctx: Ctx) -> TransferStatus:
        agent_id = await _agent(ctx)
        b: TransferIn = ctx.body
        await _check_target(ctx, b.target)
        return await ctx.deps.dialer.transfer(agent_id, b.kind, b.target.model_dump(exclude_none=True), actor=ctx.actor)

    _register_action(reg, "complete", "Complete the attended transfer (the agent leaves; customer and target talk)")
    _register_action(reg, "cancel", "Cancel the transfer (the target leaves; the agent has the customer back)")
    _register_action(reg, "conference", "Make the attended transfer a three-way conference")


def _register_action(reg: Registry, action: Literal["complete", "cancel", "conference"], summary: str) -> None:
    async def transfer_action(ctx: Ctx) -> TransferStatus:
        return await ctx.deps.dialer.transfer_action(await _agent(ctx), action, actor=ctx.actor)

    transfer_action.__name__ = f"transfer_{action}"
    reg.add(
        "POST",
        f"{V1}/agents/{{agent_id}}/transfer/{action}",
        summary=summary,
        tag="agents",
        roles=CONTROL,
        scope="agents:control",
        own_agent=True,
        response=TransferStatus,
        description="409 when the agent has no attended transfer in a state that allows it.",
    )(transfer_action)
