"""Pre-dial compliance: prohibitions, attempts, retry time, the 72-hour rule and
calling windows in the callee's local time; suppression hashes; abandon accounting.

Pure: the current time is always passed in, nothing here reads a clock.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hitcall_pbx.core.phone import callee_timezone, normalize_e164, validate_timezone
from hitcall_pbx.errors import ValidationFailed

__all__ = [
    "ABANDON_BLOCK",
    "DEFAULT_ABANDON_CAP",
    "DEFAULT_WINDOW",
    "FINAL_REASONS",
    "AbandonCounters",
    "CallingWindow",
    "CampaignMode",
    "DialContext",
    "DialReason",
    "DialVerdict",
    "abandon_rate",
    "check_dial",
    "in_window",
    "next_window_open",
    "salted_number_hash",
]

ABANDON_BLOCK = timedelta(hours=72)
DEFAULT_ABANDON_CAP = 0.03
DEFAULT_NEAR_FRACTION = 0.8


class CampaignMode(enum.StrEnum):
    PREVIEW = "preview"
    PROGRESSIVE = "progressive"
    PREDICTIVE = "predictive"


class DialReason(enum.StrEnum):
    """Stable reason codes for a refused dial (stored, logged, shown in the API)."""

    SUPPRESSED = "suppressed"
    PROCESSING_RESTRICTED = "processing_restricted"
    DNC_GLOBAL = "dnc_global"
    MARKETING_PROHIBITED = "marketing_prohibited"
    DNC_CAMPAIGN = "dnc_campaign"
    MAX_ATTEMPTS = "max_attempts"
    RETRY_NOT_REACHED = "retry_not_reached"
    ABANDONED_72H = "abandoned_72h"
    OUTSIDE_WINDOW = "outside_window"


# Reasons that do not go away with time: the contact is done for this campaign.
FINAL_REASONS = frozenset(
    {
        DialReason.SUPPRESSED,
        DialReason.PROCESSING_RESTRICTED,
        DialReason.DNC_GLOBAL,
        DialReason.MARKETING_PROHIBITED,
        DialReason.DNC_CAMPAIGN,
        DialReason.MAX_ATTEMPTS,
    }
)


def _require_aware(value: object, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise ValidationFailed(f"{name} must be a datetime", details={"field": name})
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationFailed(f"{name} must be timezone-aware", details={"field": name})
    return value


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class CallingWindow:
    """Hours [start, end) on the given ISO weekdays (1 = Monday … 7 = Sunday), in
    the callee's local wall-clock time."""

    start: time = time(9, 0)
    end: time = time(20, 0)
    weekdays: frozenset[int] = frozenset({1, 2, 3, 4, 5})

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, time) or value.tzinfo is not None:
                raise ValidationFailed(f"window.{name} must be a naive local time", details={"field": f"window.{name}"})
        if not self.start < self.end:
            raise ValidationFailed(
                "window.end must be after window.start",
                details={"field": "window.end", "start": self.start.isoformat(), "end": self.end.isoformat()},
            )
        if isinstance(self.weekdays, (str, bytes)) or not isinstance(self.weekdays, Iterable):
            raise ValidationFailed(
                "window.weekdays must be a set of ISO weekdays", details={"field": "window.weekdays"}
            )
        days = frozenset(self.weekdays)
        if not days or any(isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 7 for d in days):
            raise ValidationFailed(
                "window.weekdays must be a non-empty set of ISO weekdays 1..7",
                details={"field": "window.weekdays", "value": sorted(map(repr, days))},
            )
        object.__setattr__(self, "weekdays", days)

    def contains_local(self, local: datetime) -> bool:
        """True when the local wall-clock time lies inside the window."""
        return local.isoweekday() in self.weekdays and self.start <= local.time() < self.end


DEFAULT_WINDOW = CallingWindow()


def _zone(tz: str | ZoneInfo) -> ZoneInfo:
    if isinstance(tz, ZoneInfo):
        return tz
    return ZoneInfo(validate_timezone(tz))


def in_window(now: datetime, tz: str | ZoneInfo, window: CallingWindow = DEFAULT_WINDOW) -> bool:
    """True when `now` falls inside `window` in the local time of `tz`."""
    _require_aware(now, "now")
    return window.contains_local(now.astimezone(_zone(tz)))


_SCAN_STEP = timedelta(hours=3)
_HORIZON_DAYS = 9


