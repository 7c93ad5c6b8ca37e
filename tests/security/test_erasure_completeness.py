"""Erasure covers every number the subject ever had.

A person is called on one number, objects to marketing (a DNC entry for that number),
is offered to an agent in preview (the event names the number and the name), then has
the number rectified and is called on the new one. Erasing the person by the new number
must leave neither number nor the name anywhere: every text and JSON column of every
table is searched (information_schema), and every file under the data dir. A recording
under a complaint hold is the one exception: its CDR is kept and the erasure reports it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from hitcall_pbx.auth import Role
from hitcall_pbx.core.compliance import salted_number_hash
from hitcall_pbx.core.retention import add_months
from hitcall_pbx.hooks.events import enqueue
from tests.security.service_api import ServiceApi, seed_recorded_call, service_api  # noqa: F401

OLD = "+358401234567"
NEW = "+358409876543"
NAME = "Maija Meikäläinen"
EMAIL = "maija.meikalainen@example.fi"
NEEDLES = (OLD, NEW, OLD[4:], NEW[4:], "Meikäläinen", "meikalainen")
TEXT_TYPES = ("text", "character varying", "character", "json", "jsonb")


async def search_database(pool: asyncpg.Pool) -> list[tuple[str, str, str]]:
    """(table, column, needle) for every text or JSON column of every table holding a needle."""
    columns = await pool.fetch(
        """SELECT c.table_name, c.column_name FROM information_schema.columns c
           JOIN information_schema.tables t USING (table_schema, table_name)
           WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' AND c.data_type = ANY($1::text[])
           ORDER BY 1, 2""",
        list(TEXT_TYPES),
    )
    assert {"contacts", "dnc_entries", "webhook_outbox", "call_attempts", "live_attempts"} <= {
        c["table_name"] for c in columns
    }
    hits = []
    for c in columns:
        for needle in NEEDLES:
            found = await pool.fetch(
                f'SELECT ctid::text AS row FROM "{c["table_name"]}" WHERE lower("{c["column_name"]}"::text) LIKE $1',
                f"%{needle.lower()}%",
            )
            hits += [(c["table_name"], c["column_name"], needle) for _ in found]
    return hits


def search_files(root: Path) -> list[tuple[str, str]]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes().lower()
            hits += [(str(path.relative_to(root)), n) for n in NEEDLES if n.lower().encode() in data]
    return hits


async def test_erasure_leaves_no_number_the_subject_ever_had_nor_the_name(service_api: ServiceApi, tmp_path):
    api = service_api
    pool = api.pool
    dpo = await api.login_as(Role.COMPLIANCE)
    # Two recorded calls on the old number; one recording goes on complaint hold.
    first = await seed_recorded_call(pool, api.store, tmp_path, number=OLD, name=NAME, email=EMAIL, days_ago=20)
    contact, campaign = first["contact"], first["campaign"]
    held_attempt = uuid.uuid4()
    created = datetime.now(UTC) - timedelta(days=10)
    await pool.execute(
        """INSERT INTO call_attempts (id, campaign_id, contact_id, dialled_number, caller_id, mode, created_at,
                                      retention_until, state, ended_at, outcome)
           VALUES ($1, $2, $3, $4, '+358931234567', 'progressive', $5, $6, 'ended', $5, 'answered_human')""",
        held_attempt,
        campaign,
        contact,
        OLD,
        created,
        add_months(created, 24),
    )
    source = tmp_path / "held.wav"
    source.write_bytes(first["audio"])  # type: ignore[arg-type]  # the fixture's dict values are typed object
    from hitcall_pbx.core.retention import RetentionPolicy

    held = await api.store.finalize(
        pool,
        source_path=source,
        recording_id=uuid.uuid4(),
        attempt_id=held_attempt,
        campaign_id=campaign,
        call_at=created,
        policy=RetentionPolicy(),
        format="wav",
    )
    resp = await api.client.post(
        f"/api/v1/recordings/{held.id}/hold", json={"reason": "complaint", "case_id": "K-17"}, headers=dpo
    )
    assert resp.status == 200, await resp.text()

    # Objection on the old number: a global DNC entry and a contact.opted_out event.
    resp = await api.client.post("/api/v1/subjects/object", json={"subject": {"phone": OLD}}, headers=dpo)
    assert resp.status == 200, await resp.text()
    # A preview offer event names the number and the name.
    async with pool.acquire() as conn:
        await enqueue(
            conn,
            "preview.offered",
            "agent:1",
            {"contact_id": contact, "number": OLD, "contact": {"name": NAME}, "campaign_id": campaign},
        )
    # The number is rectified, then the person is called on the new one (a CDR and a live call).
    resp = await api.client.post(
        "/api/v1/subjects/rectify",
        json={"subject": {"phone": OLD}, "changes": {"phone": NEW}},
        headers=dpo,
    )
    assert resp.status == 200, await resp.text()
    for table, state in (("call_attempts", "ended"), ("live_attempts", "ringing")):
        await pool.execute(
            f"""INSERT INTO {table} (id, campaign_id, contact_id, dialled_number, caller_id, mode, created_at,
                                    retention_until, state, ended_at, outcome)
                VALUES ($1, $2, $3, $4, '+358931234567', 'progressive', now(), now() + interval '2 years', $5,
                        CASE WHEN $5 = 'ended' THEN now() END, CASE WHEN $5 = 'ended' THEN 'busy' END)""",
            uuid.uuid4(),
            campaign,
            contact,
            NEW,
            state,
        )
    # A subject export with audio was made (and sent) before the erasure.
    resp = await api.client.post("/api/v1/subjects/export.zip", json={"subject": {"phone": NEW}}, headers=dpo)
    assert resp.status == 200, await resp.text()
    await resp.read()
    before = await search_database(pool)
    assert {(t, n) for t, _, n in before} >= {("dnc_entries", OLD), ("webhook_outbox", OLD), ("contacts", NEW)}

    resp = await api.client.post("/api/v1/subjects/erase", json={"subject": {"phone": NEW}}, headers=dpo)
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert [r["recording_id"] for r in report["recordings_retained"]] == [str(held.id)]
    assert report["details"]["attempts_retained"] == [str(held_attempt)]
    assert report["details"]["numbers_suppressed"] == 2

    # What is left: the held call's CDR (its number), nothing else, in no table and no file.
    left = await search_database(pool)
    held_rows = await pool.fetch("SELECT dialled_number FROM call_attempts WHERE id = $1", held_attempt)
    assert held_rows[0]["dialled_number"] == OLD
    assert sorted(set(left)) == [("call_attempts", "dialled_number", OLD), ("call_attempts", "dialled_number", OLD[4:])]
    assert len(left) == 2  # that one row, matched as E.164 and as its subscriber digits
    assert search_files(api.data_dir) == []

    # Both numbers are suppressed: never dialled again.
    salt = bytes(await pool.fetchval("SELECT suppression_salt FROM installation"))
    hashes = {r["hash"] for r in await pool.fetch("SELECT hash FROM suppression_hashes")}
    assert {salted_number_hash(OLD, salt), salted_number_hash(NEW, salt)} <= hashes


async def test_a_former_number_now_held_by_another_contact_is_suppressed_but_that_contact_is_kept(
    service_api: ServiceApi, tmp_path
):
    api = service_api
    pool = api.pool
    dpo = await api.login_as(Role.COMPLIANCE)
    mine = await seed_recorded_call(pool, api.store, tmp_path, number=OLD, name=NAME)
    resp = await api.client.post(
        "/api/v1/subjects/rectify", json={"subject": {"phone": OLD}, "changes": {"phone": NEW}}, headers=dpo
    )
    assert resp.status == 200, await resp.text()
    other = await seed_recorded_call(pool, api.store, tmp_path, number=OLD, name="Someone Else")

    resp = await api.client.post("/api/v1/subjects/erase", json={"subject": {"phone": NEW}}, headers=dpo)
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert report["contacts"] == 1
    assert report["details"]["contacts_sharing_numbers"] == [other["contact"]]
    assert await pool.fetchval("SELECT name FROM contacts WHERE id = $1", other["contact"]) == "Someone Else"
    assert await pool.fetchval("SELECT count(*) FROM contacts WHERE id = $1", mine["contact"]) == 0
    # The other person's call is theirs: not anonymised.
    assert await pool.fetchval("SELECT dialled_number FROM call_attempts WHERE id = $1", other["attempt"]) == OLD
    # The subject's own call on the old number is.
    assert await pool.fetchval("SELECT dialled_number FROM call_attempts WHERE id = $1", mine["attempt"]) is None
