"""CdrRecord and CdrWriter on real Postgres: batching, idempotent upsert, precedence,
spooling while Postgres is down, replay in order after it returns and after a restart."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from hitcall_pbx.core.backoff import Backoff
from hitcall_pbx.errors import Unavailable, ValidationFailed
from hitcall_pbx.records.cdr import COLUMNS, CdrRecord, CdrWriter, default_spool_dir, write_cdrs
from hitcall_pbx.store.embedded import EmbeddedPostgres

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FAST = Backoff(base=0.05, cap=0.2)


def cdr(campaign_id: int, n: int = 0, **overrides: object) -> CdrRecord:
    created = T0 + timedelta(seconds=n)
    values: dict[str, object] = dict(
        id=uuid.uuid4(),
        campaign_id=campaign_id,
        dialled_number=f"+35840{1000000 + n}",
        caller_id="+358201234567",
        mode="progressive",
        created_at=created,
        originated_at=created + timedelta(milliseconds=5),
        ringing_at=created + timedelta(milliseconds=90),
        answered_at=created + timedelta(seconds=7),
        bridged_at=created + timedelta(seconds=7, milliseconds=12),
        ended_at=created + timedelta(seconds=67),
        ring_s=Decimal("6.995"),
        talk_s=Decimal("59.988"),
        answer_to_bridge_ms=12,
        outcome="answered_human",
        hangup_cause=16,
        hangup_cause_txt="Normal Clearing",
        retention_until=created + timedelta(days=730),
    )
    values.update(overrides)
    return CdrRecord(**values)  # type: ignore[arg-type]  # fields passed as **dict[str, object]; the constructor checks them


async def _campaign(conn: asyncpg.Pool | asyncpg.Connection, name: str = "spring") -> int:
    return await conn.fetchval("INSERT INTO campaigns (name, mode) VALUES ($1, 'progressive') RETURNING id", name)


async def _rows(pool: asyncpg.Pool | asyncpg.Connection) -> dict[uuid.UUID, CdrRecord]:
    rows = await pool.fetch(f"SELECT {', '.join(COLUMNS)} FROM call_attempts")
    return {r["id"]: CdrRecord.from_row(r) for r in rows}


async def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


# -- CdrRecord ---------------------------------------------------------------------------
def test_record_json_round_trip_preserves_types_exactly() -> None:
    helsinki = timezone(timedelta(hours=2))
    record = cdr(
        1,
        agent_id=7,
        contact_id=9,
        created_at=datetime(2026, 3, 2, 11, 0, tzinfo=helsinki),
        ended_at=datetime(2026, 3, 2, 11, 1, tzinfo=helsinki),
        ring_s=6.5,
        talk_s=Decimal("0.1234"),
        recording_id=uuid.uuid4(),
        amd_status="HUMAN",
        amd_cause="HUMAN-1000-500",
        disposition="sale",
        retention_until=datetime(2028, 3, 2, 9, 0, tzinfo=UTC),
    )
    assert record.created_at == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert record.created_at.tzinfo is UTC
    assert record.ring_s == Decimal("6.500") and record.talk_s == Decimal("0.123")
    back = CdrRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert back == record
    for name in COLUMNS:
        assert type(getattr(back, name)) is type(getattr(record, name)), name
    assert back.created_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"caller_id": "0401234567"}, "caller_id"),
        ({"dialled_number": "+35840abc"}, "dialled_number"),
        ({"created_at": datetime(2026, 3, 2, 9, 0)}, "created_at"),
        ({"outcome": "maybe"}, "outcome"),
        ({"mode": "robo"}, "mode"),
        ({"state": "ringing"}, "state"),
        ({"ended_at": None}, "ended_at"),
        ({"disposition": "no sale!"}, "disposition"),
        ({"hangup_cause": 300}, "hangup_cause"),
        ({"attempt_no": 0}, "attempt_no"),
        ({"ring_s": -1}, "ring_s"),
        ({"talk_s": float("nan")}, "talk_s"),
        ({"agent_id": True}, "agent_id"),
        ({"skip_reason": "nul\x00byte"}, "skip_reason"),
        ({"outcome": "abandoned", "abandoned": False}, "abandoned"),
        ({"retention_until": T0}, "retention_until"),
        ({"recording_id": "not-a-uuid"}, "recording_id"),
    ],
)
def test_record_refuses_bad_values_naming_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        cdr(1, **overrides)
    assert err.value.details["field"] == field
    assert field in err.value.message


def test_from_json_refuses_unknown_fields() -> None:
    data = cdr(1).to_json() | {"surprise": 1}
    with pytest.raises(ValidationFailed) as err:
        CdrRecord.from_json(data)
    assert err.value.details["field"] == "surprise"


# -- writing -----------------------------------------------------------------------------
async def test_batched_write_lands_every_row_exactly_once(db: asyncpg.Pool, tmp_path: Path) -> None:
    campaign = await _campaign(db)
    records = [cdr(campaign, n) for n in range(1234)]
    writer = CdrWriter(db, tmp_path / "spool", batch_size=200, flush_interval=0.05)
    await writer.start()
    for record in records:
        writer.submit(record)
    await writer.flush()
    assert await _rows(db) == {r.id: r for r in records}
    stats = writer.stats
    assert (stats.written, stats.spooled, stats.pending, stats.spool_backlog) == (1234, 0, 0, 0)
    await writer.close()
    with pytest.raises(Unavailable):
        writer.submit(records[0])


async def test_resubmitting_the_same_records_changes_nothing(db: asyncpg.Pool, tmp_path: Path) -> None:
    campaign = await _campaign(db)
    records = [cdr(campaign, n, disposition="sale" if n % 2 else None) for n in range(300)]
    writer = CdrWriter(db, tmp_path, batch_size=100)
    await writer.start()
    for record in records:
        writer.submit(record)
    await writer.flush()
    before = await db.fetch("SELECT * FROM call_attempts ORDER BY id")
    for record in records + records:  # a replay, and a replay within one batch
        writer.submit(record)
    await writer.close()
    after = await db.fetch("SELECT * FROM call_attempts ORDER BY id")
    assert [dict(r) for r in after] == [dict(r) for r in before]
    assert len(after) == 300


async def _live(db: asyncpg.Pool, record: CdrRecord, retention_until: datetime, **extra: object) -> None:
    """The attempt as the dialer inserted it before originate (live_attempts)."""
    columns = {
        "id": record.id,
        "campaign_id": record.campaign_id,
        "caller_id": record.caller_id,
        "mode": record.mode,
        "state": "bridged",
        "created_at": record.created_at,
        "retention_until": retention_until,
        "dialled_number": record.dialled_number,
        **extra,
    }
    await db.execute(
        f"INSERT INTO live_attempts ({', '.join(columns)})"
        f" VALUES ({', '.join(f'${i}' for i in range(1, len(columns) + 1))})",
        *columns.values(),
    )


async def test_final_write_moves_the_live_attempt_and_precedence(db: asyncpg.Pool) -> None:
    campaign = await _campaign(db)
    stamped = T0 + timedelta(days=700)
    final = cdr(campaign, disposition="callback", agent_id=None)
    await _live(db, final, stamped)
    async with db.acquire() as conn:
        await write_cdrs(conn, [final])
        row = await conn.fetchrow("SELECT * FROM call_attempts WHERE id = $1", final.id)
        assert row["state"] == "ended" and row["talk_s"] == Decimal("59.988")
        assert row["disposition"] == "callback"
        assert row["retention_until"] == stamped  # the live row's deadline is kept
        assert await conn.fetchval("SELECT count(*) FROM live_attempts") == 0  # in one table only

        # A later correction is never undone by a replay, with or without a disposition.
        await conn.execute("UPDATE call_attempts SET disposition = 'sale' WHERE id = $1", final.id)
        await write_cdrs(conn, [final, cdr(campaign, id=final.id, disposition=None)])
        assert await conn.fetchval("SELECT disposition FROM call_attempts WHERE id = $1", final.id) == "sale"

        # A NULL call fact does not erase a stored one; a new value replaces it.
        await write_cdrs(conn, [cdr(campaign, id=final.id, hangup_cause_txt=None, hangup_cause=17)])
        row = await conn.fetchrow("SELECT * FROM call_attempts WHERE id = $1", final.id)
        assert (row["hangup_cause_txt"], row["hangup_cause"]) == ("Normal Clearing", 17)

        # An anonymised row is never rewritten (no number brought back).
        await conn.execute(
            "UPDATE call_attempts SET anonymised_at = now(), dialled_number = NULL, contact_id = NULL WHERE id = $1",
            final.id,
        )
        await write_cdrs(conn, [final])
        assert await conn.fetchval("SELECT dialled_number FROM call_attempts WHERE id = $1", final.id) is None


async def test_what_the_live_row_gained_is_carried_over_to_the_cdr(db: asyncpg.Pool) -> None:
    """A disposition given and an erasure made while the CDR was on its way."""
    campaign = await _campaign(db)
    given, erased, plain = (cdr(campaign, disposition=None) for _ in range(3))
    await _live(db, given, given.retention_until, disposition="sale")
    await _live(db, erased, erased.retention_until, dialled_number=None, anonymised_at=T0 + timedelta(minutes=5))
    await _live(db, plain, plain.retention_until)
    async with db.acquire() as conn:
        await write_cdrs(conn, [given, erased, plain])
    rows = {r["id"]: r for r in await db.fetch("SELECT * FROM call_attempts")}
    assert rows[given.id]["disposition"] == "sale"
    assert rows[erased.id]["dialled_number"] is None and rows[erased.id]["contact_id"] is None
    assert rows[erased.id]["anonymised_at"] == T0 + timedelta(minutes=5)
    assert rows[plain.id]["dialled_number"] == plain.dialled_number and rows[plain.id]["anonymised_at"] is None
    assert await db.fetchval("SELECT count(*) FROM live_attempts") == 0


async def test_later_record_of_an_attempt_in_the_same_batch_wins(db: asyncpg.Pool, tmp_path: Path) -> None:
    campaign = await _campaign(db)
    first = cdr(campaign, outcome="no_answer", hangup_cause=19, talk_s=0)
    second = cdr(campaign, id=first.id, outcome="busy", hangup_cause=17, talk_s=0)
    writer = CdrWriter(db, tmp_path)
    await writer.start()
    writer.submit(first)
    writer.submit(second)
    await writer.close()
    assert (await _rows(db))[first.id] == second


async def test_rows_the_database_refuses_are_set_aside_and_the_rest_written(db: asyncpg.Pool, tmp_path: Path) -> None:
    campaign = await _campaign(db)
    good = [cdr(campaign, n) for n in range(5)]
    orphan = cdr(campaign + 1000)  # no such campaign: refused by the writer
    writer = CdrWriter(db, tmp_path)
    await writer.start()
    for record in [*good[:2], orphan, *good[2:]]:
        writer.submit(record)
    await writer.close()
    assert set(await _rows(db)) == {r.id for r in good}
    assert writer.stats.rejected == 1 and "ForeignKey" in writer.stats.last_error
    (rejected,) = tmp_path.glob("rejected-*.jsonl")
    assert rejected.name == f"rejected-{datetime.now(UTC).date().isoformat()}.jsonl"
    (line,) = rejected.read_text().splitlines()
    kept = json.loads(line)
    assert CdrRecord.from_json(kept["record"]) == orphan
    assert "campaign_id" in kept["error"]


# -- Postgres unreachable --------------------------------------------------------------
async def test_unreachable_postgres_spools_then_a_new_writer_replays(db: asyncpg.Pool, tmp_path: Path) -> None:
    campaign = await _campaign(db)
    records = [cdr(campaign, n) for n in range(120)]
    dead = await asyncpg.create_pool("postgresql://postgres@127.0.0.1:1/none", min_size=0)
    spool_dir = default_spool_dir(tmp_path)
    writer = CdrWriter(dead, spool_dir, batch_size=50, write_timeout=2, backoff=FAST)
    await writer.start()
    for record in records:
        writer.submit(record)  # synchronous: never raises, never waits for the database
    assert writer.stats.pending == 120
    await writer.flush()
    stats = writer.stats
    assert stats.written == 0 and stats.spooled == 120 and writer.spool_backlog == 120
    assert "ConnectionRefused" in stats.last_error
    await writer.close()
    await dead.close()
    lines = [json.loads(x) for p in sorted(spool_dir.glob("*.jsonl")) for x in p.read_text().splitlines()]
    assert [CdrRecord.from_json(x) for x in lines] == records  # spooled in submit order

    restarted = CdrWriter(db, spool_dir, backoff=FAST)
    await restarted.start()
    await _wait_for(lambda: restarted.spool_backlog == 0)
    await restarted.close()
    assert await _rows(db) == {r.id: r for r in records}
    assert restarted.stats.replayed == 120
    assert list(spool_dir.glob("*.jsonl")) == []


async def test_torn_spool_line_is_skipped_and_the_rest_replayed(db: asyncpg.Pool, tmp_path: Path) -> None:
    campaign = await _campaign(db)
    records = [cdr(campaign, n) for n in range(3)]
    segment = tmp_path / "000000000007.jsonl"
    body = "".join(json.dumps(r.to_json()) + "\n" for r in records)
    torn = json.dumps(cdr(campaign, 3).to_json())[:40]
    segment.write_text(body + torn)
    writer = CdrWriter(db, tmp_path, backoff=FAST)
    await writer.start()
    assert writer.spool_backlog == 3
    await _wait_for(lambda: writer.spool_backlog == 0)
    await writer.close()
    assert await _rows(db) == {r.id: r for r in records}
    assert not segment.exists()


async def test_postgres_stopped_mid_run_then_back_every_row_once_in_order(
    stoppable_pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    pool = await asyncpg.create_pool(stoppable_pg.uri, min_size=1, max_size=3)
    try:
        campaign = await _campaign(pool)
        before = [cdr(campaign, n) for n in range(40)]
        during = [cdr(campaign, n) for n in range(40, 140)]
        first = cdr(campaign, 200, outcome="no_answer", hangup_cause=19, talk_s=0)
        later = cdr(campaign, 200, id=first.id, outcome="busy", hangup_cause=17, talk_s=0)
        writer = CdrWriter(pool, tmp_path, batch_size=25, write_timeout=2, backoff=FAST)
        await writer.start()
        for record in before:
            writer.submit(record)
        await writer.flush()
        assert writer.stats.written == 40

        uri = stoppable_pg.uri
        await asyncio.to_thread(stoppable_pg.stop)
        writer.submit(first)
        for record in during:
            writer.submit(record)
        writer.submit(later)
        await writer.flush()
        assert writer.stats.spooled == 102 and writer.spool_backlog == 102
        await asyncio.sleep(0.3)  # replay attempts fail while the server is down
        assert writer.spool_backlog == 102

        stoppable_pg.start()  # same data dir and socket: the pool reconnects
        assert stoppable_pg.uri == uri
        await _wait_for(lambda: writer.spool_backlog == 0)
        await writer.close()
        rows = await _rows(pool)
        expected = {r.id: r for r in before + during + [later]}
        assert rows == expected  # each once; the later record of an attempt won
        assert await pool.fetchval("SELECT count(*) FROM call_attempts") == 141
        assert writer.stats.replayed == 102
        assert list(tmp_path.glob("*.jsonl")) == []
    finally:
        pool.terminate()
