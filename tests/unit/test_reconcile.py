"""Reconciliation of HitCall's CDRs with Asterisk's: the pure comparison (core.reconcile)
and the reading of cdr_csv lines (records.reconcile)."""

from __future__ import annotations

import argparse
import csv
import io
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitcall_pbx.core.reconcile import (
    AsteriskRecord,
    DifferenceKind,
    HitCallAttempt,
    OutcomeClass,
    TransferLeg,
    asterisk_class,
    attempt_from_userfield,
    day_bounds,
    hitcall_class,
    pick_record,
    reconcile,
    transfer_from_userfield,
    transfer_spans,
)
from hitcall_pbx.errors import ValidationFailed
from hitcall_pbx.records.reconcile import csv_record, parse_request, read_csv

DAY_START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
DAY_END = DAY_START + timedelta(days=1)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _id(n: int) -> str:
    return str(uuid.UUID(int=n))


def hitcall(
    n: int,
    outcome: str,
    *,
    at: datetime = T0,
    ring_s: float = 3.0,
    talk_s: float | None = None,
    state: str = "ended",
    originated: bool = True,
    direction: str = "outbound",
) -> HitCallAttempt:
    originated_at = at + timedelta(milliseconds=40) if originated else None
    answered_at = originated_at + timedelta(seconds=ring_s) if originated_at and talk_s is not None else None
    if state != "ended":
        ended_at = None
    elif answered_at is not None:
        ended_at = answered_at + timedelta(seconds=talk_s or 0)
    else:
        ended_at = (originated_at or at) + timedelta(seconds=ring_s)
    return HitCallAttempt(
        attempt_id=_id(n),
        created_at=at,
        state=state,
        outcome=outcome if state == "ended" else None,
        originated_at=originated_at,
        answered_at=answered_at,
        ended_at=ended_at,
        direction=direction,
    )


def record(
    n: int,
    disposition: str,
    *,
    at: datetime = T0,
    ring_s: int = 3,
    billsec: int = 0,
    offered: bool = True,
    order: int = 0,
) -> AsteriskRecord:
    start = at.replace(microsecond=0)
    answer = start + timedelta(seconds=ring_s) if disposition == "ANSWERED" else None
    return AsteriskRecord(
        attempt_id=_id(n),
        start=start,
        answer=answer,
        end=start + timedelta(seconds=ring_s + billsec),
        duration=ring_s + billsec,
        billsec=billsec,
        disposition=disposition,
        dstchannel="Local/+358401000001@sim-customer-00000003;1" if offered else "",
        channel="Local/+358401000001@hitcall-outbound-00000001;2",
        order=order,
    )


def run(h: list[HitCallAttempt], a: list[AsteriskRecord], **kw: float):
    return reconcile(h, a, day_start=DAY_START, day_end=DAY_END, **kw)


# ------------------------------------------------------------------- tags ---
def test_attempt_tag_is_read_from_the_user_field() -> None:
    aid = "485bec32-c83e-48b6-9bdf-b3512129ab5d"
    assert attempt_from_userfield(f"hitcall:{aid}") == aid
    assert attempt_from_userfield(f"billing=7;hitcall:{aid.upper()}") == aid, "beside the operator's own text"
    assert attempt_from_userfield(aid) is None, "only the tag, not any UUID (linkedid, uniqueid)"
    assert attempt_from_userfield(f"{aid};2") is None
    assert attempt_from_userfield("") is None
    assert attempt_from_userfield("hitcall:not-an-id") is None


# ---------------------------------------------------------------- classes ---
@pytest.mark.parametrize(
    ("outcome", "disposition"),
    [
        ("answered_human", "ANSWERED"),
        ("answered_machine", "ANSWERED"),
        ("abandoned", "ANSWERED"),
        ("busy", "BUSY"),
        ("no_answer", "NO ANSWER"),
        ("no_answer", "CANCEL"),
        ("cancelled", "NO ANSWER"),
        ("congestion", "CONGESTION"),
        ("congestion", "FAILED"),
        ("failed", "FAILED"),
        ("failed", "CONGESTION"),
    ],
)
def test_outcomes_that_agree(outcome: str, disposition: str) -> None:
    assert hitcall_class(outcome) is asterisk_class(disposition) is not OutcomeClass.UNKNOWN
    assert run([hitcall(1, outcome)], [record(1, disposition)]).of_kind(DifferenceKind.OUTCOME) == []


