"""Return calls handed to an agent.

The return-call line (dialplan ``[hitcall-inbound]``, FastAGI ``optout``) sends a
caller who asked for a person into the Stasis application with the arguments
``inbound,<campaign id>,<contact id>`` (either may be empty). The router gives the
caller to the longest-idle ready agent of that campaign, else to the longest-idle
ready agent of any campaign, by adding the caller to the agent's holding bridge.
With nobody ready the caller hears music on hold and gets the first agent that
becomes ready; after `max_wait_s` (or when the service shuts down) the caller hears
a message and is hung up. The agent goes on_call → wrap_up exactly as with an
outbound call (phone key 0 hangs the caller up), so agent.state_changed flows as usual.

Outbound calls keep priority: the dialer's agent listener runs first and gives a
newly ready agent to an answered outbound customer (2-second rule) before this
router looks at waiting callers.

Every caller the router got writes one CDR when the call ends (``direction =
'inbound'``, `inbound_cdr`), through the same CDR writer as the dialer, and a
``call.ended`` webhook event carrying it through the call journal. Its id is derived
from the channel id (`records.cdr.inbound_cdr_id`). Outcome (`core.outcomes.inbound_outcome`):
``answered_human`` (put through to an agent), ``no_agent`` (the service ended the call
first: the message after the wait limit, shutting down, the agent's phone gone) or
``abandoned`` (the caller hung up before reaching an agent; never in the outbound abandon
rate). The retention deadline follows the caller's campaign's CDR policy, or the default
policy (`InboundOptions.retention`) when the caller matched no campaign.

While it is up, the call has a live row (``live_attempts``, direction inbound, the CDR's
id): written through the journal when the caller arrives (the FastAGI menu writes it
first, the router rewrites it with its own arrival), its agent and bridge time when it
is put through; the CDR writer retires it with the CDR. At the first connect after a
start (`recover`, run by the dialer's restart recovery once the agents' phones are
adopted and before it dials), the rows a stopped process left are adopted when their
channel is still up (talking to an agent: the agent stays on the call; in Stasis without
an agent: back in the queue, its wait counted from its arrival) and followed to one
complete CDR, or closed with outcome ``untracked`` (`untracked_cdr`) when the channel is
gone. While the service runs, a row no one follows whose channel is gone (the menu's CDR
could not be written) is closed the same way (`sweep_orphans`). Only the node holding
the pool's lease (`cluster`) recovers and sweeps the pool's rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg

from ..agents.sessions import AgentSession, AgentSessions
from ..ari import BRIDGE_SIDE_GONE, AriError, AriPort, Resync
from ..core.calls import CallState
from ..core.leases import DEFAULT_POOL, PoolClaim
from ..core.outcomes import CallDirection, Outcome, inbound_outcome
from ..core.peer import peer_endpoint
from ..core.phone import normalize_e164
from ..core.retention import RetentionPolicy, cdr_deadline
from ..core.states import AgentState, AgentTransition
from ..errors import HitCallError, Unavailable, ValidationFailed
from ..logs import get_logger
from ..records.cdr import inbound_cdr_id
from ..records.journal import CallJournal
from ..stasis import StasisKind, app_args, parse_args
from ..tasks import TaskSet
from .calls import CdrSink, agent_bridges, json_payload

log = get_logger("hitcall.inbound")


@dataclass(frozen=True)
class InboundOptions:
    max_wait_s: float = 60.0  # music on hold at most this long, then the message
    no_agent_media: tuple[str, ...] = ("sound:im-sorry", "sound:please-try-call-later")
    moh_class: str | None = None  # Asterisk's default class
    wrap_up_s: float = 10.0  # when the caller's campaign is unknown (the campaigns' default)
    message_max_s: float = 30.0  # hung up even if the message's PlaybackFinished never comes
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)  # CDRs of callers of no campaign
    lookup_timeout_s: float = 5.0  # the campaign's look-up at the end of a call whose first one failed
    orphan_check_s: float = 15.0  # how often live rows no one follows are looked for
    peer_retry_s: float = 2.0  # a waiting caller asks the other servers for an agent this often
    peer_ring_s: int = 5  # the trunk leg to the other server's agent must be answered within this


class PeerOfferView(Protocol):
    """An agent reserved on another server (`cluster.peer.PeerOffer`)."""

    @property
    def token(self) -> str: ...
    @property
    def agent_id(self) -> int: ...
    @property
    def pool(self) -> str | None: ...
    @property
    def node_id(self) -> str | None: ...


class PeerPort(Protocol):
    """Finds an agent on another server for a caller (`cluster.peer.PeerFinder`)."""

    async def find(self, campaign_id: int | None, wrap_up_s: float) -> PeerOfferView | None: ...

    async def release(self, offer: Any) -> None: ...


@dataclass(frozen=True)
class AdoptedLeg:
    """The far agent of a caller adopted after a restart (its token is spent)."""

    agent_id: int
    pool: str | None
    node_id: str | None
    token: str = ""


PEER_BRIDGE_PREFIX = "hitcall-peerbridge-"  # a caller and its trunk leg to an agent on another server


@dataclass(frozen=True)
class InboundRequest:
    campaign_id: int | None
    contact_id: int | None


@dataclass(frozen=True)
class CampaignInfo:
    """What the router uses of the caller's campaign."""

    wrap_up_s: float
    retention: RetentionPolicy


