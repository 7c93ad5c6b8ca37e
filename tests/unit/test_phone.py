from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitcall_pbx.core.phone import (
    callee_timezone,
    is_valid_e164,
    normalize_e164,
    number_time_zones,
    validate_timezone,
)
from hitcall_pbx.errors import ValidationFailed


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("040 1234567", "+358401234567"),
        ("0401234567", "+358401234567"),
        ("+358 40 123 4567", "+358401234567"),
        ("00358401234567", "+358401234567"),
        ("(09) 1234567", "+35891234567"),
        ("+1 212-555-1234", "+12125551234"),
        ("  +46 8 123 456 78 ", "+46812345678"),
    ],
)
def test_normalize_e164(raw: str, e164: str) -> None:
    assert normalize_e164(raw) == e164
    assert normalize_e164(e164) == e164
    assert is_valid_e164(raw)


def test_region_changes_national_reading() -> None:
    assert normalize_e164("08 123 456 78", region="SE") == "+46812345678"


@pytest.mark.parametrize("raw", ["", "   ", "abc", "040", "+358 0", "+999 1234567", "1" * 100, None, 4012345])
def test_invalid_numbers_name_the_field(raw: object) -> None:
    with pytest.raises(ValidationFailed) as err:
        normalize_e164(raw, field="contact.phone")  # type: ignore[arg-type]  # deliberately wrong argument types: the test checks they are refused
    assert err.value.details["field"] == "contact.phone"
    assert err.value.status == 422
    assert not is_valid_e164(raw)  # type: ignore[arg-type]  # deliberately wrong argument types: the test checks they are refused


@pytest.mark.parametrize("raw", ["+358 40 123 4567 ext. 9", "040 1234567 x12", "+358401234567;ext=3"])
def test_a_number_with_an_extension_is_refused_not_truncated(raw: str) -> None:
    with pytest.raises(ValidationFailed, match="extension") as err:
        normalize_e164(raw, field="phone")
    assert err.value.details["field"] == "phone"


def test_time_zones_from_number() -> None:
    assert callee_timezone("+358401234567") == "Europe/Helsinki"
    assert callee_timezone("+35891234567") == "Europe/Helsinki"
    assert callee_timezone("+3581812345") == "Europe/Mariehamn"
    assert callee_timezone("+12125551234") == "America/New_York"
    assert callee_timezone("+13105551234") == "America/Los_Angeles"
    assert callee_timezone("+61299999999") == "Australia/Sydney"


def test_several_zones_pick_deterministically() -> None:
    zones = number_time_zones("+18005551234")  # toll-free: every North American zone
    assert len(zones) > 5
    assert list(zones) == sorted(zones)
    assert callee_timezone("+18005551234") == zones[0]
    assert callee_timezone("+18005551234") == callee_timezone("+1 800 555 1234")


def test_contact_zone_wins() -> None:
    assert callee_timezone("+358401234567", "Europe/Madrid") == "Europe/Madrid"
    assert callee_timezone("+18005551234", "America/Chicago") == "America/Chicago"


@pytest.mark.parametrize("tz", ["", "Mars/Olympus", "../etc/passwd", "Europe/"])
def test_bad_contact_zone(tz: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        callee_timezone("+358401234567", tz)
    assert err.value.details["field"] == "timezone"
    with pytest.raises(ValidationFailed):
        validate_timezone(tz)


def test_invalid_number_for_zone_lookup() -> None:
    with pytest.raises(ValidationFailed) as err:
        callee_timezone("+358 0")
    assert err.value.details["field"] == "phone"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_arbitrary_text_never_crashes(raw: str) -> None:
    try:
        out = normalize_e164(raw)
    except ValidationFailed as exc:
        assert exc.details["field"] == "phone"
    else:
        assert out.startswith("+") and out[1:].isdigit()
        assert normalize_e164(out) == out


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1_000_000, max_value=9_999_999))
def test_finnish_mobiles_roundtrip(subscriber: int) -> None:
    national = f"040 {subscriber}"
    e164 = normalize_e164(national)
    assert e164 == f"+35840{subscriber}"
    assert callee_timezone(e164) == "Europe/Helsinki"
