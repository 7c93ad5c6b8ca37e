from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitcall_pbx.core.outcomes import (
    CAUSE_OUTCOMES,
    DEFAULT_RETRY_DELAYS,
    CallFacts,
    ContactStatus,
    Outcome,
    classify_outcome,
    contact_after,
    counts_as_abandon,
    counts_as_connect,
    inbound_outcome,
    is_invalid_number_cause,
    menu_outcome,
    next_retry,
    outcome_for_cause,
)
from hitcall_pbx.errors import ValidationFailed

NOW = datetime(2024, 6, 5, 9, 0, tzinfo=UTC)


def test_outcome_values_are_stable() -> None:
    assert [o.value for o in Outcome] == [
        "answered_human",
        "answered_machine",
        "busy",
        "no_answer",
        "congestion",
        "failed",
        "abandoned",
        "cancelled",
        "no_agent",
        "self_service",
        "untracked",
    ]


@pytest.mark.parametrize(
    ("cause", "outcome"),
    [
        (17, "busy"),
        (18, "no_answer"),
        (19, "no_answer"),
        (20, "no_answer"),
        (21, "no_answer"),
        (16, "no_answer"),
        (1, "failed"),
        (3, "failed"),
        (28, "failed"),
        (34, "congestion"),
        (38, "congestion"),
        (41, "congestion"),
        (42, "congestion"),
        (0, "congestion"),
        (None, "failed"),
        (127, "failed"),
        (999, "failed"),
    ],
)
def test_unanswered_by_cause(cause: int | None, outcome: str) -> None:
    assert outcome_for_cause(cause) == outcome
    assert classify_outcome(CallFacts(answered=False, hangup_cause=cause)) == outcome


def test_invalid_number_causes() -> None:
    assert is_invalid_number_cause(1) and is_invalid_number_cause(28)
    assert not is_invalid_number_cause(17) and not is_invalid_number_cause(None)


def test_answered_and_bridged_in_time_is_human() -> None:
    f = CallFacts(answered=True, bridged=True, answer_to_bridge_ms=12, hangup_cause=16)
    assert classify_outcome(f) is Outcome.ANSWERED_HUMAN
    assert classify_outcome(CallFacts(answered=True, bridged=True, answer_to_bridge_ms=2000)) == "answered_human"


@pytest.mark.parametrize(
    "facts",
    [
        CallFacts(answered=True, bridged=False, hangup_cause=16),  # no agent: information message
        CallFacts(answered=True, bridged=True, answer_to_bridge_ms=2001),  # bridged too late
        CallFacts(answered=True, amd_status="NOTSURE"),
        CallFacts(answered=True, amd_status="hangup"),  # customer gone during AMD
        CallFacts(answered=True, cancelled=True),  # service hung up an answered call
    ],
)
def test_answered_without_agent_in_time_is_abandoned(facts: CallFacts) -> None:
    assert classify_outcome(facts) is Outcome.ABANDONED
    assert counts_as_abandon(classify_outcome(facts))


def test_machine() -> None:
    assert classify_outcome(CallFacts(answered=True, amd_status="MACHINE")) == "answered_machine"
    # a machine is never a connect, even when bridged
    out = classify_outcome(CallFacts(answered=True, amd_status="MACHINE", bridged=True, answer_to_bridge_ms=5))
    assert out == "answered_machine" and not counts_as_connect(out) and not counts_as_abandon(out)


def test_cancelled_only_before_answer() -> None:
    assert classify_outcome(CallFacts(answered=False, cancelled=True, hangup_cause=16)) == "cancelled"