@pytest.mark.parametrize(
    ("outcome", "disposition"),
    [
        ("congestion", "ANSWERED"),  # answered in a gap of ARI events, recorded as congestion
        ("answered_human", "NO ANSWER"),
        ("abandoned", "BUSY"),
        ("no_answer", "BUSY"),
        ("busy", "FAILED"),
        ("no_answer", "ANSWERED"),
        ("answered_human", "SOMETHING ELSE"),
        ("no_agent", "ANSWERED"),  # an inbound outcome on an outbound row
    ],
)
def test_outcomes_that_disagree(outcome: str, disposition: str) -> None:
    result = run([hitcall(1, outcome)], [record(1, disposition)])
    [diff] = result.of_kind(DifferenceKind.OUTCOME)
    assert diff.attempt_id == _id(1) and outcome in diff.detail and disposition in diff.detail
    assert not result.clean


# ------------------------------------------------------------ pick_record ---
def test_the_dial_record_speaks_for_the_attempt() -> None:
    """A busy trunk leaves Dial's record (B side = the trunk) and, after Dial, the
    record of Hangup() with no B side: Dial's is taken, whichever comes last."""
    dial = record(1, "BUSY", ring_s=0, order=5)
    after_dial = record(1, "BUSY", ring_s=0, offered=False, order=14)
    assert pick_record([after_dial, dial]) is dial
    assert pick_record([dial, after_dial]) is dial


def test_an_answered_dial_record_wins_then_the_latest() -> None:
    first = record(1, "NO ANSWER", order=1)
    answered = record(1, "ANSWERED", billsec=5, order=2)
    later = record(1, "NO ANSWER", at=T0 + timedelta(seconds=30), order=3)
    assert pick_record([first, answered, later]) is answered
    assert pick_record([first, later]) is later
    lone = record(1, "NO ANSWER", offered=False)
    assert pick_record([lone]) is lone
    with pytest.raises(ValidationFailed):
        pick_record([])


# -------------------------------------------------------------- reconcile ---
def test_a_day_of_matching_calls_has_no_difference() -> None:
    h = [
        hitcall(1, "answered_human", talk_s=12.4),
        hitcall(2, "busy", ring_s=0.2),
        hitcall(3, "no_answer", ring_s=15.1),
        hitcall(4, "abandoned", talk_s=6.7),
        hitcall(5, "answered_machine", talk_s=1.8),
        hitcall(6, "congestion", ring_s=0.1),
    ]
    a = [
        record(1, "ANSWERED", billsec=12),
        record(2, "BUSY", ring_s=0),
        record(2, "BUSY", ring_s=0, offered=False),
        record(3, "NO ANSWER", ring_s=15),
        record(4, "ANSWERED", billsec=6),
        record(5, "ANSWERED", billsec=1),
        record(6, "CONGESTION", ring_s=0),
    ]
    result = run(h, a)
    assert result.clean, result.differences
    assert (result.hitcall_attempts, result.asterisk_attempts, result.matched) == (6, 6, 6)
    assert result.as_dict()["difference_counts"] == {k.value: 0 for k in DifferenceKind}


def test_missing_on_either_side() -> None:
    result = run(
        [hitcall(1, "answered_human", talk_s=5), hitcall(2, "busy")], [record(2, "BUSY"), record(3, "NO ANSWER")]
    )
    [missing_in_asterisk] = result.of_kind(DifferenceKind.MISSING_IN_ASTERISK)
    [missing_in_hitcall] = result.of_kind(DifferenceKind.MISSING_IN_HITCALL)
    assert missing_in_asterisk.attempt_id == _id(1) and missing_in_asterisk.asterisk is None
    assert missing_in_asterisk.hitcall is not None and missing_in_asterisk.hitcall["outcome"] == "answered_human"
    assert missing_in_hitcall.attempt_id == _id(3) and missing_in_hitcall.hitcall is None
    assert missing_in_hitcall.asterisk is not None and missing_in_hitcall.asterisk["disposition"] == "NO ANSWER"
    assert len(result.differences) == 2 and result.matched == 1