def _offset_changes(zone: ZoneInfo, lo: datetime, hi: datetime) -> list[datetime]:
    """UTC instants in [lo, hi] where the zone's UTC offset changes (DST), found by
    sampling every few hours and bisecting to the second."""
    out: list[datetime] = []
    t = lo
    prev = t.astimezone(zone).utcoffset()
    while t < hi:
        nxt = min(t + _SCAN_STEP, hi)
        off = nxt.astimezone(zone).utcoffset()
        if off != prev:
            a, b = t, nxt  # offset(a) == prev, offset(b) != prev
            while b - a > timedelta(seconds=1):
                mid = a + (b - a) / 2
                if mid.astimezone(zone).utcoffset() == prev:
                    a = mid
                else:
                    b = mid
            # transitions fall on whole seconds
            exact = b.replace(microsecond=0)
            if exact.astimezone(zone).utcoffset() == prev:
                exact += timedelta(seconds=1)
            out.append(exact)
            prev = off
        t = nxt
    return out


def next_window_open(now: datetime, tz: str | ZoneInfo, window: CallingWindow = DEFAULT_WINDOW) -> datetime:
    """The earliest instant at or after `now` that lies inside `window` in the local
    time of `tz`, as an aware UTC datetime (`now` itself when the window is open).

    DST-correct: an opening that falls in a spring-forward gap opens at the end of
    the gap; in a repeated autumn hour the first occurrence counts.
    """
    _require_aware(now, "now")
    zone = _zone(tz)
    now_utc = now.astimezone(UTC)
    if window.contains_local(now_utc.astimezone(zone)):
        return now_utc
    first_day: date = now_utc.astimezone(zone).date()
    horizon = now_utc + timedelta(days=_HORIZON_DAYS)
    candidates: list[datetime] = []
    for i in range(_HORIZON_DAYS):
        day = first_day + timedelta(days=i)
        for fold in (0, 1):
            local = datetime.combine(day, window.start, tzinfo=zone).replace(fold=fold)
            candidates.append(local.astimezone(UTC))
    candidates.extend(_offset_changes(zone, now_utc, horizon))
    opens = [c for c in candidates if c >= now_utc and window.contains_local(c.astimezone(zone))]
    # A non-empty weekday set always yields an opening within a week.
    return min(opens)


# --------------------------------------------------------------------------- dial check


