"""Callback times and who takes a callback (core.callbacks)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitcall_pbx.core.callbacks import (
    CallbackState,
    check_time,
    default_time,
    is_overdue,
    local_to_utc,
    outcome_state,
    personal_holds,
)
from hitcall_pbx.core.compliance import CallingWindow, in_window
from hitcall_pbx.errors import ValidationFailed

HEL = "Europe/Helsinki"
WINDOW = CallingWindow(start=time(9), end=time(20), weekdays=frozenset({1, 2, 3, 4, 5}))
# Monday 7 December 2026, 10:00 in Helsinki (UTC+2)
NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def test_a_naive_time_is_the_contacts_local_time():
    assert local_to_utc(datetime(2026, 12, 8, 14, 30), HEL) == datetime(2026, 12, 8, 12, 30, tzinfo=UTC)
    assert local_to_utc(datetime(2026, 7, 8, 14, 30), HEL) == datetime(2026, 7, 8, 11, 30, tzinfo=UTC)
    aware = datetime(2026, 12, 8, 14, 30, tzinfo=ZoneInfo("America/New_York"))
    assert local_to_utc(aware, HEL) == aware.astimezone(UTC)
    with pytest.raises(ValidationFailed) as err:  # 03:30 does not exist on the spring-forward night
        local_to_utc(datetime(2026, 3, 29, 3, 30), HEL, field="callback_at")
    assert err.value.details["field"] == "callback_at"


def test_a_time_in_the_window_is_accepted():
    at = datetime(2026, 12, 8, 12, 30, tzinfo=UTC)  # Tuesday 14:30 local
    assert check_time(at, now=NOW, tz=HEL, window=WINDOW) == at


@pytest.mark.parametrize(
    ("at", "message"),
    [
        (NOW - timedelta(minutes=1), "in the past"),
        (NOW, "in the past"),
        (datetime(2026, 12, 8, 19, 0, tzinfo=UTC), "outside"),  # Tuesday 21:00 local
        (datetime(2026, 12, 12, 10, 0, tzinfo=UTC), "outside"),  # Saturday
        (NOW + timedelta(days=400), "days ahead"),
    ],
)
def test_a_refused_time_names_the_field(at, message):
    with pytest.raises(ValidationFailed) as err:
        check_time(at, now=NOW, tz=HEL, window=WINDOW, field="callback_at")
    assert err.value.details["field"] == "callback_at" and message in err.value.message


def test_outside_the_window_says_when_it_opens():
    with pytest.raises(ValidationFailed) as err:
        check_time(datetime(2026, 12, 8, 19, 0, tzinfo=UTC), now=NOW, tz=HEL, window=WINDOW)
    d = err.value.details
    assert d["local_time"] == "2026-12-08T21:00" and d["next_open"] == "2026-12-09T07:00:00+00:00"


def test_the_phone_key_default_moves_into_the_window():
    # 10:00 Monday + 24 h = 10:00 Tuesday: inside
    assert default_time(now=NOW, tz=HEL, window=WINDOW, delay=timedelta(days=1)) == NOW + timedelta(days=1)
    # Friday 19:30 local + 1 h = 20:30: the window opens again on Monday at 09:00
    friday = datetime(2026, 12, 11, 17, 30, tzinfo=UTC)
    assert default_time(now=friday, tz=HEL, window=WINDOW, delay=timedelta(hours=1)) == datetime(
        2026, 12, 14, 7, 0, tzinfo=UTC
    )


def test_a_personal_callback_falls_back_after_the_grace_when_its_agent_is_away():
    due = NOW
    grace = timedelta(minutes=15)
    assert personal_holds(agent_logged_in=True, due_at=due, grace=grace, now=due + timedelta(hours=5))
    assert personal_holds(agent_logged_in=False, due_at=due, grace=grace, now=due + timedelta(minutes=14))
    assert not personal_holds(agent_logged_in=False, due_at=due, grace=grace, now=due + timedelta(minutes=15))


def test_states_for_the_report():
    assert outcome_state(True) is CallbackState.DONE and outcome_state(False) is CallbackState.MISSED
    assert is_overdue(CallbackState.SCHEDULED, NOW, NOW + timedelta(seconds=1))
    assert not is_overdue(CallbackState.DONE, NOW, NOW + timedelta(days=1))
    assert not is_overdue(CallbackState.SCHEDULED, NOW, NOW + timedelta(minutes=5), timedelta(minutes=10))


@given(
    minutes=st.integers(-60 * 24 * 3, 60 * 24 * 30),
    zone=st.sampled_from([HEL, "Europe/Stockholm", "America/New_York", "Asia/Tokyo"]),
)
def test_an_accepted_time_is_always_future_and_inside_the_window(minutes, zone):
    at = NOW + timedelta(minutes=minutes)
    try:
        got = check_time(at, now=NOW, tz=zone, window=WINDOW)
    except ValidationFailed as exc:
        assert exc.details["field"] == "at"
        assert at <= NOW or not in_window(at, zone, WINDOW)
    else:
        assert got == at and got > NOW and in_window(got, zone, WINDOW)


@given(
    delay_min=st.integers(0, 60 * 24 * 14),
    start_min=st.integers(0, 60 * 24 * 7),
    zone=st.sampled_from([HEL, "America/New_York", "Australia/Sydney"]),
)
def test_the_default_time_is_never_before_the_delay_and_always_callable(delay_min, start_min, zone):
    now = NOW + timedelta(minutes=start_min)
    delay = timedelta(minutes=delay_min)
    at = default_time(now=now, tz=zone, window=WINDOW, delay=delay)
    assert at >= now + delay and in_window(at, zone, WINDOW)
    if delay_min > 0:
        assert check_time(at, now=now, tz=zone, window=WINDOW) == at
