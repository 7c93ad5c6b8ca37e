"""Which pre-dial rules bind a manual dial (core.manual_dial), through the one pre-dial check."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from hitcall_pbx.core.compliance import CallingWindow, DialReason, in_window
from hitcall_pbx.core.manual_dial import NumberFacts, manual_dial_verdict, refusal_message

FI = "+358401234567"
# Tuesday 2026-03-03 12:00 in Helsinki (UTC+2): inside the default window.
NOON = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)


def test_a_clean_number_inside_the_window_may_be_dialled() -> None:
    assert manual_dial_verdict(FI, NOON, NumberFacts()).allowed


def test_prohibitions_refuse_in_the_check_order() -> None:
    cases = [
        (NumberFacts(suppressed=True, dnc_global=True), DialReason.SUPPRESSED),
        (NumberFacts(processing_restricted=True, dnc_global=True), DialReason.PROCESSING_RESTRICTED),
        (NumberFacts(dnc_global=True), DialReason.DNC_GLOBAL),
        (NumberFacts(marketing_prohibited=True), DialReason.MARKETING_PROHIBITED),
        (NumberFacts(dnc_campaign=True), DialReason.DNC_CAMPAIGN),
    ]
    for facts, reason in cases:
        verdict = manual_dial_verdict(FI, NOON, facts)
        assert not verdict.allowed and verdict.reason is reason and verdict.retry_at is None
        assert refusal_message(reason)


def test_the_72_hour_rule_binds_a_manual_dial() -> None:
    abandoned = NOON - timedelta(hours=10)
    verdict = manual_dial_verdict(FI, NOON, NumberFacts(last_abandoned_at=abandoned))
    assert verdict.reason is DialReason.ABANDONED_72H
    assert verdict.retry_at is not None and verdict.retry_at >= abandoned + timedelta(hours=72)
    assert manual_dial_verdict(FI, NOON, NumberFacts(last_abandoned_at=NOON - timedelta(hours=73))).allowed


def test_the_window_is_the_callees_local_time() -> None:
    evening = datetime(2026, 3, 3, 18, 30, tzinfo=UTC)  # 20:30 in Helsinki, 19:30 in Stockholm
    verdict = manual_dial_verdict(FI, evening, NumberFacts())
    assert verdict.reason is DialReason.OUTSIDE_WINDOW
    assert verdict.retry_at == datetime(2026, 3, 4, 7, 0, tzinfo=UTC)  # 09:00 next morning in Helsinki
    # The contact's own time zone wins over the number's: 19:30 in Stockholm is inside.
    assert manual_dial_verdict(FI, evening, NumberFacts(contact_tz="Europe/Stockholm")).allowed
    early_close = CallingWindow(start=time(9), end=time(19))
    assert not manual_dial_verdict(FI, evening, NumberFacts(contact_tz="Europe/Stockholm"), early_close).allowed


@given(
    at=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)),
    dnc=st.booleans(),
    prohibited=st.booleans(),
)
def test_an_allowed_manual_dial_is_inside_the_window_and_clean(at: datetime, dnc: bool, prohibited: bool) -> None:
    verdict = manual_dial_verdict(FI, at, NumberFacts(dnc_global=dnc, marketing_prohibited=prohibited))
    if verdict.allowed:
        assert not dnc and not prohibited
        assert in_window(at, ZoneInfo("Europe/Helsinki"))
    elif not dnc and not prohibited:
        assert verdict.reason is DialReason.OUTSIDE_WINDOW and verdict.retry_at is not None
        assert verdict.retry_at > at and in_window(verdict.retry_at, "Europe/Helsinki")
