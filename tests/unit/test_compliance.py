from __future__ import annotations

import math
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitcall_pbx.core.compliance import (
    DEFAULT_WINDOW,
    AbandonCounters,
    CallingWindow,
    CampaignMode,
    DialContext,
    DialReason,
    abandon_rate,
    check_dial,
    in_window,
    next_window_open,
    salted_number_hash,
)
from hitcall_pbx.errors import ValidationFailed

FI = "+358401234567"
NY = "+12125551234"
LA = "+13105551234"
HEL = ZoneInfo("Europe/Helsinki")
NYC = ZoneInfo("America/New_York")


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def ctx(**kw: object) -> DialContext:
    base: dict[str, object] = {"phone": FI, "now": utc(2024, 6, 5, 9, 0), "max_attempts": 3}  # Wed 12:00 Helsinki
    base.update(kw)
    return DialContext(**base)  # type: ignore[arg-type]  # fields passed as **dict[str, object]; the constructor checks them


# --------------------------------------------------------------------------- reasons


def test_allowed_inside_window() -> None:
    v = check_dial(ctx())
    assert v.allowed and v.reason is None and v.retry_at is None and not v.final


@pytest.mark.parametrize(
    ("flag", "reason"),
    [
        ("suppressed", "suppressed"),
        ("processing_restricted", "processing_restricted"),
        ("dnc_global", "dnc_global"),
        ("marketing_prohibited", "marketing_prohibited"),
        ("dnc_campaign", "dnc_campaign"),
    ],
)
def test_prohibitions(flag: str, reason: str) -> None:
    v = check_dial(ctx(**{flag: True}))
    assert not v.allowed
    assert v.reason == reason and v.reason is DialReason(reason)
    assert v.retry_at is None and v.final


def test_prohibitions_win_over_time_rules() -> None:
    sunday_night = utc(2024, 6, 9, 22, 0)
    v = check_dial(ctx(now=sunday_night, dnc_global=True, suppressed=True, attempts=9))
    assert v.reason == "suppressed"
    v = check_dial(ctx(now=sunday_night, attempts=3))
    assert v.reason == "max_attempts" and v.final and v.retry_at is None


def test_retry_not_reached_gives_retry_time() -> None:
    at = utc(2024, 6, 5, 10, 30)
    v = check_dial(ctx(next_attempt_at=at))
    assert (v.allowed, v.reason, v.retry_at) == (False, "retry_not_reached", at)
    assert not v.final
    assert check_dial(ctx(next_attempt_at=utc(2024, 6, 5, 9, 0))).allowed


def test_retry_time_that_falls_outside_window_moves_to_next_opening() -> None:
    # Friday 2024-06-07 19:59 Helsinki (16:59 UTC) → Monday 09:00 Helsinki (06:00 UTC)
    v = check_dial(ctx(next_attempt_at=utc(2024, 6, 7, 16, 59, 30), now=utc(2024, 6, 7, 9, 0)))
    assert v.reason == "retry_not_reached"
    assert v.retry_at == utc(2024, 6, 7, 16, 59, 30)
    v = check_dial(ctx(next_attempt_at=utc(2024, 6, 7, 17, 0), now=utc(2024, 6, 7, 9, 0)))
    assert v.reason == "retry_not_reached"
    assert v.retry_at == utc(2024, 6, 10, 6, 0)


def test_abandoned_72h_predictive_only() -> None:
    now = utc(2024, 6, 5, 9, 0)
    last = now - timedelta(hours=71)
    v = check_dial(ctx(last_abandoned_at=last))
    assert v.reason == "abandoned_72h" and v.retry_at == last + timedelta(hours=72)
    for mode in ("progressive", "preview", CampaignMode.PROGRESSIVE):
        assert check_dial(ctx(last_abandoned_at=last, mode=mode)).allowed
    assert check_dial(ctx(last_abandoned_at=now - timedelta(hours=72))).allowed


