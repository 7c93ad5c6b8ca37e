from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitcall_pbx.core.states import (
    AGENT_TRANSITIONS,
    Agent,
    AgentEffect,
    AgentEvent,
    AgentState,
    IllegalTransition,
    agent_tick,
    agent_transition,
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
        agent_transition(agent, event, s(1), **kw)  # type: ignore[arg-type]  # deliberately wrong argument types: the test checks they are refused
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
    for a, b in itertools.pairwise(spans):
        assert a.ended == b.started
