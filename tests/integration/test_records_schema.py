"""Migration 0004: the regex-free E.164 check means exactly what the regex meant, and the
lookups that lost or narrowed an index still find their rows through one."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_REGEX = r"^\+[1-9][0-9]{6,14}$"

near_e164 = st.text(alphabet="+0123456789١a ", min_size=0, max_size=18) | st.from_regex(_REGEX, fullmatch=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(near_e164, min_size=1, max_size=20))
async def test_e164_function_agrees_with_the_regex(db: asyncpg.Pool, values: list[str]) -> None:
    rows = await db.fetch("SELECT v, hitcall_is_e164(v) AS fn, v ~ $2 AS re FROM unnest($1::text[]) v", values, _REGEX)
    assert [(r["v"], r["fn"]) for r in rows] == [(r["v"], r["re"]) for r in rows]


async def test_call_attempts_still_refuses_a_bad_number_naming_the_column(db: asyncpg.Pool) -> None:
    campaign = await db.fetchval("INSERT INTO campaigns (name, mode) VALUES ('c', 'progressive') RETURNING id")
    for column in ("dialled_number", "caller_id"):
        values = {"dialled_number": "+358401234567", "caller_id": "+358201234567", column: "+0358401234567"}
        with pytest.raises(asyncpg.CheckViolationError, match=f"call_attempts_{column}_check"):
            await db.execute(
                """INSERT INTO call_attempts (id, campaign_id, dialled_number, caller_id, mode, retention_until,
                                              ended_at, outcome)
                   VALUES (gen_random_uuid(), $1, $2, $3, 'progressive', now() + interval '1 year', now(), 'busy')""",
                campaign,
                values["dialled_number"],
                values["caller_id"],
            )


@pytest.mark.parametrize(
    ("query", "arg", "indexes"),
    [
        (
            "SELECT id FROM call_attempts WHERE dialled_number = ANY($1::text[])",
            ["+358401234567"],
            ("call_attempts_number_idx",),
        ),
        ("SELECT id FROM call_attempts WHERE contact_id = ANY($1::bigint[])", [1], ("call_attempts_contact_idx",)),
        (
            "SELECT campaign_id FROM call_attempts WHERE created_at >= $1 AND created_at < $1 + interval '1 day'",
            datetime(2026, 3, 2, tzinfo=UTC),
            ("call_attempts_created_brin", "call_attempts_campaign_created_idx"),
        ),  # the latter: skip scan
    ],
)
async def test_subject_and_time_lookups_use_an_index(
    db: asyncpg.Pool, query: str, arg: object, indexes: tuple[str, ...]
) -> None:
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {query}", arg))
    assert any(index in plan for index in indexes) and "Seq Scan" not in plan