def test_abandoned_72h_then_window() -> None:
    # abandoned Wed 19:00 Helsinki → free Sat 19:00 → weekend → Monday 09:00 Helsinki
    last = datetime(2024, 6, 5, 19, 0, tzinfo=HEL)
    v = check_dial(ctx(now=datetime(2024, 6, 6, 10, 0, tzinfo=HEL), last_abandoned_at=last))
    assert v.reason == "abandoned_72h"
    assert v.retry_at == datetime(2024, 6, 10, 9, 0, tzinfo=HEL)


def test_outside_window_helsinki() -> None:
    friday_late = datetime(2024, 6, 7, 20, 0, tzinfo=HEL)
    v = check_dial(ctx(now=friday_late))
    assert v.reason == "outside_window"
    assert v.retry_at == datetime(2024, 6, 10, 9, 0, tzinfo=HEL)
    assert v.retry_at.tzinfo is UTC
    assert check_dial(ctx(now=datetime(2024, 6, 7, 19, 59, 59, tzinfo=HEL))).allowed
    assert check_dial(ctx(now=datetime(2024, 6, 10, 9, 0, tzinfo=HEL))).allowed
    assert check_dial(ctx(now=datetime(2024, 6, 10, 8, 59, 59, tzinfo=HEL))).reason == "outside_window"


def test_window_uses_callee_zone_not_caller() -> None:
    # 15:00 UTC Wednesday: 18:00 in Helsinki (open), 11:00 in New York (open), 08:00 in LA (closed)
    now = utc(2024, 6, 5, 15, 0)
    assert check_dial(ctx(phone=FI, now=now)).allowed
    assert check_dial(ctx(phone=NY, now=now)).allowed
    v = check_dial(ctx(phone=LA, now=now))
    assert v.reason == "outside_window"
    assert v.retry_at == datetime(2024, 6, 5, 9, 0, tzinfo=ZoneInfo("America/Los_Angeles"))
    # the contact's own zone overrides the number's
    assert check_dial(ctx(phone=LA, now=now, contact_tz="America/New_York")).allowed


def test_custom_window_weekend() -> None:
    sat = CallingWindow(time(10), time(16), frozenset({6}))
    v = check_dial(ctx(window=sat, now=datetime(2024, 6, 5, 12, 0, tzinfo=HEL)))
    assert v.retry_at == datetime(2024, 6, 8, 10, 0, tzinfo=HEL)
    assert check_dial(ctx(window=sat, now=datetime(2024, 6, 8, 15, 59, tzinfo=HEL))).allowed


# --------------------------------------------------------------------------- DST


def test_next_open_over_us_spring_forward() -> None:
    # Saturday 2024-03-09 noon New York (EST) → Monday 09:00 EDT = 13:00 UTC
    assert next_window_open(datetime(2024, 3, 9, 12, tzinfo=NYC), "America/New_York") == utc(2024, 3, 11, 13)


def test_next_open_over_eu_fall_back() -> None:
    # Friday 2024-10-25 21:00 EEST → Monday 09:00 EET = 07:00 UTC
    assert next_window_open(datetime(2024, 10, 25, 21, tzinfo=HEL), "Europe/Helsinki") == utc(2024, 10, 28, 7)


def test_opening_inside_spring_gap_opens_at_gap_end() -> None:
    # Helsinki 2024-03-31: 03:00 EET jumps to 04:00 EEST at 01:00 UTC; 03:30 never exists
    w = CallingWindow(time(3, 30), time(12), frozenset(range(1, 8)))
    got = next_window_open(utc(2024, 3, 31, 0, 0), "Europe/Helsinki", w)
    assert got == utc(2024, 3, 31, 1, 0)
    assert got.astimezone(HEL).time() == time(4, 0)


def test_opening_inside_repeated_hour_uses_first() -> None:
    # Helsinki 2024-10-27: 04:00 EEST falls back to 03:00 EET at 01:00 UTC
    w = CallingWindow(time(3, 30), time(12), frozenset(range(1, 8)))
    assert next_window_open(utc(2024, 10, 26, 23, 0), "Europe/Helsinki", w) == utc(2024, 10, 27, 0, 30)


