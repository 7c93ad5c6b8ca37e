"""Inbound CDRs on real Postgres (migration 0008): the schema's rules per direction, the CDR
writer's COPY path and replay, and everything that reads CDRs: abandon-rate queries (outbound
only), the daily report, CDR query and export, subject access and erasure, retention purge."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from hitcall_pbx.api.deps import CdrFilter
from hitcall_pbx.api.repos.campaigns import abandon_counts
from hitcall_pbx.auth import Actor
from hitcall_pbx.core.retention import RetentionPolicy, add_months, cdr_deadline
from hitcall_pbx.dialer.store import DialerStore
from hitcall_pbx.errors import ValidationFailed
from hitcall_pbx.hooks.events import enqueue
from hitcall_pbx.privacy.service import PrivacyService
from hitcall_pbx.records.api import ApiCdrs
from hitcall_pbx.records.cdr import COLUMNS, CdrRecord, CdrWriter, inbound_cdr_id, write_cdrs
from hitcall_pbx.records.cdr_query import CdrExport, CdrQuery, query_cdrs
from hitcall_pbx.records.purge import PurgeWorker
from hitcall_pbx.records.recordings import RecordingStore
from hitcall_pbx.report import load_inbound_without_campaign, load_report, render
from hitcall_pbx.report.query import campaigns_for_day
from hitcall_pbx.store.db import Connection

CALLER = "+358401234567"
OTHER = "+358409876543"
LINE = "+358201234567"
DPO = Actor("dpo", "compliance", "10.0.0.9")


async def _campaign(db: asyncpg.Pool, cdr_months: int = 24) -> int:
    return await db.fetchval(
        "INSERT INTO campaigns (name, mode, caller_id, retention_cdr_months) VALUES ($1, 'progressive', $2, $3)"
        " RETURNING id",
        f"c-{uuid.uuid4().hex[:8]}",
        LINE,
        cdr_months,
    )


def inbound(created: datetime, outcome: str = "answered_human", **fields: object) -> CdrRecord:
    """An inbound CDR as the inbound router writes it."""
    bridged = created + timedelta(seconds=4) if outcome == "answered_human" else None
    ended = created + timedelta(seconds=64 if bridged else 9)
    values: dict[str, object] = dict(
        id=inbound_cdr_id(f"chan-{uuid.uuid4().hex}"),
        direction="inbound",
        campaign_id=None,
        attempt_no=None,
        mode=None,
        caller_id=LINE,
        caller_number=CALLER,
        created_at=created,
        answered_at=bridged,
        bridged_at=bridged,
        ended_at=ended,
        ring_s=Decimal("4") if bridged else Decimal("9"),
        talk_s=Decimal("60") if bridged else Decimal("0"),
        outcome=outcome,
        abandoned=outcome == "abandoned",
        agent_id=None,
        retention_until=cdr_deadline(created, RetentionPolicy()),
    )
    values.update(fields)
    return CdrRecord(**values)  # type: ignore[arg-type]  # fields passed as **dict[str, object]; the constructor checks them


def outbound(campaign_id: int, created: datetime, outcome: str = "answered_human", **fields: object) -> CdrRecord:
    answered = created + timedelta(seconds=5) if outcome in ("answered_human", "abandoned") else None
    bridged = answered + timedelta(milliseconds=20) if outcome == "answered_human" and answered else None
    values: dict[str, object] = dict(
        id=uuid.uuid4(),
        campaign_id=campaign_id,
        dialled_number=OTHER,
        caller_id=LINE,
        mode="predictive",
        created_at=created,
        answered_at=answered,
        bridged_at=bridged,
        ended_at=created + timedelta(seconds=30),
        ring_s=Decimal("5"),
        answer_to_bridge_ms=20 if bridged else None,
        outcome=outcome,
        abandoned=outcome == "abandoned",
        retention_until=cdr_deadline(created, RetentionPolicy()),
    )
    values.update(fields)
    return CdrRecord(**values)  # type: ignore[arg-type]  # fields passed as **dict[str, object]; the constructor checks them


async def _write(db: asyncpg.Pool, *records: CdrRecord) -> None:
    async with db.acquire() as conn:
        await write_cdrs(conn, list(records))


# ------------------------------------------------------------------------------ schema ---
async def _insert(conn: Connection, table: str = "call_attempts", **fields: object) -> None:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "direction": "inbound",
        "attempt_no": None,
        "caller_number": CALLER,
        "state": "ended",
        "ended_at": datetime.now(UTC),
        "outcome": "abandoned",
        "abandoned": True,
        "retention_until": datetime.now(UTC) + timedelta(days=730),
    }
    values.update(fields)
    cols = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    await conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({params})", *values.values())


async def test_schema_keeps_each_direction_to_its_rules(db: asyncpg.Pool) -> None:
    campaign = await _campaign(db)
    async with db.acquire() as conn:
        # An inbound call of nobody known: no campaign, contact, attempt number, mode or line.
        await _insert(conn)
        await _insert(conn, caller_number=None, outcome="no_agent", abandoned=False, campaign_id=campaign)
        checks: list[tuple[str, dict[str, object]]] = [
            ("call_attempts_outbound_check", {"direction": "outbound", "attempt_no": 1, "caller_number": None}),
            (
                "call_attempts_outbound_check",  # an outbound row keeps its number in dialled_number
                {"direction": "outbound", "campaign_id": campaign, "attempt_no": 1, "mode": "predictive",
                 "caller_id": LINE},
            ),
            ("call_attempts_inbound_check", {"dialled_number": OTHER}),
            ("call_attempts_inbound_check", {"mode": "predictive"}),
            ("call_attempts_direction_check", {"direction": "sideways"}),
            ("call_attempts_caller_number_check", {"caller_number": "0401234567"}),
            ("call_attempts_anonymised_check", {"anonymised_at": datetime.now(UTC)}),
        ]  # fmt: skip
        for name, fields in checks:
            with pytest.raises(asyncpg.CheckViolationError, match=name):
                await _insert(conn, **fields)
        # attempt_no keeps its default 1 for outbound inserts: an inbound row names it NULL.
        with pytest.raises(asyncpg.CheckViolationError, match="call_attempts_inbound_check"):
            await conn.execute(
                """INSERT INTO call_attempts (id, direction, state, ended_at, outcome, retention_until)
                   VALUES (gen_random_uuid(), 'inbound', 'ended', now(), 'no_agent', now() + interval '1 year')"""
            )
        # An outbound row as before the migration (direction by default) is still accepted.
        await conn.execute(
            """INSERT INTO call_attempts (id, campaign_id, dialled_number, caller_id, mode, state, ended_at, outcome,
                                          retention_until)
               VALUES (gen_random_uuid(), $1, $2, $3, 'predictive', 'ended', now(), 'busy',
                       now() + interval '1 year')""",
            campaign,
            OTHER,
            LINE,
        )
        # live_attempts keeps the same rules, and all_attempts shows the new columns.
        with pytest.raises(asyncpg.CheckViolationError, match="call_attempts_outbound_check"):
            await _insert(
                conn, "live_attempts", direction="outbound", attempt_no=1, caller_number=None, state="ringing",
                ended_at=None, outcome=None, abandoned=False,
            )  # fmt: skip
        rows = await conn.fetch("SELECT direction, count(*) AS n FROM all_attempts GROUP BY 1 ORDER BY 1")
        assert [(r["direction"], r["n"]) for r in rows] == [("inbound", 2), ("outbound", 1)]
        # Subject look-ups by the caller's number use an index.
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            plan = "\n".join(
                r[0]
                for r in await conn.fetch(
                    "EXPLAIN SELECT id FROM call_attempts WHERE caller_number = ANY($1::text[])", [CALLER]
                )
            )
        assert "call_attempts_caller_number_idx" in plan and "Seq Scan" not in plan


def test_record_keeps_each_direction_to_its_rules() -> None:
    created = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    record = inbound(created)
    assert record.direction == "inbound" and record.campaign_id is None and record.attempt_no is None
    assert CdrRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
    refused: list[tuple[str, dict[str, object]]] = [
        ("dialled_number", {"dialled_number": OTHER}),
        ("attempt_no", {"attempt_no": 1}),
        ("mode", {"mode": "predictive"}),
        ("caller_number", {"caller_number": "040 1234567"}),
        ("direction", {"direction": "sideways"}),
    ]
    for name, fields in refused:
        with pytest.raises(ValidationFailed) as err:
            inbound(created, **fields)
        assert err.value.details["field"] == name
    for name in ("campaign_id", "attempt_no", "mode", "caller_id"):
        values = {**outbound(1, created).to_json(), name: None}
        with pytest.raises(ValidationFailed) as err:
            CdrRecord.from_json(values)
        assert err.value.details["field"] == name
    with pytest.raises(ValidationFailed) as err:
        outbound(1, created, caller_number=CALLER)
    assert err.value.details["field"] == "caller_number"
    with pytest.raises(ValidationFailed) as err:
        outbound(1, created, outcome="no_agent")
    assert err.value.details["field"] == "outcome"
    # A dict from the dialer that predates the new columns is an outbound record.
    row = dict(zip(COLUMNS, outbound(1, created).to_row()))
    del row["direction"], row["caller_number"]
    assert CdrRecord.from_row(row).direction == "outbound"


# ------------------------------------------------------------------------------ writer ---
async def test_writer_copies_inbound_cdrs_and_a_replay_writes_no_second_row(db: asyncpg.Pool, tmp_path: Path) -> None:
    campaign = await _campaign(db)
    created = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    mine = inbound(created, campaign_id=campaign, contact_id=None, agent_id=None)
    unknown = inbound(created, outcome="abandoned", caller_number=None)
    ghost = inbound(created, outcome="no_agent", campaign_id=campaign + 1000)
    out = outbound(campaign, created)
    writer = CdrWriter(db, tmp_path / "spool", flush_interval=0.01)
    await writer.start()
    try:
        for record in (mine, unknown, ghost, out):
            writer.submit(record)
        await writer.flush()
        # The replay after a crash: the same call's CDR again (same id from the channel id).
        writer.submit(mine)
        await writer.flush()
        stats = writer.stats
    finally:
        await writer.close()
    rows = {r["id"]: dict(r) for r in await db.fetch(f"SELECT {', '.join(COLUMNS)} FROM call_attempts")}
    assert set(rows) == {mine.id, unknown.id, out.id}, "an inbound CDR naming no campaign is written"
    assert CdrRecord.from_row(rows[mine.id]) == mine and CdrRecord.from_row(rows[unknown.id]) == unknown
    assert CdrRecord.from_row(rows[out.id]) == out
    assert stats.rejected == 1, "a CDR naming a campaign that does not exist is set aside"
    # Written again straight through write_cdrs (the replay path of the spool): still one row.
    await _write(db, mine, mine)
    assert await db.fetchval("SELECT count(*) FROM call_attempts WHERE id = $1", mine.id) == 1
    assert inbound_cdr_id("1733412345.17") == inbound_cdr_id("1733412345.17") != inbound_cdr_id("1733412345.18")


# ------------------------------------------------------------------ abandon accounting ---
async def test_inbound_abandons_stay_out_of_the_outbound_abandon_rate(db: asyncpg.Pool) -> None:
    campaign = await _campaign(db)
    now = datetime.now(UTC).replace(microsecond=0)
    # Half an hour ago, but today (UTC): the API's and the report's day counts are today's.
    now -= min(timedelta(minutes=30), now - now.replace(hour=0, minute=0, second=0))
    outbound_calls = [outbound(campaign, now, "abandoned")] + [outbound(campaign, now) for _ in range(3)]
    await _write(db, *outbound_calls)

    async def rates() -> tuple[object, ...]:
        tallies = await DialerStore(db, None).abandon_tallies(campaign)  # type: ignore[arg-type]  # no hopper: only the abandon history is read
        async with db.acquire() as conn:
            api = await abandon_counts(conn, campaign, "UTC")
        [report] = await load_report(db, now.date(), campaign)
        return (
            [(t.abandoned, t.connected) for t in tallies.values()],
            (api["day_abandoned"], api["day_connected"], api["period_abandoned"], api["period_connected"]),
            (report.abandoned, report.connects, report.abandon_rate_day, report.abandoned_30d, report.connects_30d),
        )

    before = await rates()
    assert before == ([(1, 3)], (1, 3, 1, 3), (1, 3, 0.25, 1, 3))
    await _write(
        db,
        inbound(now, "abandoned", campaign_id=campaign),
        inbound(now, "abandoned", campaign_id=campaign),
        inbound(now, "no_agent", campaign_id=campaign),
        inbound(now, campaign_id=campaign),
    )
    assert await rates() == before


# ------------------------------------------------------------------------------ report ---
async def test_report_shows_inbound_calls_per_campaign_and_those_of_no_campaign(db: asyncpg.Pool) -> None:
    campaign = await _campaign(db)
    quiet = await _campaign(db)  # only a return call today
    day = date(2026, 3, 10)
    at = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
    await _write(
        db,
        outbound(campaign, at),
        outbound(campaign, at, "busy"),
        inbound(at, campaign_id=campaign, ring_s=Decimal("2")),
        inbound(at, campaign_id=campaign, ring_s=Decimal("8")),
        inbound(at, "abandoned", campaign_id=campaign, ring_s=Decimal("30")),
        inbound(at, "no_agent", campaign_id=quiet),
        inbound(at, "abandoned"),
        inbound(at - timedelta(days=1), "abandoned"),  # another day
    )
    assert await campaigns_for_day(db, day) == sorted([campaign, quiet])
    reports = {r.campaign_id: r for r in await load_report(db, day)}
    r = reports[campaign]
    assert (r.calls, r.connects, r.abandoned, r.outcomes) == (2, 1, 0, {"answered_human": 1, "busy": 1})
    i = r.inbound
    assert (i.calls, i.connected, i.abandoned, i.no_agent) == (3, 2, 1, 0)
    assert (i.wait_to_agent_p50_s, i.wait_to_agent_p99_s, i.abandoned_wait_p50_s) == (2.0, 8.0, 30.0)
    assert i.talk_s == 120.0
    assert reports[quiet].calls == 0 and reports[quiet].inbound.no_agent == 1
    unmatched = await load_inbound_without_campaign(db, day)
    assert (unmatched.calls, unmatched.abandoned) == (1, 1)

    ordered = [reports[campaign], reports[quiet]]
    data = json.loads(render(ordered, "json", day=day, inbound_without_campaign=unmatched))
    assert data["campaigns"][0]["inbound"]["connected"] == 2 and data["inbound_without_campaign"]["abandoned"] == 1
    rows = list(csv.DictReader(io.StringIO(render(ordered, "csv", day=day, inbound_without_campaign=unmatched))))
    assert [(row["campaign_id"], row["inbound_calls"], row["abandoned"]) for row in rows] == [
        (str(campaign), "3", "0"),
        (str(quiet), "1", "0"),
        ("", "1", ""),
    ]
    page = render(ordered, "html", day=day, inbound_without_campaign=unmatched)
    assert page.count("<h3>Return calls (inbound)</h3>") == 2 and "Return calls of no campaign" in page


# --------------------------------------------------------------------- query / export ---
async def test_cdr_query_export_and_api_carry_the_direction(db: asyncpg.Pool) -> None:
    campaign = await _campaign(db)
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    call_in, call_out = inbound(at, agent_id=None), outbound(campaign, at + timedelta(seconds=1))
    await _write(db, call_in, call_out)
    both = await query_cdrs(db, CdrQuery())
    assert [c.id for c in both.items] == [call_in.id, call_out.id]
    only_in = await query_cdrs(db, CdrQuery(direction="inbound"))
    assert [c.id for c in only_in.items] == [call_in.id]
    assert [c.id for c in (await query_cdrs(db, CdrQuery(campaign_id=campaign))).items] == [call_out.id]
    with pytest.raises(ValidationFailed) as err:
        CdrQuery(direction="sideways")
    assert err.value.details["field"] == "direction"

    text = "".join([chunk async for chunk in CdrExport(db, CdrQuery(), "csv")])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["direction"], r["caller_number"], r["campaign_id"], r["dialled_number"]) for r in rows] == [
        ("inbound", CALLER, "", ""),
        ("outbound", "", str(campaign), OTHER),
    ]
    exported = json.loads("".join([chunk async for chunk in CdrExport(db, CdrQuery(direction="inbound"), "json")]))
    assert [(e["direction"], e["outcome"], e["mode"]) for e in exported] == [("inbound", "answered_human", None)]

    page = await ApiCdrs(db).query(CdrFilter(direction="inbound"), limit=10, cursor=None)  # type: ignore[arg-type]  # pydantic coerces the enum value
    [cdr] = page.items
    assert (cdr.direction, cdr.campaign_id, cdr.caller_number, cdr.attempt_no, cdr.mode) == (
        "inbound",
        None,
        CALLER,
        None,
        None,
    )


# ----------------------------------------------------------------- privacy / retention ---
async def test_subject_access_and_erasure_cover_inbound_cdrs_by_the_callers_number(db: asyncpg.Pool, tmp_path) -> None:
    privacy = PrivacyService(db, RecordingStore(tmp_path / "store"))
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    mine = inbound(at)  # an unknown caller: no contact, only the number
    theirs = inbound(at, caller_number=OTHER)
    await _write(db, mine, theirs)
    async with db.acquire() as conn:
        await enqueue(conn, "call.ended", f"attempt:{mine.id}", json.loads(json.dumps(mine.to_json())))
        await enqueue(conn, "call.ended", f"attempt:{theirs.id}", json.loads(json.dumps(theirs.to_json())))

    export = await privacy.export(CALLER, actor=DPO)
    assert [(a["id"], a["direction"], a["caller_number"]) for a in export.data["call_attempts"]] == [
        (str(mine.id), "inbound", CALLER)
    ]
    report = await privacy.erase(CALLER, actor=DPO)
    assert report.attempts_anonymised == 1 and report.webhook_events_deleted == 1 and report.suppressed
    row = await db.fetchrow("SELECT caller_number, contact_id, anonymised_at FROM call_attempts WHERE id = $1", mine.id)
    assert row is not None and row["caller_number"] is None and row["anonymised_at"] is not None
    assert await db.fetchval("SELECT caller_number FROM call_attempts WHERE id = $1", theirs.id) == OTHER
    assert await db.fetchval("SELECT count(*) FROM webhook_outbox WHERE subject = $1", f"attempt:{theirs.id}") == 1
    assert (await privacy.export(CALLER, actor=DPO)).data["call_attempts"] == []


async def test_purge_anonymises_inbound_cdrs_past_their_deadline(db: asyncpg.Pool, tmp_path) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(days=400)
    due = inbound(old, retention_until=add_months(old, 2))
    kept = inbound(old, retention_until=now + timedelta(days=30))
    await _write(db, due, kept)
    report = await PurgeWorker(db, RecordingStore(tmp_path / "store")).run_once(now=now)
    assert report.attempts_anonymised == 1
    rows = {r["id"]: r for r in await db.fetch("SELECT id, caller_number, anonymised_at FROM call_attempts")}
    assert rows[due.id]["caller_number"] is None and rows[due.id]["anonymised_at"] is not None
    assert rows[kept.id]["caller_number"] == CALLER and rows[kept.id]["anonymised_at"] is None