def test_connect_accounting() -> None:
    assert counts_as_connect("answered_human") and not counts_as_connect("abandoned")


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"answered": False, "bridged": True}, "bridged"),
        ({"answered": True, "answer_to_bridge_ms": -1}, "answer_to_bridge_ms"),
        ({"answered": True, "amd_status": "DOG"}, "amd_status"),
        ({"answered": True, "bridge_limit_ms": 0}, "bridge_limit_ms"),
    ],
)
def test_facts_validation(kw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        CallFacts(**kw)  # type: ignore[arg-type]  # deliberately wrong argument types: the test checks they are refused
    assert err.value.details["field"] == field


@settings(max_examples=300, deadline=None)
@given(
    answered=st.booleans(),
    cause=st.one_of(st.none(), st.integers(0, 130)),
    bridged=st.booleans(),
    ms=st.one_of(st.none(), st.integers(0, 10_000)),
    amd=st.sampled_from([None, "HUMAN", "MACHINE", "NOTSURE", "HANGUP"]),
    cancelled=st.booleans(),
)
def test_classification_is_total_and_consistent(
    answered: bool, cause: int | None, bridged: bool, ms: int | None, amd: str | None, cancelled: bool
) -> None:
    if bridged and not answered:
        bridged = False
    out = classify_outcome(
        CallFacts(
            answered=answered,
            hangup_cause=cause,
            bridged=bridged,
            answer_to_bridge_ms=ms,
            amd_status=amd,
            cancelled=cancelled,
        )
    )
    assert isinstance(out, Outcome)
    answered_outcomes = {Outcome.ANSWERED_HUMAN, Outcome.ANSWERED_MACHINE, Outcome.ABANDONED}
    assert (out in answered_outcomes) == answered
    if out is Outcome.ANSWERED_HUMAN:
        assert bridged and (ms is None or ms <= 2000) and amd != "MACHINE"
    if not answered and not cancelled:
        assert out == CAUSE_OUTCOMES.get(cause, Outcome.FAILED)  # type: ignore[arg-type]  # cause may be None: .get then gives the default, as the code does


# --------------------------------------------------------------------------- retries


def test_retry_delays_default() -> None:
    assert next_retry("busy", None, 1, 3, NOW) == NOW + timedelta(minutes=10)
    assert next_retry(Outcome.NO_ANSWER, None, 1, 3, NOW) == NOW + timedelta(hours=2)
    assert next_retry("cancelled", None, 0, 3, NOW) == NOW


def test_final_outcomes() -> None:
    assert next_retry("answered_human", None, 1, 3, NOW) is None
    assert next_retry("failed", None, 1, 3, NOW) is None
    assert next_retry("busy", None, 3, 3, NOW) is None
    assert next_retry("busy", None, 4, 3, NOW) is None


def test_campaign_delays() -> None:
    delays = {"busy": 60, Outcome.ANSWERED_MACHINE: timedelta(days=1), "failed": 3600.5}
    assert next_retry("busy", delays, 1, 5, NOW) == NOW + timedelta(seconds=60)
    assert next_retry("answered_machine", delays, 1, 5, NOW) == NOW + timedelta(days=1)
    assert next_retry("failed", delays, 1, 5, NOW) == NOW + timedelta(seconds=3600.5)
    assert next_retry("no_answer", delays, 1, 5, NOW) is None  # no delay configured: final


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("busy", {"busy": -1}, 1, 3, NOW), "retry_delays.busy"),
        (("busy", {"nonsense": 5}, 1, 3, NOW), "retry_delays.nonsense"),
        (("busy", {"busy": "soon"}, 1, 3, NOW), "retry_delays.busy"),
        (("bogus", None, 1, 3, NOW), "outcome"),
        (("busy", None, -1, 3, NOW), "attempts"),
        (("busy", None, 1, 0, NOW), "max_attempts"),
        (("busy", None, 1, 3, datetime(2024, 6, 5)), "now"),
    ],
)
def test_retry_validation(args: tuple[object, ...], field: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        next_retry(*args)  # type: ignore[arg-type]  # deliberately wrong argument types: the test checks they are refused
    assert err.value.details["field"] == field


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(Outcome)), st.integers(0, 10), st.integers(1, 10))
def test_retry_never_before_now_and_respects_max(outcome: Outcome, attempts: int, max_attempts: int) -> None:
    r = next_retry(outcome, DEFAULT_RETRY_DELAYS, attempts, max_attempts, NOW)
    final = (Outcome.ANSWERED_HUMAN, Outcome.FAILED, Outcome.NO_AGENT, Outcome.SELF_SERVICE, Outcome.UNTRACKED)
    if attempts >= max_attempts or outcome in final:
        assert r is None
    else:
        assert r is not None and r >= NOW