def test_attempts_never_dialled_or_still_open_are_not_differences() -> None:
    h = [
        hitcall(1, "failed", originated=False),  # Asterisk refused the originate: no channel, no record
        hitcall(2, "cancelled", state="reserved", originated=False),
        hitcall(3, "answered_human", state="bridged", talk_s=3),  # talking now: Asterisk writes at the end
    ]
    result = run(h, [])
    assert result.clean, result.differences
    assert (result.not_dialled, result.in_progress, result.matched) == (1, 2, 0)


def test_a_call_asterisk_ended_but_hitcall_left_open() -> None:
    result = run([hitcall(1, "answered_human", state="bridged", talk_s=3)], [record(1, "ANSWERED", billsec=3)])
    [diff] = result.differences
    assert diff.kind is DifferenceKind.OPEN_IN_HITCALL


def test_a_record_of_an_attempt_hitcall_did_not_originate_is_compared() -> None:
    result = run([hitcall(1, "failed", originated=False)], [record(1, "ANSWERED", billsec=4)])
    assert [d.kind for d in result.differences] == [DifferenceKind.OUTCOME]


def test_talk_time_within_the_tolerance_agrees_beyond_it_differs() -> None:
    # billsec is whole seconds (truncated), HitCall's times are exact
    ok = run([hitcall(1, "answered_human", talk_s=12.9)], [record(1, "ANSWERED", billsec=12)])
    assert ok.clean, ok.differences
    bad = run([hitcall(1, "answered_human", talk_s=15.5)], [record(1, "ANSWERED", billsec=12)])
    [talk] = bad.of_kind(DifferenceKind.TALK_TIME)
    assert "billsec 12 s" in talk.detail and "15.5 s" in talk.detail
    assert run([hitcall(1, "answered_human", talk_s=15.5)], [record(1, "ANSWERED", billsec=12)], tolerance_s=4).clean


def test_ring_time_disagreement_is_a_duration_difference() -> None:
    result = run([hitcall(1, "no_answer", ring_s=25)], [record(1, "NO ANSWER", ring_s=15)])
    [diff] = result.differences
    assert diff.kind is DifferenceKind.DURATION and "duration 15 s" in diff.detail


def test_the_day_is_hitcalls_created_at_or_else_asterisks_start() -> None:
    before = DAY_START - timedelta(milliseconds=300)
    # Created just before midnight, started in Asterisk just after: yesterday's attempt.
    h = [hitcall(1, "busy", at=before, ring_s=0.1), hitcall(2, "busy", at=DAY_END - timedelta(seconds=1))]
    a = [record(1, "BUSY", at=DAY_START, ring_s=0), record(2, "BUSY", at=DAY_END - timedelta(seconds=1))]
    today = run(h, a)
    assert today.clean and today.matched == 1 and today.hitcall_attempts == 1
    yesterday = reconcile(h, a, day_start=DAY_START - timedelta(days=1), day_end=DAY_START)
    assert yesterday.clean and yesterday.matched == 1
    # An unknown attempt belongs to the day of its start.
    stray = [record(3, "ANSWERED", at=DAY_START - timedelta(minutes=5), billsec=3)]
    assert run([], stray).clean
    assert [
        d.kind for d in reconcile([], stray, day_start=DAY_START - timedelta(days=1), day_end=DAY_START).differences
    ] == [DifferenceKind.MISSING_IN_HITCALL]


def inbound_call(n: int, outcome: str, *, waited_s: float = 2.0, talk_s: float = 0.0) -> HitCallAttempt:
    """An inbound row as the router writes it: created at arrival, answered_at = bridged."""
    bridged = T0 + timedelta(seconds=waited_s) if outcome == "answered_human" else None
    return HitCallAttempt(
        attempt_id=_id(n),
        created_at=T0,
        state="ended",
        outcome=outcome,
        answered_at=bridged,
        ended_at=T0 + timedelta(seconds=waited_s + talk_s),
        direction="inbound",
    )