@dataclass
class InboundCall:
    channel_id: str
    request: InboundRequest
    arrived_mono: float = field(default_factory=time.monotonic)
    arrived_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    caller_number: str | None = None  # the caller's number, E.164 (None: withheld / not a number)
    line_number: str | None = None  # the number the caller dialled, E.164
    wrap_up_s: float = 0.0
    agent_id: int | None = None
    agent_channel_id: str | None = None
    waiting: bool = False
    bridged: bool = False
    bridged_at: datetime | None = None
    service_ended: bool = False  # the service gave up on the caller or hung it up
    hangup_cause: int | None = None
    hangup_cause_txt: str | None = None
    campaign: CampaignInfo | None = None
    campaign_checked: bool = False  # the campaign look-up answered (`campaign` None: no such campaign)
    playback_id: str | None = None
    timer: asyncio.TimerHandle | None = None
    # An agent on another server (several servers): the trunk leg to it, while it rings and talks.
    peer_leg: str | None = None
    peer_offer: PeerOfferView | None = None
    peer_bridge: str | None = None
    peer_asking: bool = False
    peer_timer: asyncio.TimerHandle | None = None


# ------------------------------------------------------------------ pure core ---
def parse_request(args: list[str]) -> InboundRequest:
    """Stasis arguments after ``inbound``: campaign id and contact id, each optional
    (the dialplan passes empty values for an unknown caller)."""

    def number(i: int) -> int | None:
        value = args[i].strip() if len(args) > i else ""
        return int(value) if value.isdigit() else None

    return InboundRequest(campaign_id=number(0), contact_id=number(1))


def choose_agent(campaign_id: int | None, sessions: Iterable[AgentSession]) -> AgentSession | None:
    """The agent for a caller: the longest-idle ready agent working on the caller's
    campaign, else the longest-idle ready agent."""
    ready = sorted(
        (s for s in sessions if s.state is AgentState.READY and not s.pin_pending), key=lambda s: s.ready_since
    )
    for session in ready:
        if campaign_id is not None and campaign_id in session.campaigns:
            return session
    return ready[0] if ready else None


def choose_caller(session: AgentSession, waiting: deque[InboundCall]) -> InboundCall | None:
    """The waiting caller a newly ready agent takes: the longest waiting of the agent's
    campaigns, else the longest waiting of all."""
    for call in waiting:
        if call.request.campaign_id in session.campaigns:
            return call
    return waiting[0] if waiting else None


def e164_or_none(raw: str | None) -> str | None:
    """A number from the channel (caller id, dialled extension) in E.164, or None when
    empty, withheld or not a valid number."""
    if not raw:
        return None
    try:
        return normalize_e164(raw, field="number")
    except ValidationFailed:
        return None


def inbound_cdr(call: InboundCall, ended_at: datetime, default_policy: RetentionPolicy) -> dict[str, Any]:
    """The CDR row of an ended inbound call (`records.cdr.CdrRecord` columns).

    created_at: the caller reached the router; answered_at = bridged_at: an agent took
    the call; ring_s: seconds waited (to the agent, or to the end); talk_s: with the agent.
    The campaign is the caller's (the dialplan's HITCALL_CAMPAIGN) unless the look-up found
    no such campaign; its CDR policy sets the deadline, else `default_policy`."""
    created = call.arrived_at
    ended = max(ended_at, created)
    bridged_at = call.bridged_at if call.bridged else None
    if bridged_at is not None:
        bridged_at = min(max(bridged_at, created), ended)
    outcome = inbound_outcome(bridged=bridged_at is not None, service_ended=call.service_ended)
    unknown_campaign = call.campaign_checked and call.campaign is None
    policy = call.campaign.retention if call.campaign is not None else default_policy
    return {
        "id": inbound_cdr_id(call.channel_id),
        "direction": CallDirection.INBOUND.value,
        "campaign_id": None if unknown_campaign else call.request.campaign_id,
        "contact_id": call.request.contact_id,
        "attempt_no": None,
        "dialled_number": None,
        "caller_id": call.line_number,
        "caller_number": call.caller_number,
        "agent_id": call.agent_id,
        "mode": None,
        "state": "ended",
        "created_at": created,
        "originated_at": None,
        "ringing_at": None,
        "answered_at": bridged_at,
        "bridged_at": bridged_at,
        "ended_at": ended,
        "ring_s": round(((bridged_at or ended) - created).total_seconds(), 3),
        "talk_s": round((ended - bridged_at).total_seconds(), 3) if bridged_at is not None else 0.0,
        "answer_to_bridge_ms": None,
        "outcome": outcome.value,
        "hangup_cause": call.hangup_cause,
        "hangup_cause_txt": call.hangup_cause_txt,
        "amd_status": None,
        "amd_cause": None,
        "abandoned": outcome is Outcome.ABANDONED,
        "disposition": None,
        "skip_reason": None,
        "recording_id": None,
        "retention_until": cdr_deadline(created, policy),
    }


UNTRACKED_CAUSE = "ended while no HitCall process followed it (found gone at restart)"


