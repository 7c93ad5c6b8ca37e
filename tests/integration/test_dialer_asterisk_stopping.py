"""Calls Asterisk ends while it stops: it hangs every call up with no cause (0) before the
service sees ARI go. A call that was still ringing is a temporary failure, retried; a call
the customer had just answered, before it reached Stasis, is an answer nobody took:
abandoned, and counted so. Real agent sessions on PostgreSQL, the fake ARI."""

from __future__ import annotations

from types import SimpleNamespace

import asyncpg

from hitcall_pbx.core.states import AgentState
from tests.integration.test_pacing_flights import _desk, _originated


def _destroyed(channel_id: str, state: str) -> SimpleNamespace:
    return SimpleNamespace(
        type="ChannelDestroyed",
        channel=SimpleNamespace(id=channel_id, state=state),
        cause=0,
        cause_txt="Unknown",
        timestamp=None,
    )


async def test_calls_hung_up_by_asterisk_stopping(db: asyncpg.Pool) -> None:
    dialer, sessions, ari, _, cdrs = await _desk(db, ["2831", "2832"])
    await dialer.tick()
    await dialer._tasks.wait()
    ringing, answered = sorted(_originated(ari))
    assert {s.state for s in sessions.by_agent.values()} == {AgentState.RESERVED}
    campaign = dialer.calls[ringing].campaign
    abandons = dialer.pacer.stats_for(campaign).today.abandoned

    await dialer.handle_event(_destroyed(ringing, "Ringing"))
    await dialer.handle_event(_destroyed(answered, "Up"))
    outcomes = {str(r["id"]): r["outcome"] for r in cdrs.records}
    assert outcomes == {ringing: "congestion", answered: "abandoned"}, cdrs.records
    assert dialer.pacer.stats_for(campaign).today.abandoned == abandons + 1, "in the abandon rate"
    assert dialer.calls == {}
    assert {s.state for s in sessions.by_agent.values()} == {AgentState.READY}
