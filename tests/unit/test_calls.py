"""The call lifecycle (core.calls): transitions, timestamps, outcome, abandon flag,
metrics, adoption and restart recovery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitcall_pbx.core.calls import (
    CALL_TRANSITIONS,
    Call,
    CallEvent,
    CallState,
    IllegalTransition,
    adopted_call,
    call_transition,
    new_call,
    recovered_outcome,
)
from hitcall_pbx.core.outcomes import Outcome
from hitcall_pbx.errors import ValidationFailed

T0 = datetime(2024, 6, 5, 9, 0, tzinfo=UTC)


def s(n: float) -> datetime:
    return T0 + timedelta(seconds=n)


def _path(*events: str, start: float = 0.0, **end_kw: Any) -> Call:
    c = new_call("a", s(start))
    for i, ev in enumerate(events):
        c = call_transition(c, ev, s(start + i + 1), **(end_kw if ev == "end" else {}))
    return c


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
    assert c.metrics.ring_s == pytest.approx(8.9)  # from originate to answer
    assert c.metrics.talk_s == pytest.approx(60)
    assert c.metrics.answer_to_bridge_ms == 12


def test_no_answer_metrics() -> None:
    c = call_transition(new_call("a", s(0)), "originate", s(1))
    c = call_transition(call_transition(c, "ring", s(2)), "end", s(27), cause=19)
    assert c.metrics is not None
    assert (c.metrics.ring_s, c.metrics.talk_s, c.metrics.answer_to_bridge_ms) == (26, 0, None)


def test_answer_without_ringing_and_abandon() -> None:
    c = call_transition(call_transition(new_call("a", s(0)), "originate", s(0)), "answer", s(5))
    c = call_transition(c, "end", s(12))
    assert c.metrics is not None
    assert c.ringing_at == c.originated_at and c.metrics.ring_s == 5 and c.metrics.answer_to_bridge_ms is None


def test_end_before_originate() -> None:
    c = call_transition(new_call("a", s(0)), "end", s(1), cancelled=True)
    assert c.metrics is not None and c.metrics.ring_s == 1 and c.originated_at is None
    assert c.outcome is Outcome.CANCELLED


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ([], "ring"),
        ([], "answer"),
        ([], "bridge"),
        ([], "abandon"),
        (["originate"], "amd"),
        (["originate", "answer", "bridge"], "abandon"),
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
        new_call(**kw)  # type: ignore[arg-type]  # deliberately wrong types
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
    assert call.outcome is not None
    if call.outcome is Outcome.ABANDONED:
        assert call.abandoned
    if call.bridged_at is None and call.answered_at is not None and call.amd_status is None:
        assert call.outcome is Outcome.ABANDONED and call.abandoned
    m = call.metrics
    assert m is not None and m.ring_s >= 0 and m.talk_s >= 0
    total = (call.ended_at - call.created_at).total_seconds()
    assert m.ring_s + m.talk_s <= total + 1e-6
    assert (m.answer_to_bridge_ms is None) == (call.bridged_at is None)
    if m.answer_to_bridge_ms is not None:
        assert m.answer_to_bridge_ms >= 0
    with pytest.raises(IllegalTransition):
        call_transition(call, "end", s(clock + 2))


def test_outcomes_at_the_end() -> None:
    answered = ("originate", "ring", "answer")
    assert _path(*answered, "bridge", "end").outcome is Outcome.ANSWERED_HUMAN
    busy = _path("originate", "ring", "end", cause=17)
    assert busy.outcome is Outcome.BUSY and not busy.abandoned
    # Answered, no agent in time: abandoned, flagged once.
    c = call_transition(_path(*answered), "abandon", s(10))
    assert c.abandoned and c.state is CallState.ANSWERED
    c = call_transition(c, "end", s(20))
    assert c.outcome is Outcome.ABANDONED and c.abandoned
    # Bridged after the 2 s limit: abandoned too.
    late = call_transition(_path(*answered), "bridge", s(5.5))
    assert late.answer_to_bridge_ms == 2500
    assert call_transition(late, "end", s(9)).outcome is Outcome.ABANDONED


def test_a_vanished_call_is_congestion_unless_answered() -> None:
    gone = _path("originate", "ring", "end", vanished=True)
    assert gone.outcome is Outcome.CONGESTION and gone.vanished
    gone_answered = _path("originate", "answer", "end", vanished=True)
    assert gone_answered.outcome is Outcome.ABANDONED
    cancelled = _path("originate", "end", vanished=True, cancelled=True)
    assert cancelled.outcome is Outcome.CANCELLED


def test_amd_machine_and_undecided() -> None:
    c = call_transition(_path("originate", "answer"), "amd", s(4), amd_status="MACHINE", amd_cause="MAXWORDS")
    assert (c.amd_status, c.amd_cause, c.state) == ("MACHINE", "MAXWORDS", CallState.ANSWERED)
    assert call_transition(c, "end", s(5)).outcome is Outcome.ANSWERED_MACHINE
    unsure = call_transition(_path("originate", "answer"), "amd", s(4), amd_status="NOTSURE")
    assert call_transition(unsure, "end", s(5)).outcome is Outcome.ABANDONED


def test_cause_text_is_kept_or_replaced() -> None:
    c = call_transition(new_call("a", s(0)), "end", s(1), cause_txt="originate failed: 500")
    assert c.hangup_cause_txt == "originate failed: 500" and c.outcome is Outcome.FAILED


def test_adopted_call_finishes_with_its_whole_talk_time() -> None:
    c = adopted_call(
        "a",
        created_at=s(0),
        originated_at=s(1),
        ringing_at=s(2),
        answered_at=s(10),
        bridged_at=s(10.01),
        answer_to_bridge_ms=10,
    )
    assert c.state is CallState.BRIDGED
    c = call_transition(c, "end", s(100))
    assert c.outcome is Outcome.ANSWERED_HUMAN
    assert c.metrics is not None and c.metrics.talk_s == pytest.approx(89.99) and c.metrics.ring_s == 9
    with pytest.raises(ValidationFailed):
        adopted_call(
            "a",
            created_at=datetime(2024, 1, 1),
            originated_at=None,
            ringing_at=None,
            answered_at=s(1),
            bridged_at=s(2),
            answer_to_bridge_ms=None,
        )


@pytest.mark.parametrize(
    ("answered", "bridged", "outcome"),
    [(False, False, Outcome.CANCELLED), (True, False, Outcome.ABANDONED), (True, True, Outcome.ANSWERED_HUMAN)],
)
def test_recovered_outcome(answered: bool, bridged: bool, outcome: Outcome) -> None:
    assert recovered_outcome(answered=answered, bridged=bridged) is outcome