def untracked_cdr(row: Mapping[str, Any] | asyncpg.Record, ended_at: datetime) -> dict[str, Any]:
    """The CDR of an inbound call whose live row a stopped process left and whose channel
    is gone: outcome ``untracked``; ended_at is when that was found (the call ended at
    most that late); the agent and bridge time the row holds say how far it got."""
    record = dict(row.items())
    created: datetime = row["created_at"]
    ended = max(ended_at, created)
    bridged_at = row["bridged_at"]
    if bridged_at is not None:
        bridged_at = min(max(bridged_at, created), ended)
    record.update(
        state=CallState.ENDED.value,
        answered_at=bridged_at,
        bridged_at=bridged_at,
        ended_at=ended,
        ring_s=round(((bridged_at or ended) - created).total_seconds(), 3),
        talk_s=round((ended - bridged_at).total_seconds(), 3) if bridged_at is not None else 0.0,
        outcome=Outcome.UNTRACKED.value,
        abandoned=False,
        hangup_cause=None,
        hangup_cause_txt=UNTRACKED_CAUSE,
    )
    return record


def _event_time(ev: Any) -> datetime:
    when = getattr(ev, "timestamp", None)
    return when if isinstance(when, datetime) and when.utcoffset() is not None else datetime.now(UTC)


# ---------------------------------------------------------------- database ---
# An inbound row of pool $1: rows without a pool (written before several nodes, or by the
# FastAGI menu, which does not know its Asterisk) are the default pool's.
_IN_POOL = "coalesce(pool, '" + DEFAULT_POOL + "') = $1"


