from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitcall_pbx.core.retention import (
    RetentionPolicy,
    add_months,
    cdr_deadline,
    hold_deadline,
    max_hold_deadline,
    minimum_deadline,
    purge_eligible,
    recompute_deadline,
    recording_deadline,
    release_hold,
)
from hitcall_pbx.errors import ValidationFailed


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


CALL = utc(2024, 8, 31, 14, 30)


# --------------------------------------------------------------------------- months


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        (utc(2024, 8, 31, 14, 30), 6, utc(2025, 2, 28, 14, 30)),
        (utc(2023, 8, 31), 6, utc(2024, 2, 29)),  # leap year
        (utc(2024, 1, 31), 1, utc(2024, 2, 29)),
        (utc(2024, 3, 31), 2, utc(2024, 5, 31)),
        (utc(2024, 12, 15), 1, utc(2025, 1, 15)),
        (utc(2024, 5, 10), 24, utc(2026, 5, 10)),
        (utc(2024, 5, 10), 0, utc(2024, 5, 10)),
    ],
)
def test_add_months(start: datetime, months: int, end: datetime) -> None:
    assert add_months(start, months) == end


def test_results_are_utc_from_any_offset() -> None:
    helsinki = datetime(2024, 9, 1, 0, 30, tzinfo=ZoneInfo("Europe/Helsinki"))  # = 2024-08-31 21:30 UTC
    got = add_months(helsinki, 6)
    assert got.tzinfo is UTC and got == utc(2025, 2, 28, 21, 30)
    assert add_months(datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=-5))), 1) == utc(2024, 2, 1, 5)


def test_naive_refused() -> None:
    with pytest.raises(ValidationFailed) as err:
        add_months(datetime(2024, 1, 1), 1)
    assert err.value.details["field"] == "when"
    with pytest.raises(ValidationFailed):
        add_months(CALL, -1)


# --------------------------------------------------------------------------- policy


def test_policy_defaults_and_deadlines() -> None:
    p = RetentionPolicy()
    assert (p.recordings_months, p.cdr_months) == (6, 24)
    assert recording_deadline(CALL, p) == utc(2025, 2, 28, 14, 30)
    assert cdr_deadline(CALL, p) == utc(2026, 8, 31, 14, 30)
    assert recording_deadline(CALL, RetentionPolicy(recordings_months=2)) == utc(2024, 10, 31, 14, 30)
    # a 1-month CDR policy still keeps the row for the 2-month minimum
    assert cdr_deadline(CALL, RetentionPolicy(cdr_months=1)) == minimum_deadline(CALL)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"recordings_months": 1}, "recordings_months"),
        ({"recordings_months": 7}, "recordings_months"),
        ({"recordings_months": 0}, "recordings_months"),
        ({"recordings_months": 6.0}, "recordings_months"),
        ({"recordings_months": True}, "recordings_months"),
        ({"cdr_months": 0}, "cdr_months"),
        ({"cdr_months": 121}, "cdr_months"),
        ({"cdr_months": "24"}, "cdr_months"),
    ],
)
def test_policy_out_of_range(kw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        RetentionPolicy(**kw)  # type: ignore[arg-type]  # deliberately wrong argument types: the test checks they are refused
    assert err.value.details["field"] == field
    assert err.value.status == 422


# --------------------------------------------------------------------------- holds


def test_hold_up_to_18_months() -> None:
    assert max_hold_deadline(CALL) == utc(2026, 2, 28, 14, 30)
    assert hold_deadline(CALL, utc(2026, 2, 28, 14, 30)) == utc(2026, 2, 28, 14, 30)
    assert hold_deadline(CALL, utc(2025, 6, 1)) == utc(2025, 6, 1)
    with pytest.raises(ValidationFailed) as err:
        hold_deadline(CALL, utc(2026, 2, 28, 14, 31))
    assert err.value.details["field"] == "held_until"
    with pytest.raises(ValidationFailed) as err:
        hold_deadline(CALL, CALL)
    assert err.value.details["field"] == "held_until"
    with pytest.raises(ValidationFailed) as err:
        hold_deadline(CALL, datetime(2025, 1, 1))
    assert err.value.details["field"] == "held_until"


def test_release_returns_policy_deadline() -> None:
    assert release_hold(CALL, RetentionPolicy(recordings_months=3)) == utc(2024, 11, 30, 14, 30)


def test_recompute() -> None:
    stamped = recording_deadline(CALL, RetentionPolicy(recordings_months=6))
    ch = recompute_deadline(CALL, stamped, RetentionPolicy(recordings_months=2))
    assert ch.previous == stamped and ch.deadline == minimum_deadline(CALL)
    assert ch.changed and ch.shortened
    ch = recompute_deadline(CALL, stamped, RetentionPolicy())
    assert not ch.changed and not ch.shortened
    # a stamped deadline below the minimum (e.g. imported) is lifted to it
    ch = recompute_deadline(CALL, CALL + timedelta(days=1), RetentionPolicy(recordings_months=2))
    assert ch.deadline == minimum_deadline(CALL) and not ch.shortened
    ch = recompute_deadline(CALL, stamped, RetentionPolicy(cdr_months=1), kind="cdr")
    assert ch.deadline == minimum_deadline(CALL)
    with pytest.raises(ValidationFailed) as err:
        recompute_deadline(CALL, stamped, RetentionPolicy(), kind="email")
    assert err.value.details["field"] == "kind"


# --------------------------------------------------------------------------- purge


def test_purge_examples() -> None:
    deadline = recording_deadline(CALL, RetentionPolicy())
    assert not purge_eligible(deadline - timedelta(seconds=1), CALL, deadline, None, None)
    assert purge_eligible(deadline, CALL, deadline, None, None)
    assert not purge_eligible(deadline, CALL, deadline, deadline + timedelta(days=1), None)
    assert purge_eligible(deadline + timedelta(days=2), CALL, deadline, deadline + timedelta(days=1), None)
    assert not purge_eligible(deadline, CALL, deadline, None, deadline)
    # a bad stamped deadline inside the minimum never purges early
    assert not purge_eligible(CALL + timedelta(days=30), CALL, CALL + timedelta(days=1), None, None)
    assert purge_eligible(minimum_deadline(CALL), CALL, CALL + timedelta(days=1), None, None)


def test_purge_refuses_naive() -> None:
    with pytest.raises(ValidationFailed) as err:
        purge_eligible(datetime(2025, 1, 1), CALL, CALL, None, None)
    assert err.value.details["field"] == "now"


INSTANTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC))
OFFSETS = st.timedeltas(min_value=timedelta(days=-100), max_value=timedelta(days=800))
POLICIES = st.builds(RetentionPolicy, st.integers(2, 6), st.integers(1, 120))