@dataclass(frozen=True, kw_only=True)
class DialContext:
    """Everything the pre-dial check needs about one contact number, at `now`."""

    phone: str
    now: datetime
    mode: CampaignMode = CampaignMode.PREDICTIVE
    max_attempts: int
    attempts: int = 0
    contact_tz: str | None = None
    marketing_prohibited: bool = False
    processing_restricted: bool = False
    dnc_global: bool = False
    dnc_campaign: bool = False
    suppressed: bool = False
    next_attempt_at: datetime | None = None
    last_abandoned_at: datetime | None = None
    window: CallingWindow = field(default=DEFAULT_WINDOW)

    def __post_init__(self) -> None:
        _require_aware(self.now, "now")
        for name in ("next_attempt_at", "last_abandoned_at"):
            if getattr(self, name) is not None:
                _require_aware(getattr(self, name), name)
        try:
            object.__setattr__(self, "mode", CampaignMode(self.mode))
        except ValueError:
            raise ValidationFailed(
                "unknown campaign mode", details={"field": "mode", "value": str(self.mode)}
            ) from None
        for name, low in (("attempts", 0), ("max_attempts", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValidationFailed(
                    f"{name} must be an integer >= {low}", details={"field": name, "value": repr(value)}
                )
        if not isinstance(self.window, CallingWindow):
            raise ValidationFailed("window must be a CallingWindow", details={"field": "window"})


@dataclass(frozen=True)
class DialVerdict:
    allowed: bool
    reason: DialReason | None = None
    retry_at: datetime | None = None

    @property
    def final(self) -> bool:
        """True when the refusal does not expire with time."""
        return self.reason in FINAL_REASONS


_ALLOWED = DialVerdict(True, None, None)


def check_dial(ctx: DialContext) -> DialVerdict:
    """Decide whether `ctx.phone` may be dialled at `ctx.now`.

    Prohibitions are checked first (suppressed, processing_restricted, dnc_global,
    marketing_prohibited, dnc_campaign), then max_attempts; these carry no
    retry_at. Then the time-based rules in the order retry_not_reached,
    abandoned_72h (predictive only), outside_window; the reason is the first that
    fails and retry_at is the earliest instant at which all of them pass (inside
    the calling window in the callee's local time).
    """
    flags = (
        (ctx.suppressed, DialReason.SUPPRESSED),
        (ctx.processing_restricted, DialReason.PROCESSING_RESTRICTED),
        (ctx.dnc_global, DialReason.DNC_GLOBAL),
        (ctx.marketing_prohibited, DialReason.MARKETING_PROHIBITED),
        (ctx.dnc_campaign, DialReason.DNC_CAMPAIGN),
        (ctx.attempts >= ctx.max_attempts, DialReason.MAX_ATTEMPTS),
    )
    for hit, refusal in flags:
        if hit:
            return DialVerdict(False, refusal, None)

    now = ctx.now.astimezone(UTC)
    earliest = now
    reason: DialReason | None = None
    if ctx.next_attempt_at is not None and ctx.next_attempt_at > now:
        reason = DialReason.RETRY_NOT_REACHED
        earliest = ctx.next_attempt_at.astimezone(UTC)
    if ctx.mode is CampaignMode.PREDICTIVE and ctx.last_abandoned_at is not None:
        until = (ctx.last_abandoned_at + ABANDON_BLOCK).astimezone(UTC)
        if now < until:
            reason = reason or DialReason.ABANDONED_72H
            earliest = max(earliest, until)
    tz = callee_timezone(ctx.phone, ctx.contact_tz)
    opens = next_window_open(earliest, tz, ctx.window)
    if reason is None and opens > now:
        reason = DialReason.OUTSIDE_WINDOW
    if reason is None:
        return _ALLOWED
    return DialVerdict(False, reason, opens)


# --------------------------------------------------------------------------- suppression


def salted_number_hash(e164: str, salt: str | bytes) -> str:
    """HMAC-SHA256 of the normalised E.164 number keyed by the installation's salt,
    hex. The suppression list stores only this, so an erased person's number is
    never kept in clear yet is still recognised before every dial."""
    if isinstance(salt, str):
        salt = salt.encode()
    if not isinstance(salt, bytes) or len(salt) < 16:
        raise ValidationFailed("salt must be at least 16 bytes", details={"field": "salt"})
    number = normalize_e164(e164)
    return hmac.new(salt, number.encode(), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- abandon accounting


def abandon_rate(abandoned: float, connected: float) -> float:
    """abandoned / (abandoned + connected); 0 when there were no such calls."""
    if abandoned < 0 or connected < 0:
        raise ValidationFailed(
            "call counts must not be negative",
            details={"field": "abandoned" if abandoned < 0 else "connected"},
        )
    total = abandoned + connected
    return 0.0 if total == 0 else abandoned / total


@dataclass(frozen=True)
class AbandonCounters:
    """Abandon accounting for one campaign: the current calendar day and the last
    30 days. An AMD false-positive estimate is added to `*_abandoned` by the caller.

    `over_cap`: either rate above the cap. `near_cap`: either rate at or above
    `near_fraction` × cap (also true when over the cap).
    """

    day_abandoned: float = 0
    day_connected: float = 0
    period_abandoned: float = 0
    period_connected: float = 0
    cap: float = DEFAULT_ABANDON_CAP
    near_fraction: float = DEFAULT_NEAR_FRACTION

    def __post_init__(self) -> None:
        for name in ("day_abandoned", "day_connected", "period_abandoned", "period_connected"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValidationFailed(f"{name} must be a number >= 0", details={"field": name})
        if not 0 < self.cap < 1:
            raise ValidationFailed("cap must be between 0 and 1", details={"field": "cap"})
        if not 0 < self.near_fraction <= 1:
            raise ValidationFailed("near_fraction must be in (0, 1]", details={"field": "near_fraction"})

    @property
    def daily_rate(self) -> float:
        return abandon_rate(self.day_abandoned, self.day_connected)

    @property
    def period_rate(self) -> float:
        return abandon_rate(self.period_abandoned, self.period_connected)

    @property
    def over_cap(self) -> bool:
        return self.daily_rate > self.cap or self.period_rate > self.cap

    @property
    def near_cap(self) -> bool:
        limit = self.cap * self.near_fraction
        return self.daily_rate >= limit or self.period_rate >= limit

    def remaining_abandons(self) -> float:
        """How many more abandoned calls keep both rates at or under the cap with no
        further connects (0 when already over)."""

        def room(a: float, c: float) -> float:
            # (a + x) / (a + x + c) <= cap  <=>  x <= cap * c / (1 - cap) - a
            return max(0.0, self.cap * c / (1 - self.cap) - a)

        return min(room(self.day_abandoned, self.day_connected), room(self.period_abandoned, self.period_connected))

    def add(self, *, abandoned: float = 0, connected: float = 0) -> AbandonCounters:
        return AbandonCounters(
            day_abandoned=self.day_abandoned + abandoned,
            day_connected=self.day_connected + connected,
            period_abandoned=self.period_abandoned + abandoned,
            period_connected=self.period_connected + connected,
            cap=self.cap,
            near_fraction=self.near_fraction,
        )

    def new_day(self) -> AbandonCounters:
        """Counters for the next calendar day (the 30-day totals are kept; the store
        recomputes them from daily rows)."""
        return AbandonCounters(
            period_abandoned=self.period_abandoned,
            period_connected=self.period_connected,
            cap=self.cap,
            near_fraction=self.near_fraction,
        )
