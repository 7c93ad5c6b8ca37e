"""The transfer rules (core.transfer): targets, the state machine's effects, call legs."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitcall_pbx.core.calls import IllegalTransition
from hitcall_pbx.core.transfer import (
    TRANSFER_TRANSITIONS,
    LegRole,
    Legs,
    Target,
    TargetKind,
    TransferEffect,
    TransferEvent,
    TransferKind,
    TransferResult,
    TransferState,
    parse_target,
    start_transfer,
    transfer_transition,
)
from hitcall_pbx.errors import ValidationFailed

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
AGENT = Target(TargetKind.AGENT, agent_id=2)
NUMBER = Target(TargetKind.NUMBER, number="+358401000001")
E = TransferEffect


def start(kind: str, target: Target):
    return start_transfer(
        kind, target, attempt_id="a", from_agent_id=1, to_agent_id=None if target.external else 2, now=T0
    )


# ---------------------------------------------------------------- targets ---
def test_target_forms():
    assert parse_target({"agent_id": 5}) == Target(TargetKind.AGENT, agent_id=5)
    assert parse_target({"campaign_id": 3}) == Target(TargetKind.CAMPAIGN, campaign_id=3)
    # a national number is read as Finnish and normalised to E.164
    assert parse_target({"number": "040 1234567"}).number == "+358401234567"
    assert parse_target({"number": "+358401234567"}).describe() == "number:+358401234567"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "target"),
        ({"agent_id": 1, "number": "+358401234567"}, "target"),
        ({"agent_id": 0}, "target.agent_id"),
        ({"agent_id": True}, "target.agent_id"),
        ({"campaign_id": "3"}, "target.campaign_id"),
        ({"number": "12"}, "target.number"),
        ({"number": "+3584012345678901234"}, "target.number"),
        ({"number": "not a number"}, "target.number"),
        ({"number": "+358401234567", "extra": 1}, "target.extra"),
    ],
)
def test_bad_targets_name_the_field(data, field):
    with pytest.raises(ValidationFailed) as err:
        parse_target(data)
    assert err.value.details["field"] == field


# ---------------------------------------------------------- state machine ---
def test_blind_to_agent_is_done_at_once():
    step = start("blind", AGENT)
    assert step.transfer.state is TransferState.COMPLETED
    assert step.effects == (E.HAND_OVER, E.AGENT_LEAVES)
    assert step.transfer.result is TransferResult.COMPLETED and step.transfer.ended_at == T0


def test_blind_to_number_agent_leaves_while_it_rings():
    step = start("blind", NUMBER)
    assert step.transfer.state is TransferState.DIALING
    assert step.effects == (E.HOLD_CUSTOMER, E.DIAL_TARGET, E.AGENT_LEAVES)
    ok = transfer_transition(step.transfer, "target_answered", T0 + timedelta(seconds=3))
    assert ok.transfer.state is TransferState.COMPLETED and ok.effects == (E.HAND_OVER,)
    busy = transfer_transition(step.transfer, TransferEvent.TARGET_FAILED, T0, cause="busy")
    # nobody is left to take the customer: the call ends, with the cause recorded
    assert busy.effects == (E.END_CALL,)
    assert busy.transfer.result is TransferResult.FAILED and busy.transfer.cause == "busy"
    with pytest.raises(IllegalTransition):
        transfer_transition(step.transfer, TransferEvent.CANCEL, T0)  # the agent has left


def test_attended_complete_cancel_conference():
    step = start("attended", AGENT)
    assert step.transfer.state is TransferState.CONSULTING
    assert step.effects == (E.HOLD_CUSTOMER, E.CONSULT)
    done = transfer_transition(step.transfer, "complete", T0)
    assert done.effects == (E.HAND_OVER, E.AGENT_LEAVES)
    back = transfer_transition(step.transfer, "cancel", T0)
    assert back.effects == (E.DROP_TARGET, E.UNHOLD_CUSTOMER) and back.transfer.result is TransferResult.CANCELLED
    conf = transfer_transition(step.transfer, "conference", T0)
    assert conf.transfer.state is TransferState.CONFERENCE and conf.effects == (E.CONFERENCE,)
    assert conf.transfer.result is TransferResult.CONFERENCE
    # from the conference: the agent leaves (completed) or the target leaves (cancelled)
    assert transfer_transition(conf.transfer, "complete", T0).transfer.result is TransferResult.COMPLETED
    left = transfer_transition(conf.transfer, "target_failed", T0, cause="refused")
    assert left.transfer.state is TransferState.CANCELLED and left.effects == (E.DROP_TARGET,)
    ended = transfer_transition(conf.transfer, "customer_gone", T0)
    assert ended.transfer.result is TransferResult.CONFERENCE


def test_attended_failures_give_the_customer_back():
    ringing = start("attended", NUMBER).transfer
    failed = transfer_transition(ringing, "target_failed", T0, cause="no answer")
    assert failed.effects == (E.UNHOLD_CUSTOMER,) and failed.transfer.cause == "no answer"
    consulting = transfer_transition(ringing, "target_answered", T0).transfer
    gone = transfer_transition(consulting, "target_failed", T0, cause="hung up")
    assert gone.effects == (E.DROP_TARGET, E.UNHOLD_CUSTOMER)
    with pytest.raises(IllegalTransition):
        transfer_transition(ringing, "complete", T0)  # nobody answered yet


def test_agent_hanging_up_completes_or_goes_blind():
    consulting = start("attended", AGENT).transfer
    assert transfer_transition(consulting, "agent_gone", T0).transfer.state is TransferState.COMPLETED
    ringing = start("attended", NUMBER).transfer
    blind = transfer_transition(ringing, "agent_gone", T0)
    assert blind.transfer.kind is TransferKind.BLIND and blind.transfer.state is TransferState.DIALING
    assert blind.effects == (E.AGENT_LEAVES,)


def test_start_refuses_inconsistent_targets():
    with pytest.raises(ValidationFailed):
        start_transfer("blind", AGENT, attempt_id="a", from_agent_id=1, to_agent_id=None, now=T0)
    with pytest.raises(ValidationFailed):
        start_transfer("blind", AGENT, attempt_id="a", from_agent_id=2, to_agent_id=2, now=T0)
    with pytest.raises(ValueError):
        start_transfer("sideways", AGENT, attempt_id="a", from_agent_id=1, to_agent_id=2, now=T0)


EVENTS = st.lists(st.sampled_from(list(TransferEvent)), max_size=8)


@given(kind=st.sampled_from(list(TransferKind)), external=st.booleans(), events=EVENTS)
def test_any_event_sequence_keeps_the_invariants(kind, external, events):
    """Whatever happens: a final transfer accepts nothing more, has its end time and a
    result; a customer is never both handed over and taken back by the same step; the
    agent leaves at most once; the call is ended only by a blind transfer's failure."""
    step = start(kind.value, NUMBER if external else AGENT)
    t = step.transfer
    left = step.effects.count(E.AGENT_LEAVES)
    now = T0
    for ev in events:
        now += timedelta(seconds=1)
        try:
            step = transfer_transition(t, ev, now, cause="x")
        except IllegalTransition:
            assert t.state.final or (t.kind, t.state, ev) not in TRANSFER_TRANSITIONS
            continue
        assert not t.state.final
        assert not {E.HAND_OVER, E.UNHOLD_CUSTOMER} <= set(step.effects)
        if E.END_CALL in step.effects:
            assert step.transfer.kind is TransferKind.BLIND and step.transfer.state is TransferState.FAILED
        left += step.effects.count(E.AGENT_LEAVES)
        t = step.transfer
        if t.state.final:
            assert t.ended_at is not None and t.ended_at >= t.started_at and t.result is not None
    assert left <= 1


