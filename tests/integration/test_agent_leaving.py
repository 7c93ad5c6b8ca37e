"""An agent whose phone hung up is never given a customer while its logout is under way
(the logout awaits requests; meanwhile a pacing pass or the watchdog's recovered answer
may look for a ready agent), and a customer put through to an agent as it left (the
answer and the hang-up crossing in Asterisk) is hung up, not left alone on the line. Real
agent sessions on PostgreSQL, the fake ARI."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import asyncpg

from hitcall_pbx.agents.sessions import AgentSessions
from hitcall_pbx.core.calls import CallEvent, CallState
from hitcall_pbx.core.pacing import PacingStats
from hitcall_pbx.core.states import AgentState
from hitcall_pbx.demo.seed import create_agent
from hitcall_pbx.dialer.calls import LiveCall
from hitcall_pbx.dialer.engine import Dialer
from hitcall_pbx.records.journal import CallJournal
from hitcall_pbx.stasis import StasisKind
from tests.ari_fake import FakeAri
from tests.unit.campaigns import make_attempt, make_campaign


async def _desk(db: asyncpg.Pool, number: str) -> tuple[Dialer, AgentSessions, FakeAri, int]:
    ari = FakeAri()
    journal = CallJournal(db)
    sessions = AgentSessions(ari, db, journal=journal)
    campaign = make_campaign(1)
    agent = await create_agent(db, number, f"agent-{number}", [])
    session = await sessions.adopt(f"phone-{number}", agent)
    assert session is not None and session.state is AgentState.READY
    session.campaigns = frozenset({campaign.id})
    # No hopper or CDR sink: these tests drive one answer and one hang-up.
    dialer = Dialer(ari, db, sessions, None, None, journal=journal, watchdog_s=None)  # type: ignore[arg-type]  # no hopper, no CDR sink
    dialer.pacer.stats[campaign.id] = PacingStats(ring_timeout_s=float(campaign.ring_timeout_s))
    return dialer, sessions, ari, agent


def _ringing_call() -> LiveCall:
    campaign = make_campaign(1)
    call = LiveCall.placed(make_attempt(campaign, datetime.now(UTC)), campaign)
    call.apply(CallEvent.ORIGINATE, datetime.now(UTC))
    return call


async def test_an_answer_arriving_while_the_agent_logs_out_waits_for_another_agent(db: asyncpg.Pool) -> None:
    dialer, sessions, ari, agent = await _desk(db, "2701")
    gate = asyncio.Event()
    plain = dialer.transfers.agent_gone

    async def slow_agent_gone(session: Any) -> bool:  # work the logout awaits (requests, reads)
        await gate.wait()
        return await plain(session)

    dialer.transfers.agent_gone = slow_agent_gone  # type: ignore[method-assign]  # held open by the test
    leaving = asyncio.create_task(dialer.agent_gone("phone-2701"))
    await asyncio.sleep(0.01)
    assert sessions.by_agent[agent].state is AgentState.READY, "still logged in: its logout is under way"

    call = _ringing_call()
    dialer.calls[call.channel_id] = call
    await dialer.answers.answered(call, SimpleNamespace(timestamp=None), StasisKind.CUSTOMER, [])
    assert call.state is CallState.ANSWERED and call.agent_id is None and call in dialer.waiting
    assert "add_channel" not in ari.rest.methods()

    gate.set()
    await leaving
    assert agent not in sessions.by_agent
    assert call.channel_id not in [r.args[0] for r in ari.rest.requests if r.method == "hangup"]
    if call.timer:
        call.timer.cancel()
    await dialer._tasks.wait()


async def test_a_customer_put_through_to_an_agent_as_it_left_is_hung_up(db: asyncpg.Pool) -> None:
    dialer, sessions, ari, agent = await _desk(db, "2702")
    call = _ringing_call()
    dialer.calls[call.channel_id] = call
    await dialer.answers.answered(call, SimpleNamespace(timestamp=None), StasisKind.CUSTOMER, [])
    assert call.agent_id == agent and sessions.by_agent[agent].state is AgentState.ON_CALL
    await dialer._tasks.wait()  # the bridge request went out; its ChannelEnteredBridge never comes
    assert call.state is CallState.ANSWERED

    await dialer.agent_gone("phone-2702")
    assert ("hangup", call.channel_id) in [(r.method, r.args[0]) for r in ari.rest.requests if r.args]
    assert agent not in sessions.by_agent


async def test_a_waiting_customer_is_not_given_to_an_agent_whose_wrap_up_ends_as_it_leaves(db: asyncpg.Pool) -> None:
    dialer, sessions, ari, agent = await _desk(db, "2703")
    session = sessions.by_agent[agent]
    sessions.connect(session, "earlier-call", 1)
    sessions.customer_gone(session, 30)
    assert session.state is AgentState.WRAP_UP
    waiting = _ringing_call()
    dialer.calls[waiting.channel_id] = waiting
    await dialer.answers.answered(waiting, SimpleNamespace(timestamp=None), StasisKind.CUSTOMER, [])
    assert waiting in dialer.waiting  # nobody ready

    gate = asyncio.Event()
    plain = dialer.transfers.agent_gone

    async def slow_agent_gone(s: Any) -> bool:
        await gate.wait()
        return await plain(s)

    dialer.transfers.agent_gone = slow_agent_gone  # type: ignore[method-assign]  # held open by the test
    leaving = asyncio.create_task(dialer.agent_gone("phone-2703"))
    await asyncio.sleep(0.01)
    sessions.end_wrap(agent)  # the wrap-up ends while the logout runs (the agent pressed ready)
    assert session.state is AgentState.READY
    assert waiting in dialer.waiting and waiting.agent_id is None and "add_channel" not in ari.rest.methods()

    gate.set()
    await leaving
    if waiting.timer:
        waiting.timer.cancel()
    await dialer._tasks.wait()
