"""Finding an agent on another Asterisk server for a caller (see `core.peer`).

`PeerFinder.find` reads the ready agents of the other pools from PostgreSQL (agents.state
and agents.pool, written by the node that follows each phone; the node to ask is the
holder of the pool's live lease), orders the pools with `core.peer.pools_to_ask` and asks
each in turn to reserve an agent: the pool's `dialer.peer.PeerDesk` directly when this
process drives that pool too, else its node through the node command bus
(``peer.reserve``). The first answer with a token wins. The database's view may be a
moment old; the node that reserves checks its own agents' live state.

`PoolsPeer` is what this node's command bus runs ``peer.reserve`` on: the desk of the
pool named in the request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from ..auth import Actor
from ..core.leases import DEFAULT_POOL, POOL_LEASE_PREFIX
from ..core.peer import ReadyElsewhere, pools_to_ask, valid_token
from ..errors import HitCallError
from ..logs import get_logger
from ..pools import Pools
from .commands import CommandBus

__all__ = ["PeerFinder", "PeerOffer", "PoolsPeer"]

log = get_logger("hitcall.cluster.peer")

NONE_S = 0.5  # how long a look that found nobody ready on the other pools holds
ASK_TIMEOUT_S = 1.5  # per node asked: within the 2-second rule, or the caller keeps waiting here
_ACTOR = Actor("peer-call", "system")

# Ready agents of the other pools whose pool has a live lease holder.
_READY_ELSEWHERE = f"""
SELECT a.id, coalesce(a.pool, '{DEFAULT_POOL}') AS pool, l.node_id,
       greatest(0, extract(epoch FROM now() - a.state_since))::float8 AS idle_s,
       coalesce(array_agg(ac.campaign_id) FILTER (WHERE ac.campaign_id IS NOT NULL), '{{}}') AS campaigns
FROM agents a
JOIN leases l ON l.name = '{POOL_LEASE_PREFIX}' || coalesce(a.pool, '{DEFAULT_POOL}') AND l.lease_until > now()
LEFT JOIN agent_campaigns ac ON ac.agent_id = a.id
WHERE a.state = 'ready' AND NOT a.disabled AND coalesce(a.pool, '{DEFAULT_POOL}') <> $1
GROUP BY a.id, l.node_id
"""


@dataclass(frozen=True)
class PeerOffer:
    """An agent reserved for a caller on another pool, and the token its call must carry."""

    token: str
    agent_id: int
    pool: str
    node_id: str | None

    @classmethod
    def from_answer(cls, data: Any) -> PeerOffer | None:
        if not isinstance(data, dict) or not valid_token(str(data.get("token", ""))):
            return None
        return cls(str(data["token"]), int(data["agent_id"]), str(data["pool"]), data.get("node_id"))


class PeerFinder:
    """Asks the other pools for an agent for a caller of pool `own_pool`."""

    def __init__(
        self,
        db: asyncpg.Pool,
        pools: Pools,
        bus: Callable[[], CommandBus | None],
        own_pool: str,
        node_id: str | None,
        *,
        ask_timeout_s: float = ASK_TIMEOUT_S,
        none_s: float = NONE_S,
    ) -> None:
        self.db = db
        self.pools = pools
        self.bus = bus
        self.own_pool = own_pool
        self.node_id = node_id
        self.ask_timeout_s = ask_timeout_s
        self.none_s = none_s
        self._none_until = float("-inf")  # nobody ready elsewhere at the last look: not read again before

    async def candidates(self, campaign_id: int | None) -> list[tuple[str, str]]:
        """The (pool, node) pairs to ask; none for `none_s` after a look that found nobody
        ready elsewhere (waiting callers ask every few seconds: one read serves them all)."""
        now = time.monotonic()
        if now < self._none_until:
            return []
        rows = await self.db.fetch(_READY_ELSEWHERE, self.own_pool)
        if not rows:
            self._none_until = now + self.none_s
        ready = [
            ReadyElsewhere(r["id"], r["pool"], r["node_id"], frozenset(r["campaigns"]), float(r["idle_s"]))
            for r in rows
        ]
        return pools_to_ask(campaign_id, ready, self.own_pool)

    async def find(self, campaign_id: int | None, wrap_up_s: float) -> PeerOffer | None:
        """An agent reserved on another pool, or None (nobody ready elsewhere, or each pool
        asked answered none / did not answer in time)."""
        for pool, node in await self.candidates(campaign_id):
            args = {"pool": pool, "campaign_id": campaign_id, "wrap_up_s": wrap_up_s, "from_pool": self.own_pool}
            stack = self.pools.stacks.get(pool)
            try:
                if stack is not None and stack.peer is not None:
                    answer: Any = stack.peer.reserve(campaign_id, wrap_up_s, self.own_pool)
                else:
                    bus = self.bus()
                    if bus is None or node == self.node_id:
                        continue  # this node's lease, but no stack for it (starting or stopping)
                    answer = await bus.call(node, "peer.reserve", args, _ACTOR, timeout_s=self.ask_timeout_s)
            except HitCallError as exc:
                log.warning("peer.ask_failed", pool=pool, node_id=node, error=exc.message, code=exc.code)
                continue
            offer = PeerOffer.from_answer(answer)
            if offer is not None:
                return offer
        return None

    async def release(self, offer: PeerOffer) -> None:
        """Give the reserved agent back at once (the leg failed, or the caller left before
        it was answered); a node that does not answer lets the token lapse instead."""
        if not valid_token(offer.token):
            return  # a leg adopted after a restart: its token is spent
        stack = self.pools.stacks.get(offer.pool)
        try:
            if stack is not None and stack.peer is not None:
                stack.peer.release(offer.token)
                return
            bus = self.bus()
            if bus is None or offer.node_id is None or offer.node_id == self.node_id:
                return
            args = {"pool": offer.pool, "token": offer.token}
            await bus.call(offer.node_id, "peer.release", args, _ACTOR, timeout_s=self.ask_timeout_s)
        except HitCallError as exc:
            log.info("peer.release_failed", pool=offer.pool, node_id=offer.node_id, error=exc.message)


class PoolsPeer:
    """The peer port this node's command bus serves: the desk of the requested pool."""

    def __init__(self, pools: Pools) -> None:
        self.pools = pools

    async def reserve(
        self, pool: str, campaign_id: int | None, wrap_up_s: float, from_pool: str
    ) -> dict[str, Any] | None:
        stack = self.pools.stacks.get(pool)
        if stack is None or stack.peer is None:
            return None  # the pool's lease moved meanwhile: the caller asks again later
        return stack.peer.reserve(campaign_id, wrap_up_s, from_pool)

    async def release(self, pool: str, token: str) -> bool:
        stack = self.pools.stacks.get(pool)
        return stack is not None and stack.peer is not None and stack.peer.release(token)
