from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitcall_pbx.core.states import (
    AGENT_TRANSITIONS,
    CALL_TRANSITIONS,
    Agent,
    AgentEffect,
    AgentEvent,
    AgentState,
    CallEvent,
    CallState,
    IllegalTransition,
    agent_tick,
    agent_transition,
    call_transition,
    new_call,
)
from hitcall_pbx.errors import Conflict, ValidationFailed

T0 = datetime(2024, 6, 5, 9, 0, tzinfo=UTC)


def s(n: float) -> datetime:
    return T0 + timedelta(seconds=n)


# =========================================================================== agents


def test_agent_shift() -> None:
    a = Agent()
    t = agent_transition(a, "login", s(0))
    assert t.agent.state is AgentState.READY and t.span is None and t.effects == ()
    t = agent_transition(t.agent, AgentEvent.RESERVE, s(10))
    assert t.agent.state == "reserved" and t.span is not None
    assert (t.span.state, t.span.seconds) == (AgentState.READY, 10)
    t = agent_transition(t.agent, "connect", s(12))
    assert t.agent.state == "on_call"
    t = agent_transition(t.agent, "hangup", s(72), wrap_s=15)
    assert t.agent.state == "wrap_up" and t.agent.wrap_until == s(87)
    assert t.effects == (AgentEffect.START_WRAP_TIMER,)
    assert t.span is not None and t.span.state == "on_call" and t.span.seconds == 60
    assert agent_tick(t.agent, s(80)) is None
    with pytest.raises(IllegalTransition):
        agent_transition(t.agent, "wrap_timeout", s(80))
    done = agent_tick(t.agent, s(87))
    assert done is not None and done.agent.state == "ready" and done.agent.wrap_until is None
    assert done.span is not None and done.span.seconds == 15
    t = agent_transition(done.agent, "pause", s(90), pause_code="lunch")
    assert t.agent.state == "paused" and t.agent.pause_code == "lunch"
    t = agent_transition(t.agent, "pause", s(100), pause_code="training")
    assert t.span is not None and t.span.pause_code == "lunch" and t.agent.pause_code == "training"
    t = agent_transition(t.agent, "unpause", s(200))
    assert t.agent.state == "ready" and t.agent.pause_code is None
    assert t.span is not None and t.span.pause_code == "training"
    t = agent_transition(t.agent, "logout", s(300))
    assert t.agent.state == "logged_out"


def test_wrap_done_early_and_zero_wrap() -> None:
    a = Agent(AgentState.ON_CALL, s(0))
    t = agent_transition(a, "hangup", s(5), wrap_s=0)
    assert agent_tick(t.agent, s(5)) is not None
    t2 = agent_transition(agent_transition(a, "hangup", s(5), wrap_s=30).agent, "wrap_done", s(6))
    assert t2.agent.state == "ready" and t2.effects == (AgentEffect.CANCEL_WRAP_TIMER,)


def test_logout_effects() -> None:
    assert agent_transition(Agent(AgentState.RESERVED, s(0)), "logout", s(1)).effects == (
        AgentEffect.RELEASE_RESERVATION,
    )
    assert agent_transition(Agent(AgentState.ON_CALL, s(0)), "logout", s(1)).effects == (AgentEffect.HANG_UP_CUSTOMER,)


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (AgentState.LOGGED_OUT, "reserve"),
        (AgentState.LOGGED_OUT, "logout"),
        (AgentState.READY, "connect"),
        (AgentState.READY, "login"),
        (AgentState.RESERVED, "pause"),
        (AgentState.ON_CALL, "pause"),
        (AgentState.ON_CALL, "reserve"),
        (AgentState.PAUSED, "reserve"),
        (AgentState.WRAP_UP, "connect"),
    ],
)
def test_illegal_agent_transitions(state: AgentState, event: str) -> None:
    with pytest.raises(IllegalTransition) as err:
        agent_transition(Agent(state, s(0)), event, s(1), pause_code="x")
    assert isinstance(err.value, Conflict) and err.value.status == 409
    assert err.value.code == "illegal_transition"
    assert err.value.details == {"machine": "agent", "state": state.value, "event": event}


@pytest.mark.parametrize(
    ("agent", "event", "kw", "field"),
    [
        (Agent(AgentState.READY, s(0)), "pause", {}, "pause_code"),
        (Agent(AgentState.READY, s(0)), "pause", {"pause_code": "  "}, "pause_code"),
        (Agent(AgentState.ON_CALL, s(0)), "hangup", {"wrap_s": -1}, "wrap_s"),
        (Agent(AgentState.READY, s(0)), "dance", {}, "event"),
    ],
)
def test_agent_bad_input(agent: Agent, event: str, kw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        agent_transition(agent, event, s(1), **kw)  # type: ignore[arg-type]
    assert err.value.details["field"] == field


def test_agent_naive_time_refused() -> None:
    with pytest.raises(ValidationFailed) as err:
        agent_transition(Agent(), "login", datetime(2024, 1, 1))
    assert err.value.details["field"] == "now"


def test_agent_out_of_order_time_is_clamped() -> None:
    t = agent_transition(Agent(AgentState.READY, s(10)), "reserve", s(9))
    assert t.agent.since == s(10) and t.span is not None and t.span.seconds == 0


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(list(AgentEvent)), st.floats(-2, 120, allow_nan=False)),
        max_size=40,
    )
)
def test_agent_machine_follows_table_and_time_is_contiguous(steps: list[tuple[AgentEvent, float]]) -> None:
    agent = Agent()
    clock = 0.0
    spans = []
    for event, dt in steps:
        clock += dt
        now = s(clock)
        entry = AGENT_TRANSITIONS.get((agent.state, event))
        due = not (event is AgentEvent.WRAP_TIMEOUT and agent.wrap_until and max(now, agent.since) < agent.wrap_until)
        if entry is None or not due:
            with pytest.raises(IllegalTransition):
                agent_transition(agent, event, now, pause_code="p", wrap_s=10)
            continue
        t = agent_transition(agent, event, now, pause_code="p", wrap_s=10)
        assert t.agent.state is entry[0] and t.effects == entry[1]
        assert (t.agent.pause_code is not None) == (t.agent.state is AgentState.PAUSED)
        assert (t.agent.wrap_until is not None) == (t.agent.state is AgentState.WRAP_UP)
        if agent.since is not None:
            assert t.span is not None
            assert t.span.started == agent.since and t.span.ended == t.agent.since
            assert t.span.state is agent.state and t.span.seconds >= 0
            spans.append(t.span)
        agent = t.agent
    for a, b in zip(spans, spans[1:]):
        assert a.ended == b.started


