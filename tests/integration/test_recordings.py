"""The recordings store on real Postgres: finalize (file + row agree) and `records check`."""

from __future__ import annotations

import argparse
import hashlib
import json
import uuid
import wave
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hitcall_pbx.core.retention import RetentionPolicy, add_months
from hitcall_pbx.errors import Conflict, NotFound, ValidationFailed
from hitcall_pbx.records import records_command
from hitcall_pbx.records.recordings import RecordingStore
from hitcall_pbx.settings import Settings
from hitcall_pbx.store.db import dsn_with_database

CALL_AT = datetime(2026, 8, 31, 10, 15, tzinfo=UTC)


def write_wav(path: Path, seconds: float, rate: int = 8000) -> bytes:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = int(seconds * rate)
        w.writeframes((bytes(range(256)) * (frames // 128 + 1))[: frames * 2])
    return path.read_bytes()


async def make_attempt(pool, created_at=CALL_AT) -> tuple[int, uuid.UUID]:
    campaign = await pool.fetchval(
        "INSERT INTO campaigns (name, mode) VALUES ($1, 'progressive') RETURNING id", f"c-{uuid.uuid4().hex[:8]}"
    )
    attempt = uuid.uuid4()
    await pool.execute(
        """INSERT INTO call_attempts (id, campaign_id, dialled_number, caller_id, mode, created_at, retention_until,
                                      ended_at, outcome)
           VALUES ($1, $2, '+358401234567', '+358931234567', 'progressive', $3, $4,
                   $3::timestamptz + interval '1 minute', 'no_answer')""",
        attempt,
        campaign,
        created_at,
        add_months(created_at, 24),
    )
    return campaign, attempt


@pytest.fixture
def store(tmp_path: Path) -> RecordingStore:
    return RecordingStore(tmp_path / "store")


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    d = tmp_path / "spool"
    d.mkdir()
    return d


async def test_finalize_moves_file_and_writes_matching_row(db, store, spool):
    campaign, attempt = await make_attempt(db)
    source = spool / "rec-1.wav"
    content = write_wav(source, 1.5)
    rid = uuid.uuid4()
    rec = await store.finalize(
        db,
        source_path=source,
        recording_id=rid,
        attempt_id=attempt,
        campaign_id=campaign,
        call_at=CALL_AT,
        policy=RetentionPolicy(recordings_months=6),
        format="wav",
    )
    assert not source.exists()
    assert rec.path == f"{rid.hex[:2]}/{rid.hex[2:4]}/{rid}.wav"
    stored = store.root / rec.path
    assert stored.read_bytes() == content
    assert not [p for p in stored.parent.iterdir() if p.name.startswith(".")]  # no temp file left
    assert store.root.stat().st_mode & 0o777 == 0o700
    row = await db.fetchrow("SELECT * FROM recordings WHERE id = $1", rid)
    assert row["sha256"] == hashlib.sha256(content).hexdigest()
    assert row["size_bytes"] == len(content)
    assert float(row["duration_s"]) == 1.5
    # Aug 31 + 6 months clamps to the end of February.
    assert row["retention_until"] == add_months(CALL_AT, 6) == datetime(2027, 2, 28, 10, 15, tzinfo=UTC)
    event = await db.fetchrow("SELECT * FROM webhook_outbox WHERE event_type = 'recording.ready'")
    assert event["subject"] == f"recording:{rid}" and event["payload"]["sha256"] == row["sha256"]
    assert (
        await db.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'recording.store' AND object_id = $1", str(rid)
        )
        == 1
    )


async def test_failed_row_insert_removes_the_file(db, store, spool):
    campaign, _ = await make_attempt(db)
    source = spool / "rec-2.wav"
    write_wav(source, 0.5)
    with pytest.raises(NotFound) as err:
        await store.finalize(
            db,
            source_path=source,
            recording_id=uuid.uuid4(),
            attempt_id=uuid.uuid4(),
            campaign_id=campaign,
            call_at=CALL_AT,
            policy=RetentionPolicy(),
            format="wav",
        )
    assert err.value.details["field"] == "attempt_id"
    assert source.exists()  # kept for a retry
    assert [p for p in store.root.rglob("*") if p.is_file()] == []
    assert await db.fetchval("SELECT count(*) FROM recordings") == 0
    assert await db.fetchval("SELECT count(*) FROM webhook_outbox") == 0


async def test_finalize_retried_after_commit_completes_once(db, store, spool):
    campaign, attempt = await make_attempt(db)
    source = spool / "rec-3.wav"
    content = write_wav(source, 0.2)
    rid = uuid.uuid4()
    kwargs = dict(
        recording_id=rid,
        attempt_id=attempt,
        campaign_id=campaign,
        call_at=CALL_AT,
        policy=RetentionPolicy(recordings_months=3),
        format="wav",
    )
    first = await store.finalize(db, source_path=source, **kwargs)
    source.write_bytes(content)  # crash after commit, before the source was removed
    again = await store.finalize(db, source_path=source, **kwargs)
    assert again == first and not source.exists()
    assert await db.fetchval("SELECT count(*) FROM recordings") == 1
    (store.root / first.path).write_bytes(b"other")
    source.write_bytes(content)
    with pytest.raises(Conflict):
        await store.finalize(db, source_path=source, **kwargs)


@pytest.mark.parametrize(("fmt", "field"), [("WAV", "format"), ("x", "format"), ("wav/../..", "format")])
async def test_finalize_refuses_bad_input_and_writes_nothing(db, store, spool, fmt, field):
    campaign, attempt = await make_attempt(db)
    source = spool / "rec-4.wav"
    write_wav(source, 0.1)
    with pytest.raises(ValidationFailed) as err:
        await store.finalize(
            db,
            source_path=source,
            recording_id=uuid.uuid4(),
            attempt_id=attempt,
            campaign_id=campaign,
            call_at=CALL_AT,
            policy=RetentionPolicy(),
            format=fmt,
        )
    assert err.value.details["field"] == field
    assert source.exists() and not store.root.exists()


async def test_missing_source_is_not_found(db, store, spool):
    campaign, attempt = await make_attempt(db)
    with pytest.raises(NotFound) as err:
        await store.finalize(
            db,
            source_path=spool / "nope.wav",
            recording_id=uuid.uuid4(),
            attempt_id=attempt,
            campaign_id=campaign,
            call_at=CALL_AT,
            policy=RetentionPolicy(),
            format="wav",
        )
    assert err.value.details["field"] == "source_path"


async def test_constant_bitrate_format_gets_size_based_duration(db, store, spool):
    campaign, attempt = await make_attempt(db)
    source = spool / "rec.gsm"
    source.write_bytes(b"\x00" * 1650 * 3)
    rec = await store.finalize(
        db,
        source_path=source,
        recording_id=uuid.uuid4(),
        attempt_id=attempt,
        campaign_id=campaign,
        call_at=CALL_AT,
        policy=RetentionPolicy(),
        format="gsm",
    )
    assert float(rec.duration_s) == 3.0


async def _settings(db, pg_dsn, tmp_path) -> Settings:
    name = await db.fetchval("SELECT current_database()")
    return Settings(database_url=dsn_with_database(pg_dsn, name), data_dir=tmp_path / "data")


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    records_command.add_parser(sub)
    return parser.parse_args(argv)


async def test_records_check_reports_missing_changed_and_orphan_files(db, pg_dsn, tmp_path, spool, capsys):
    settings = await _settings(db, pg_dsn, tmp_path)
    store = RecordingStore(records_command.recordings_dir(settings))
    campaign, attempt = await make_attempt(db)
    recs = []
    for i in range(4):
        source = spool / f"r{i}.wav"
        write_wav(source, 0.1 * (i + 1))
        recs.append(
            await store.finalize(
                db,
                source_path=source,
                recording_id=uuid.uuid4(),
                attempt_id=attempt,
                campaign_id=campaign,
                call_at=CALL_AT,
                policy=RetentionPolicy(),
                format="wav",
            )
        )
    assert (await store.check(db)).ok
    assert await records_command.run(settings, _args("records", "check")) == 0
    assert "4 rows, 4 files, 0 problems" in capsys.readouterr().out

    (store.root / recs[0].path).unlink()
    data = bytearray((store.root / recs[1].path).read_bytes())
    data[-1] ^= 0xFF
    (store.root / recs[1].path).write_bytes(bytes(data))
    with open(store.root / recs[2].path, "ab") as f:
        f.write(b"x")
    orphan = store.root / "ff" / "ee" / "stray.wav"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"RIFF")

    assert await records_command.run(settings, _args("records", "check", "--json")) == 1
    out = capsys.readouterr().out  # log lines (stdout under pytest) precede the JSON document
    report = json.loads(out[out.index("{\n") :])
    assert not report["ok"] and report["rows_checked"] == 4
    found = {(p["problem"], p["path"]) for p in report["problems"]}
    assert found == {
        ("missing", recs[0].path),
        ("sha256_mismatch", recs[1].path),
        ("size_mismatch", recs[2].path),
        ("orphan", "ff/ee/stray.wav"),
    }
