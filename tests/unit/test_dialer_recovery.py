"""The dialer's recovery rules without Asterisk: the outcome of a call whose channel
vanished while its events were lost, which bridges hold an agent talking, the cheap
channel listing of the watchdog, the order in which waiting calls get a free agent,
and a disposition for an inbound caller."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from hitcall_pbx.core.calls import CallEvent, call_transition, new_call
from hitcall_pbx.core.outcomes import Outcome, next_retry
from hitcall_pbx.core.states import AgentState
from hitcall_pbx.dialer.calls import LiveCall, agent_bridges
from hitcall_pbx.dialer.engine import Dialer
from hitcall_pbx.dialer.models import Campaign
from hitcall_pbx.errors import Conflict
from tests.unit.campaigns import make_attempt, make_campaign

from ..ari_fake import FakeAri

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _campaign(cid: int = 1, priority: int = 0) -> Campaign:
    return make_campaign(cid, priority=priority)


def _call(campaign: Campaign | None = None, *path: CallEvent, answered_mono: float | None = None) -> LiveCall:
    """A live call taken through `path` (after originate) by the core lifecycle."""
    campaign = campaign or _campaign()
    attempt = make_attempt(campaign, NOW)
    call = LiveCall.placed(attempt, campaign)
    call.answered_mono = answered_mono
    for i, event in enumerate((CallEvent.ORIGINATE, *path)):
        call.apply(event, NOW + timedelta(seconds=i * 0.5))
    return call


def _end(call: LiveCall, **kw: Any) -> Outcome:
    ended = call.apply(CallEvent.END, NOW + timedelta(seconds=30), **kw)
    assert ended.outcome is not None
    return ended.outcome


# ------------------------------------------------------------- outcomes ---
def test_a_call_vanished_unanswered_is_retried_not_failed():
    call = _call(None, CallEvent.RING)
    outcome = _end(call, vanished=True)
    assert outcome is Outcome.CONGESTION
    retry = next_retry(outcome, call.campaign.retry_delays, 1, call.campaign.max_attempts, NOW)
    assert retry == NOW + timedelta(seconds=900), "the campaign's congestion retry"


def test_without_the_vanished_mark_an_unknown_cause_stays_failed():
    assert _end(_call(None, CallEvent.RING)) is Outcome.FAILED
    assert _end(_call(None, CallEvent.RING), cause=17) is Outcome.BUSY


def test_vanished_calls_that_were_answered_keep_their_answered_outcome():
    talking = _call(None, CallEvent.ANSWER, CallEvent.BRIDGE)
    assert _end(talking, vanished=True) is Outcome.ANSWERED_HUMAN
    waiting = _call(None, CallEvent.ANSWER)
    assert _end(waiting, vanished=True) is Outcome.ABANDONED
    cancelled = LiveCall.placed(_call().attempt, _campaign())
    assert _end(cancelled, vanished=True, cancelled=True) is Outcome.CANCELLED


def test_the_live_call_changes_only_through_the_core_lifecycle():
    call = _call(None, CallEvent.RING)
    assert call.fsm == call_transition(
        call_transition(new_call(str(call.attempt.id), NOW), "originate", NOW), "ring", NOW + timedelta(seconds=0.5)
    )
    with pytest.raises(AttributeError):
        call.answered_at = NOW  # type: ignore[misc]  # read-only: only the core transition sets it


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

    def on_wrap_end(self, fn: Any) -> None:
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


def _dialer() -> tuple[Dialer, FakeSessions, FakeJournal]:
    sessions, journal = FakeSessions(), FakeJournal()
    # No database, hopper or CDR sink: these tests drive the agent side only.
    dialer = Dialer(FakeAri(), None, sessions, None, None, journal=journal, watchdog_s=None)  # type: ignore[arg-type]  # None for the pool, hopper and CDR sink
    return dialer, sessions, journal


async def test_a_ready_agent_takes_the_waiting_call_of_the_highest_priority_campaign_first():
    dialer, sessions, _ = _dialer()
    low, high = _campaign(1, priority=1), _campaign(2, priority=5)
    oldest_low = _call(low, CallEvent.ANSWER, answered_mono=1.0)
    high_new = _call(high, CallEvent.ANSWER, answered_mono=3.0)
    high_old = _call(high, CallEvent.ANSWER, answered_mono=2.0)
    for c in (oldest_low, high_new, high_old):
        dialer.calls[c.channel_id] = c
        dialer.waiting.append(c)
    agent = SimpleNamespace(agent_id=9, campaigns=frozenset({1, 2}), bridge_id="hitcall-agent-9", leaving=False)
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
