"""Preview offers: a ready agent of a preview campaign is offered the next contact,
accepts (the call is placed for that agent) or skips (the contact goes back to the
hopper); an offer not decided in time, or whose agent goes away, times out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..agents.sessions import AgentSession, AgentSessions
from ..core.states import AgentState
from ..errors import NotFound
from ..logs import get_logger
from .models import Attempt, Campaign
from .store import CallStore

log = get_logger("hitcall.dialer")

CALLBACK_CHECK_S = 0.5  # how often ready agents' personal callbacks are looked for


@dataclass
class Offer:
    offer_id: int
    agent_id: int
    campaign: Campaign
    contact_id: int
    number: str
    contact: dict[str, Any]
    expires: asyncio.TimerHandle | None = None


class PreviewOffers:
    def __init__(
        self,
        store: CallStore,
        sessions: AgentSessions,
        place: Callable[[Campaign, Attempt, AgentSession], None],
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self.store = store
        self.sessions = sessions
        self._place = place
        self._spawn = spawn
        self.offers: dict[int, Offer] = {}  # by agent id
        self._callbacks_checked: dict[int, tuple[float, frozenset[int]]] = {}  # campaign: when, ready agents

    async def offer(self, campaign: Campaign) -> None:
        """An offer to every ready agent of the campaign that has none, while contacts are due."""
        for agent in self.sessions.ready_agents(campaign.id):
            if agent.agent_id in self.offers or agent.held:  # held: a call of another campaign is on its way
                continue
            if not await self._offer_to(campaign, agent, personal_only=False):
                return

    async def offer_callbacks(self, campaign: Campaign) -> None:
        """Progressive and predictive campaigns: a ready agent with a personal callback due
        is offered it (accept dials it for that agent, as in a preview campaign)."""
        ready = [a for a in self.sessions.ready_agents(campaign.id) if a.agent_id not in self.offers and not a.held]
        if not ready:
            return
        # at once when an agent became ready, else at most every CALLBACK_CHECK_S (the loop
        # may tick every 50 ms)
        ids, now = frozenset(a.agent_id for a in ready), time.monotonic()
        last = self._callbacks_checked.get(campaign.id)
        if last is not None and last[1] >= ids and now - last[0] < CALLBACK_CHECK_S:
            return
        self._callbacks_checked[campaign.id] = (now, ids)
        due = set(await self.store.agents_with_callbacks(campaign, datetime.now(UTC), [a.agent_id for a in ready]))
        for agent in ready:
            if agent.agent_id in due and agent.state is AgentState.READY and agent.agent_id not in self.offers:
                await self._offer_to(campaign, agent, personal_only=True)

    async def _offer_to(self, campaign: Campaign, agent: AgentSession, *, personal_only: bool) -> bool:
        opened = await self.store.open_offer(campaign, agent.agent_id, datetime.now(UTC), personal_only=personal_only)
        if opened is None:
            return False
        offer_id, row, contact = opened
        offer = Offer(offer_id, agent.agent_id, campaign, row["id"], row["phone_e164"], contact)
        self.offers[agent.agent_id] = offer
        self.sessions.reserve(agent, None, campaign.id)
        offer.expires = asyncio.get_running_loop().call_later(campaign.preview_offer_timeout_s, self._expire, offer)
        log.info(
            "preview.offered", agent_id=agent.agent_id, offer_id=offer_id, contact_id=row["id"], callback=personal_only
        )
        return True

    def _expire(self, offer: Offer) -> None:
        self._spawn(self.decide(offer, "timeout", None))

    def _open(self, agent_id: int) -> Offer:
        offer = self.offers.get(agent_id)
        if offer is None:
            raise NotFound("no open preview offer for this agent", details={"agent_id": agent_id})
        return offer

    async def accept(self, agent_id: int) -> Attempt:
        attempt = await self.decide(self._open(agent_id), "accept", None)
        if attempt is None:
            raise NotFound("the preview offer ended before it was accepted", details={"agent_id": agent_id})
        return attempt

    async def skip(self, agent_id: int, reason: str) -> int:
        """Skip the agent's open offer; returns the offer's id (the reason stays on its row,
        which goes with the contact when the person is erased)."""
        offer = self._open(agent_id)
        await self.decide(offer, "skip", reason)
        return offer.offer_id

    async def agent_gone(self, agent_id: int) -> None:
        offer = self.offers.get(agent_id)
        if offer is not None:
            await self.decide(offer, "timeout", None)

    async def close(self) -> None:
        for offer in list(self.offers.values()):
            await self.decide(offer, "timeout", None)

    async def decide(self, offer: Offer, decision: str, reason: str | None) -> Attempt | None:
        if self.offers.get(offer.agent_id) is not offer:
            return None
        del self.offers[offer.agent_id]
        if offer.expires:
            offer.expires.cancel()
        session = self.sessions.by_agent.get(offer.agent_id)
        if session is None and decision != "timeout":
            reason = reason or "agent gone"
        attempt, decision, reason = await self.store.decide_offer(
            offer_id=offer.offer_id,
            campaign=offer.campaign,
            contact_id=offer.contact_id,
            agent_id=offer.agent_id,
            accept=decision == "accept" and session is not None,
            decision=decision,
            reason=reason,
            now=datetime.now(UTC),
        )
        if attempt is not None and session is not None:
            session.attempt_id = attempt.channel_id
            self._place(offer.campaign, attempt, session)
        elif session is not None:
            self.sessions.release(session)
        log.info("preview.decided", agent_id=offer.agent_id, offer_id=offer.offer_id, decision=decision)
        return attempt
