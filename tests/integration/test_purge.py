"""The purge worker on real Postgres: deadlines, holds, the minimum, batches, locks, idempotence."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hitcall_pbx.core.retention import add_months
from hitcall_pbx.records import records_command
from hitcall_pbx.records.cdr import default_spool_dir
from hitcall_pbx.records.purge import PurgeWorker
from hitcall_pbx.records.recordings import RecordingStore
from hitcall_pbx.settings import Settings
from hitcall_pbx.store.db import dsn_with_database

NOW = datetime(2027, 6, 15, 12, 0, tzinfo=UTC)


async def make_campaign(pool) -> int:
    return await pool.fetchval(
        "INSERT INTO campaigns (name, mode) VALUES ($1, 'progressive') RETURNING id", f"c-{uuid.uuid4().hex[:8]}"
    )


async def make_attempt(pool, campaign: int, created_at: datetime, retention_until: datetime) -> uuid.UUID:
    attempt = uuid.uuid4()
    await pool.execute(
        """INSERT INTO call_attempts (id, campaign_id, dialled_number, caller_id, mode, created_at, retention_until,
                                      ended_at, outcome)
           VALUES ($1, $2, '+358401234567', '+358931234567', 'progressive', $3, $4,
                   $3::timestamptz + interval '1 minute', 'no_answer')""",
        attempt,
        campaign,
        created_at,
        retention_until,
    )
    return attempt


async def make_recording(
    pool,
    store: RecordingStore,
    campaign: int,
    attempt: uuid.UUID,
    created_at: datetime,
    months: int,
    held_until: datetime | None = None,
) -> uuid.UUID:
    rid = uuid.uuid4()
    path = store.relative_path(rid, "wav")
    target = store.absolute(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"RIFF" + rid.bytes)
    await pool.execute(
        """INSERT INTO recordings (id, attempt_id, campaign_id, path, sha256, size_bytes, duration_s, format,
                                   created_at, retention_until, held_until, hold_reason, hold_case_id)
           VALUES ($1, $2, $3, $4, repeat('a', 64), 20, 1, 'wav', $5, $6, $7, $8, $9)""",
        rid,
        attempt,
        campaign,
        path,
        created_at,
        add_months(created_at, months),
        held_until,
        None if held_until is None else "complaint",
        None if held_until is None else "CASE-1",
    )
    return rid


@pytest.fixture
def store(tmp_path: Path) -> RecordingStore:
    return RecordingStore(tmp_path / "store")


# ------------------------------------------------------------------ property ---

# Ages and deadlines cluster around the 2-month minimum as well as spreading wide.
item = st.fixed_dictionaries(
    {
        "age_days": st.integers(0, 700) | st.integers(50, 70),
        "months": st.integers(2, 6),
        "cdr_days": st.integers(1, 900) | st.integers(1, 60),  # stamped CDR deadline, may be below the minimum
        "hold_days": st.none() | st.integers(1, 540),  # hold end, days after the call
    }
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(item, min_size=1, max_size=8), batch=st.integers(1, 3))
async def test_purge_property_nothing_protected_is_touched_everything_due_is(db, store, items, batch):
    await db.execute("DELETE FROM recordings; DELETE FROM call_attempts")
    campaign = await make_campaign(db)
    rows = []
    for it in items:
        created = NOW - timedelta(days=it["age_days"], minutes=7)
        held = None
        if it["hold_days"] is not None:
            held = min(created + timedelta(days=it["hold_days"]), add_months(created, 18))
        attempt = await make_attempt(db, campaign, created, created + timedelta(days=it["cdr_days"]))
        rid = await make_recording(db, store, campaign, attempt, created, it["months"], held)
        rows.append((it, created, held, attempt, rid))

    report = await PurgeWorker(db, store, batch_size=batch).run_once(now=NOW)

    minimum_reached = lambda created: add_months(created, 2) <= NOW  # noqa: E731
    expect_recordings = expect_attempts = 0
    for it, created, held, attempt, rid in rows:
        rec = await db.fetchrow("SELECT * FROM recordings WHERE id = $1", rid)
        cdr = await db.fetchrow("SELECT * FROM call_attempts WHERE id = $1", attempt)
        file_there = store.absolute(rec["path"]).exists()
        on_hold = held is not None and held > NOW
        rec_due = add_months(created, it["months"]) <= NOW and minimum_reached(created) and not on_hold
        cdr_due = created + timedelta(days=it["cdr_days"]) <= NOW and minimum_reached(created) and not on_hold
        if on_hold or not minimum_reached(created):
            assert rec["purged_at"] is None and file_there
            assert cdr["anonymised_at"] is None and cdr["dialled_number"] is not None
        assert (rec["purged_at"] is not None) == rec_due
        assert file_there == (not rec_due)
        assert (cdr["anonymised_at"] is not None) == cdr_due
        if rec_due:
            assert rec["purge_reason"] == "retention" and rec["held_until"] is None
        if cdr_due:
            assert cdr["dialled_number"] is None and cdr["contact_id"] is None
        expect_recordings += rec_due
        expect_attempts += cdr_due
    assert (report.recordings_purged, report.attempts_anonymised) == (expect_recordings, expect_attempts)


# ------------------------------------------------------------------ behaviour ---


async def _expired_setup(db, store, n: int, now: datetime = NOW):
    campaign = await make_campaign(db)
    created = now - timedelta(days=300)
    ids = []
    for _ in range(n):
        attempt = await make_attempt(db, campaign, created, created + timedelta(days=200))
        ids.append(await make_recording(db, store, campaign, attempt, created, 6))
    return campaign, ids


async def test_purge_tombstones_recordings_emits_events_and_audits(db, store):
    _, ids = await _expired_setup(db, store, 3)
    report = await PurgeWorker(db, store, batch_size=2).run_once(now=NOW)
    assert (report.recordings_purged, report.attempts_anonymised, report.recordings_failed) == (3, 3, 0)
    rows = await db.fetch("SELECT * FROM recordings")
    assert all(r["purged_at"] == NOW and r["purge_reason"] == "retention" and r["sha256"] for r in rows)
    assert not [p for p in store.root.rglob("*") if p.is_file()]
    events = await db.fetch("SELECT subject, payload FROM webhook_outbox WHERE event_type = 'recording.purged'")
    assert sorted(e["subject"] for e in events) == sorted(f"recording:{i}" for i in ids)
    run = await db.fetchrow("SELECT * FROM audit_log WHERE action = 'purge.run'")
    assert run["details"]["recordings_purged"] == 3 and run["details"]["attempts_anonymised"] == 3
    assert run["actor_role"] == "system"
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'recording.purge'") == 2  # 2 batches
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'cdr.anonymise'") == 2


async def test_dry_run_counts_and_changes_nothing(db, store):
    await _expired_setup(db, store, 4)
    report = await PurgeWorker(db, store).run_once(now=NOW, dry_run=True)
    assert (report.recordings_purged, report.attempts_anonymised, report.dry_run) == (4, 4, True)
    assert await db.fetchval("SELECT count(*) FROM recordings WHERE purged_at IS NULL") == 4
    assert await db.fetchval("SELECT count(*) FROM call_attempts WHERE anonymised_at IS NULL") == 4
    assert len([p for p in store.root.rglob("*") if p.is_file()]) == 4
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'purge.dry_run'") == 1


async def test_concurrent_workers_purge_each_item_once_and_rerun_is_a_no_op(db, store):
    await _expired_setup(db, store, 12)
    workers = [PurgeWorker(db, store, batch_size=3) for _ in range(3)]
    reports = await asyncio.gather(*(w.run_once(now=NOW) for w in workers))
    assert sum(r.recordings_purged for r in reports) == 12
    assert sum(r.attempts_anonymised for r in reports) == 12
    assert await db.fetchval("SELECT count(*) FROM webhook_outbox WHERE event_type = 'recording.purged'") == 12
    again = await workers[0].run_once(now=NOW)
    assert (again.recordings_purged, again.attempts_anonymised) == (0, 0)


async def test_a_row_locked_by_a_writer_is_skipped_not_waited_for(db, store):
    campaign = await make_campaign(db)
    created = NOW - timedelta(days=400)
    busy, free = [await make_attempt(db, campaign, created, created + timedelta(days=90)) for _ in range(2)]
    async with db.acquire() as writer, writer.transaction():
        await writer.execute("UPDATE call_attempts SET disposition = 'sale' WHERE id = $1", busy)
        report = await asyncio.wait_for(PurgeWorker(db, store).run_once(now=NOW), 5)
    assert report.attempts_anonymised == 1
    assert await db.fetchval("SELECT anonymised_at FROM call_attempts WHERE id = $1", free) == NOW
    assert await db.fetchval("SELECT anonymised_at FROM call_attempts WHERE id = $1", busy) is None
    assert (await PurgeWorker(db, store).run_once(now=NOW)).attempts_anonymised == 1


async def test_an_undeletable_file_keeps_its_row_and_is_reported(db, store):
    _, ids = await _expired_setup(db, store, 2)
    bad = store.absolute(await db.fetchval("SELECT path FROM recordings WHERE id = $1", ids[0]))
    bad.unlink()
    bad.mkdir()  # unlink() of a directory fails
    (bad / "x").write_bytes(b"")
    report = await PurgeWorker(db, store, batch_size=1).run_once(now=NOW)
    assert (report.recordings_purged, report.recordings_failed) == (1, 1)
    assert await db.fetchval("SELECT purged_at FROM recordings WHERE id = $1", ids[0]) is None
    assert await db.fetchval("SELECT purged_at FROM recordings WHERE id = $1", ids[1]) == NOW


async def test_purge_command(db, pg_dsn, tmp_path, capsys):
    name = await db.fetchval("SELECT current_database()")
    settings_ = Settings(database_url=dsn_with_database(pg_dsn, name), data_dir=tmp_path / "data")
    store = RecordingStore(records_command.recordings_dir(settings_))
    await _expired_setup(db, store, 2, now=datetime.now(UTC))
    rejected = default_spool_dir(settings_.data_dir) / "rejected-2020-01-01.jsonl"
    rejected.parent.mkdir(parents=True)
    rejected.write_text('{"error":"bad","record":{"dialled_number":"+358401234567"}}\n')
    parser = argparse.ArgumentParser()
    records_command.add_parser(parser.add_subparsers(dest="command"))

    assert await records_command.run(settings_, parser.parse_args(["purge", "--dry-run"])) == 0
    assert "would purge 2 recordings, would anonymise 2 CDRs" in capsys.readouterr().out
    assert await db.fetchval("SELECT count(*) FROM recordings WHERE purged_at IS NULL") == 2

    assert await records_command.run(settings_, parser.parse_args(["purge", "--json"])) == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{\n") :])
    assert (report["recordings_purged"], report["attempts_anonymised"], report["dry_run"]) == (2, 2, False)
    assert report["rejected_files_deleted"] == 1 and not rejected.exists()

    assert await records_command.run(settings_, parser.parse_args(["purge", "--batch-size", "0"])) == 2
    assert "--batch-size" in capsys.readouterr().err


async def test_purge_deletes_rejected_cdr_files_past_the_cdr_minimum_and_reports_them(db, store, tmp_path):
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    old, recent = spool_dir / "rejected-2027-05-14.jsonl", spool_dir / "rejected-2027-05-15.jsonl"
    for path in (old, recent):
        path.write_text('{"error":"bad","record":{"dialled_number":"+358401234567"}}\n')
    worker = PurgeWorker(db, store, spool_dir=spool_dir)
    assert (await worker.run_once(now=NOW, dry_run=True)).rejected_files_deleted == 0
    assert old.exists()
    report = await worker.run_once(now=NOW)  # 2027-05-14 ended a month ago; 2027-05-15 not yet
    assert report.rejected_files_deleted == 1 and not old.exists() and recent.exists()
    run = await db.fetchrow("SELECT details FROM audit_log WHERE action = 'purge.run'")
    assert run["details"]["rejected_files_deleted"] == 1
