"""Supervisors' monitoring legs are accounted like calls, on real Postgres: each monitoring
session gets the campaign's CDR retention deadline, the purge deletes the ended sessions past
it (never within the 2-month minimum; audited), and the daily report counts the day's sessions."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from hitcall_pbx.core.retention import add_months
from hitcall_pbx.records.purge import PurgeWorker
from hitcall_pbx.records.recordings import RecordingStore
from hitcall_pbx.report import load_report
from hitcall_pbx.report.compute import CSV_COLUMNS, csv_row

NOW = datetime(2027, 6, 15, 12, 0, tzinfo=UTC)


async def _campaign(pool, months: int) -> int:
    return await pool.fetchval(
        "INSERT INTO campaigns (name, mode, retention_cdr_months) VALUES ($1, 'progressive', $2) RETURNING id",
        f"c-{uuid.uuid4().hex[:8]}",
        months,
    )


async def _session(pool, campaign: int | None, started: datetime, *, minutes: float | None = 5, reason="stopped"):
    ended = started + timedelta(minutes=minutes) if minutes is not None else None
    return await pool.fetchval(
        """INSERT INTO monitoring_sessions (supervisor, attempt_id, campaign_id, mode, started_at, ended_at, end_reason)
           VALUES ('sup', $1, $2, 'listen', $3, $4, $5) RETURNING id""",
        uuid.uuid4(),
        campaign,
        started,
        ended,
        reason if ended is not None else None,
    )


async def test_monitoring_sessions_keep_the_campaigns_cdr_retention_and_are_purged_after_it(db, tmp_path):
    short = await _campaign(db, 3)
    long = await _campaign(db, 24)
    old = NOW - timedelta(days=130)  # past 3 months, not 24
    due = await _session(db, short, old)
    kept_long = await _session(db, long, old)
    still_open = await _session(db, short, old, minutes=None)
    recent = await _session(db, short, NOW - timedelta(days=20))
    no_campaign = await _session(db, None, old)
    deadlines = dict(await db.fetch("SELECT id, retention_until FROM monitoring_sessions"))
    assert deadlines[due] == add_months(old, 3) and deadlines[kept_long] == add_months(old, 24)
    assert deadlines[no_campaign] == add_months(old, 24)  # the campaign is gone: the default

    worker = PurgeWorker(db, RecordingStore(tmp_path / "store"), batch_size=1)
    dry = await worker.run_once(now=NOW, dry_run=True)
    assert dry.monitoring_sessions_deleted == 1 and dry.as_dict()["monitoring_sessions_deleted"] == 1
    assert await db.fetchval("SELECT count(*) FROM monitoring_sessions") == 5

    report = await worker.run_once(now=NOW)
    assert report.monitoring_sessions_deleted == 1
    left = {r["id"] for r in await db.fetch("SELECT id FROM monitoring_sessions")}
    assert left == {kept_long, still_open, recent, no_campaign}
    audit = await db.fetchrow("SELECT * FROM audit_log WHERE action = 'monitoring.purge'")
    assert audit["object_type"] == "monitoring_session" and audit["details"]["count"] == 1
    assert (await worker.run_once(now=NOW)).monitoring_sessions_deleted == 0  # idempotent

    # A deadline within the 2-month minimum is not honoured before the minimum.
    await db.execute(
        "UPDATE monitoring_sessions SET retention_until = started_at + interval '1 day' WHERE id = $1", recent
    )
    assert (await worker.run_once(now=NOW)).monitoring_sessions_deleted == 0


async def test_the_daily_report_counts_the_days_monitoring_sessions(db):
    day = date(2026, 3, 10)
    cid = await _campaign(db, 24)
    at = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    await _session(db, cid, at, minutes=2)
    await _session(db, cid, at + timedelta(hours=1), minutes=1, reason="asterisk_lost")
    await db.execute("UPDATE monitoring_sessions SET supervisor = 'other' WHERE started_at = $1", at)
    await _session(db, cid, at - timedelta(days=1), minutes=30)  # the day before
    [r] = await load_report(db, day)  # the campaign is active that day through its monitoring only
    assert r.campaign_id == cid and r.calls == 0
    assert (r.monitoring.sessions, r.monitoring.supervisors, r.monitoring.monitored_s, r.monitoring.ended_on_fault) == (
        2,
        2,
        180.0,
        1,
    )
    row = dict(zip(CSV_COLUMNS, csv_row(r), strict=True))
    assert (row["monitoring_sessions"], row["monitoring_monitored_s"], row["monitoring_ended_on_fault"]) == (
        2,
        180.0,
        1,
    )