# =========================================================================== calls


def test_bridged_call_metrics() -> None:
    c = new_call("att-1", s(0))
    assert c.state is CallState.RESERVED
    c = call_transition(c, "originate", s(0.1))
    c = call_transition(c, "ring", s(1))
    c = call_transition(c, "answer", s(9))
    c = call_transition(c, "bridge", s(9.012))
    assert c.metrics is None
    c = call_transition(c, "end", s(69.012), cause=16)
    assert c.state == "ended" and c.hangup_cause == 16
    assert c.metrics is not None
    assert c.metrics.ring_s == pytest.approx(8)
    assert c.metrics.talk_s == pytest.approx(60)
    assert c.metrics.answer_to_bridge_ms == 12


def test_no_answer_metrics() -> None:
    c = call_transition(new_call("a", s(0)), "originate", s(1))
    c = call_transition(call_transition(c, "ring", s(2)), "end", s(27), cause=19)
    assert c.metrics is not None
    assert (c.metrics.ring_s, c.metrics.talk_s, c.metrics.answer_to_bridge_ms) == (25, 0, None)


def test_answer_without_ringing_and_abandon() -> None:
    c = call_transition(call_transition(new_call("a", s(0)), "originate", s(0)), "answer", s(5))
    c = call_transition(c, "end", s(12))
    assert c.metrics is not None
    assert c.ringing_at is None and c.metrics.ring_s == 5 and c.metrics.answer_to_bridge_ms is None


def test_end_before_originate() -> None:
    c = call_transition(new_call("a", s(0)), "end", s(1))
    assert c.metrics is not None and c.metrics.ring_s == 0 and c.originated_at is None


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ([], "ring"),
        ([], "answer"),
        ([], "bridge"),
        (["originate"], "bridge"),
        (["originate"], "originate"),
        (["originate", "ring"], "ring"),
        (["originate", "answer"], "ring"),
        (["originate", "answer", "bridge"], "answer"),
        (["end"], "end"),
        (["originate", "end"], "answer"),
    ],
)
def test_illegal_call_transitions(path: list[str], bad: str) -> None:
    c = new_call("a", s(0))
    for i, ev in enumerate(path):
        c = call_transition(c, ev, s(i + 1))
    with pytest.raises(IllegalTransition) as err:
        call_transition(c, bad, s(100))
    assert err.value.details["machine"] == "call"


@pytest.mark.parametrize(
    ("call_kw", "field"),
    [({"attempt_id": ""}, "attempt_id"), ({"now": datetime(2024, 1, 1)}, "now")],
)
def test_call_bad_input(call_kw: dict[str, object], field: str) -> None:
    kw: dict[str, object] = {"attempt_id": "a", "now": s(0)}
    kw.update(call_kw)
    with pytest.raises(ValidationFailed) as err:
        new_call(**kw)  # type: ignore[arg-type]
    assert err.value.details["field"] == field
    with pytest.raises(ValidationFailed) as err:
        call_transition(new_call("a", s(0)), "end", s(1), cause=-3)
    assert err.value.details["field"] == "cause"
    with pytest.raises(ValidationFailed) as err:
        call_transition(new_call("a", s(0)), "explode", s(1))
    assert err.value.details["field"] == "event"


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(list(CallEvent)), st.floats(-1, 60, allow_nan=False)),
        max_size=12,
    )
)
def test_call_paths_end_with_consistent_timestamps(steps: list[tuple[CallEvent, float]]) -> None:
    call = new_call("a", s(0))
    clock = 0.0
    for event, dt in steps:
        clock += dt
        target = CALL_TRANSITIONS.get((call.state, event))
        if target is None:
            with pytest.raises(IllegalTransition):
                call_transition(call, event, s(clock))
            continue
        call = call_transition(call, event, s(clock))
        assert call.state is target
    if call.state is not CallState.ENDED:
        call = call_transition(call, "end", s(clock + 1))
    stamps = [call.created_at, call.originated_at, call.ringing_at, call.answered_at, call.bridged_at, call.ended_at]
    present = [x for x in stamps if x is not None]
    assert present == sorted(present)
    assert call.ended_at is not None and call.ended_at == max(present)
    if call.bridged_at is not None:
        assert call.answered_at is not None
    if call.answered_at is not None:
        assert call.originated_at is not None
    m = call.metrics
    assert m is not None and m.ring_s >= 0 and m.talk_s >= 0
    total = (call.ended_at - call.created_at).total_seconds()
    assert m.ring_s + m.talk_s <= total + 1e-6
    assert (m.answer_to_bridge_ms is None) == (call.bridged_at is None)
    if m.answer_to_bridge_ms is not None:
        assert m.answer_to_bridge_ms >= 0
    with pytest.raises(IllegalTransition):
        call_transition(call, "end", s(clock + 2))