def caller_records(n: int, *, menu_s: int, waited_s: int, talk_s: int, disposition: str = "ANSWERED"):
    """The caller's channel in Asterisk: alone (menu, waiting) until the agent's bridge,
    then beside the agent's phone (its party B): two records tagged with the call's id."""
    start = T0.replace(microsecond=0) - timedelta(seconds=menu_s)
    joined = start + timedelta(seconds=menu_s + waited_s)
    end = joined + timedelta(seconds=talk_s)
    alone = AsteriskRecord(
        attempt_id=_id(n),
        start=start,
        answer=start if disposition == "ANSWERED" else None,
        end=joined if talk_s else end,
        duration=int(((joined if talk_s else end) - start).total_seconds()),
        billsec=int(((joined if talk_s else end) - start).total_seconds()) if disposition == "ANSWERED" else 0,
        disposition=disposition,
        channel="Local/0201234567@hitcall-inbound-00000001;2",
        order=1,
    )
    if not talk_s:
        return [alone]
    beside = AsteriskRecord(
        attempt_id=_id(n),
        start=joined,
        answer=joined,
        end=end,
        duration=talk_s,
        billsec=talk_s,
        disposition="ANSWERED",
        channel="PJSIP/agent1-00000002",
        dstchannel="Local/0201234567@hitcall-inbound-00000001;2",
        order=2,
    )
    return [alone, beside]


def test_inbound_calls_are_reconciled_by_their_line_answer_and_end() -> None:
    h = [
        inbound_call(1, "answered_human", waited_s=2, talk_s=30),
        inbound_call(2, "abandoned", waited_s=5),
        inbound_call(3, "self_service", waited_s=0, talk_s=6),
    ]
    a = caller_records(1, menu_s=4, waited_s=2, talk_s=30)
    a += caller_records(2, menu_s=4, waited_s=5, talk_s=0)
    a += caller_records(3, menu_s=0, waited_s=6, talk_s=0)
    result = run(h, a)
    assert result.clean, [d.as_dict() for d in result.differences]
    assert (result.hitcall_attempts, result.inbound, result.matched, result.not_reconciled) == (3, 3, 3, 0)
    # Before the agent's phone hangs up, Asterisk has only the caller's record up to the bridge.
    alone = [r for r in a if not r.offered]
    assert run(h, alone).clean


def test_an_inbound_call_missing_on_either_side_or_ending_elsewhere_is_a_difference() -> None:
    h = [
        inbound_call(1, "answered_human", waited_s=2, talk_s=30),  # Asterisk ended it 10 s later
        inbound_call(2, "no_agent", waited_s=60),  # no Asterisk record
        inbound_call(4, "abandoned", waited_s=3),  # the line never answered in Asterisk
    ]
    a = caller_records(1, menu_s=4, waited_s=2, talk_s=40)
    a += caller_records(3, menu_s=4, waited_s=1, talk_s=0)  # HitCall has no such call
    a += caller_records(4, menu_s=0, waited_s=3, talk_s=0, disposition="NO ANSWER")
    kinds = sorted((d.attempt_id[-1], d.kind.value) for d in run(h, a).differences)
    assert kinds == [
        ("1", "end_time"),
        ("2", "missing_in_asterisk"),
        ("3", "missing_in_hitcall"),
        ("4", "outcome"),
    ]


def test_an_untracked_call_may_have_ended_in_asterisk_before_hitcall_found_it_gone() -> None:
    # HitCall's ended_at is when restart recovery found the channel gone: 40 s after Asterisk's end.
    gone = inbound_call(1, "untracked", waited_s=50)
    assert run([gone], caller_records(1, menu_s=4, waited_s=10, talk_s=0)).clean
    # Asterisk ending it later than HitCall says it was gone is a difference all the same.
    late = inbound_call(2, "untracked", waited_s=5)
    [diff] = run([late], caller_records(2, menu_s=0, waited_s=20, talk_s=0)).differences
    assert diff.kind is DifferenceKind.END_TIME


