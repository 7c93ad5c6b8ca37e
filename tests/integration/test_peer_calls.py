"""Peer calls, one layer at a time (fake ARI, real PostgreSQL for the agents' states): the
agent's side (`dialer.peer.PeerDesk`: the token it gives is checked when the trunk call
comes; unknown, used and expired tokens are hung up; a lapsed reservation gives the agent
back) and the caller's side (`dialer.inbound.InboundRouter` with a peer finder: the leg to
the far agent, a leg that fails sends the caller back to the queue, the far side's end
ends the caller), and the finder (which node to ask, from the agents' and leases' rows).
Real Asterisk: tests/reliability/test_peer_call.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest

from hitcall_pbx.agents.sessions import AgentSessions
from hitcall_pbx.cluster.peer import PeerFinder, PeerOffer
from hitcall_pbx.core.leases import PoolClaim
from hitcall_pbx.core.states import AgentState
from hitcall_pbx.demo.seed import create_agent, create_campaign
from hitcall_pbx.dialer.inbound import InboundOptions, InboundRouter
from hitcall_pbx.dialer.peer import PeerDesk
from hitcall_pbx.pools import Pools
from hitcall_pbx.records.journal import CallJournal
from tests.ari_fake import FakeAri

CLAIM_2 = PoolClaim("ast2", "node-b", 1)


def _event(etype: str, channel_id: str, *args: str, **extra: Any) -> SimpleNamespace:
    channel = SimpleNamespace(
        id=channel_id,
        caller=SimpleNamespace(number="+358401234567"),
        dialplan=SimpleNamespace(exten="0201234567", app_name="Stasis"),
    )
    return SimpleNamespace(type=etype, channel=channel, args=list(args), cause=16, cause_txt="Normal Clearing", **extra)


def _asked(ari: FakeAri, method: str) -> list[tuple[Any, ...]]:
    return [r.args for r in ari.rest.requests if r.method == method]


@pytest.fixture
async def journal(db: asyncpg.Pool):
    j = CallJournal(db)
    await j.start()
    yield j
    await j.close()


async def _agent_on_server_2(db: asyncpg.Pool, journal: CallJournal) -> tuple[FakeAri, AgentSessions, int, int]:
    campaign, _ = await create_campaign(db, "return-line", wrap_up_s=3)
    agent = await create_agent(db, "1301", "agent301", [campaign])
    ari = FakeAri()
    sessions = AgentSessions(ari, db, journal=journal, claim=CLAIM_2)
    session = await sessions.login("phone-1", "agent301")
    assert session is not None and session.state is AgentState.READY
    return ari, sessions, agent, campaign


async def test_the_far_node_puts_through_only_the_call_carrying_the_token_it_gave(db, journal):
    ari, sessions, agent, campaign = await _agent_on_server_2(db, journal)
    desk = PeerDesk(ari, sessions, claim=CLAIM_2)
    offer = desk.reserve(campaign, 7.5, "ast1")
    assert offer is not None and (offer["agent_id"], offer["pool"], offer["node_id"]) == (agent, "ast2", "node-b")
    session = sessions.by_agent[agent]
    assert session.state is AgentState.RESERVED
    assert desk.reserve(campaign, 7.5, "ast1") is None, "its only agent is reserved"

    await desk.handle_event(_event("StasisStart", "forged", "peer", "0" * 24))
    await desk.handle_event(_event("StasisStart", "garbage", "peer", "../etc"))
    assert _asked(ari, "hangup") == [("forged",), ("garbage",)]
    assert session.state is AgentState.RESERVED, "a refused call leaves the reservation alone"

    await desk.handle_event(_event("StasisStart", "trunk-1", "peer", offer["token"]))
    assert ("trunk-1",) in _asked(ari, "answer")
    assert (session.bridge_id, "trunk-1") in _asked(ari, "add_channel")
    assert session.state is AgentState.ON_CALL and session.attempt_id == "trunk-1"

    await desk.handle_event(_event("StasisStart", "trunk-2", "peer", offer["token"]))
    assert ("trunk-2",) in _asked(ari, "hangup"), "a token is used once"
    assert session.attempt_id == "trunk-1"

    await desk.handle_event(_event("ChannelDestroyed", "trunk-1"))
    assert session.state is AgentState.WRAP_UP
    assert session.fsm.wrap_until is not None and session.fsm.since is not None
    assert round((session.fsm.wrap_until - session.fsm.since).total_seconds(), 1) == 7.5, "the caller's wrap-up"
    await desk.close()


async def test_a_reservation_no_call_comes_for_lapses_and_the_agent_is_ready_again(db, journal):
    ari, sessions, agent, campaign = await _agent_on_server_2(db, journal)
    desk = PeerDesk(ari, sessions, claim=CLAIM_2, token_ttl_s=0.2)
    offer = desk.reserve(None, 3.0, "ast1")
    assert offer is not None and sessions.by_agent[agent].state is AgentState.RESERVED
    await asyncio.sleep(0.35)
    assert sessions.by_agent[agent].state is AgentState.READY
    await desk.handle_event(_event("StasisStart", "late", "peer", offer["token"]))
    assert ("late",) in _asked(ari, "hangup")
    assert sessions.by_agent[agent].state is AgentState.READY
    await journal.flush(5)
    states = await db.fetch("SELECT state FROM agent_state_log WHERE agent_id = $1 ORDER BY id", agent)
    assert [r["state"] for r in states] == ["ready", "reserved", "ready"]
    assert await db.fetchval("SELECT pool FROM agents WHERE id = $1", agent) == "ast2"


async def test_the_callers_node_gives_a_reservation_back_before_it_lapses(db, journal):
    ari, sessions, agent, campaign = await _agent_on_server_2(db, journal)
    desk = PeerDesk(ari, sessions, claim=CLAIM_2)
    offer = desk.reserve(campaign, 3.0, "ast1")
    assert offer is not None
    assert desk.release(offer["token"]) is True
    assert sessions.by_agent[agent].state is AgentState.READY
    assert desk.release(offer["token"]) is False, "once"
    again = desk.reserve(campaign, 3.0, "ast1")
    assert again is not None
    await desk.handle_event(_event("StasisStart", "trunk-1", "peer", again["token"]))
    assert desk.release(again["token"]) is False, "a token already used is not released"
    assert sessions.by_agent[agent].state is AgentState.ON_CALL
    await desk.close()


async def test_the_agents_phone_hanging_up_ends_the_trunk_call(db, journal):
    ari, sessions, agent, campaign = await _agent_on_server_2(db, journal)
    desk = PeerDesk(ari, sessions, claim=CLAIM_2)
    offer = desk.reserve(campaign, 3.0, "ast1")
    assert offer is not None
    await desk.handle_event(_event("StasisStart", "trunk-1", "peer", offer["token"]))
    await desk.handle_event(_event("StasisEnd", "phone-1"))
    assert ("trunk-1",) in _asked(ari, "hangup")


@dataclass(frozen=True)
class Offer:
    token: str
    agent_id: int
    pool: str = "ast2"
    node_id: str | None = "node-b"


class Finder:
    """The other servers, as the caller's router sees them: the offers to hand out in turn."""

    def __init__(self, *offers: Offer | None) -> None:
        self.offers = list(offers)
        self.asked = 0
        self.released: list[str] = []

    async def find(self, campaign_id: int | None, wrap_up_s: float) -> Offer | None:
        self.asked += 1
        return self.offers.pop(0) if self.offers else None

    async def release(self, offer: Offer) -> None:
        self.released.append(offer.token)


