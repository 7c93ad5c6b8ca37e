"""The dialer's recovery rules without Asterisk: the outcome of a call whose channel
vanished while its events were lost, which bridges hold an agent talking, the cheap
channel listing of the watchdog, the order in which waiting calls get a free agent,
and a disposition for an inbound caller."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from hitcall_pbx.core.compliance import CallingWindow, CampaignMode
from hitcall_pbx.core.outcomes import Outcome, next_retry
from hitcall_pbx.core.retention import RetentionPolicy
from hitcall_pbx.core.states import AgentState
from hitcall_pbx.dialer.engine import Dialer, LiveCall, agent_bridges, call_outcome
from hitcall_pbx.dialer.models import Attempt, Campaign
from hitcall_pbx.errors import Conflict

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _campaign(cid: int = 1, priority: int = 0) -> Campaign:
    return Campaign(
        id=cid,
        name=f"c{cid}",
        mode=CampaignMode.PREDICTIVE,
        state="running",
        caller_id=None,
        ring_timeout_s=30,
        max_attempts=2,
        retry_delays={
            "busy": 600,
            "no_answer": 3600,
            "congestion": 900,
            "answered_machine": 7200,
            "abandoned": 3600,
            "cancelled": 0,
        },
        wrap_up_s=0,
        abandon_cap=0.03,
        info_message_sound=None,
        amd_enabled=False,
        record_calls=False,
        recording_announcement=None,
        window=CallingWindow(),
        priority=priority,
        preview_offer_timeout_s=30,
        max_lines_per_agent=2.0,
        retention=RetentionPolicy(),
    )


def _call(campaign: Campaign | None = None, **kw: Any) -> LiveCall:
    campaign = campaign or _campaign()
    attempt = Attempt(
        id=uuid.uuid4(),
        campaign_id=campaign.id,
        contact_id=7,
        attempt_no=1,
        number="+358401234567",
        caller_id="",
        agent_id=None,
        mode=campaign.mode,
        created_at=NOW,
        retention_until=NOW + timedelta(days=730),
    )
    return LiveCall(attempt=attempt, campaign=campaign, originated_at=NOW, **kw)


# ------------------------------------------------------------- outcomes ---
def test_a_call_vanished_unanswered_is_retried_not_failed():
    call = _call(state="ringing", ringing_at=NOW, vanished=True)
    outcome = call_outcome(call)
    assert outcome is Outcome.CONGESTION
    retry = next_retry(outcome, call.campaign.retry_delays, 1, call.campaign.max_attempts, NOW)
    assert retry == NOW + timedelta(seconds=900), "the campaign's congestion retry"


def test_without_the_vanished_mark_an_unknown_cause_stays_failed():
    assert call_outcome(_call(state="ringing")) is Outcome.FAILED
    assert call_outcome(_call(state="ringing", hangup_cause=17)) is Outcome.BUSY


def test_vanished_calls_that_were_answered_keep_their_answered_outcome():
    talking = _call(
        state="bridged", answered_at=NOW, bridged_at=NOW + timedelta(seconds=1), answer_to_bridge_ms=1000, vanished=True
    )
    assert call_outcome(talking) is Outcome.ANSWERED_HUMAN
    waiting = _call(state="answered", answered_at=NOW, vanished=True)
    assert call_outcome(waiting) is Outcome.ABANDONED
    cancelled = _call(cancelled=True, vanished=True)
    assert call_outcome(cancelled) is Outcome.CANCELLED


# -------------------------------------------------------------- bridges ---
def test_agent_bridges_name_the_customer_talking_with_each_logged_in_phone():
    live = {
        cid: SimpleNamespace(name=name)
        for cid, name in [
            ("phone-1", "PJSIP/agent1-0001"),
            ("cust-1", "Local/+358401@hitcall-outbound;1"),
            ("phone-2", "PJSIP/agent2-0002"),
            ("cust-3", "Local/+358403@hitcall-outbound;1"),
        ]
    }
    bridges = [
        SimpleNamespace(id="hitcall-agent-1", channels=["phone-1", "cust-1"]),
        SimpleNamespace(id="hitcall-agent-2", channels=["phone-2", "gone"]),
        SimpleNamespace(id="hitcall-agent-3", channels=["cust-3"]),  # no phone: not an agent's bridge now
        SimpleNamespace(id="hitcall-agent-x", channels=["phone-1"]),
        SimpleNamespace(id="other", channels=["phone-2"]),
    ]
    assert agent_bridges(bridges, live) == {1: (["phone-1"], ["cust-1"]), 2: (["phone-2"], [])}


# --------------------------------------------------------- agent side ---
class FakeSessions:
    def __init__(self) -> None:
        self.by_agent: dict[int, Any] = {}
        self.connected: list[tuple[int, str]] = []

    def on_transition(self, fn: Any) -> None:
        pass

    def on_dtmf(self, fn: Any) -> None:
        pass

    def connect(self, session: Any, attempt_id: str, campaign_id: int) -> None:
        self.connected.append((session.agent_id, attempt_id))

    def get(self, agent_id: int) -> Any:
        return self.by_agent[agent_id]


class FakeJournal:
    def __init__(self) -> None:
        self.dispositions: list[tuple[uuid.UUID, str]] = []

    def disposition(self, attempt_id: uuid.UUID, code: str) -> None:
        self.dispositions.append((attempt_id, code))


class FakeRest:
    async def add_channel(self, bridge_id: str, channel_id: str, **kw: Any) -> None:
        pass


def _dialer() -> tuple[Dialer, FakeSessions, FakeJournal]:
    sessions, journal = FakeSessions(), FakeJournal()
    ari = SimpleNamespace(rest=FakeRest(), app="hitcall", connected=asyncio.Event())
    dialer = Dialer(ari, None, sessions, None, None, journal=journal, watchdog_s=None)  # type: ignore[arg-type]
    return dialer, sessions, journal


async def test_a_ready_agent_takes_the_waiting_call_of_the_highest_priority_campaign_first():
    dialer, sessions, _ = _dialer()
    low, high = _campaign(1, priority=1), _campaign(2, priority=5)
    oldest_low = _call(low, state="answered", answered_at=NOW, answered_mono=1.0)
    high_new = _call(high, state="answered", answered_at=NOW, answered_mono=3.0)
    high_old = _call(high, state="answered", answered_at=NOW, answered_mono=2.0)
    for c in (oldest_low, high_new, high_old):
        dialer.calls[c.channel_id] = c
        dialer.waiting.append(c)
    agent = SimpleNamespace(agent_id=9, campaigns=frozenset({1, 2}), bridge_id="hitcall-agent-9")
    ready = SimpleNamespace(agent=SimpleNamespace(state=AgentState.READY))
    dialer._agent_changed(agent, ready)
    dialer._agent_changed(agent, ready)
    dialer._agent_changed(agent, ready)
    await dialer._tasks.wait()  # the bridge requests
    assert sessions.connected == [(9, high_old.channel_id), (9, high_new.channel_id), (9, oldest_low.channel_id)]


async def test_disposition_for_an_inbound_caller_is_a_clear_conflict():
    dialer, sessions, journal = _dialer()
    sessions.by_agent[4] = SimpleNamespace(agent_id=4, attempt_id="1732541234.55")
    with pytest.raises(Conflict) as err:
        await dialer.set_disposition(4, "sale")
    assert err.value.details == {"agent_id": 4} and journal.dispositions == []
    attempt = str(uuid.uuid4())
    sessions.by_agent[4].attempt_id = attempt
    await dialer.set_disposition(4, "sale")
    assert journal.dispositions == [(uuid.UUID(attempt), "sale")]
