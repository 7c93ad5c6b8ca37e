"""The daily compliance report on real Postgres: its numbers match the seeded rows."""

from __future__ import annotations

import argparse
import csv
import io
import json
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from hitcall_pbx.demo.seed import create_agent, create_campaign
from hitcall_pbx.report import command as report_command
from hitcall_pbx.report import load_report, render

DAY = date(2026, 3, 10)


def at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


async def _attempt(
    conn,
    campaign_id: int,
    created: datetime,
    *,
    outcome: str,
    ring_s: float | None = None,
    bridged_ms: int | None = None,
    abandoned: bool = False,
    answered: bool = False,
) -> uuid.UUID:
    aid = uuid.uuid4()
    answered_at = (
        created + timedelta(seconds=ring_s or 0) if (answered or bridged_ms is not None or abandoned) else None
    )
    bridged_at = answered_at + timedelta(milliseconds=bridged_ms) if bridged_ms is not None else None
    await conn.execute(
        """INSERT INTO call_attempts (id, campaign_id, dialled_number, caller_id, mode, state, created_at, answered_at,
               bridged_at, ended_at, ring_s, answer_to_bridge_ms, outcome, abandoned, retention_until)
           VALUES ($1, $2, '+358401000001', '+358201234567', 'predictive', 'ended', $3::timestamptz, $4, $5,
                   $3::timestamptz + interval '1 min',
                   $6, $7, $8, $9, $3::timestamptz + interval '2 years')""",
        aid,
        campaign_id,
        created,
        answered_at,
        bridged_at,
        ring_s,
        bridged_ms,
        outcome,
        abandoned,
    )
    return aid


async def _recording(
    conn, campaign_id: int, attempt: uuid.UUID, created: datetime, *, held: bool = False, purged: datetime | None = None
) -> None:
    await conn.execute(
        """INSERT INTO recordings (attempt_id, campaign_id, path, sha256, size_bytes, duration_s, format, created_at,
               retention_until, held_until, hold_reason, purged_at, purge_reason)
           VALUES ($1, $2, $3, repeat('a', 64), 100, 1, 'wav', $4::timestamptz, hitcall_add_months($4::timestamptz, 3),
                   CASE WHEN $5 THEN hitcall_add_months($4::timestamptz, 12) END, CASE WHEN $5 THEN 'complaint' END,
                   $6::timestamptz, CASE WHEN $6::timestamptz IS NOT NULL THEN 'erasure' END)""",
        attempt,
        campaign_id,
        f"{attempt}.wav",
        created,
        held,
        purged,
    )


@pytest.fixture
async def seeded(db):
    """One campaign with a known day: 10 calls at 09:xx and 14:xx, plus older calls."""
    cid, _ = await create_campaign(db, "report-demo", mode="predictive", abandon_cap=0.03)
    other, _ = await create_campaign(db, "other", mode="progressive")
    agent = await create_agent(db, "2001", "agent-r1", [cid])
    async with db.acquire() as conn:
        ids = []
        # 09:00 hour: 4 connects (150, 300, 900, 2500 ms), 1 abandoned, 1 busy.
        for ms, ring in ((150, 3.0), (300, 7.0), (900, 12.0), (2500, 4.0)):
            ids.append(await _attempt(conn, cid, at(9, 5), outcome="answered_human", ring_s=ring, bridged_ms=ms))
        await _attempt(conn, cid, at(9, 30), outcome="abandoned", ring_s=6.0, abandoned=True)
        await _attempt(conn, cid, at(9, 40), outcome="busy", ring_s=1.0)
        # 14:00 hour: 1 connect, 1 machine, 2 no answer.
        ids.append(await _attempt(conn, cid, at(14, 10), outcome="answered_human", ring_s=2.0, bridged_ms=50))
        await _attempt(conn, cid, at(14, 20), outcome="answered_machine", ring_s=5.0, answered=True)
        await _attempt(conn, cid, at(14, 30), outcome="no_answer", ring_s=25.0)
        await _attempt(conn, cid, at(14, 31), outcome="no_answer", ring_s=25.0)
        # Inside the 30 days: 3 connects + 1 abandoned; outside it (and the next day): ignored.
        for _ in range(3):
            await _attempt(
                conn, cid, at(10, day=DAY - timedelta(days=10)), outcome="answered_human", ring_s=3.0, bridged_ms=200
            )
        await _attempt(conn, cid, at(10, day=DAY - timedelta(days=29)), outcome="abandoned", abandoned=True, ring_s=3.0)
        await _attempt(conn, cid, at(10, day=DAY - timedelta(days=30)), outcome="abandoned", abandoned=True, ring_s=3.0)
        await _attempt(
            conn, cid, at(0, 1, day=DAY + timedelta(days=1)), outcome="abandoned", abandoned=True, ring_s=3.0
        )
        await _attempt(conn, other, at(9), outcome="abandoned", abandoned=True, ring_s=3.0)
        await conn.executemany(
            "INSERT INTO dial_blocks (campaign_id, day, reason, blocked) VALUES ($1, $2, $3, $4)",
            [
                (cid, DAY, "outside_window", 7),
                (cid, DAY, "dnc_global", 2),
                (cid, DAY, "dnc_campaign", 1),
                (cid, DAY, "marketing_prohibited", 1),
                (cid, DAY, "max_attempts", 4),
                (cid, DAY - timedelta(days=1), "outside_window", 50),
            ],
        )
        await _recording(conn, cid, ids[0], at(9, 5))
        await _recording(conn, cid, ids[1], at(9, 5), held=True)
        await _recording(conn, cid, ids[2], at(9, 5) - timedelta(days=40), purged=at(11))
        # Agent: staffed 09:00-10:00, on calls 09:00-09:15 and in wrap-up 09:15-09:30 → 50 % occupancy.
        await conn.executemany(
            """INSERT INTO agent_state_log (agent_id, state, pause_code, started_at, ended_at)
               VALUES ($1, $2, CASE WHEN $2 = 'paused' THEN 'break' END, $3, $4)""",
            [
                (agent, "on_call", at(9), at(9, 15)),
                (agent, "wrap_up", at(9, 15), at(9, 30)),
                (agent, "ready", at(9, 30), at(10)),
                (agent, "paused", at(10), at(11)),
                (agent, "ready", at(13, 30), at(14, 30)),
            ],
        )
    return cid, other


