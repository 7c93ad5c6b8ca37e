"""An agent's wrap-up ends when the wall clock reaches its end, even when the event loop's
timer (its own monotonic clock, rounded to the millisecond by some loops) runs a little
before it: the rest is timed, and the agent is not left in wrap-up by a refused transition."""

from __future__ import annotations

import asyncio

import asyncpg

from hitcall_pbx.agents.sessions import AgentSessions
from hitcall_pbx.core.states import AgentState
from hitcall_pbx.demo.seed import create_agent
from hitcall_pbx.records.journal import CallJournal
from tests.ari_fake import FakeAri


async def test_a_wrap_up_timer_that_runs_early_waits_for_the_rest(db: asyncpg.Pool) -> None:
    sessions = AgentSessions(FakeAri(), db, journal=CallJournal(db))
    agent = await create_agent(db, "2801", "agent-2801", [])
    session = await sessions.adopt("phone-2801", agent)
    assert session is not None
    sessions.connect(session, "call-1", None)
    sessions.customer_gone(session, 0.2)
    assert session.state is AgentState.WRAP_UP and session.wrap_timer is not None
    session.wrap_timer.cancel()

    sessions._wrap_timeout(session)  # the timer, 0.2 s before the clock reaches the end
    assert session.state is AgentState.WRAP_UP and session.wrap_timer is not None, "the rest is timed"
    await asyncio.sleep(0.3)
    assert session.state is AgentState.READY and session.wrap_timer is None
    await sessions.close()