async def open_inbound_calls(
    pool: asyncpg.Pool, pool_name: str = DEFAULT_POOL, node_id: str | None = None, *, take_over: bool = False
) -> list[asyncpg.Record]:
    """The inbound calls' live rows of pool `pool_name`, oldest first (`take_over`: now
    followed by node `node_id`, their pool written); a row whose CDR is already written
    (the journal's row came after it) is deleted, not returned. Other pools' rows are
    untouched."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            f"""DELETE FROM live_attempts l WHERE l.direction = 'inbound' AND {_IN_POOL}
                 AND EXISTS (SELECT 1 FROM call_attempts c WHERE c.id = l.id)""",
            pool_name,
        )
        if take_over:
            rows = await conn.fetch(
                f"""UPDATE live_attempts SET pool = $1, node_id = coalesce($2, node_id)
                    WHERE direction = 'inbound' AND {_IN_POOL} RETURNING *""",
                pool_name,
                node_id,
            )
        else:
            rows = await conn.fetch(
                f"SELECT * FROM live_attempts WHERE direction = 'inbound' AND {_IN_POOL}", pool_name
            )
        return sorted(rows, key=lambda r: (r["created_at"], r["id"]))


# ------------------------------------------------------------------- adapter ---
class InboundRouter:
    """Routes return-call line callers to agents; register `handle_event` and
    `handle_resync` on the ARI client (after the dialer's)."""

    def __init__(
        self,
        ari: AriPort,
        pool: asyncpg.Pool,
        sessions: AgentSessions,
        options: InboundOptions = InboundOptions(),
        *,
        cdr: CdrSink | None = None,
        journal: CallJournal | None = None,
        claim: PoolClaim | None = None,
        peer: PeerPort | None = None,
    ) -> None:
        """`claim`: the pool (Asterisk) these callers reach and the node following them,
        written on their live rows; recovery touches only that pool's rows (None: the
        default pool). `peer`: how a caller no agent here takes gets an agent of another
        server (None: one server)."""
        self.ari = ari
        self.pool = pool
        self.pool_name = claim.pool if claim is not None else DEFAULT_POOL
        self.node_id = claim.node_id if claim is not None else None
        self.sessions = sessions
        self.options = options
        self.cdr = cdr  # None: no CDRs (tests of routing alone)
        self.journal = journal
        self.calls: dict[str, InboundCall] = {}
        self.waiting: deque[InboundCall] = deque()
        self._by_agent_channel: dict[str, InboundCall] = {}
        self.peer = peer
        self._peer_legs: dict[str, InboundCall] = {}  # trunk legs to other servers' agents
        self._tasks = TaskSet("inbound")
        self._orphan_checked = float("-inf")
        self._orphans: set[uuid.UUID] = set()  # gone at the last orphan check
        self._closed: set[uuid.UUID] = set()  # closed as untracked by this process
        self._closing = False
        sessions.on_transition(self._agent_changed)

    # ------------------------------------------------------------ life ---
    async def close(self, *, hangup_calls: bool = False) -> None:
        """Route no more callers: waiting callers hear the message; with `hangup_calls`
        every caller still here is hung up."""
        self._closing = True
        for call in list(self.waiting):
            self._give_up(call)
        if hangup_calls:
            for call in list(self.calls.values()):
                await self._hangup(call.channel_id)
        await self._tasks.wait()

    async def idle(self, timeout: float) -> None:
        """Wait until no caller is left (up to `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while (self.calls or self._tasks) and time.monotonic() < deadline:  # noqa: ASYNC110 - two conditions, no event
            await asyncio.sleep(0.05)

    def live_calls(self) -> list[dict[str, Any]]:
        return [
            {
                "channel_id": c.channel_id,
                "campaign_id": c.request.campaign_id,
                "contact_id": c.request.contact_id,
                "agent_id": c.agent_id,
                "waiting": c.waiting,
                "bridged": c.bridged,
            }
            for c in self.calls.values()
        ]

    def _spawn(self, coro: Any) -> None:
        self._tasks.spawn(coro)

    # ------------------------------------------------------------ events ---
    async def handle_event(self, ev: Any) -> None:
        etype = getattr(ev, "type", None)
        channel = getattr(ev, "channel", None)
        cid = channel.id if channel is not None else None
        if etype == "StasisStart":
            kind, rest = parse_args(ev.args)
            if kind is StasisKind.INBOUND and cid is not None:
                await self._arrived(cid, parse_request(rest), ev)
            elif kind is StasisKind.PEER_LEG and cid in self._peer_legs:
                await self._peer_answered(self._peer_legs[cid], cid)
            elif kind is StasisKind.PEER_LEG and cid is not None:
                # A leg no caller waits for any more (e.g. after a restart): nobody would end it.
                log.warning("inbound.unknown_peer_leg", channel_id=cid)
                await self._hangup(cid)
        elif etype == "ChannelEnteredBridge" and cid in self.calls:
            call = self.calls[cid]
            if not call.bridged:
                call.bridged_at = _event_time(ev)
                self._journal_bridged(call)
            call.bridged = True
            log.info(
                "inbound.bridged",
                channel_id=cid,
                agent_id=call.agent_id,
                bridge_id=ev.bridge.id,
                wait_ms=int((time.monotonic() - call.arrived_mono) * 1000),
            )
        elif etype == "ChannelHangupRequest" and cid in self.calls:
            if ev.cause is not None:
                self.calls[cid].hangup_cause = ev.cause
        elif etype in ("StasisEnd", "ChannelDestroyed") and cid in self.calls:
            # StasisEnd: a channel that came in through the dialplan is not followed after it.
            call = self.calls[cid]
            if etype == "ChannelDestroyed":
                call.hangup_cause, call.hangup_cause_txt = ev.cause, ev.cause_txt
            self._caller_gone(call, _event_time(ev))
        elif etype in ("ChannelDestroyed", "StasisEnd") and cid in self._peer_legs:
            await self._peer_leg_gone(self._peer_legs.pop(cid), cid)
        elif etype in ("ChannelDestroyed", "StasisEnd") and cid in self._by_agent_channel:
            # The agent hung up the phone during the call: the caller is not left in silence.
            call = self._by_agent_channel.pop(cid)
            await self._hangup(call.channel_id)
        elif etype == "PlaybackFinished":
            target = (ev.playback.target_uri or "").removeprefix("channel:")
            playing = self.calls.get(target)
            if playing is not None and playing.playback_id == ev.playback.id:
                await self._hangup(playing.channel_id)

    async def handle_resync(self, snap: Resync) -> None:
        """After an ARI reconnect: callers whose channels went meanwhile are finished;
        a caller whose agent's phone went is hung up."""
        live = {c.id for c in snap.channels}
        for call in [c for c in self.calls.values() if c.channel_id not in live]:
            self._caller_gone(call, datetime.now(UTC))
        for leg in list(self._peer_legs):
            if leg not in live:
                await self._peer_leg_gone(self._peer_legs.pop(leg), leg)
        for agent_channel, call in list(self._by_agent_channel.items()):
            if agent_channel not in live:
                del self._by_agent_channel[agent_channel]
                await self._hangup(call.channel_id)

    async def _arrived(self, channel_id: str, request: InboundRequest, ev: Any = None) -> None:
        channel = getattr(ev, "channel", None)
        call = InboundCall(
            channel_id=channel_id,
            request=request,
            wrap_up_s=self.options.wrap_up_s,
            arrived_at=_event_time(ev),
            caller_number=e164_or_none(channel.caller.number) if channel is not None else None,
            line_number=e164_or_none(channel.dialplan.exten) if channel is not None else None,
        )
        # Registered before any await: a hang-up during the lookup still finds it.
        self.calls[channel_id] = call
        log.info(
            "inbound.arrived", channel_id=channel_id, campaign_id=request.campaign_id, contact_id=request.contact_id
        )
        if self._closing:
            self._give_up(call)
            return
        if request.campaign_id is not None:
            try:
                call.campaign = await self._campaign_info(request.campaign_id)
                call.campaign_checked = True
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("inbound.campaign_lookup_failed", channel_id=channel_id, error=str(exc))
            if call.campaign is not None:
                call.wrap_up_s = call.campaign.wrap_up_s
        if self.calls.get(channel_id) is not call:
            return  # hung up meanwhile
        self._journal_arrival(call)
        agent = choose_agent(request.campaign_id, self.sessions.by_agent.values())
        if agent is not None:
            self._connect(call, agent)
            return
        call.waiting = True
        self.waiting.append(call)
        call.timer = asyncio.get_running_loop().call_later(self.options.max_wait_s, self._give_up, call)
        self._spawn(self._start_moh(call))
        log.info("inbound.waiting", channel_id=channel_id, campaign_id=request.campaign_id)
        if self.peer is not None:
            self._spawn(self._try_peer(call))

    # ---------------------------------------------- an agent on another server ---
    def _ask_peer_later(self, call: InboundCall) -> None:
        if self.peer is not None and call.waiting and call.peer_timer is None and not self._closing:
            call.peer_timer = asyncio.get_running_loop().call_later(
                self.options.peer_retry_s, lambda: self._spawn(self._try_peer(call))
            )

    async def _try_peer(self, call: InboundCall) -> None:
        """A waiting caller no agent here takes: ask the other servers for one (at arrival,
        then every `peer_retry_s` while waiting). Given one, the caller leaves the queue and
        the trunk leg to that agent is originated; the caller hears music on hold meanwhile."""
        call.peer_timer = None
        if self.peer is None or self._closing or not call.waiting or call.peer_asking or call.peer_leg:
            return
        call.peer_asking = True
        try:
            offer = await self.peer.find(call.request.campaign_id, call.wrap_up_s)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, HitCallError) as exc:
            log.warning("inbound.peer_find_failed", channel_id=call.channel_id, error=str(exc) or type(exc).__name__)
            offer = None
        finally:
            call.peer_asking = False
        if offer is None:
            self._ask_peer_later(call)
            return
        if not call.waiting or self.calls.get(call.channel_id) is not call:
            # Taken by an agent here meanwhile, or gone: the far agent is given back.
            log.info("inbound.peer_offer_unused", channel_id=call.channel_id, agent_id=offer.agent_id, pool=offer.pool)
            self._release_peer(offer)
            return
        call.waiting = False  # out of the queue while the leg rings; the wait limit runs on
        self.waiting.remove(call)
        leg = f"hitcall-peer-{uuid.uuid4().hex}"
        call.peer_leg, call.peer_offer = leg, offer
        self._peer_legs[leg] = call
        log.info(
            "inbound.peer_dialling",
            channel_id=call.channel_id,
            agent_id=offer.agent_id,
            pool=offer.pool,
            node_id=offer.node_id,
            wait_ms=int((time.monotonic() - call.arrived_mono) * 1000),
        )
        try:
            await self.ari.rest.originate(
                peer_endpoint(offer.token),
                leg,
                app=self.ari.app,
                app_args=app_args(StasisKind.PEER_LEG, call.channel_id),
                caller_id=call.caller_number,
                timeout=self.options.peer_ring_s,
            )
        except AriError as exc:
            log.warning("inbound.peer_originate_failed", channel_id=call.channel_id, error=exc.message)
            if self._peer_legs.pop(leg, None) is not None:
                self._peer_failed(call, leg)

    async def _peer_answered(self, call: InboundCall, leg: str) -> None:
        """The far agent's node took the leg: the caller and the leg into a bridge of their own."""
        if self.calls.get(call.channel_id) is not call or call.service_ended or call.peer_leg != leg:
            await self._hangup(leg)
            return
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        assert call.peer_offer is not None
        call.agent_id = call.peer_offer.agent_id
        call.agent_channel_id = leg
        self._by_agent_channel[leg] = call
        call.peer_bridge = bridge = PEER_BRIDGE_PREFIX + leg.removeprefix("hitcall-peer-")
        try:
            await self.ari.rest.create_bridge(bridge, "mixing")
            with contextlib.suppress(AriError):
                await self.ari.rest.stop_moh(call.channel_id)
            await self.ari.rest.add_channel(bridge, [call.channel_id, leg])
        except AriError as exc:
            # The caller or the leg is gone: its end events finish the call (the other is hung up then).
            log.info("inbound.peer_bridge_failed", channel_id=call.channel_id, error=exc.message)
            await self._hangup(leg)
            return
        log.info(
            "inbound.peer_connected",
            channel_id=call.channel_id,
            agent_id=call.agent_id,
            pool=call.peer_offer.pool,
            wait_ms=int((time.monotonic() - call.arrived_mono) * 1000),
        )

    async def _peer_leg_gone(self, call: InboundCall, leg: str) -> None:
        if call.peer_leg != leg:
            return
        if call.agent_channel_id == leg:
            # The far agent's side ended the call (the phone hung up, key 0): the caller too.
            self._by_agent_channel.pop(leg, None)
            await self._hangup(call.channel_id)
            return
        log.warning("inbound.peer_leg_failed", channel_id=call.channel_id, pool=getattr(call.peer_offer, "pool", None))
        self._peer_failed(call, leg)

    def _release_peer(self, offer: PeerOfferView | None) -> None:
        if self.peer is not None and offer is not None:
            self._spawn(self.peer.release(offer))

    def _peer_failed(self, call: InboundCall, leg: str) -> None:
        """The leg never reached the far agent (refused, not answered, the token lapsed):
        the far agent is given back (or its token lapses) and the caller waits again in its
        place in the queue, or takes an agent of this server who became ready meanwhile."""
        if call.peer_leg == leg:
            self._release_peer(call.peer_offer)
            call.peer_leg, call.peer_offer = None, None
        if self.calls.get(call.channel_id) is not call or call.service_ended or call.bridged:
            return
        if self._closing:
            self._give_up(call)  # shutting down: the message, as for the callers in the queue
            return
        position = next((i for i, c in enumerate(self.waiting) if c.arrived_mono > call.arrived_mono), None)
        if position is None:
            self.waiting.append(call)
        else:
            self.waiting.insert(position, call)
        call.waiting = True
        agent = choose_agent(call.request.campaign_id, self.sessions.by_agent.values())
        if agent is not None:
            self._connect(call, agent)
            return
        self._ask_peer_later(call)

    # ------------------------------------------------------- live rows ---
    def _journal_arrival(self, call: InboundCall) -> None:
        """The call's live row (its campaign looked up, or the look-up failed: the default
        policy's deadline, as its CDR will have)."""
        if self.journal is None:
            return
        unknown_campaign = call.campaign_checked and call.campaign is None
        policy = call.campaign.retention if call.campaign is not None else self.options.retention
        self.journal.inbound_arrival(
            inbound_cdr_id(call.channel_id),
            campaign_id=None if unknown_campaign else call.request.campaign_id,
            contact_id=call.request.contact_id,
            caller_id=call.line_number,
            caller_number=call.caller_number,
            created_at=call.arrived_at,
            retention_until=cdr_deadline(call.arrived_at, policy),
            pool=self.pool_name,
            node_id=self.node_id,
        )

    def _journal_bridged(self, call: InboundCall) -> None:
        if self.journal is not None and call.bridged_at is not None:
            self.journal.progress(
                inbound_cdr_id(call.channel_id),
                answered_at=call.bridged_at,
                bridged_at=call.bridged_at,
                agent_id=call.agent_id,
                answer_to_bridge_ms=None,
            )

    async def recover(self, snap: Resync) -> None:
        """First connect after a start: the inbound calls a stopped process left (their
        live rows). Still up in Stasis: adopted (with their agent, or waiting again) and
        followed to one complete CDR; gone: closed with an ``untracked`` CDR. A row whose
        CDR is already written is only removed."""
        rows = await open_inbound_calls(self.pool, self.pool_name, self.node_id, take_over=True)
        if not rows:
            return
        channels = {c.id: c for c in snap.channels}
        by_row = {inbound_cdr_id(cid): channel for cid, channel in channels.items()}
        talking = {c: agent for agent, (_, others) in agent_bridges(snap.bridges, channels).items() for c in others}
        # Callers put through to an agent on another server: in a bridge with the trunk leg.
        through: dict[str, tuple[str, str | None]] = {}
        for bridge in snap.bridges:
            if bridge.id.startswith(PEER_BRIDGE_PREFIX):
                members = [c for c in bridge.channels if c in channels]
                for c in members:
                    through[c] = (bridge.id, next((o for o in members if o != c), None))
        now = datetime.now(UTC)
        adopted: list[InboundCall] = []
        for row in rows:
            channel = by_row.get(row["id"])
            if channel is not None and channel.id in self.calls:
                continue  # came to this process's router meanwhile
            if channel is None or channel.dialplan.app_name != "Stasis":
                # Gone, or left the menu for the dialplan's end (the menu's process died
                # with it): should it reach the router after all, the router's CDR wins.
                self._record_untracked(row, now)
                continue
            adopted.append(
                await self._adopt(row, channel.id, talking.get(channel.id), now, peer=through.get(channel.id))
            )
        if adopted:
            # A caller who hung up after the snapshot and before being adopted sent its
            # hangup events to nobody: asked once more, now that its events reach the router.
            try:
                states = await self.ari.rest.channel_states()
            except AriError as exc:
                log.warning("inbound.recover_check_failed", error=exc.message)
                return
            for call in adopted:
                if call.channel_id not in states and self.calls.get(call.channel_id) is call:
                    log.warning("inbound.adopted_call_gone", channel_id=call.channel_id)
                    self._caller_gone(call, datetime.now(UTC))

    async def sweep_orphans(self) -> None:
        """Live rows no one follows (run with the dialer's watchdog, at most every
        `orphan_check_s`): a call this router does not have whose channel Asterisk no longer
        lists at two checks in a row is closed as untracked. Such a row is left when the
        menu's CDR could not be written (the database was down as the call ended) or a
        caller hung up between the menu and the router."""
        now_mono = time.monotonic()
        if now_mono - self._orphan_checked < self.options.orphan_check_s:
            return
        self._orphan_checked = now_mono
        rows = await open_inbound_calls(self.pool, self.pool_name, self.node_id)
        followed = {inbound_cdr_id(cid) for cid in self.calls}
        candidates = [r for r in rows if r["id"] not in followed and r["id"] not in self._closed]
        if not candidates:
            self._orphans = set()
            return
        up = {inbound_cdr_id(cid) for cid in await self.ari.rest.channel_states()}
        gone = {r["id"] for r in candidates if r["id"] not in up}
        now = datetime.now(UTC)
        for row in candidates:
            if row["id"] in gone and row["id"] in self._orphans:
                self._record_untracked(row, now)
        self._orphans = gone - self._closed

    def _record_untracked(self, row: Mapping[str, Any] | asyncpg.Record, now: datetime) -> None:
        self._closed.add(row["id"])
        record = untracked_cdr(row, now)
        log.warning("inbound.call_recovered", attempt_id=str(row["id"]), outcome=record["outcome"])
        if self.cdr is not None:
            try:
                self.cdr.submit(record)
            except (ValidationFailed, Unavailable) as exc:
                log.error("inbound.cdr_refused", attempt_id=str(row["id"]), error=exc.message, details=exc.details)
        if self.journal is not None:
            self.journal.event("call.ended", f"attempt:{record['id']}", json_payload(record))

    async def _adopt(
        self,
        row: Mapping[str, Any] | asyncpg.Record,
        channel_id: str,
        agent_id: int | None,
        now: datetime,
        *,
        peer: tuple[str, str | None] | None = None,
    ) -> InboundCall:
        """A caller a stopped process had, still in Stasis: followed again from here (`peer`:
        in a bridge with a trunk leg to an agent on another server, and that leg)."""
        created: datetime = row["created_at"]
        call = InboundCall(
            channel_id=channel_id,
            request=InboundRequest(row["campaign_id"], row["contact_id"]),
            arrived_mono=time.monotonic() - max(0.0, (now - created).total_seconds()),
            arrived_at=created,
            caller_number=row["caller_number"],
            line_number=row["caller_id"],
            wrap_up_s=self.options.wrap_up_s,
        )
        if call.request.campaign_id is not None:
            try:
                call.campaign = await self._campaign_info(call.request.campaign_id)
                call.campaign_checked = True
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("inbound.campaign_lookup_failed", channel_id=channel_id, error=str(exc))
            if call.campaign is not None:
                call.wrap_up_s = call.campaign.wrap_up_s
        self.calls[channel_id] = call
        if peer is not None and row["agent_id"] is not None:
            await self._adopt_peer(call, row, peer, now)
            return call
        if agent_id is not None:
            # Talking to an agent: the agent stays on the call, the CDR carries the whole talk.
            call.agent_id, call.bridged = agent_id, True
            call.bridged_at = row["bridged_at"] or now
            session = self.sessions.by_agent.get(agent_id)
            log.warning("inbound.call_adopted", attempt_id=str(row["id"]), agent_id=agent_id, talking=True)
            if session is None:
                await self._hangup(channel_id)  # its agent is not logged in: the hangup event ends it
                return call
            call.agent_channel_id = session.channel_id
            self._by_agent_channel[session.channel_id] = call
            self.sessions.connect(session, channel_id, call.request.campaign_id)
            return call
        # Waiting (music on hold) or hearing the message: back in the queue, its wait
        # counted from its arrival.
        log.warning("inbound.call_adopted", attempt_id=str(row["id"]), talking=False)
        agent = choose_agent(call.request.campaign_id, self.sessions.by_agent.values())
        call.waiting = True
        self.waiting.append(call)
        if agent is not None:
            self._connect(call, agent)
            return call
        waited = (now - created).total_seconds()
        call.timer = asyncio.get_running_loop().call_later(
            max(0.0, self.options.max_wait_s - waited), self._give_up, call
        )
        return call

    async def _adopt_peer(
        self, call: InboundCall, row: Mapping[str, Any] | asyncpg.Record, peer: tuple[str, str | None], now: datetime
    ) -> None:
        """A caller talking to an agent on another server over the trunk: the leg is followed
        again (its end ends the caller); the far node follows its agent."""
        bridge_id, leg = peer
        agent_id: int = row["agent_id"]
        call.agent_id, call.bridged = agent_id, True
        call.bridged_at = row["bridged_at"] or now
        call.peer_bridge = bridge_id
        where = None
        try:
            where = await self.pool.fetchrow("SELECT pool, node_id FROM agents WHERE id = $1", agent_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("inbound.peer_agent_lookup_failed", channel_id=call.channel_id, error=str(exc))
        call.peer_offer = AdoptedLeg(agent_id, where["pool"] if where else None, where["node_id"] if where else None)
        log.warning("inbound.call_adopted", attempt_id=str(row["id"]), agent_id=agent_id, talking=True, peer=True)
        if leg is None:
            await self._hangup(call.channel_id)  # the far side is gone: the hangup event ends the call
            return
        call.peer_leg = call.agent_channel_id = leg
        self._peer_legs[leg] = call
        self._by_agent_channel[leg] = call

    # ------------------------------------------------------------ agents ---
    def _agent_changed(self, session: AgentSession, tr: AgentTransition) -> None:
        # Another listener (the dialer) may already have given the agent a call.
        if tr.agent.state is not AgentState.READY or session.state is not AgentState.READY or session.pin_pending:
            return
        call = choose_caller(session, self.waiting)
        if call is not None:
            self._connect(call, session)

    def _connect(self, call: InboundCall, session: AgentSession) -> None:
        """Give the caller to the agent (synchronously, so no one else takes the agent),
        then add the caller to the agent's bridge."""
        moh = call.waiting
        self._stop_waiting(call)
        call.agent_id = session.agent_id
        call.agent_channel_id = session.channel_id
        self._by_agent_channel[session.channel_id] = call
        self.sessions.connect(session, call.channel_id, call.request.campaign_id)
        self._spawn(self._add_to_bridge(call, session.bridge_id, moh))
        log.info(
            "inbound.connecting",
            channel_id=call.channel_id,
            agent_id=session.agent_id,
            campaign_id=call.request.campaign_id,
        )

    async def _add_to_bridge(self, call: InboundCall, bridge_id: str, moh: bool) -> None:
        try:
            if moh:
                await self.ari.rest.stop_moh(call.channel_id)
            await self.ari.rest.add_channel(bridge_id, call.channel_id)
        except BRIDGE_SIDE_GONE:
            # The caller (or the agent's bridge) is gone: the destroy events end the call.
            log.info("inbound.bridge_target_gone", channel_id=call.channel_id, agent_id=call.agent_id)

    def _caller_gone(self, call: InboundCall, ended_at: datetime) -> None:
        self.calls.pop(call.channel_id, None)
        self._stop_waiting(call)
        if call.agent_channel_id is not None:
            self._by_agent_channel.pop(call.agent_channel_id, None)
        if call.peer_leg is not None:
            if self._peer_legs.pop(call.peer_leg, None) is not None and call.agent_channel_id != call.peer_leg:
                self._release_peer(call.peer_offer)  # still ringing: the far agent is ready again
            self._spawn(self._hangup(call.peer_leg))
        if call.peer_bridge is not None:
            self._spawn(self._destroy_bridge(call.peer_bridge))
        session = self.sessions.by_agent.get(call.agent_id) if call.agent_id is not None else None
        if session is not None and session.attempt_id == call.channel_id:
            self.sessions.customer_gone(session, call.wrap_up_s)
        log.info("inbound.ended", channel_id=call.channel_id, agent_id=call.agent_id, bridged=call.bridged)
        if call.request.campaign_id is not None and not call.campaign_checked:
            # The campaign is not known yet (its look-up failed or is under way): its
            # retention policy is needed for the deadline.
            self._spawn(self._record_after_lookup(call, ended_at))
        else:
            self._record(call, ended_at)

    # ----------------------------------------------------------- records ---
    async def _campaign_info(self, campaign_id: int) -> CampaignInfo | None:
        row = await self.pool.fetchrow(
            "SELECT wrap_up_s, retention_recordings_months, retention_cdr_months FROM campaigns WHERE id = $1",
            campaign_id,
        )
        if row is None:
            return None
        return CampaignInfo(
            wrap_up_s=float(row["wrap_up_s"]),
            retention=RetentionPolicy(row["retention_recordings_months"], row["retention_cdr_months"]),
        )

    async def _record_after_lookup(self, call: InboundCall, ended_at: datetime) -> None:
        assert call.request.campaign_id is not None
        try:
            call.campaign = await asyncio.wait_for(
                self._campaign_info(call.request.campaign_id), self.options.lookup_timeout_s
            )
            call.campaign_checked = True
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The CDR is not held back: the default policy's deadline, and a loud log.
            log.warning(
                "inbound.cdr_default_retention",
                channel_id=call.channel_id,
                campaign_id=call.request.campaign_id,
                error=str(exc) or type(exc).__name__,
            )
        self._record(call, ended_at)

    def _record(self, call: InboundCall, ended_at: datetime) -> None:
        """The call's CDR and its call.ended event (never raises into the call path)."""
        if self.cdr is None:
            return
        record = inbound_cdr(call, ended_at, self.options.retention)
        try:
            self.cdr.submit(record)
        except (ValidationFailed, Unavailable) as exc:
            log.error("inbound.cdr_refused", channel_id=call.channel_id, error=exc.message, details=exc.details)
        if self.journal is not None:
            payload = json_payload(record)
            offer = call.peer_offer
            if offer is not None and record["bridged_at"] is not None:
                # Put through to an agent on another server: the agent's leg, and where it was.
                self.journal.leg(
                    record["id"],
                    0,
                    agent_id=offer.agent_id,
                    number=None,
                    role="agent",
                    joined_at=record["bridged_at"],
                    left_at=record["ended_at"],
                )
                payload = {**payload, "agent_pool": offer.pool, "agent_node_id": offer.node_id}
            self.journal.event("call.ended", f"attempt:{record['id']}", payload)
        log.info(
            "inbound.recorded",
            channel_id=call.channel_id,
            attempt_id=str(record["id"]),
            outcome=record["outcome"],
            agent_id=call.agent_id,
            campaign_id=record["campaign_id"],
        )

    # ----------------------------------------------------------- waiting ---
    def _stop_waiting(self, call: InboundCall) -> None:
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        if call.peer_timer is not None:
            call.peer_timer.cancel()
            call.peer_timer = None
        if call.waiting:
            call.waiting = False
            self.waiting.remove(call)

    async def _start_moh(self, call: InboundCall) -> None:
        try:
            await self.ari.rest.start_moh(call.channel_id, self.options.moh_class)
        except AriError as exc:
            log.info("inbound.moh_failed", channel_id=call.channel_id, error=exc.message)

    def _give_up(self, call: InboundCall) -> None:
        """No agent within the limit (or shutting down): the message, then hang up."""
        moh = call.waiting or call.peer_leg is not None
        self._stop_waiting(call)
        if call.peer_leg is not None and call.agent_channel_id != call.peer_leg:
            self._spawn(self._hangup(call.peer_leg))  # still ringing the far agent: given up too
        if call.channel_id in self.calls:
            call.service_ended = True
            log.info("inbound.no_agent", channel_id=call.channel_id, campaign_id=call.request.campaign_id)
            self._spawn(self._play_and_hang_up(call, moh))

    async def _play_and_hang_up(self, call: InboundCall, moh: bool) -> None:
        try:
            if moh:
                await self.ari.rest.stop_moh(call.channel_id)
            pb = await self.ari.rest.play(call.channel_id, list(self.options.no_agent_media))
        except AriError:
            await self._hangup(call.channel_id)
            return
        call.playback_id = pb.id
        call.timer = asyncio.get_running_loop().call_later(
            self.options.message_max_s, lambda: self._spawn(self._hangup(call.channel_id))
        )

    async def _destroy_bridge(self, bridge_id: str) -> None:
        with contextlib.suppress(AriError):
            await self.ari.rest.destroy_bridge(bridge_id)

    async def _hangup(self, channel_id: str) -> None:
        call = self.calls.get(channel_id)
        if call is not None:
            call.service_ended = True
        try:
            await self.ari.rest.hangup(channel_id)
        except AriError:
            pass