async def test_report_numbers_match_the_rows(db, seeded):
    cid, other = seeded
    [r] = await load_report(db, DAY, cid)
    assert (r.calls, r.answered, r.connects, r.abandoned) == (10, 7, 5, 1)
    assert r.abandon_rate_day == pytest.approx(1 / 6)
    assert not r.within_cap_day
    # 30 days ending with DAY: today's 5 connects + 1 abandoned, plus 3 connects and 1 abandoned 29 days ago.
    assert (r.connects_30d, r.abandoned_30d) == (8, 2)
    assert r.abandon_rate_30d == pytest.approx(2 / 10)
    assert r.outcomes == {"answered_human": 5, "no_answer": 2, "abandoned": 1, "busy": 1, "answered_machine": 1}
    assert r.answer_to_agent_n == 5
    assert r.answer_to_agent_within_2s == pytest.approx(4 / 5)
    assert r.answer_to_agent_p50_ms == 300 and r.answer_to_agent_p99_ms == 2500
    hist = dict(r.ring_histogram)
    assert sum(hist.values()) == 10
    assert hist["0–5 s"] == 4 and hist["5–10 s"] == 3 and hist["10–15 s"] == 1 and hist["25–30 s"] == 2
    assert r.blocked_outside_window == 7 and r.blocked_dnc == 4
    assert r.blocks["max_attempts"] == 4
    assert (r.recordings_stored, r.recordings_purged, r.recordings_on_hold) == (2, 1, 1)
    h9, h14 = r.hours[9], r.hours[14]
    assert (h9.calls, h9.connects, h9.abandoned) == (6, 4, 1) and h9.abandon_rate == pytest.approx(0.2)
    assert (h14.calls, h14.connects, h14.abandoned) == (4, 1, 0) and h14.abandon_rate == 0
    assert h9.occupancy == pytest.approx(0.5)
    assert r.hours[10].occupancy is None, "paused time is not staffed time"
    assert r.hours[13].occupancy == 0 and r.hours[14].occupancy == 0

    both = await load_report(db, DAY)
    assert [x.campaign_id for x in both] == sorted([cid, other])


async def test_formats_carry_the_same_numbers(db, seeded):
    cid, _ = seeded
    reports = await load_report(db, DAY, cid)
    data = json.loads(render(reports, "json", day=DAY))
    assert data["day"] == "2026-03-10" and data["campaigns"][0]["connects"] == 5
    rows = list(csv.DictReader(io.StringIO(render(reports, "csv", day=DAY))))
    assert rows[0]["calls"] == "10" and rows[0]["blocked_dnc"] == "4" and rows[0]["within_cap_day"] == "False"
    page = render(reports, "html", day=DAY)
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 4
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "Abandon cap exceeded" in page and "16.7 %" in page


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**({"date": None, "campaign": None, "format": "json", "out": None} | kw))


async def test_command_writes_the_file(report_settings, tmp_path):
    out = tmp_path / "r" / "report.csv"
    assert await report_command.run(report_settings, _args(date="2026-03-10", format="csv", out=out)) == 0
    assert out.read_text().splitlines()[0].startswith("day,campaign_id,")


async def test_bad_date_is_a_clear_error(report_settings, capsys):
    assert await report_command.run(report_settings, _args(date="2026-13-40")) == 2
    err = capsys.readouterr().err
    assert "--date must be a date as YYYY-MM-DD" in err and "2026-13-40" in err


async def test_unknown_campaign_is_a_clear_error(report_settings, capsys):
    assert await report_command.run(report_settings, _args(date="2026-03-10", campaign=999)) == 2
    assert "campaign 999 does not exist" in capsys.readouterr().err


def test_parser_registers_report():
    parser = argparse.ArgumentParser()
    report_command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", "--date", "2026-03-10", "--campaign", "3", "--format", "csv"])
    assert (args.date, args.campaign, args.format, args.out) == ("2026-03-10", 3, "csv", None)
