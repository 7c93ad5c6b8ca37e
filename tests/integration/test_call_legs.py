"""Transfer records on real Postgres (migration 0012): the CDR's transfer columns through the
CDR writer's COPY, call legs through the call journal (a replay writes nothing twice), and
anonymisation clearing the external number from both."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from hitcall_pbx.demo.seed import ALL_DAY, create_campaign
from hitcall_pbx.errors import ValidationFailed
from hitcall_pbx.records.cdr import CdrRecord, write_cdrs
from hitcall_pbx.records.journal import CallLeg, apply_ops, decode_op, encode_op

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
NUMBER = "+358401999001"


def _cdr(campaign_id: int, **kw) -> CdrRecord:
    return CdrRecord(
        id=uuid.uuid4(),
        campaign_id=campaign_id,
        attempt_no=1,
        dialled_number="+358401000001",
        caller_id="+358201234567",
        agent_id=None,
        mode="progressive",
        created_at=T0,
        answered_at=T0 + timedelta(seconds=2),
        bridged_at=T0 + timedelta(seconds=2),
        ended_at=T0 + timedelta(seconds=60),
        talk_s=58,
        outcome="answered_human",
        retention_until=T0 + timedelta(days=90),
        **kw,
    )


async def test_transfer_columns_legs_and_anonymisation(db: asyncpg.Pool) -> None:
    cid, _ = await create_campaign(db, "legs", **ALL_DAY)
    record = _cdr(
        cid,
        transfer_kind="attended",
        transfer_target="number",
        transfer_number=NUMBER,
        transfer_result="completed",
    )
    async with db.acquire() as conn:
        await write_cdrs(conn, [record])
        row = await conn.fetchrow("SELECT * FROM call_attempts WHERE id = $1", record.id)
    assert CdrRecord.from_row(row) == record
    assert await db.fetchval("SELECT transfer_number FROM all_attempts WHERE id = $1", record.id) == NUMBER

    legs = [
        CallLeg(record.id, 0, None, None, "agent", T0, T0 + timedelta(seconds=20)),
        CallLeg(record.id, 1, None, NUMBER, "consult", T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)),
        CallLeg(record.id, 2, None, NUMBER, "target", T0 + timedelta(seconds=20), T0 + timedelta(seconds=60.5)),
    ]
    assert [decode_op(encode_op(leg)) for leg in legs] == legs  # the journal's spool form
    for _ in range(2):  # a replay (spool after a crash) writes nothing twice
        async with db.acquire() as conn, conn.transaction():
            await apply_ops(conn, list(legs))
    got = await db.fetch(
        "SELECT seq, number, role, talk_s FROM call_legs WHERE attempt_id = $1 ORDER BY seq", record.id
    )
    assert [(r["seq"], r["role"], float(r["talk_s"])) for r in got] == [
        (0, "agent", 20.0),
        (1, "consult", 10.0),
        (2, "target", 40.5),
    ]

    # Anonymised (purge, erasure): the external number goes from the CDR and its legs.
    await db.execute(
        "UPDATE call_attempts SET anonymised_at = now(), dialled_number = NULL, contact_id = NULL WHERE id = $1",
        record.id,
    )
    assert await db.fetchval("SELECT transfer_number FROM call_attempts WHERE id = $1", record.id) is None
    assert (
        await db.fetchval("SELECT count(*) FROM call_legs WHERE attempt_id = $1 AND number IS NOT NULL", record.id) == 0
    )
    assert await db.fetchval("SELECT transfer_result FROM call_attempts WHERE id = $1", record.id) == "completed"


async def test_bad_transfer_columns_are_refused_naming_the_column(db: asyncpg.Pool) -> None:
    cid, _ = await create_campaign(db, "legs-bad", **ALL_DAY)
    for kw, field in (
        ({"transfer_kind": "sideways", "transfer_result": "completed"}, "transfer_kind"),
        ({"transfer_kind": "blind", "transfer_result": "maybe"}, "transfer_result"),
        ({"transfer_kind": "blind"}, "transfer_result"),
        ({"transfer_kind": "blind", "transfer_result": "failed", "transfer_number": "040 123"}, "transfer_number"),
    ):
        with pytest.raises(ValidationFailed) as err:
            _cdr(cid, **kw)
        assert err.value.details["field"] == field
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            "INSERT INTO call_legs (attempt_id, seq, role, joined_at, left_at) VALUES ($1, 0, 'agent', $2, $3)",
            uuid.uuid4(),
            T0,
            T0 - timedelta(seconds=1),
        )
