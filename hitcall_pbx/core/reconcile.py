"""Reconciliation of HitCall's CDRs (call_attempts) with Asterisk's own CDR records.

Pure: no I/O. The adapters (hitcall_pbx.records.reconcile) read both sides; this
module matches them by attempt id and lists what disagrees.

How the two sides meet. The outbound dialplan ([hitcall-outbound]) runs on the ;2
half of the Local channel HitCall originates and sets ``CDR(userfield)=hitcall:<attempt
id>`` before it dials the trunk, so Asterisk's record of the trunk leg carries the
attempt id. That leg can leave more than one record: Dial's own (B side = the trunk
channel, disposition = how the dial ended) and, when dialplan runs on after Dial (a
busy or congested trunk, then ``Hangup()``), a short record with no B side.
`pick_record` takes Dial's: the one offered to the trunk (a B side), an answered one
first. The ;1 half (in Stasis, later in the agent's bridge) and the trunk channel have
records of their own; they are not tagged and are not read.

What is compared, per attempt of the day:

- present on both sides (HitCall rows never originated, e.g. a preview skip or an
  originate Asterisk refused, are not expected in Asterisk; a call still open in
  HitCall and not yet ended in Asterisk is in progress, not a difference);
- the outcome, by class: HitCall's answered_human, answered_machine and abandoned are
  all ANSWERED in Asterisk (the customer's line was answered); busy is BUSY; no_answer
  and cancelled (the service gave up ringing) are NO ANSWER (or CANCEL); congestion
  and failed are CONGESTION or FAILED (which one depends on cdr.conf ``congestion``
  and on the trunk);
- the talk time of an answered call: Asterisk's billsec against HitCall's answered →
  ended, and the whole call: duration against originated → ended, each within a
  tolerance (billsec and duration are whole seconds).

Inbound calls (a caller on the return-call line). [hitcall-inbound] sets
``CDR(userfield)=hitcall:<id>`` on the caller's channel before it answers, with the id of
HitCall's CDR of that call (computed from the channel's unique id by the rule
`records.cdr.inbound_cdr_id` follows). The caller's channel's own record runs from its
arrival to its hangup, or to the moment it joins an agent's bridge: the agent's phone is
the older channel, so the rest of the call is in the record of the agent's phone, which
Asterisk posts when that phone hangs up (the agent logs out), with the caller as its B
side. All records tagged with the id are read together. Compared: present on both
sides; the line answered (every inbound outcome — put through, no agent, abandoned
waiting, self service, untracked — is a call the dialplan answered, so Asterisk says
ANSWERED); and the end: Asterisk's last end against HitCall's ended_at (or, for a call
put through to an agent, its bridged_at) within the tolerance, except for an
``untracked`` call (it ended while no HitCall process followed it: HitCall's ended_at
is when that was found, so Asterisk's end must only not be later).

The day: an attempt belongs to the day of its HitCall created_at; an Asterisk record
whose attempt HitCall does not know at all belongs to the day of its start.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from hitcall_pbx.errors import ValidationFailed

__all__ = [
    "ATTEMPT_TAG_PREFIX",
    "DEFAULT_TOLERANCE_S",
    "AsteriskRecord",
    "Difference",
    "DifferenceKind",
    "HitCallAttempt",
    "OutcomeClass",
    "Reconciliation",
    "asterisk_class",
    "attempt_from_userfield",
    "day_bounds",
    "hitcall_class",
    "pick_record",
    "reconcile",
]

ATTEMPT_TAG_PREFIX = "hitcall:"
DEFAULT_TOLERANCE_S = 2.0
_TAG = re.compile(r"hitcall:([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})")


class OutcomeClass(enum.StrEnum):
    """What both sides can say about a call: the level at which they must agree."""

    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"
    UNKNOWN = "unknown"


_HITCALL_CLASSES: Mapping[str, OutcomeClass] = {
    "answered_human": OutcomeClass.ANSWERED,
    "answered_machine": OutcomeClass.ANSWERED,
    "abandoned": OutcomeClass.ANSWERED,
    "busy": OutcomeClass.BUSY,
    "no_answer": OutcomeClass.NO_ANSWER,
    "cancelled": OutcomeClass.NO_ANSWER,
    "congestion": OutcomeClass.FAILED,
    "failed": OutcomeClass.FAILED,
}

_ASTERISK_CLASSES: Mapping[str, OutcomeClass] = {
    "ANSWERED": OutcomeClass.ANSWERED,
    "BUSY": OutcomeClass.BUSY,
    "NO ANSWER": OutcomeClass.NO_ANSWER,
    "CANCEL": OutcomeClass.NO_ANSWER,  # cdr.conf canceldispositionenabled = yes
    "CONGESTION": OutcomeClass.FAILED,
    "FAILED": OutcomeClass.FAILED,
}


def hitcall_class(outcome: str | None) -> OutcomeClass:
    return _HITCALL_CLASSES.get(outcome or "", OutcomeClass.UNKNOWN)


def asterisk_class(disposition: str) -> OutcomeClass:
    return _ASTERISK_CLASSES.get(disposition.strip().upper(), OutcomeClass.UNKNOWN)


def attempt_from_userfield(userfield: str) -> str | None:
    """The attempt id (lower-case UUID text) a record's user field was tagged with, or None."""
    m = _TAG.search(userfield)
    return m.group(1).lower() if m else None


