"""Retention deadlines for recordings and CDRs, complaint holds and purge eligibility.

All datetimes are timezone-aware; results are in UTC. Months are calendar months
counted on the UTC date, with the day clamped to the target month's length
(Aug 31 + 6 months = Feb 28, or Feb 29 in a leap year).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from hitcall_pbx.errors import ValidationFailed

__all__ = [
    "MAX_CDR_MONTHS",
    "MAX_HOLD_MONTHS",
    "MAX_RECORDING_MONTHS",
    "MIN_CDR_MONTHS",
    "MIN_RECORDING_MONTHS",
    "DeadlineChange",
    "RetentionPolicy",
    "add_months",
    "cdr_deadline",
    "hold_deadline",
    "max_hold_deadline",
    "minimum_deadline",
    "purge_eligible",
    "recompute_deadline",
    "recording_deadline",
    "release_hold",
]

MIN_RECORDING_MONTHS = 2
MAX_RECORDING_MONTHS = 6
DEFAULT_RECORDING_MONTHS = 6
MIN_CDR_MONTHS = 1
MAX_CDR_MONTHS = 120
DEFAULT_CDR_MONTHS = 24
MAX_HOLD_MONTHS = 18
# A complaint case id goes into the append-only audit log: an identifier, never a name.
CASE_ID_PATTERN = r"^[A-Za-z0-9._/-]{1,64}$"


def _utc(value: object, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValidationFailed(f"{name} must be a timezone-aware datetime", details={"field": name})
    return value.astimezone(UTC)


def add_months(when: datetime, months: int) -> datetime:
    """`when` (made UTC) plus calendar months, the day clamped to the month's end."""
    if isinstance(months, bool) or not isinstance(months, int) or months < 0:
        raise ValidationFailed("months must be an integer >= 0", details={"field": "months"})
    base = _utc(when, "when")
    index = base.year * 12 + (base.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    day = min(base.day, calendar.monthrange(year, month)[1])
    return base.replace(year=year, month=month, day=day)


def _months_field(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationFailed(
            f"{name} must be an integer between {low} and {high}",
            details={"field": name, "value": repr(value), "min": low, "max": high},
        )
    return value


@dataclass(frozen=True)
class RetentionPolicy:
    """Per-campaign retention: recordings 2..6 months (default 6), CDRs and contact
    history 1..120 months (default 24)."""

    recordings_months: int = DEFAULT_RECORDING_MONTHS
    cdr_months: int = DEFAULT_CDR_MONTHS

    def __post_init__(self) -> None:
        _months_field(self.recordings_months, "recordings_months", MIN_RECORDING_MONTHS, MAX_RECORDING_MONTHS)
        _months_field(self.cdr_months, "cdr_months", MIN_CDR_MONTHS, MAX_CDR_MONTHS)


def validate_case_id(value: object) -> str | None:
    """A complaint case id (None = no case): 1-64 letters, digits, '.', '_', '/', '-'."""
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(CASE_ID_PATTERN, value):
        raise ValidationFailed(
            "case_id must be an identifier of 1-64 letters, digits, '.', '_', '/', '-' (no names: it is audited)",
            details={"field": "case_id"},
        )
    return value


def minimum_deadline(call_at: datetime) -> datetime:
    """Nothing from a call is purged before this (call + 2 months)."""
    return add_months(call_at, MIN_RECORDING_MONTHS)


def max_hold_deadline(call_at: datetime) -> datetime:
    """The furthest a complaint hold may keep a recording (call + 18 months)."""
    return add_months(call_at, MAX_HOLD_MONTHS)


def recording_deadline(call_at: datetime, policy: RetentionPolicy) -> datetime:
    return add_months(call_at, policy.recordings_months)


def cdr_deadline(call_at: datetime, policy: RetentionPolicy) -> datetime:
    """CDR deadline; never before the minimum, so a 1-month CDR policy still keeps
    the row for 2 months."""
    return max(add_months(call_at, policy.cdr_months), minimum_deadline(call_at))


def hold_deadline(call_at: datetime, requested_until: datetime) -> datetime:
    """Validate a complaint hold's end: after the call and at most 18 months from it."""
    call = _utc(call_at, "call_at")
    until = _utc(requested_until, "held_until")
    if until <= call:
        raise ValidationFailed("a hold must end after the call", details={"field": "held_until"})
    limit = max_hold_deadline(call)
    if until > limit:
        raise ValidationFailed(
            f"a hold may last at most {MAX_HOLD_MONTHS} months from the call",
            details={"field": "held_until", "max": limit.isoformat()},
        )
    return until


def release_hold(call_at: datetime, policy: RetentionPolicy) -> datetime:
    """The deadline a recording returns to when its hold is released: the policy
    deadline (the caller purges at once if it has passed)."""
    return recording_deadline(call_at, policy)


@dataclass(frozen=True)
class DeadlineChange:
    """Result of an explicit recompute, for the audit record."""

    previous: datetime
    deadline: datetime

    @property
    def changed(self) -> bool:
        return self.deadline != self.previous

    @property
    def shortened(self) -> bool:
        return self.deadline < self.previous


def recompute_deadline(
    call_at: datetime, stamped_deadline: datetime, new_policy: RetentionPolicy, *, kind: str = "recording"
) -> DeadlineChange:
    """Explicit (audited) recompute of a stamped deadline under a new policy. May
    shorten or extend it, but never below the minimum (call + 2 months)."""
    previous = _utc(stamped_deadline, "stamped_deadline")
    if kind == "recording":
        new = recording_deadline(call_at, new_policy)
    elif kind == "cdr":
        new = cdr_deadline(call_at, new_policy)
    else:
        raise ValidationFailed("kind must be 'recording' or 'cdr'", details={"field": "kind", "value": kind})
    return DeadlineChange(previous=previous, deadline=max(new, minimum_deadline(call_at)))


def purge_eligible(
    now: datetime,
    call_at: datetime,
    retention_until: datetime,
    held_until: datetime | None,
    purged_at: datetime | None,
) -> bool:
    """True iff the item may be purged at `now`: not purged yet, not under a hold
    that lasts past `now`, at least the minimum age, and at or past its deadline."""
    t = _utc(now, "now")
    deadline = _utc(retention_until, "retention_until")
    if purged_at is not None:
        _utc(purged_at, "purged_at")
        return False
    if held_until is not None and _utc(held_until, "held_until") > t:
        return False
    if t < minimum_deadline(call_at):
        return False
    return t >= deadline
