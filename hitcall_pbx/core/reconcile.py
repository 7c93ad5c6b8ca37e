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

Transfers to external numbers. [hitcall-transfer] sets
``CDR(userfield)=hitcall-transfer:<attempt id>`` on the ;2 half of the Local channel HitCall
originates to the number, so Asterisk's record of that trunk leg (Dial's: offered to the
trunk) names the attempt whose customer was transferred. HitCall's side is the call's legs
(call_legs) of an external party (no agent): a consultation and the talk with the customer
after it are one Asterisk channel, so a number's legs that follow each other without a gap
are one span. Compared, per attempt: each span has an answered transfer record and each
answered transfer record a span (in order of time), and the span's length against the
record's billsec within the tolerance. A transfer the number did not answer has no leg and
is not compared (HitCall keeps only the last transfer's failure, on the CDR row).

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
    "TRANSFER_TAG_PREFIX",
    "AsteriskRecord",
    "Difference",
    "DifferenceKind",
    "HitCallAttempt",
    "OutcomeClass",
    "Reconciliation",
    "TransferLeg",
    "asterisk_class",
    "attempt_from_userfield",
    "day_bounds",
    "hitcall_class",
    "pick_record",
    "reconcile",
    "transfer_from_userfield",
    "transfer_spans",
]

ATTEMPT_TAG_PREFIX = "hitcall:"
TRANSFER_TAG_PREFIX = "hitcall-transfer:"
DEFAULT_TOLERANCE_S = 2.0
_UUID = r"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
_TAG = re.compile(r"hitcall:" + _UUID)
_TRANSFER_TAG = re.compile(r"hitcall-transfer:" + _UUID)


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


def transfer_from_userfield(userfield: str) -> str | None:
    """The attempt id a transfer leg's record was tagged with ([hitcall-transfer]), or None."""
    m = _TRANSFER_TAG.search(userfield)
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
    transfer: bool = False  # a transfer leg's record (hitcall-transfer:), not the attempt's own

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


@dataclass(frozen=True, kw_only=True)
class TransferLeg:
    """One leg (call_legs row) of an external party of an attempt: a number the customer was
    transferred to, or consulted about (the number is None once the attempt is anonymised)."""

    attempt_id: str
    joined_at: datetime
    left_at: datetime
    number: str | None = None
    seq: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "attempt_id", _attempt_id(self.attempt_id, "attempt_id"))
        _aware(self.joined_at, "joined_at")
        _aware(self.left_at, "left_at")
        if self.left_at < self.joined_at:
            raise ValidationFailed("left_at must not be before joined_at", details={"field": "left_at"})


@dataclass(frozen=True)
class _Span:
    number: str | None
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return round((self.end - self.start).total_seconds(), 3)

    def summary(self) -> dict[str, object]:
        return {"joined_at": _iso(self.start), "left_at": _iso(self.end), "talk_s": self.seconds}


def transfer_spans(legs: Iterable[TransferLeg], gap_s: float = DEFAULT_TOLERANCE_S) -> list[_Span]:
    """One attempt's external legs as the channels Asterisk saw: legs of one number that follow
    each other within `gap_s` (a consultation, then the talk with the customer) are one span."""
    spans: list[_Span] = []
    for leg in sorted(legs, key=lambda x: (x.joined_at, x.seq)):
        last = spans[-1] if spans else None
        if last is not None and last.number == leg.number and (leg.joined_at - last.end).total_seconds() <= gap_s:
            spans[-1] = _Span(last.number, last.start, max(last.end, leg.left_at))
        else:
            spans.append(_Span(leg.number, leg.joined_at, leg.left_at))
    return spans


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
    TRANSFER_MISSING_IN_ASTERISK = "transfer_missing_in_asterisk"  # a leg to a number with no answered record
    TRANSFER_MISSING_IN_HITCALL = "transfer_missing_in_hitcall"  # an answered transfer record with no leg
    TRANSFER_TALK_TIME = "transfer_talk_time"  # billsec vs the number's span


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
    transfers: int = 0  # transfer legs to numbers matched on both sides

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
            "transfers": self.transfers,
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
    transfer_legs: Iterable[TransferLeg] = (),
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
    transfer_records: dict[str, list[AsteriskRecord]] = {}
    for r in asterisk:
        (transfer_records if r.transfer else records).setdefault(r.attempt_id, []).append(r)
    legs: dict[str, list[TransferLeg]] = {}
    for leg in transfer_legs:
        legs.setdefault(leg.attempt_id, []).append(leg)

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
    transfer_scope = {aid for aid in scope if aid in rows} | {
        aid for aid, recs in transfer_records.items() if aid not in rows and any(in_day(r.start) for r in recs)
    }

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
    transfers = 0
    for aid in sorted(transfer_scope):
        found, matched_legs = _compare_transfers(aid, legs.get(aid, []), transfer_records.get(aid, []), tolerance_s)
        differences.extend(found)
        transfers += matched_legs
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
        transfers=transfers,
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


def _compare_transfers(
    aid: str, legs: list[TransferLeg], recs: list[AsteriskRecord], tolerance_s: float
) -> tuple[list[Difference], int]:
    """An attempt's spans with external numbers against its answered transfer records, paired in
    order of time (see the module doc). Returns the differences and how many pairs matched."""
    spans = transfer_spans(legs, tolerance_s)
    answered = sorted(
        (r for r in recs if r.offered and asterisk_class(r.disposition) is OutcomeClass.ANSWERED),
        key=lambda r: (r.answer or r.start, r.order),
    )
    out: list[Difference] = []
    for span, rec in zip(spans, answered, strict=False):
        if abs(rec.billsec - span.seconds) > tolerance_s:
            out.append(
                Difference(
                    DifferenceKind.TRANSFER_TALK_TIME,
                    aid,
                    f"transfer leg billsec {rec.billsec} s, HitCall's leg {span.seconds:g} s",
                    hitcall=span.summary(),
                    asterisk=rec.summary(),
                )
            )
    for span in spans[len(answered) :]:
        out.append(
            Difference(
                DifferenceKind.TRANSFER_MISSING_IN_ASTERISK,
                aid,
                "HitCall has a leg with an external number; Asterisk has no answered transfer record of the attempt",
                hitcall=span.summary(),
            )
        )
    for rec in answered[len(spans) :]:
        out.append(
            Difference(
                DifferenceKind.TRANSFER_MISSING_IN_HITCALL,
                aid,
                "Asterisk has an answered transfer record of the attempt; HitCall has no leg with an external number",
                asterisk=rec.summary(),
            )
        )
    return out, min(len(spans), len(answered))
