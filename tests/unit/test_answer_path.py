"""The answer → agent path without Asterisk: the bridge request of an answered customer
goes out before the event reader takes the next event; the answer counts in the
campaign's contact rate when it happens, not when the call ends."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from hitcall_pbx.core import pacing
from hitcall_pbx.core.calls import CallEvent
from hitcall_pbx.core.compliance import CampaignMode
from hitcall_pbx.core.states import AgentState
from hitcall_pbx.dialer.calls import LiveCall
from hitcall_pbx.dialer.connect import AnswerPath
from hitcall_pbx.dialer.models import Campaign
from hitcall_pbx.stasis import StasisKind
from tests.unit.campaigns import make_attempt, make_campaign

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _campaign() -> Campaign:
    return make_campaign(mode=CampaignMode.PROGRESSIVE)


def _ringing_call(campaign: Campaign) -> LiveCall:
    attempt = make_attempt(campaign, NOW)
    call = LiveCall.placed(attempt, campaign)
    call.apply(CallEvent.ORIGINATE, NOW)
    call.apply(CallEvent.RING, NOW + timedelta(seconds=0.5))
    return call


class _Dialer:
    """What the answer path uses of the dialer: agents, the journal, ARI, task spawning."""

    def __init__(self, agents: int) -> None:
        self.log: list[str] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.sessions_list = [
            SimpleNamespace(agent_id=i, bridge_id=f"agent-bridge-{i}", state=AgentState.READY, campaigns={1})
            for i in range(agents)
        ]
        self.sessions = SimpleNamespace(
            by_agent={s.agent_id: s for s in self.sessions_list},
            ready_agents=lambda cid: [s for s in self.sessions_list if s.state is AgentState.READY],
            connect=self._connect_agent,
        )
        self.ledger = SimpleNamespace(event=lambda *a: None, progress=lambda *a: None)
        self.ari = SimpleNamespace(rest=SimpleNamespace(add_channel=self._add_channel))
        self.waiting: list[LiveCall] = []
        self.stats = pacing.PacingStats(ring_timeout_s=30.0)
        self.pacer = SimpleNamespace(stats_for=lambda campaign: self.stats)

    def _connect_agent(self, session: Any, channel_id: str, campaign_id: int) -> None:
        session.state = AgentState.ON_CALL

    async def _add_channel(self, bridge_id: str, channel_id: str) -> None:
        self.log.append(f"bridge request {channel_id}")
        await asyncio.sleep(0.001)  # the HTTP round trip

    def _originated(self, call: LiveCall) -> None:
        pass

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


async def test_the_bridge_request_goes_out_before_the_next_event_is_handled() -> None:
    """The event reader hands buffered events over one after the other without giving
    the loop a turn; each answered customer's bridge request must still go out before
    the next event, not after the whole backlog."""
    dialer = _Dialer(agents=3)
    answers = AnswerPath(dialer)  # type: ignore[arg-type]  # the fake has what the path uses
    calls = [_ringing_call(_campaign()) for _ in range(3)]
    for call in calls:
        ev = SimpleNamespace(timestamp=NOW + timedelta(seconds=5))
        await answers.answered(call, ev, StasisKind.CUSTOMER, [])
        dialer.log.append(f"handled {call.channel_id}")
    assert dialer.log == [
        line for call in calls for line in (f"bridge request {call.channel_id}", f"handled {call.channel_id}")
    ]
    await asyncio.gather(*dialer.tasks)
    assert [s.state for s in dialer.sessions_list] == [AgentState.ON_CALL] * 3


async def test_an_answer_counts_in_the_contact_rate_when_the_customer_answers() -> None:
    """The pacer learns the contact rate from calls as they stop ringing. A customer who
    answers stops ringing at the answer, minutes before the call ends; a busy line stops
    at once. Counted only at the call's end, the answers of a fresh campaign were missing
    while its busy lines were in: the estimate read almost no contacts and the pacer
    dialled to the line cap (a cold campaign abandoned 15 % of its answered calls)."""
    dialer = _Dialer(agents=3)
    answers = AnswerPath(dialer)  # type: ignore[arg-type]  # the fake has what the path uses
    for _ in range(3):
        dialer.stats.observe_attempt(time.monotonic(), 1.0, False)  # busy after 1 s (as the dialer counts it)
    for call in [_ringing_call(_campaign()) for _ in range(2)]:
        await answers.answered(call, SimpleNamespace(timestamp=NOW + timedelta(seconds=3)), StasisKind.CUSTOMER, [])
    await asyncio.gather(*dialer.tasks)
    told = pacing.PacingStats(ring_timeout_s=30.0)
    for _ in range(3):
        told.observe_attempt(time.monotonic(), 1.0, False)
    for _ in range(2):
        told.observe_attempt(time.monotonic(), 3.0, True)
    assert dialer.stats.contact_estimate([]) == pytest.approx(told.contact_estimate([]))
    assert dialer.stats.contact_estimate([])[0] > pacing.PacingStats().contact_rate