# --------------------------------------------------------------------- legs ---
def test_legs_count_each_agents_time():
    legs = Legs().join(LegRole.AGENT, T0, agent_id=1)
    legs = legs.join(LegRole.CONSULT, T0 + timedelta(seconds=10), agent_id=2)
    legs = legs.join(LegRole.TARGET, T0 + timedelta(seconds=30), agent_id=2)  # ends its consult leg
    legs = legs.leave(T0 + timedelta(seconds=31), agent_id=1)
    before = legs
    legs = legs.close_all(T0 + timedelta(seconds=90))
    assert legs.talk_by_agent() == {1: 31.0, 2: 80.0}
    assert [leg.role for leg in legs.items] == [LegRole.AGENT, LegRole.CONSULT, LegRole.TARGET]
    assert [leg.seq for leg in legs.closed_since(before)] == [2]
    with pytest.raises(ValidationFailed):
        legs.join(LegRole.TARGET, T0)


@given(st.lists(st.tuples(st.sampled_from([1, 2, None]), st.integers(0, 100), st.booleans()), max_size=20))
def test_legs_never_overlap_for_one_party(moves):
    legs = Legs()
    now = T0
    for agent, step_s, joins in moves:
        now += timedelta(seconds=step_s)
        number = "+358401000001" if agent is None else None
        if joins:
            legs = legs.join(LegRole.TARGET, now, agent_id=agent, number=number)
        else:
            legs = legs.leave(now, agent_id=agent, number=number)
    legs = legs.close_all(now)
    for party in {leg.party for leg in legs.items}:
        mine = sorted((leg for leg in legs.items if leg.party == party), key=lambda leg: leg.seq)
        for a, b in itertools.pairwise(mine):
            assert a.left is not None and a.left <= b.joined
    assert all(leg.seconds >= 0 for leg in legs.items)
