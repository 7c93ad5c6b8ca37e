"""Phone numbers: E.164 normalisation, validation and the callee's time zone.

Pure functions over the `phonenumbers` metadata. National input is read in the
default region (Finland), so "040 1234567" becomes "+358401234567".
"""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as pn_timezone

from hitcall_pbx.errors import ValidationFailed

DEFAULT_REGION = "FI"
DEFAULT_TZ = "Europe/Helsinki"
MAX_INPUT_LEN = 64
_UNKNOWN_TZ = "Etc/Unknown"

__all__ = [
    "DEFAULT_REGION",
    "DEFAULT_TZ",
    "callee_timezone",
    "is_valid_e164",
    "normalize_e164",
    "number_time_zones",
    "parse_phone",
    "validate_timezone",
]


def _invalid(field: str, message: str, value: object) -> ValidationFailed:
    return ValidationFailed(
        message, details={"field": field, "value": value if isinstance(value, str) else repr(value)}
    )


def parse_phone(raw: str, *, region: str = DEFAULT_REGION, field: str = "phone") -> phonenumbers.PhoneNumber:
    """Parse and validate a number; national input is read in `region`.

    Raises ValidationFailed (details.field = `field`) for anything that is not a
    valid, dialable number.
    """
    if not isinstance(raw, str):
        raise _invalid(field, "phone number must be a string", raw)
    text = raw.strip()
    if not text:
        raise _invalid(field, "phone number is empty", raw)
    if len(text) > MAX_INPUT_LEN:
        raise _invalid(field, "phone number is too long", raw[:MAX_INPUT_LEN])
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise _invalid(field, f"phone number cannot be parsed: {exc}", raw) from None
    if not phonenumbers.is_valid_number(number):
        raise _invalid(field, "phone number is not valid", raw)
    if number.extension:
        # The dialer calls the number itself; an extension would be silently dropped.
        raise _invalid(field, "phone number has an extension, which cannot be dialled", raw)
    return number


def normalize_e164(raw: str, *, region: str = DEFAULT_REGION, field: str = "phone") -> str:
    """Return the number in E.164 ("+358401234567") or raise ValidationFailed."""
    number = parse_phone(raw, region=region, field=field)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def is_valid_e164(raw: str, *, region: str = DEFAULT_REGION) -> bool:
    """True when `raw` parses to a valid number (any accepted input form)."""
    try:
        parse_phone(raw, region=region)
    except ValidationFailed:
        return False
    return True


@lru_cache(maxsize=4096)
def _zones_for(e164: str) -> tuple[str, ...]:
    number = parse_phone(e164)
    zones = tuple(z for z in pn_timezone.time_zones_for_number(number) if z != _UNKNOWN_TZ)
    return tuple(sorted(set(zones)))


def number_time_zones(e164: str) -> tuple[str, ...]:
    """All IANA zones the number's metadata maps to, sorted; empty when unknown."""
    return _zones_for(e164)


@lru_cache(maxsize=512)
def _zone_ok(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def validate_timezone(name: str, *, field: str = "timezone") -> str:
    """Return `name` when it is a known IANA zone, else raise ValidationFailed."""
    if not isinstance(name, str) or not name or not _zone_ok(name):
        raise _invalid(field, "unknown time zone", name)
    return name


def callee_timezone(e164: str, contact_tz: str | None = None, *, default_tz: str = DEFAULT_TZ) -> str:
    """The callee's IANA time zone.

    The contact's own zone wins when given (it is what the contact told us).
    Otherwise the zone comes from the number; a number that maps to several zones
    gets the first of them in sorted order (deterministic; Finnish mobiles map to
    Europe/Helsinki and Europe/Mariehamn, which share the same offsets). A number
    without zone metadata gets `default_tz`.
    """
    if contact_tz is not None:
        return validate_timezone(contact_tz, field="timezone")
    zones = _zones_for(e164)
    if zones:
        return zones[0]
    return validate_timezone(default_tz, field="default_tz")
