"""Peer calls, the agent's side: a caller on another server put through to an agent
whose phone is logged in on this pool's Asterisk (see `core.peer`).

`PeerDesk.reserve` (asked by the caller's node, through the node command bus or directly
when the caller's pool is driven by this process too) reserves the longest-idle ready
agent of the caller's campaign, else of any campaign (`dialer.inbound.choose_agent`: the
rules of a caller of this server) and answers with a one-time token; the reservation
lapses after `token_ttl_s` if no call comes with it, or is given back by the caller's node
(`release`: its leg failed, its caller left); the agent is ready again. The call
comes over the trunk as ``StasisStart(peer, <token>)``: a token this desk did not give,
already used or expired is refused (the channel is hung up, logged); else the channel is
answered and added to the agent's holding bridge, the agent goes on_call and, when the
peer channel ends, to wrap-up with the caller's campaign's wrap-up time. The agent's
phone hanging up (or key 0) hangs up the peer channel; the caller's node then ends the
caller. The caller's CDR is written by the caller's node (its pool); this node writes the
agent's states (agents.pool: this pool).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

from ..agents.sessions import AgentSessions
from ..ari import AriError, AriPort, Resync
from ..core.leases import DEFAULT_POOL, PoolClaim
from ..core.peer import PeerVerdict, Reservation, check_token
from ..core.states import AgentState
from ..logs import get_logger
from ..stasis import StasisKind, parse_args
from ..tasks import TaskSet
from .calls import agent_bridges
from .inbound import choose_agent

log = get_logger("hitcall.peer")

TOKEN_TTL_S = 5.0  # the caller's node originates within milliseconds of the answer
RECOVERED_WRAP_S = 10.0  # the wrap-up of a call adopted after a restart (its caller's campaign is not known here)
PEER_IN_CONTEXT = "hitcall-peer-in"  # dialplan: where the trunk from the other server comes in


@dataclass
class PeerCall:
    """A peer channel put through to an agent here."""

    channel_id: str
    agent_id: int
    agent_channel_id: str
    campaign_id: int | None
    wrap_up_s: float


@dataclass(frozen=True)
class _Pending:
    campaign_id: int | None
    wrap_up_s: float
    from_pool: str
    timer: asyncio.TimerHandle


def _is_peer(channel: Any) -> bool:
    """A trunk call from the other server's node, in this server's Stasis application."""
    dialplan = getattr(channel, "dialplan", None)
    return (
        dialplan is not None
        and getattr(dialplan, "context", "") == PEER_IN_CONTEXT
        and str(getattr(dialplan, "exten", "")).startswith("hitcall-")
        and getattr(dialplan, "app_name", "") == "Stasis"
    )


def _hold_key(token: str) -> str:
    """What the reserved agent's session holds as its call until the peer channel comes."""
    return f"peer-{token}"