def day_bounds(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """[start, end) of the local calendar day `day` in `tz` (23 or 25 hours across a DST
    change), in UTC: Python compares and subtracts datetimes of one tzinfo by wall clock."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def _aware(value: datetime | None, name: str) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValidationFailed(f"{name} must be a timezone-aware datetime", details={"field": name})


def _attempt_id(value: str, name: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise ValidationFailed(f"{name} must be an attempt id (UUID)", details={"field": name}) from None


@dataclass(frozen=True, kw_only=True)
class HitCallAttempt:
    """One row of HitCall's CDR (all_attempts), the columns reconciliation reads."""

    attempt_id: str
    created_at: datetime
    state: str
    outcome: str | None
    originated_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    direction: str = "outbound"

    def __post_init__(self) -> None:
        object.__setattr__(self, "attempt_id", _attempt_id(self.attempt_id, "attempt_id"))
        for name in ("created_at", "originated_at", "answered_at", "ended_at"):
            _aware(getattr(self, name), name)

    @property
    def ended(self) -> bool:
        return self.state == "ended" and self.ended_at is not None

    def summary(self) -> dict[str, object]:
        return {
            "outcome": self.outcome,
            "state": self.state,
            "originated_at": _iso(self.originated_at),
            "answered_at": _iso(self.answered_at),
            "ended_at": _iso(self.ended_at),
            "talk_s": _seconds(self.answered_at, self.ended_at),
            "duration_s": _seconds(self.originated_at, self.ended_at),
        }


@dataclass(frozen=True, kw_only=True)
class AsteriskRecord:
    """One tagged Asterisk CDR record (cdr_csv line or cdr_pgsql row)."""

    attempt_id: str
    start: datetime
    end: datetime | None
    answer: datetime | None
    duration: int
    billsec: int
    disposition: str
    dstchannel: str = ""
    channel: str = ""
    uniqueid: str = ""
    order: int = 0  # position in the source (line number, sequence): later wins a tie

    def __post_init__(self) -> None:
        object.__setattr__(self, "attempt_id", _attempt_id(self.attempt_id, "attempt_id"))
        for name in ("start", "end", "answer"):
            _aware(getattr(self, name), name)
        for name in ("duration", "billsec"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValidationFailed(f"{name} must be an integer >= 0", details={"field": name})

    @property
    def offered(self) -> bool:
        """Dial's record: the call was offered to a B side (the trunk channel)."""
        return bool(self.dstchannel.strip())

    def summary(self) -> dict[str, object]:
        return {
            "disposition": self.disposition,
            "start": _iso(self.start),
            "answer": _iso(self.answer),
            "end": _iso(self.end),
            "billsec": self.billsec,
            "duration": self.duration,
            "channel": self.channel,
            "dstchannel": self.dstchannel,
            "uniqueid": self.uniqueid,
        }


def pick_record(records: Iterable[AsteriskRecord]) -> AsteriskRecord:
    """The record that speaks for an attempt among those tagged with its id: Dial's
    (offered to the trunk) before any other, an answered one before an unanswered one,
    then the latest."""
    candidates = list(records)
    if not candidates:
        raise ValidationFailed("no record to pick", details={"field": "records"})

    def rank(r: AsteriskRecord) -> tuple[bool, bool, datetime, int]:
        return (r.offered, asterisk_class(r.disposition) is OutcomeClass.ANSWERED, r.end or r.start, r.order)

    return max(candidates, key=rank)


class DifferenceKind(enum.StrEnum):
    MISSING_IN_HITCALL = "missing_in_hitcall"  # Asterisk dialled an attempt HitCall has no row for
    MISSING_IN_ASTERISK = "missing_in_asterisk"  # HitCall ended a dialled attempt Asterisk has no record of
    OPEN_IN_HITCALL = "open_in_hitcall"  # Asterisk ended the call; HitCall's row is still open
    OUTCOME = "outcome"  # outcome classes differ
    TALK_TIME = "talk_time"  # billsec vs answered → ended
    DURATION = "duration"  # duration vs originated → ended
    END_TIME = "end_time"  # inbound: Asterisk's last end vs HitCall's ended_at


@dataclass(frozen=True)
class Difference:
    kind: DifferenceKind
    attempt_id: str
    detail: str
    hitcall: Mapping[str, object] | None = None
    asterisk: Mapping[str, object] | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "attempt_id": self.attempt_id,
            "detail": self.detail,
            "hitcall": dict(self.hitcall) if self.hitcall is not None else None,
            "asterisk": dict(self.asterisk) if self.asterisk is not None else None,
        }


@dataclass(frozen=True)
class Reconciliation:
    day_start: datetime
    day_end: datetime
    tolerance_s: float
    hitcall_attempts: int  # outbound attempts of the day in HitCall
    asterisk_attempts: int  # attempts of the day with a tagged Asterisk record
    matched: int  # on both sides and compared
    not_dialled: int  # HitCall attempts never originated (no Asterisk record expected)
    in_progress: int  # open in HitCall and no Asterisk record yet
    not_reconciled: int  # HitCall rows of a direction neither outbound nor inbound
    differences: tuple[Difference, ...] = field(default_factory=tuple)
    inbound: int = 0  # of hitcall_attempts: inbound calls (return calls)

    @property
    def clean(self) -> bool:
        return not self.differences

    def of_kind(self, kind: DifferenceKind) -> list[Difference]:
        return [d for d in self.differences if d.kind is kind]

    def as_dict(self) -> dict[str, object]:
        counts = {k.value: len(self.of_kind(k)) for k in DifferenceKind}
        return {
            "from": self.day_start.isoformat(),
            "to": self.day_end.isoformat(),
            "tolerance_s": self.tolerance_s,
            "hitcall_attempts": self.hitcall_attempts,
            "asterisk_attempts": self.asterisk_attempts,
            "matched": self.matched,
            "not_dialled": self.not_dialled,
            "in_progress": self.in_progress,
            "not_reconciled": self.not_reconciled,
            "inbound": self.inbound,
            "difference_counts": counts,
            "differences": [d.as_dict() for d in self.differences],
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def reconcile(
    hitcall: Iterable[HitCallAttempt],
    asterisk: Iterable[AsteriskRecord],
    *,
    day_start: datetime,
    day_end: datetime,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> Reconciliation:
    """Match both sides by attempt id and list what disagrees for the day [day_start, day_end).

    `hitcall`: HitCall's attempts created in the day, and any others Asterisk's records
    name (so that an attempt across midnight is not called missing). `asterisk`: tagged
    records whose start is in or near the day (the caller reads a margin on both sides).
    """
    _aware(day_start, "day_start")
    _aware(day_end, "day_end")
    if day_end <= day_start:
        raise ValidationFailed("day_end must be after day_start", details={"field": "day_end"})
    if isinstance(tolerance_s, bool) or not isinstance(tolerance_s, (int, float)) or not tolerance_s >= 0:
        raise ValidationFailed("tolerance_s must be a number >= 0", details={"field": "tolerance_s"})

    def in_day(t: datetime) -> bool:
        return day_start <= t < day_end

    rows = {h.attempt_id: h for h in hitcall}
    records: dict[str, list[AsteriskRecord]] = {}
    for r in asterisk:
        records.setdefault(r.attempt_id, []).append(r)

    scope: set[str] = set()
    not_reconciled = 0
    for aid, row in rows.items():
        if not in_day(row.created_at):
            continue
        if row.direction not in ("outbound", "inbound"):
            not_reconciled += 1
            continue
        scope.add(aid)
    scope |= {aid for aid, recs in records.items() if aid not in rows and any(in_day(r.start) for r in recs)}

    differences: list[Difference] = []
    matched = not_dialled = in_progress = asterisk_attempts = hitcall_attempts = inbound = 0
    for aid in sorted(scope):
        h = rows.get(aid)
        recs = records.get(aid)
        hitcall_attempts += h is not None
        inbound += h is not None and h.direction == "inbound"
        asterisk_attempts += bool(recs)
        if h is None:
            assert recs  # in scope through its records
            r = pick_record(recs)
            differences.append(
                Difference(
                    DifferenceKind.MISSING_IN_HITCALL,
                    aid,
                    f"Asterisk has a record of it ({r.disposition}); HitCall has no call with this id",
                    asterisk=r.summary(),
                )
            )
            continue
        if not recs:
            if not h.ended:
                in_progress += 1  # Asterisk writes its record when the call ends
            elif h.originated_at is None and h.direction == "outbound":
                not_dialled += 1  # Asterisk never took the originate: no channel, no record
            else:
                differences.append(
                    Difference(
                        DifferenceKind.MISSING_IN_ASTERISK,
                        aid,
                        f"HitCall {'had' if h.direction == 'inbound' else 'dialled'} it ({h.outcome}); "
                        "Asterisk has no record tagged with this id",
                        hitcall=h.summary(),
                    )
                )
            continue
        matched += 1
        if h.direction == "inbound":
            differences.extend(_compare_inbound(h, recs, tolerance_s))
        else:
            differences.extend(_compare(h, pick_record(recs), tolerance_s))
    return Reconciliation(
        day_start=day_start,
        day_end=day_end,
        tolerance_s=float(tolerance_s),
        hitcall_attempts=hitcall_attempts,
        asterisk_attempts=asterisk_attempts,
        matched=matched,
        not_dialled=not_dialled,
        in_progress=in_progress,
        not_reconciled=not_reconciled,
        differences=tuple(differences),
        inbound=inbound,
    )


def _compare(h: HitCallAttempt, r: AsteriskRecord, tolerance_s: float) -> list[Difference]:
    aid = h.attempt_id

    def diff(kind: DifferenceKind, detail: str) -> Difference:
        return Difference(kind, aid, detail, hitcall=h.summary(), asterisk=r.summary())

    if not h.ended:
        return [diff(DifferenceKind.OPEN_IN_HITCALL, f"Asterisk ended it ({r.disposition}); HitCall's row is open")]
    out: list[Difference] = []
    mine, theirs = hitcall_class(h.outcome), asterisk_class(r.disposition)
    if mine is OutcomeClass.UNKNOWN or mine is not theirs:
        out.append(diff(DifferenceKind.OUTCOME, f"HitCall {h.outcome} ({mine}), Asterisk {r.disposition} ({theirs})"))
    talk = _seconds(h.answered_at, h.ended_at)
    if theirs is OutcomeClass.ANSWERED and talk is not None and abs(r.billsec - talk) > tolerance_s:
        out.append(diff(DifferenceKind.TALK_TIME, f"billsec {r.billsec} s, HitCall answered → ended {talk:g} s"))
    whole = _seconds(h.originated_at, h.ended_at)
    if whole is not None and abs(r.duration - whole) > tolerance_s:
        out.append(diff(DifferenceKind.DURATION, f"duration {r.duration} s, HitCall originated → ended {whole:g} s"))
    return out


def _compare_inbound(h: HitCallAttempt, recs: list[AsteriskRecord], tolerance_s: float) -> list[Difference]:
    """An inbound call against all of its channel's tagged records (see the module doc)."""
    ordered = sorted(recs, key=lambda r: (r.end or r.start, r.order))
    last = ordered[-1]
    answered = [r for r in recs if asterisk_class(r.disposition) is OutcomeClass.ANSWERED]
    picked = answered[-1] if answered else last
    summary = picked.summary() | {"end": _iso(last.end), "records": len(recs)}

    def diff(kind: DifferenceKind, detail: str) -> Difference:
        return Difference(kind, h.attempt_id, detail, hitcall=h.summary(), asterisk=summary)

    if not h.ended:
        return [diff(DifferenceKind.OPEN_IN_HITCALL, f"Asterisk ended it ({last.disposition}); HitCall's row is open")]
    out: list[Difference] = []
    if not answered:
        out.append(
            diff(DifferenceKind.OUTCOME, f"HitCall {h.outcome} (a call the line answered), Asterisk {last.disposition}")
        )
    if last.end is not None and h.ended_at is not None:
        late = (last.end - h.ended_at).total_seconds()
        # The caller's own record ends where it joined the agent (answered_at = bridged_at).
        at_bridge = h.answered_at is not None and abs((last.end - h.answered_at).total_seconds()) <= tolerance_s
        if late > tolerance_s or (h.outcome != "untracked" and -late > tolerance_s and not at_bridge):
            out.append(
                diff(
                    DifferenceKind.END_TIME,
                    f"Asterisk ended it at {last.end.isoformat()}, HitCall at {h.ended_at.isoformat()} ({late:+.3g} s)",
                )
            )
    return out