# ------------------------------------------------------------ contact after an attempt
_DELAYS = {"busy": 600, "no_answer": 3600, "abandoned": 3600, "congestion": 900, "cancelled": 0}
_T = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("outcome", "attempt_no", "status", "retry_s"),
    [
        (Outcome.ANSWERED_HUMAN, 1, ContactStatus.DONE, None),
        (Outcome.BUSY, 1, ContactStatus.RETRY, 600),
        (Outcome.BUSY, 3, ContactStatus.FAILED, None),  # attempts used up
        (Outcome.ANSWERED_MACHINE, 1, ContactStatus.DONE, None),  # no delay for machines here: final, not failed
        (Outcome.ABANDONED, 2, ContactStatus.RETRY, 3600),
        (Outcome.CANCELLED, 3, ContactStatus.RETRY, None),  # never dialled to the end: back at once
    ],
)
def test_contact_after(outcome: Outcome, attempt_no: int, status: ContactStatus, retry_s: int | None) -> None:
    update = contact_after(outcome, retry_delays=_DELAYS, attempt_no=attempt_no, max_attempts=3, ended_at=_T)
    assert update.status is status
    assert update.retry_at == (None if retry_s is None else _T + timedelta(seconds=retry_s))
    assert update.never_reached is (outcome is Outcome.CANCELLED)


def test_contact_after_a_vanished_call_keeps_its_callback() -> None:
    update = contact_after(
        Outcome.CONGESTION, retry_delays=_DELAYS, attempt_no=1, max_attempts=3, ended_at=_T, vanished_unanswered=True
    )
    assert update.status is ContactStatus.RETRY and update.never_reached


def test_inbound_outcomes() -> None:
    """A return call put through to an agent is answered; one the service ended first is
    no_agent; one the caller left before an agent took it is abandoned (the bridge wins)."""
    assert inbound_outcome(bridged=True, service_ended=False) is Outcome.ANSWERED_HUMAN
    assert inbound_outcome(bridged=True, service_ended=True) is Outcome.ANSWERED_HUMAN
    assert inbound_outcome(bridged=False, service_ended=True) is Outcome.NO_AGENT
    assert inbound_outcome(bridged=False, service_ended=False) is Outcome.ABANDONED
    assert not counts_as_abandon(Outcome.NO_AGENT) and not counts_as_connect(Outcome.NO_AGENT)


def test_menu_outcomes() -> None:
    """A return call that ends in the FastAGI menu: handed to the router (key 2), the
    router writes its CDR (None); asked for an agent but hung up before the handover,
    abandoned; else the menu served the caller (opted out, or listened and left)."""
    assert menu_outcome(asked_for_agent=True, handed_to_router=True) is None
    assert menu_outcome(asked_for_agent=True, handed_to_router=False) is Outcome.ABANDONED
    assert menu_outcome(asked_for_agent=False, handed_to_router=False) is Outcome.SELF_SERVICE
    assert not counts_as_abandon(Outcome.SELF_SERVICE) and not counts_as_connect(Outcome.SELF_SERVICE)
    assert next_retry(Outcome.SELF_SERVICE, {"self_service": 60}, 1, 5, NOW) is None  # inbound only: final


def test_a_lost_last_attempt_is_retried_once_more() -> None:
    lost = contact_after(
        Outcome.CONGESTION, retry_delays=_DELAYS, attempt_no=3, max_attempts=3, ended_at=_T, vanished_unanswered=True
    )
    assert lost.status is ContactStatus.RETRY and lost.lost
    assert lost.retry_at == _T + timedelta(seconds=900)
    # Its extra attempt is counted like any other; a second loss is not forgiven.
    again = contact_after(
        Outcome.CONGESTION,
        retry_delays=_DELAYS,
        attempt_no=4,
        max_attempts=3,
        ended_at=_T,
        vanished_unanswered=True,
        lost_before=1,
    )
    assert again.status is ContactStatus.FAILED and not again.lost
    busy = contact_after(Outcome.BUSY, retry_delays=_DELAYS, attempt_no=3, max_attempts=3, ended_at=_T, lost_before=1)
    assert busy.status is ContactStatus.RETRY, "the lost attempt earlier does not count"
