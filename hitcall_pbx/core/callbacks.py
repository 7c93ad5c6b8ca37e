"""Callbacks: when one may be scheduled, its default time, and who may take it.

A callback is scheduled at a date-time in the contact's local time zone (an aware
date-time is taken as given). It must lie in the future and inside the campaign's
calling window in that zone. A personal callback is for its agent; when that agent is
not logged in it falls back to anyone once `grace` has passed after its time.

Pure: no I/O, `now` is passed in.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hitcall_pbx.errors import ValidationFailed

from .compliance import CallingWindow, in_window, next_window_open
from .phone import validate_timezone

__all__ = [
    "MAX_AHEAD",
    "CallbackKind",
    "CallbackState",
    "check_time",
    "default_time",
    "is_overdue",
    "local_to_utc",
    "outcome_state",
    "personal_holds",
]

MAX_AHEAD = timedelta(days=366)


class CallbackKind(enum.StrEnum):
    PERSONAL = "personal"  # for the agent who scheduled it (or the one named)
    ANYONE = "anyone"  # for any agent of the campaign


class CallbackState(enum.StrEnum):
    SCHEDULED = "scheduled"
    DONE = "done"  # dialled and the customer reached an agent
    MISSED = "missed"  # dialled, the customer was not reached
    CANCELLED = "cancelled"


def _bad(field: str, message: str, **details: object) -> ValidationFailed:
    return ValidationFailed(message, details={"field": field, **details})


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise _bad(name, f"{name} must be timezone-aware")
    return value


def local_to_utc(at: datetime, tz: str, *, field: str = "at") -> datetime:
    """`at` as an aware UTC date-time: a naive value is wall-clock time in `tz` (the
    contact's zone). A wall-clock time skipped by a daylight-saving change is refused."""
    if at.tzinfo is not None and at.utcoffset() is not None:
        return at.astimezone(UTC)
    zone = ZoneInfo(validate_timezone(tz))
    local = at.replace(tzinfo=zone)
    utc = local.astimezone(UTC)
    if utc.astimezone(zone).replace(tzinfo=None) != at:
        raise _bad(field, "this local time does not exist in the contact's time zone (daylight saving change)")
    return utc


def check_time(at: datetime, *, now: datetime, tz: str, window: CallingWindow, field: str = "at") -> datetime:
    """The callback time `at` (aware), checked: in the future, within a year, inside the
    calling window in `tz`. ValidationFailed names `field`; outside the window its details
    say when the window next opens."""
    _aware(now, "now")
    _aware(at, field)
    if at <= now:
        raise _bad(field, "the callback time is in the past", now=now.astimezone(UTC).isoformat())
    if at - now > MAX_AHEAD:
        raise _bad(field, f"the callback time is more than {MAX_AHEAD.days} days ahead")
    if not in_window(at, tz, window):
        opens = next_window_open(at, tz, window)
        raise _bad(
            field,
            "the callback time is outside the campaign's calling window in the contact's time zone",
            timezone=tz,
            local_time=at.astimezone(ZoneInfo(tz)).replace(tzinfo=None).isoformat(timespec="minutes"),
            window_start=window.start.isoformat(timespec="minutes"),
            window_end=window.end.isoformat(timespec="minutes"),
            window_days=sorted(window.weekdays),
            next_open=opens.isoformat(),
        )
    return at.astimezone(UTC)


def default_time(*, now: datetime, tz: str, window: CallingWindow, delay: timedelta) -> datetime:
    """The callback time when none is given (the agent's phone key): `delay` from now,
    moved to the next opening of the calling window when it falls outside it."""
    _aware(now, "now")
    if delay < timedelta(0):
        raise _bad("delay", "delay must not be negative")
    return next_window_open(now + delay, tz, window)


def personal_holds(*, agent_logged_in: bool, due_at: datetime, grace: timedelta, now: datetime) -> bool:
    """Whether a personal callback still waits for its agent: while the agent is logged
    in, or until `grace` after its time; after that anyone may take it."""
    _aware(now, "now")
    _aware(due_at, "due_at")
    return agent_logged_in or now < due_at + grace


def outcome_state(answered_human: bool) -> CallbackState:
    """A callback's state once its call ended."""
    return CallbackState.DONE if answered_human else CallbackState.MISSED


def is_overdue(state: CallbackState, due_at: datetime, at: datetime, slack: timedelta = timedelta(0)) -> bool:
    """Still scheduled more than `slack` after its time (for the report)."""
    return state is CallbackState.SCHEDULED and due_at + slack < at