def test_window_end_in_repeated_hour_reopens_briefly() -> None:
    # wall-clock rule: 03:00–03:30 happens twice, both inside a window ending 03:30
    w = CallingWindow(time(0, 0), time(3, 30), frozenset(range(1, 8)))
    assert in_window(utc(2024, 10, 27, 0, 10), HEL, w)  # 03:10 EEST
    assert not in_window(utc(2024, 10, 27, 0, 45), HEL, w)  # 03:45 EEST
    assert next_window_open(utc(2024, 10, 27, 0, 45), HEL, w) == utc(2024, 10, 27, 1, 0)  # 03:00 EET


WINDOWS = st.builds(
    lambda s, length, days: CallingWindow(
        time(s // 60, s % 60), time(min(s + length, 24 * 60 - 1) // 60, min(s + length, 24 * 60 - 1) % 60), days
    ),
    st.integers(0, 22 * 60),
    st.integers(1, 14 * 60),
    st.frozensets(st.integers(1, 7), min_size=1),
)
TRANSITIONS = [
    utc(2024, 3, 31, 1),  # EU spring
    utc(2024, 10, 27, 1),  # EU autumn
    utc(2024, 3, 10, 7),  # US spring (New York)
    utc(2024, 11, 3, 6),  # US autumn (New York)
    utc(2025, 3, 9, 10),  # US spring (Los Angeles)
]
NEAR_DST = st.builds(
    lambda base, secs: base + timedelta(seconds=secs),
    st.sampled_from(TRANSITIONS),
    st.integers(-4 * 86400, 4 * 86400),
)
PHONES = st.sampled_from([(FI, "Europe/Helsinki"), (NY, "America/New_York"), (LA, "America/Los_Angeles")])


@settings(max_examples=300, deadline=None)
@given(now=NEAR_DST, window=st.one_of(st.just(DEFAULT_WINDOW), WINDOWS), phone=PHONES, data=st.data())
def test_never_dials_outside_window_across_dst(
    now: datetime, window: CallingWindow, phone: tuple[str, str], data: st.DataObject
) -> None:
    number, tzname = phone
    zone = ZoneInfo(tzname)
    v = check_dial(ctx(phone=number, now=now, window=window, mode="preview"))
    local = now.astimezone(zone)
    inside = local.isoweekday() in window.weekdays and window.start <= local.time() < window.end
    assert v.allowed == inside
    if not v.allowed:
        assert v.reason == "outside_window"
        r = v.retry_at
        assert r is not None and r > now
        rl = r.astimezone(zone)
        assert rl.isoweekday() in window.weekdays and window.start <= rl.time() < window.end
        # the opening is the earliest: a second before it, and random points between, are closed
        assert not in_window(r - timedelta(seconds=1), zone, window)
        span = int((r - now).total_seconds())
        for off in data.draw(st.lists(st.integers(0, max(span - 1, 0)), max_size=20)):
            assert not in_window(now + timedelta(seconds=off), zone, window)
        assert check_dial(ctx(phone=number, now=r, window=window)).allowed


@settings(max_examples=150, deadline=None)
@given(now=NEAR_DST, window=WINDOWS, tz=st.sampled_from(["Europe/Helsinki", "America/New_York", "Australia/Lord_Howe"]))
def test_next_window_open_is_idempotent(now: datetime, window: CallingWindow, tz: str) -> None:
    r = next_window_open(now, tz, window)
    assert r >= now
    assert in_window(r, tz, window)
    assert next_window_open(r, tz, window) == r
    assert r - now <= timedelta(days=8)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"now": datetime(2024, 6, 5, 12)}, "now"),
        ({"next_attempt_at": datetime(2024, 6, 5, 12)}, "next_attempt_at"),
        ({"last_abandoned_at": datetime(2024, 6, 5, 12)}, "last_abandoned_at"),
        ({"mode": "robocall"}, "mode"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"attempts": -1}, "attempts"),
        ({"attempts": True}, "attempts"),
    ],
)
def test_context_validation(kw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        ctx(**kw)
    assert err.value.details["field"] == field


def test_bad_phone_and_tz_in_check() -> None:
    with pytest.raises(ValidationFailed) as err:
        check_dial(ctx(phone="12"))
    assert err.value.details["field"] == "phone"
    with pytest.raises(ValidationFailed) as err:
        check_dial(ctx(contact_tz="Nowhere/Land"))
    assert err.value.details["field"] == "timezone"


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"start": time(20), "end": time(9)}, "window.end"),
        ({"start": time(9), "end": time(9)}, "window.end"),
        ({"weekdays": frozenset()}, "window.weekdays"),
        ({"weekdays": frozenset({0})}, "window.weekdays"),
        ({"weekdays": frozenset({8})}, "window.weekdays"),
        ({"weekdays": "12345"}, "window.weekdays"),
        ({"start": time(9, tzinfo=UTC)}, "window.start"),
        ({"end": "20:00"}, "window.end"),
    ],
)
def test_window_validation(kw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        CallingWindow(**kw)  # type: ignore[arg-type]  # deliberately wrong argument types: the test checks they are refused
    assert err.value.details["field"] == field


def test_window_accepts_any_iterable_of_days() -> None:
    assert CallingWindow(weekdays=[1, 2]).weekdays == frozenset({1, 2})  # type: ignore[arg-type]  # weekdays is typed frozenset; the test checks a list is accepted too


# --------------------------------------------------------------------------- suppression hash


def test_salted_hash() -> None:
    salt = "s" * 32
    h = salted_number_hash("+358401234567", salt)
    assert len(h) == 64 and all(c in "0123456789abcdef" for c in h)
    assert salted_number_hash("040 123 4567", salt) == h
    assert salted_number_hash("+358401234567", salt.encode()) == h
    assert salted_number_hash("+358401234567", "t" * 32) != h
    assert salted_number_hash("+358401234568", salt) != h
    assert "358401234567" not in h


def test_salted_hash_refuses_bad_input() -> None:
    with pytest.raises(ValidationFailed) as err:
        salted_number_hash("+358401234567", "short")
    assert err.value.details["field"] == "salt"
    with pytest.raises(ValidationFailed) as err:
        salted_number_hash("nope", "s" * 32)
    assert err.value.details["field"] == "phone"


# --------------------------------------------------------------------------- abandon accounting


def test_abandon_rate() -> None:
    assert abandon_rate(0, 0) == 0
    assert abandon_rate(3, 97) == pytest.approx(0.03)
    assert abandon_rate(1, 0) == 1
    with pytest.raises(ValidationFailed):
        abandon_rate(-1, 5)


def test_counters_caps() -> None:
    c = AbandonCounters()
    assert not c.over_cap and not c.near_cap
    c = c.add(connected=97, abandoned=3)
    assert c.daily_rate == pytest.approx(0.03)
    assert not c.over_cap and c.near_cap
    assert c.add(abandoned=1).over_cap
    c2 = AbandonCounters(day_abandoned=2, day_connected=98)  # 2 %: below 80 % of 3 %
    assert not c2.near_cap
    c3 = AbandonCounters(day_abandoned=0, day_connected=10, period_abandoned=5, period_connected=95)
    assert c3.over_cap  # the 30-day rate counts too
    d = c3.new_day()
    assert d.day_abandoned == 0 and d.period_abandoned == 5 and d.over_cap


def test_counters_validation() -> None:
    with pytest.raises(ValidationFailed) as err:
        AbandonCounters(cap=0)
    assert err.value.details["field"] == "cap"
    with pytest.raises(ValidationFailed) as err:
        AbandonCounters(day_abandoned=-1)
    assert err.value.details["field"] == "day_abandoned"


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 500),
    st.integers(0, 5000),
    st.integers(0, 500),
    st.integers(0, 5000),
    st.sampled_from([0.01, 0.03, 0.05]),
)
def test_remaining_abandons_keeps_under_cap(da: int, dc: int, extra_a: int, extra_c: int, cap: float) -> None:
    pa, pc = da + extra_a, dc + extra_c  # the 30-day totals include today
    c = AbandonCounters(day_abandoned=da, day_connected=dc, period_abandoned=pa, period_connected=pc, cap=cap)
    room = c.remaining_abandons()
    assert room >= 0
    if not c.over_cap:
        after = c.add(abandoned=math.floor(room + 1e-9))
        assert after.daily_rate <= cap + 1e-9 and after.period_rate <= cap + 1e-9
    else:
        assert room == 0
    assert c.add(abandoned=math.floor(room + 1e-9) + 1).over_cap