async def test_the_callers_node_dials_the_far_agent_and_a_failed_leg_sends_the_caller_back_to_the_queue(db, journal):
    ari = FakeAri()
    sessions = AgentSessions(ari, db, journal=journal, claim=PoolClaim("ast1", "node-a", 1))  # nobody here
    finder = Finder(Offer("a" * 24, 7), None, Offer("b" * 24, 7))
    router = InboundRouter(
        ari,
        db,
        sessions,
        InboundOptions(peer_retry_s=0.05, max_wait_s=30),
        claim=PoolClaim("ast1", "node-a", 1),
        peer=finder,
    )
    await router.handle_event(_event("StasisStart", "caller", "inbound", "", ""))
    await asyncio.sleep(0.05)
    call = router.calls["caller"]
    [(endpoint, leg)] = _asked(ari, "originate")
    assert endpoint == f"Local/hitcall-{'a' * 24}@hitcall-peer/n"
    assert not call.waiting and call not in router.waiting, "out of the queue while the leg rings"

    await router.handle_event(_event("ChannelDestroyed", leg))  # refused by the far node
    assert call.waiting and list(router.waiting) == [call], "back in the queue"
    assert call.agent_id is None and call.peer_leg is None
    await asyncio.sleep(0.01)
    assert finder.released == ["a" * 24], "the far agent is given back at once"
    await asyncio.sleep(0.3)  # asked again: nobody (None), then agent 7 again
    assert finder.asked >= 3
    [_, (endpoint, leg)] = _asked(ari, "originate")
    assert endpoint == f"Local/hitcall-{'b' * 24}@hitcall-peer/n"

    await router.handle_event(_event("StasisStart", leg, "peer-leg", "caller"))
    [(bridge, channels)] = _asked(ari, "add_channel")
    assert channels == ["caller", leg] and bridge.startswith("hitcall-peerbridge-")
    await router.handle_event(_event("ChannelEnteredBridge", "caller", bridge=SimpleNamespace(id=bridge)))
    assert call.bridged and call.agent_id == 7

    await router.handle_event(_event("ChannelDestroyed", leg))  # the far agent hung up
    assert ("caller",) in _asked(ari, "hangup")
    assert finder.released == ["a" * 24], "a leg that was answered is not released"
    await router.handle_event(_event("ChannelDestroyed", "caller"))
    assert not router.calls
    await asyncio.sleep(0.05)
    assert (bridge,) in _asked(ari, "destroy_bridge")
    await router.close()