def test_rows_of_another_direction_are_counted_not_reconciled() -> None:
    result = run([hitcall(1, "answered_human", talk_s=4, direction="transfer")], [])
    assert result.clean and result.not_reconciled == 1 and result.hitcall_attempts == 0


def test_day_bounds_follow_the_zone_across_dst() -> None:
    helsinki = ZoneInfo("Europe/Helsinki")
    start, end = day_bounds(date(2026, 3, 29), helsinki)  # clocks forward at 03:00
    assert start == datetime(2026, 3, 28, 22, 0, tzinfo=UTC)
    assert (end - start) == timedelta(hours=23)
    start, end = day_bounds(date(2026, 7, 1), helsinki)
    assert start == datetime(2026, 6, 30, 21, 0, tzinfo=UTC) and end - start == timedelta(hours=24)


def test_inputs_are_checked() -> None:
    with pytest.raises(ValidationFailed):
        HitCallAttempt(attempt_id="x", created_at=T0, state="ended", outcome="busy", ended_at=T0)
    with pytest.raises(ValidationFailed):
        HitCallAttempt(attempt_id=_id(1), created_at=T0.replace(tzinfo=None), state="ended", outcome="busy")
    with pytest.raises(ValidationFailed):
        AsteriskRecord(attempt_id=_id(1), start=T0, end=T0, answer=None, duration=-1, billsec=0, disposition="BUSY")
    with pytest.raises(ValidationFailed):
        run([], [], tolerance_s=-1)
    with pytest.raises(ValidationFailed):
        reconcile([], [], day_start=DAY_END, day_end=DAY_START)


