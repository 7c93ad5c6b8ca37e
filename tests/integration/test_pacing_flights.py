"""A pacing decision is made at once and its contacts are taken afterwards, in a flight of
its own: an agent freed while another agent's contact is being taken gets its call without
waiting for that transaction (calls placed together are answered together and reach
their agents together), no agent is dialled for twice, and a dialer stopped while the
contacts are taken dials none of them. Real agent sessions on PostgreSQL, the fake ARI,
a hopper the test holds open."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import asyncpg

from hitcall_pbx.agents.sessions import AgentSessions
from hitcall_pbx.core.compliance import CampaignMode
from hitcall_pbx.core.pacing import PacingStats
from hitcall_pbx.core.states import AgentState
from hitcall_pbx.demo.seed import create_agent
from hitcall_pbx.dialer.engine import Dialer
from hitcall_pbx.dialer.hopper import TakeResult
from hitcall_pbx.dialer.models import Campaign
from hitcall_pbx.records.journal import CallJournal
from tests.ari_fake import FakeAri
from tests.unit.campaigns import make_attempt, make_campaign


class GatedHopper:
    """Hands out fresh attempts; the takes listed in `gates` (by call number) wait for them."""

    def __init__(self) -> None:
        self.gates: dict[int, asyncio.Event] = {}
        self.takes: list[int] = []

    async def take(self, campaign: Campaign, n: int, now: datetime, *, ready_agents: Any = ()) -> TakeResult:
        self.takes.append(n)
        gate = self.gates.get(len(self.takes))
        if gate is not None:
            await gate.wait()
        return TakeResult(attempts=[make_attempt(campaign, now) for _ in range(n)])


class NoCallbacks:
    async def agents_with_callbacks(self, campaign: Campaign, now: datetime, agents: Any) -> list[int]:
        return []


class Cdrs:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def submit(self, record: dict[str, Any]) -> None:
        self.records.append(record)


async def _desk(db: asyncpg.Pool, numbers: list[str]) -> tuple[Dialer, AgentSessions, FakeAri, GatedHopper, Cdrs]:
    ari = FakeAri()
    ari.connected.set()
    journal = CallJournal(db)
    sessions = AgentSessions(ari, db, journal=journal)
    campaign = make_campaign(1, mode=CampaignMode.PROGRESSIVE)
    for number in numbers:
        agent = await create_agent(db, number, f"agent-{number}", [])
        session = await sessions.adopt(f"phone-{number}", agent)
        assert session is not None and session.state is AgentState.READY
        session.campaigns = frozenset({campaign.id})
    hopper, cdrs = GatedHopper(), Cdrs()
    dialer = Dialer(ari, NoCallbacks(), sessions, hopper, cdrs, journal=journal, watchdog_s=None)  # type: ignore[arg-type]  # the parts these tests reach
    dialer.recovery.recovered = True
    dialer.pacer.campaigns = {campaign.id: campaign}
    dialer.pacer.stats[campaign.id] = PacingStats(ring_timeout_s=float(campaign.ring_timeout_s))
    return dialer, sessions, ari, hopper, cdrs


def _originated(ari: FakeAri) -> list[str]:
    """Channel ids of the originates sent so far."""
    return [r.args[1] for r in ari.rest.requests if r.method == "originate"]


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_agent_freed_while_anothers_contact_is_taken_is_dialled_at_once(db: asyncpg.Pool) -> None:
    dialer, sessions, ari, hopper, _ = await _desk(db, ["2801", "2802"])
    first, second = (sessions.by_agent[a] for a in sorted(sessions.by_agent))
    sessions.pause(second.agent_id, "break")
    hopper.gates[1] = gate = asyncio.Event()

    await dialer.tick()  # the first agent's contact: a transaction the test holds open
    await _settle()
    assert hopper.takes == [1] and first.held and first.state is AgentState.READY
    assert _originated(ari) == []

    sessions.unpause(second.agent_id)  # freed meanwhile
    await dialer.tick()
    await _settle()
    assert hopper.takes == [1, 1], "the second agent's own flight, not the first one's batch"
    assert second.state is AgentState.RESERVED and len(_originated(ari)) == 1
    assert _originated(ari) == [second.attempt_id]
    assert first.held and first.state is AgentState.READY, "its flight is still in the air"

    await dialer.tick()  # a pass while the first flight is out: nobody left to dial for
    await _settle()
    assert hopper.takes == [1, 1]

    gate.set()
    await dialer._tasks.wait()
    assert not first.held and first.state is AgentState.RESERVED
    assert sorted(_originated(ari)) == sorted([first.attempt_id, second.attempt_id])
    assert first.attempt_id != second.attempt_id


async def test_a_held_agent_taken_by_a_waiting_customer_leaves_its_new_call_to_a_free_agent(
    db: asyncpg.Pool,
) -> None:
    dialer, sessions, ari, hopper, cdrs = await _desk(db, ["2811", "2812"])
    first, second = (sessions.by_agent[a] for a in sorted(sessions.by_agent))
    sessions.pause(second.agent_id, "break")
    hopper.gates[1] = gate = asyncio.Event()
    await dialer.tick()
    await _settle()
    assert first.held

    sessions.connect(first, "a-waiting-customer", 1)  # the answer path took it meanwhile
    sessions.unpause(second.agent_id)  # ready, no pass yet
    gate.set()
    await dialer._tasks.wait()
    assert first.attempt_id == "a-waiting-customer"
    assert second.state is AgentState.RESERVED and _originated(ari) == [second.attempt_id]
    assert cdrs.records == []


async def test_a_held_agent_taken_meanwhile_with_nobody_else_free_leaves_the_contact_undialled(
    db: asyncpg.Pool,
) -> None:
    dialer, sessions, ari, hopper, cdrs = await _desk(db, ["2815"])
    (agent,) = sessions.by_agent.values()
    hopper.gates[1] = gate = asyncio.Event()
    await dialer.tick()
    await _settle()
    sessions.connect(agent, "a-waiting-customer", 1)
    gate.set()
    await dialer._tasks.wait()
    assert _originated(ari) == []
    assert [r["hangup_cause_txt"] for r in cdrs.records] == ["no agent left to reserve"]


async def test_a_dialer_stopped_while_contacts_are_taken_dials_none_of_them(db: asyncpg.Pool) -> None:
    dialer, sessions, ari, hopper, cdrs = await _desk(db, ["2821", "2822"])
    hopper.gates[1] = gate = asyncio.Event()
    await dialer.tick()
    await _settle()
    assert hopper.takes == [2]

    closing = asyncio.create_task(dialer.close())
    await _settle()
    gate.set()
    await closing
    assert _originated(ari) == []
    assert [r["hangup_cause_txt"] for r in cdrs.records] == ["the dialer stopped before it was dialled"] * 2
    assert all(s.state is AgentState.READY and not s.held for s in sessions.by_agent.values())


async def test_contacts_taken_while_asterisk_went_away_are_given_back_undialled(db: asyncpg.Pool) -> None:
    dialer, sessions, ari, hopper, cdrs = await _desk(db, ["2825", "2826"])
    hopper.gates[1] = gate = asyncio.Event()
    await dialer.tick()
    await _settle()
    assert hopper.takes == [2]

    ari.connected.clear()  # Asterisk stopped while the transaction was open
    gate.set()
    await dialer._tasks.wait()
    assert _originated(ari) == []
    assert [(r["outcome"], r["hangup_cause_txt"]) for r in cdrs.records] == [
        ("cancelled", "Asterisk went away before it was dialled")
    ] * 2, "cancelled: retried at once, the attempt not spent"
    assert all(s.state is AgentState.READY and not s.held for s in sessions.by_agent.values())


async def test_a_failed_take_gives_back_its_agents_and_pauses_the_passes(db: asyncpg.Pool) -> None:
    dialer, sessions, ari, hopper, _ = await _desk(db, ["2831"])
    (agent,) = sessions.by_agent.values()

    async def refused(*args: Any, **kw: Any) -> TakeResult:
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")

    hopper.take = refused  # type: ignore[method-assign]  # Postgres went away mid-take
    await dialer.tick()
    await dialer._tasks.wait()
    assert not agent.held and agent.state is AgentState.READY
    assert dialer._dialing_paused_reason is not None and "database unavailable" in dialer._dialing_paused_reason
    assert dialer._retry_at > 0 and _originated(ari) == []
    assert dialer.pacer.snapshot(dialer.pacer.campaigns[1]).agents_ready == 1

    del hopper.take  # PostgreSQL is back: the next flight lands and the pause ends
    await dialer.tick()
    await dialer._tasks.wait()
    assert agent.state is AgentState.RESERVED and _originated(ari) == [agent.attempt_id]
    assert dialer._dialing_paused_reason is None


async def test_at_most_four_flights_are_out_at_once_across_campaigns(db: asyncpg.Pool) -> None:
    dialer, sessions, ari, hopper, _ = await _desk(db, ["2841", "2842", "2843", "2844", "2845", "2846"])
    agents = [sessions.by_agent[a] for a in sorted(sessions.by_agent)]
    other = make_campaign(2, mode=CampaignMode.PROGRESSIVE)
    dialer.pacer.campaigns[other.id] = other
    dialer.pacer.stats[other.id] = PacingStats(ring_timeout_s=float(other.ring_timeout_s))
    agents[5].campaigns = frozenset({other.id})  # the only agent of a second campaign
    for agent in agents[1:]:
        sessions.pause(agent.agent_id, "break")
    gates = {n: asyncio.Event() for n in range(1, 7)}
    hopper.gates.update(gates)

    for agent in agents[1:4]:  # one agent freed at a time: a flight each, all held open
        await dialer.tick()
        await _settle()
        sessions.unpause(agent.agent_id)
    await dialer.tick()
    await _settle()
    assert hopper.takes == [1, 1, 1, 1] and all(a.held for a in agents[:4])

    sessions.unpause(agents[4].agent_id)
    sessions.unpause(agents[5].agent_id)  # the other campaign's agent
    await dialer.tick()
    await _settle()
    assert hopper.takes == [1, 1, 1, 1], "a fifth flight waits, whichever campaign it is for"
    assert not agents[4].held and not agents[5].held

    gates[1].set()  # one lands: the next pass sends the others' flights
    await _settle()
    await dialer.tick()
    await _settle()
    assert len(hopper.takes) == 5
    for gate in gates.values():
        gate.set()
    await dialer._tasks.wait()
    await dialer.tick()
    await dialer._tasks.wait()
    assert len(_originated(ari)) == 6 and all(a.state is AgentState.RESERVED for a in agents)