@settings(max_examples=500, deadline=None)
@given(
    call_at=INSTANTS,
    deadline_off=OFFSETS,
    now_off=OFFSETS,
    hold_off=st.one_of(st.none(), OFFSETS),
    purged=st.booleans(),
)
def test_purge_property(
    call_at: datetime, deadline_off: timedelta, now_off: timedelta, hold_off: timedelta | None, purged: bool
) -> None:
    retention_until = call_at + deadline_off
    now = call_at + now_off
    held_until = None if hold_off is None else call_at + hold_off
    purged_at = now if purged else None
    ok = purge_eligible(now, call_at, retention_until, held_until, purged_at)
    held = held_until is not None and held_until > now
    young = now < minimum_deadline(call_at)
    if ok:
        assert not held and not young and not purged and now >= retention_until
    if not held and not young and not purged and now >= retention_until:
        assert ok


@settings(max_examples=300, deadline=None)
@given(a=INSTANTS, b=INSTANTS, p=POLICIES, q=POLICIES)
def test_deadlines_monotone(a: datetime, b: datetime, p: RetentionPolicy, q: RetentionPolicy) -> None:
    lo, hi = min(a, b), max(a, b)
    for fn in (recording_deadline, cdr_deadline):
        assert fn(lo, p) <= fn(hi, p)
    if p.recordings_months <= q.recordings_months:
        assert recording_deadline(a, p) <= recording_deadline(a, q)
    if p.cdr_months <= q.cdr_months:
        assert cdr_deadline(a, p) <= cdr_deadline(a, q)
    # every policy deadline lies between the minimum and the hold maximum
    assert minimum_deadline(a) <= recording_deadline(a, p) <= max_hold_deadline(a)
    assert recording_deadline(a, p) > a
    assert recompute_deadline(a, b, p).deadline >= minimum_deadline(a)


@settings(max_examples=200, deadline=None)
@given(a=INSTANTS, months=st.integers(0, 240))
def test_add_months_bounds(a: datetime, months: int) -> None:
    got = add_months(a, months)
    assert got.time() == a.time() and got.tzinfo is UTC
    assert (got.year * 12 + got.month) - (a.year * 12 + a.month) == months
    assert got.day <= a.day
    assert timedelta(days=28 * months) <= got - a <= timedelta(days=31 * months)


@settings(max_examples=200, deadline=None)
@given(call_at=INSTANTS, hold_off=st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=700)))
def test_hold_limit_property(call_at: datetime, hold_off: timedelta) -> None:
    until = call_at + hold_off
    if until <= max_hold_deadline(call_at):
        assert hold_deadline(call_at, until) == until
    else:
        with pytest.raises(ValidationFailed):
            hold_deadline(call_at, until)