async def test_a_caller_who_hangs_up_while_the_leg_rings_takes_the_leg_down_with_it(db, journal):
    ari = FakeAri()
    sessions = AgentSessions(ari, db, journal=journal, claim=PoolClaim("ast1", "node-a", 1))
    router = InboundRouter(
        ari,
        db,
        sessions,
        InboundOptions(max_wait_s=30),
        claim=PoolClaim("ast1", "node-a", 1),
        peer=(finder := Finder(Offer("c" * 24, 7))),
    )
    await router.handle_event(_event("StasisStart", "caller", "inbound", "", ""))
    await asyncio.sleep(0.05)
    [(_, leg)] = _asked(ari, "originate")
    await router.handle_event(_event("ChannelDestroyed", "caller"))
    await asyncio.sleep(0.05)
    assert (leg,) in _asked(ari, "hangup")
    assert finder.released == ["c" * 24], "the far agent is given back at once"
    await router.handle_event(_event("StasisStart", leg, "peer-leg", "caller"))  # answered too late
    assert _asked(ari, "hangup").count((leg,)) == 2 and not _asked(ari, "add_channel")
    await router.close()


def _channel(cid: str, name: str, context: str, exten: str, app_data: str) -> SimpleNamespace:
    dialplan = SimpleNamespace(context=context, exten=exten, app_name="Stasis", app_data=app_data)
    return SimpleNamespace(id=cid, name=name, dialplan=dialplan)


async def test_after_a_restart_the_far_node_follows_the_trunk_calls_still_in_its_agents_bridges(db, journal):
    campaign, _ = await create_campaign(db, "return-line", wrap_up_s=3)
    agent = await create_agent(db, "1302", "agent302", [campaign])
    ari = FakeAri()
    sessions = AgentSessions(ari, db, journal=journal, claim=CLAIM_2)
    token = "d" * 24
    phone = _channel("phone-1", "PJSIP/agent302-00000001", "hitcall-agents", "*70", "hitcall,agent-login,agent302")
    talking = _channel("trunk-1", "PJSIP/peer-00000002", "hitcall-peer-in", f"hitcall-{token}", f"hitcall,peer,{token}")
    stray = _channel("trunk-2", "PJSIP/peer-00000003", "hitcall-peer-in", "hitcall-" + "e" * 24, "hitcall,peer,x")
    bridge = SimpleNamespace(id=f"hitcall-agent-{agent}", channels=["phone-1", "trunk-1"])
    snap = SimpleNamespace(channels=[phone, talking, stray], bridges=[bridge])
    assert await sessions.adopt("phone-1", agent) is not None  # what the dialer's restart recovery does first
    desk = PeerDesk(ari, sessions, claim=CLAIM_2)
    await desk.recover(snap)  # type: ignore[arg-type]  # the snapshot's fields the desk reads
    session = sessions.by_agent[agent]
    assert session.state is AgentState.ON_CALL and session.attempt_id == "trunk-1"
    assert _asked(ari, "hangup") == [("trunk-2",)], "a trunk call in no agent's bridge is hung up"
    await desk.handle_event(_event("StasisEnd", "phone-1"))
    assert ("trunk-1",) in _asked(ari, "hangup"), "followed again: the phone's end ends it"
    await desk.handle_event(_event("ChannelDestroyed", "trunk-1"))
    assert session.state is AgentState.WRAP_UP