_OUTCOME_DISPOSITION = {
    "answered_human": "ANSWERED",
    "answered_machine": "ANSWERED",
    "abandoned": "ANSWERED",
    "busy": "BUSY",
    "no_answer": "NO ANSWER",
    "cancelled": "NO ANSWER",
    "congestion": "CONGESTION",
    "failed": "FAILED",
}
_calls = st.lists(
    st.tuples(
        st.sampled_from(sorted(_OUTCOME_DISPOSITION)),
        st.integers(0, 86_399),  # second of the day
        st.integers(0, 30),  # ring seconds
        st.integers(0, 600),  # talk seconds
        st.floats(0, 0.9),  # fraction Asterisk's whole seconds drop
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(_calls, st.data())
def test_consistent_sides_agree_and_each_dropped_record_is_missing(calls: list, data: st.DataObject) -> None:
    h, a = [], []
    for n, (outcome, second, ring, talk, frac) in enumerate(calls, start=1):
        at = DAY_START + timedelta(seconds=second)
        answered = _OUTCOME_DISPOSITION[outcome] == "ANSWERED"
        h.append(hitcall(n, outcome, at=at, ring_s=ring + frac, talk_s=talk + frac if answered else None))
        a.append(record(n, _OUTCOME_DISPOSITION[outcome], at=at, ring_s=ring, billsec=talk if answered else 0))
    result = run(h, a)
    assert result.clean, result.differences
    assert result.matched == len(calls)
    if a:
        dropped = data.draw(st.sets(st.sampled_from([r.attempt_id for r in a])))
        result = run(h, [r for r in a if r.attempt_id not in dropped])
        assert {d.attempt_id for d in result.differences} == dropped
        assert all(d.kind is DifferenceKind.MISSING_IN_ASTERISK for d in result.differences)


# ------------------------------------------------------------- cdr_csv ---
# Lines as Asterisk 22's cdr_csv wrote them on the sandbox (usegmtime, loguniqueid,
# loguserfield, newcdrcolumns): a busy attempt's ;2 leg (Dial's record, then the record
# after Dial with no B side), its untagged ;1 leg, an answered attempt's ;2 leg, and the
# untagged record of the agent it was bridged to.
MASTER_CSV = (Path(__file__).parent / "asterisk22_master.csv").read_text()


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_csv_records_of_asterisk_22() -> None:
    rows = _rows(MASTER_CSV)
    recs = [csv_record(row, n, UTC) for n, row in enumerate(rows, start=1)]
    busy, after_dial, leg1, answered, agent = recs
    assert leg1 is None and agent is None, "untagged legs are not read"
    assert busy is not None and after_dial is not None and answered is not None
    assert busy.attempt_id == after_dial.attempt_id == "ba93edb0-3c11-40ce-b3a4-3769771f44d9"
    assert busy.offered and not after_dial.offered and pick_record([busy, after_dial]) is busy
    assert (busy.disposition, busy.answer, busy.duration, busy.billsec) == ("BUSY", None, 0, 0)
    assert busy.uniqueid == "ba93edb0-3c11-40ce-b3a4-3769771f44d9;2"
    assert answered.start == datetime(2026, 12, 5, 20, 21, 14, tzinfo=UTC)
    assert answered.answer == datetime(2026, 12, 5, 20, 21, 15, tzinfo=UTC)
    assert (answered.disposition, answered.duration, answered.billsec) == ("ANSWERED", 4, 3)
    helsinki = csv_record(rows[3], 4, ZoneInfo("Europe/Helsinki"))
    assert helsinki is not None and helsinki.start == datetime(2026, 12, 5, 18, 21, 14, tzinfo=UTC)


def test_csv_columns_as_cdr_conf_chooses_them() -> None:
    full = _rows(MASTER_CSV)[3]
    no_new_columns = full[:18]  # newcdrcolumns = no
    no_uniqueid = [*full[:16], full[17]]  # loguniqueid = no
    for row in (no_new_columns, no_uniqueid):
        rec = csv_record(row, 1, UTC)
        assert rec is not None and rec.attempt_id == "91198da1-7c94-4d1e-9df0-2c40acfb7122" and rec.billsec == 3
    assert csv_record(full[:16], 1, UTC) is None, "no user field logged: nothing to match"
    assert csv_record(full[:17], 1, UTC) is None, "uniqueid only"
    with pytest.raises(ValueError):
        csv_record([*full[:12], "x", *full[13:]], 1, UTC)  # tagged but unreadable


def test_read_csv_keeps_the_window_and_counts_unreadable_lines(tmp_path: Path) -> None:
    lines = MASTER_CSV.splitlines()
    cut = lines[3][:200]  # cut short before its tag (Asterisk killed mid-write): not an attempt's
    garbled = lines[3].replace(",4,3,", ",4,x,")  # tagged, billsec unreadable
    oversized = '"' + "x" * 200_000 + '",' + lines[3]  # past the csv module's field limit
    path = tmp_path / "Master.csv"
    path.write_text(MASTER_CSV + garbled + "\n" + oversized + "\n" + lines[3] + "\n" + cut)
    since = datetime(2026, 12, 5, 20, 21, tzinfo=UTC)
    read = read_csv(path, UTC, since, since + timedelta(hours=1))
    assert [r.disposition for r in read.records] == ["ANSWERED", "ANSWERED"], "lines after damaged ones are read"
    assert (read.lines, read.tagged, read.unreadable) == (9, 4, 2)


def _args(*argv: str) -> argparse.Namespace:
    from hitcall_pbx.records import command

    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["cdr", "reconcile", *argv])


def test_request_arguments() -> None:
    req = parse_request(_args("--date", "2026-03-29", "--tz", "Europe/Helsinki", "--tolerance", "1.5"))
    assert req.day == date(2026, 3, 29) and str(req.tz) == "Europe/Helsinki" and req.tolerance_s == 1.5
    assert req.csv_path == Path("/var/log/asterisk/cdr-csv/Master.csv") and req.asterisk_dsn is None
    req = parse_request(_args("--date", "2026-03-29", "--asterisk-dsn", "postgresql://a@b/c"))
    assert req.csv_path is None and req.asterisk_table == "cdr"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--date", "2026-02-30"), "--date must be a day"),
        (("--date", "2026-03-01", "--tz", "Mars/Olympus"), "--tz is not a time zone"),
        (("--date", "2026-03-01", "--asterisk-tz", "+02:00"), "--asterisk-tz is not a time zone"),
        (("--date", "2026-03-01", "--tolerance", "soon"), "--tolerance must be seconds"),
        (("--date", "2026-03-01", "--tolerance", "-1"), "--tolerance must be seconds"),
        (("--date", "2026-03-01", "--asterisk-table", "cdr; DROP TABLE x"), "--asterisk-table must be a table"),
    ],
)
def test_bad_arguments(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        parse_request(_args(*argv))


# -------------------------------------------------------------- transfers ---
def transfer_leg(n: int, joined_s: float, left_s: float, number: str | None = "+358401999001", seq: int = 1):
    return TransferLeg(
        attempt_id=_id(n),
        seq=seq,
        number=number,
        joined_at=T0 + timedelta(seconds=joined_s),
        left_at=T0 + timedelta(seconds=left_s),
    )


def transfer_record(n: int, disposition: str, *, at_s: int, ring_s: int = 1, billsec: int = 0) -> AsteriskRecord:
    base = record(n, disposition, at=T0 + timedelta(seconds=at_s), ring_s=ring_s, billsec=billsec)
    return replace(base, transfer=True, channel="Local/+358401999001@hitcall-transfer-00000009;2")


def test_transfer_tag_is_read_apart_from_the_attempt_tag() -> None:
    aid = _id(7)
    assert transfer_from_userfield(f"hitcall-transfer:{aid}") == aid
    assert attempt_from_userfield(f"hitcall-transfer:{aid}") is None
    assert transfer_from_userfield(f"hitcall:{aid}") is None
    row = _rows(MASTER_CSV)[3]
    row[17] = f"hitcall-transfer:{aid.upper()}"
    rec = csv_record(row, 1, UTC)
    assert rec is not None and rec.transfer and rec.attempt_id == aid


def test_a_consultation_and_the_talk_after_it_are_one_span_of_the_number() -> None:
    legs = [transfer_leg(1, 10, 20, seq=2), transfer_leg(1, 20.2, 50, seq=3), transfer_leg(1, 70, 80, seq=5)]
    spans = transfer_spans(legs)
    assert [(s.start, s.seconds) for s in spans] == [(T0 + timedelta(seconds=10), 40.0), (legs[2].joined_at, 10.0)]
    assert len(transfer_spans([transfer_leg(1, 10, 20), transfer_leg(1, 20, 30, number="+358401999002")])) == 2


def test_transfer_legs_to_numbers_reconcile_with_asterisks_transfer_records() -> None:
    h = [hitcall(1, "answered_human", talk_s=120), hitcall(2, "answered_human", talk_s=60)]
    a = [record(1, "ANSWERED", billsec=120), record(2, "ANSWERED", billsec=60)]
    legs = [transfer_leg(1, 30, 45, seq=1), transfer_leg(1, 45.1, 100, seq=2)]
    busy_first = transfer_record(1, "BUSY", at_s=10)
    answered = transfer_record(1, "ANSWERED", at_s=29, ring_s=1, billsec=70)
    ok = run(h, [*a, busy_first, answered], transfer_legs=legs)
    assert ok.clean and ok.transfers == 1 and ok.matched == 2 and ok.as_dict()["transfers"] == 1

    no_record = run(h, [*a, busy_first], transfer_legs=legs)
    assert [d.kind for d in no_record.differences] == [DifferenceKind.TRANSFER_MISSING_IN_ASTERISK]
    no_leg = run(h, [*a, answered], transfer_legs=[])
    assert [(d.kind, d.attempt_id) for d in no_leg.differences] == [
        (DifferenceKind.TRANSFER_MISSING_IN_HITCALL, _id(1))
    ]
    too_long = run(h, [*a, replace(answered, billsec=75)], transfer_legs=legs)
    assert [d.kind for d in too_long.differences] == [DifferenceKind.TRANSFER_TALK_TIME]
    unknown_attempt = run(h, [*a, transfer_record(9, "ANSWERED", at_s=5, billsec=3)])
    assert [(d.kind, d.attempt_id) for d in unknown_attempt.differences] == [
        (DifferenceKind.TRANSFER_MISSING_IN_HITCALL, _id(9))
    ]
    # A transfer record is not the attempt's own: the attempt is still compared by its Dial record.
    assert run(h, [a[1], answered], transfer_legs=legs).of_kind(DifferenceKind.MISSING_IN_ASTERISK)