class PeerDesk:
    """Takes peer calls for the agents of one pool; register `handle_event` and
    `handle_resync` on the pool's ARI client (after the dialer's)."""

    def __init__(
        self, ari: AriPort, sessions: AgentSessions, *, claim: PoolClaim | None = None, token_ttl_s: float = TOKEN_TTL_S
    ) -> None:
        self.ari = ari
        self.sessions = sessions
        self.pool_name = claim.pool if claim is not None else DEFAULT_POOL
        self.node_id = claim.node_id if claim is not None else None
        self.token_ttl_s = token_ttl_s
        self.reservations: dict[str, Reservation] = {}
        self._pending: dict[str, _Pending] = {}
        self.calls: dict[str, PeerCall] = {}
        self._by_agent_channel: dict[str, PeerCall] = {}
        self._tasks = TaskSet("peer")
        self._closing = False

    # ------------------------------------------------------------ reserve ---
    def reserve(self, campaign_id: int | None, wrap_up_s: float, from_pool: str) -> dict[str, Any] | None:
        """Reserve a ready agent for a caller of `campaign_id` on pool `from_pool`: the
        token, agent, pool and node, or None when no agent here is ready."""
        if self._closing:
            return None
        session = choose_agent(campaign_id, self.sessions.by_agent.values())
        if session is None:
            return None
        token = secrets.token_hex(12)
        self.sessions.reserve(session, _hold_key(token), campaign_id)
        expires = time.monotonic() + self.token_ttl_s
        self.reservations[token] = Reservation(token, session.agent_id, expires)
        timer = asyncio.get_running_loop().call_later(self.token_ttl_s, self._expire, token)
        self._pending[token] = _Pending(campaign_id, max(0.0, wrap_up_s), from_pool, timer)
        log.info("peer.reserved", agent_id=session.agent_id, campaign_id=campaign_id, from_pool=from_pool)
        return {"token": token, "agent_id": session.agent_id, "pool": self.pool_name, "node_id": self.node_id}

    def release(self, token: str) -> bool:
        """The caller's node gave up on the token (its leg failed, its caller left): the
        agent is ready again at once. False when the token is unknown or already used."""
        pending = self._pending.pop(token, None)
        found = self.reservations.pop(token, None) if pending is not None else None
        if pending is None or found is None:
            return False
        pending.timer.cancel()
        log.info("peer.released", agent_id=found.agent_id, from_pool=pending.from_pool)
        self._release(found)
        return True

    def _expire(self, token: str) -> None:
        """No call came with the token in time: the agent is ready again."""
        pending = self._pending.pop(token, None)
        found = self.reservations.pop(token, None)
        if pending is None or found is None:
            return
        log.warning("peer.token_expired", agent_id=found.agent_id, from_pool=pending.from_pool)
        self._release(found)

    def _release(self, found: Reservation) -> None:
        session = self.sessions.by_agent.get(found.agent_id)
        if session is not None and session.attempt_id == _hold_key(found.token):
            self.sessions.release(session)

    # ------------------------------------------------------------ events ---
    async def handle_event(self, ev: Any) -> None:
        etype = getattr(ev, "type", None)
        channel = getattr(ev, "channel", None)
        if channel is None:
            return
        cid: str = channel.id
        if etype == "StasisStart":
            kind, rest = parse_args(ev.args)
            if kind is StasisKind.PEER:
                await self._arrived(cid, rest[0] if rest else "")
        elif etype in ("StasisEnd", "ChannelDestroyed") and cid in self.calls:
            self._ended(self.calls[cid])
        elif etype in ("StasisEnd", "ChannelDestroyed") and cid in self._by_agent_channel:
            # The agent's phone went during the call: the caller's side is not left in silence.
            call = self._by_agent_channel.pop(cid)
            await self._hangup(call.channel_id)

    async def handle_resync(self, snap: Resync) -> None:
        """After an ARI reconnect: peer channels gone meanwhile are ended."""
        live = {c.id for c in snap.channels}
        for call in [c for c in self.calls.values() if c.channel_id not in live]:
            self._ended(call)
        for agent_channel, call in list(self._by_agent_channel.items()):
            if agent_channel not in live:
                del self._by_agent_channel[agent_channel]
                await self._hangup(call.channel_id)

    async def recover(self, snap: Resync) -> None:
        """First connect after a start (a restart hook of the dialer, once the agents' phones
        are adopted): trunk calls a stopped process had put through to an agent, still in
        the agent's bridge, are followed again (the agent on the call); one left in Stasis
        outside an agent's bridge is hung up (its caller's node ends its caller)."""
        live = {c.id: c for c in snap.channels}
        talking: set[str] = set()
        for agent_id, (_, others) in agent_bridges(snap.bridges, live).items():
            for cid in others:
                if cid in self.calls or not _is_peer(live[cid]):
                    continue
                talking.add(cid)
                session = self.sessions.by_agent.get(agent_id)
                if session is None:
                    await self._hangup(cid)
                    continue
                call = PeerCall(cid, agent_id, session.channel_id, None, RECOVERED_WRAP_S)
                self.calls[cid] = call
                self._by_agent_channel[session.channel_id] = call
                self.sessions.connect(session, cid, None)
                log.warning("peer.call_adopted", channel_id=cid, agent_id=agent_id)
        for cid, channel in live.items():
            if cid not in talking and cid not in self.calls and _is_peer(channel):
                log.warning("peer.stray_channel", channel_id=cid)
                await self._hangup(cid)

    async def _arrived(self, channel_id: str, token: str) -> None:
        verdict = check_token(token, self.reservations, time.monotonic())
        found = self.reservations.get(token) if verdict is PeerVerdict.OK else None
        pending = self._pending.pop(token, None) if found is not None else None
        session = self.sessions.by_agent.get(found.agent_id) if found is not None else None
        if found is None or pending is None or session is None or session.attempt_id != _hold_key(token):
            if verdict is PeerVerdict.OK:
                verdict = PeerVerdict.UNKNOWN  # the agent logged out, or was given another call meanwhile
                self.reservations.pop(token, None)
                if pending is not None:
                    pending.timer.cancel()
            log.warning("peer.refused", channel_id=channel_id, verdict=verdict.value)
            await self._hangup(channel_id)
            return
        pending.timer.cancel()
        self.reservations[token] = replace(found, used=True)
        # Used tokens are kept until their expiry time, so that a second call with one is told apart.
        asyncio.get_running_loop().call_later(
            max(0.0, found.expires - time.monotonic()), self.reservations.pop, token, None
        )
        call = PeerCall(channel_id, session.agent_id, session.channel_id, pending.campaign_id, pending.wrap_up_s)
        self.calls[channel_id] = call
        self._by_agent_channel[session.channel_id] = call
        self.sessions.connect(session, channel_id, pending.campaign_id)
        log.info("peer.connecting", channel_id=channel_id, agent_id=session.agent_id, from_pool=pending.from_pool)
        try:
            await self.ari.rest.answer(channel_id)
            await self.ari.rest.add_channel(session.bridge_id, channel_id)
        except AriError as exc:
            # The channel (or the agent's bridge) is gone: its end events finish the call.
            log.info("peer.bridge_failed", channel_id=channel_id, agent_id=session.agent_id, error=exc.message)
            await self._hangup(channel_id)

    def _ended(self, call: PeerCall) -> None:
        self.calls.pop(call.channel_id, None)
        if self._by_agent_channel.get(call.agent_channel_id) is call:
            del self._by_agent_channel[call.agent_channel_id]
        session = self.sessions.by_agent.get(call.agent_id)
        if session is not None and session.attempt_id == call.channel_id:
            if session.state is AgentState.RESERVED:
                self.sessions.release(session)
            else:
                self.sessions.customer_gone(session, call.wrap_up_s)
        log.info("peer.ended", channel_id=call.channel_id, agent_id=call.agent_id)

    # ------------------------------------------------------------ life ---
    async def close(self) -> None:
        """Take no more peer calls and forget the tokens not used yet (a trunk call that
        comes with one later is hung up by whoever drives the pool then). Agents' states are
        left alone: the pool's stack may close because its lease is lost, and the next holder
        adopts the agents."""
        self._closing = True
        for pending in self._pending.values():
            pending.timer.cancel()
        self._pending.clear()
        self.reservations.clear()
        await self._tasks.wait()

    def live_calls(self) -> list[dict[str, Any]]:
        return [{"channel_id": c.channel_id, "agent_id": c.agent_id} for c in self.calls.values()]

    async def _hangup(self, channel_id: str) -> None:
        try:
            await self.ari.rest.hangup(channel_id)
        except AriError:
            pass