async def _node_holding(db: asyncpg.Pool, node_id: str, pool: str, *, live: bool = True) -> None:
    until = "now() + interval '1 minute'" if live else "now() - interval '1 second'"
    await db.execute(
        f"""INSERT INTO nodes (node_id, instance, host, pid, pools, lease_until)
            VALUES ($1, gen_random_uuid(), 'host', 4242, ARRAY[$2], {until})""",
        node_id,
        pool,
    )
    await db.execute(
        f"INSERT INTO leases (name, node_id, token, lease_until) VALUES ('pool:' || $2, $1, 1, {until})", node_id, pool
    )


async def _ready_on(db: asyncpg.Pool, number: str, pool: str, node_id: str, campaigns: list[int]) -> int:
    agent = await create_agent(db, number, f"agent{number}", campaigns)
    await db.execute(
        "UPDATE agents SET state = 'ready', pool = $2, node_id = $3, state_since = now() - interval '1 minute' "
        "WHERE id = $1",
        agent,
        pool,
        node_id,
    )
    return agent


class Bus:
    """The node command bus as the finder uses it: the commands it was asked to send."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    async def call(self, node_id: str, method: str, kwargs: dict[str, Any], actor: Any, **kw: Any) -> Any:
        self.sent.append((node_id, method, dict(kwargs)))
        return self.answer


async def test_the_finder_asks_the_node_holding_a_pool_with_a_ready_agent_or_its_own_desk(db):
    campaign, _ = await create_campaign(db, "return-line")
    other, _ = await create_campaign(db, "other", caller_id="+358209999999")
    await _node_holding(db, "node-a", "ast1")
    await _node_holding(db, "node-b", "ast2")
    await _node_holding(db, "node-c", "ast3")
    await _node_holding(db, "node-gone", "ast4", live=False)
    await _ready_on(db, "1401", "ast1", "node-a", [campaign])  # the caller's own pool: never asked
    await _ready_on(db, "1402", "ast2", "node-b", [other])
    mine = await _ready_on(db, "1403", "ast3", "node-c", [campaign])
    await _ready_on(db, "1404", "ast4", "node-gone", [campaign])  # its node is gone
    token = "f" * 24
    bus = Bus({"token": token, "agent_id": mine, "pool": "ast3", "node_id": "node-c"})
    pools = Pools()
    finder = PeerFinder(db, pools, lambda: bus, "ast1", "node-a")  # type: ignore[arg-type]  # the fake bus
    assert await finder.candidates(campaign) == [("ast3", "node-c"), ("ast2", "node-b")]
    offer = await finder.find(campaign, 4.0)
    assert offer == PeerOffer(token, mine, "ast3", "node-c")
    assert bus.sent == [
        ("node-c", "peer.reserve", {"pool": "ast3", "campaign_id": campaign, "wrap_up_s": 4.0, "from_pool": "ast1"})
    ]
    await finder.release(offer)
    assert bus.sent[-1] == ("node-c", "peer.release", {"pool": "ast3", "token": token})

    # The same process drives ast3 too: its desk is asked directly, nothing goes through the bus.
    desk_asked: list[tuple[Any, ...]] = []
    desk = SimpleNamespace(
        reserve=lambda *a: desk_asked.append(a) or {"token": token, "agent_id": mine, "pool": "ast3", "node_id": "a"},
        release=lambda t: desk_asked.append((t,)) or True,
    )
    pools.stacks["ast3"] = SimpleNamespace(peer=desk)  # type: ignore[assignment]  # the desk is all the finder reads
    sent = len(bus.sent)
    offer = await finder.find(campaign, 4.0)
    assert offer is not None and offer.agent_id == mine and len(bus.sent) == sent
    await finder.release(offer)
    assert desk_asked == [(campaign, 4.0, "ast1"), (token,)]

    # Nobody answers with a token: None, and the caller keeps waiting.
    none = PeerFinder(db, Pools(), lambda: Bus(None), "ast1", "node-a")  # type: ignore[arg-type]
    assert await none.find(campaign, 4.0) is None


async def test_a_look_that_found_nobody_ready_elsewhere_holds_for_a_moment(db):
    campaign, _ = await create_campaign(db, "return-line")
    await _node_holding(db, "node-b", "ast2")
    finder = PeerFinder(db, Pools(), lambda: None, "ast1", "node-a", none_s=0.3)
    assert await finder.candidates(campaign) == []
    await _ready_on(db, "1501", "ast2", "node-b", [campaign])
    assert await finder.candidates(campaign) == [], "not read again at once"
    await asyncio.sleep(0.35)
    assert await finder.candidates(campaign) == [("ast2", "node-b")]
