"""Callbacks in the hopper and the call journal, on PostgreSQL: who may take a personal
callback (its agent while logged in or within the grace, anyone after), a callback past
the campaign's attempts, the callback's end with its call, and a callback of a contact
that may no longer be dialled."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from hitcall_pbx.core.outcomes import Outcome, contact_after
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign
from hitcall_pbx.dialer.hopper import Hopper
from hitcall_pbx.dialer.models import Campaign
from hitcall_pbx.dialer.store import DialerStore
from hitcall_pbx.records.journal import CloseContact, apply_ops

NUMBERS = ["+358401000001", "+358401000002"]


async def _setup(db: asyncpg.Pool, **fields) -> tuple[Campaign, int, list[int]]:
    cid, list_id = await create_campaign(db, f"cb-{uuid.uuid4().hex[:6]}", numbers=NUMBERS, **ALL_DAY, **fields)
    agent = await create_agent(db, str(uuid.uuid4().int % 10**8), f"ep{uuid.uuid4().hex[:8]}", [cid])
    ids = [r["id"] for r in await db.fetch("SELECT id FROM contacts WHERE list_id = $1 ORDER BY id", list_id)]
    # only the callbacks are due
    await db.execute("UPDATE contacts SET next_attempt_at = now() + interval '1 day' WHERE list_id = $1", list_id)
    campaign = Campaign.from_row(await db.fetchrow("SELECT * FROM campaigns WHERE id = $1", cid))
    return campaign, agent, ids


async def _callback(db, contact: int, due: datetime, agent: int | None, attempts: int = 0) -> int:
    await db.execute(
        """UPDATE contacts SET status = 'callback', callback_at = $2, callback_agent_id = $3, attempts = $4
           WHERE id = $1""",
        contact,
        due,
        agent,
        attempts,
    )
    return await db.fetchval(
        """INSERT INTO callbacks (campaign_id, contact_id, agent_id, kind, due_at, timezone, created_by)
           SELECT cl.campaign_id, c.id, $3, CASE WHEN $3::bigint IS NULL THEN 'anyone' ELSE 'personal' END, $2,
                  'Europe/Helsinki', 'test'
           FROM contacts c JOIN campaign_lists cl ON cl.list_id = c.list_id WHERE c.id = $1 RETURNING id""",
        contact,
        due,
        agent,
    )


async def test_a_personal_callback_waits_for_its_agent_then_goes_to_anyone(db: asyncpg.Pool) -> None:
    campaign, agent, (contact, _) = await _setup(db, callback_grace_s=600)
    hopper = Hopper(db)
    now = datetime.now(UTC)
    await _callback(db, contact, now - timedelta(minutes=5), agent)
    # the agent is logged out, the grace has not passed: nobody else takes it
    assert (await hopper.take(campaign, 5, now)).attempts == []
    # the agent is logged in (paused, say): it waits for the agent however late
    await db.execute("UPDATE agents SET state = 'paused', pause_code = 'lunch' WHERE id = $1", agent)
    assert (await hopper.take(campaign, 5, now + timedelta(hours=2))).attempts == []
    # logged out and past the grace: anyone may take it
    await db.execute("UPDATE agents SET state = 'logged_out', pause_code = NULL WHERE id = $1", agent)
    (attempt,) = (await hopper.take(campaign, 5, now + timedelta(minutes=6))).attempts
    assert attempt.contact_id == contact and attempt.agent_id is None


async def test_a_callback_is_dialled_past_the_campaigns_attempts(db: asyncpg.Pool) -> None:
    campaign, _, (contact, other) = await _setup(db, max_attempts=2)
    await _callback(db, contact, datetime.now(UTC) - timedelta(seconds=1), None, attempts=2)
    await db.execute("UPDATE contacts SET attempts = 2, next_attempt_at = NULL, status = 'retry' WHERE id = $1", other)
    result = await Hopper(db).take(campaign, 5, datetime.now(UTC))
    assert [a.contact_id for a in result.attempts] == [contact], "the customer asked for it; the retry is used up"
    assert result.blocked == {"max_attempts": 1}


async def test_a_callback_ends_with_its_call_done_or_missed(db: asyncpg.Pool) -> None:
    campaign, _, (reached, missed) = await _setup(db)
    now = datetime.now(UTC)
    cb_reached = await _callback(db, reached, now - timedelta(minutes=1), None)
    cb_missed = await _callback(db, missed, now - timedelta(minutes=1), None)
    attempts = (await Hopper(db).take(campaign, 5, now)).attempts
    assert {a.contact_id for a in attempts} == {reached, missed}
    async with db.acquire() as conn, conn.transaction():
        await apply_ops(
            conn,
            [
                CloseContact(a.contact_id, a.attempt_no, a.created_at, status, None, outcome, False)
                for a in attempts
                for status, outcome in [("done", "answered_human") if a.contact_id == reached else ("retry", "busy")]
            ],
        )
    states = dict(
        await db.fetch("SELECT id, state FROM callbacks WHERE id = ANY($1::bigint[])", [cb_reached, cb_missed])
    )
    assert states == {cb_reached: "done", cb_missed: "missed"}
    rows = await db.fetch("SELECT id, callback_at FROM contacts WHERE id = ANY($1::bigint[])", [reached, missed])
    assert all(r["callback_at"] is None for r in rows)


async def test_a_callback_of_a_number_put_on_do_not_call_is_cancelled(db: asyncpg.Pool) -> None:
    campaign, _, (contact, _) = await _setup(db)
    cb = await _callback(db, contact, datetime.now(UTC) - timedelta(seconds=1), None)
    await db.execute("INSERT INTO dnc_entries (phone_e164, source) VALUES ($1, 'api')", NUMBERS[0])
    result = await Hopper(db).take(campaign, 5, datetime.now(UTC))
    assert result.attempts == [] and result.blocked == {"dnc_global": 1}
    assert await db.fetchval("SELECT state FROM callbacks WHERE id = $1", cb) == "cancelled"
    event = await db.fetchrow("SELECT payload FROM webhook_outbox WHERE event_type = 'callback.cancelled'")
    assert event["payload"]["callback_id"] == cb and event["payload"]["reason"] == "dnc_global"


async def test_a_disposition_given_before_a_restart_still_decides_the_contact(db: asyncpg.Pool) -> None:
    campaign, agent, (contact, _) = await _setup(db)
    await db.execute("UPDATE contacts SET next_attempt_at = NULL WHERE id = $1", contact)
    (attempt,) = (await Hopper(db).take(campaign, 1, datetime.now(UTC))).attempts
    await db.execute(
        "UPDATE live_attempts SET agent_id = $2, disposition = 'no_decision' WHERE id = $1", attempt.id, agent
    )
    update = contact_after(
        Outcome.ANSWERED_HUMAN, retry_delays=None, attempt_no=1, max_attempts=3, ended_at=datetime.now(UTC)
    )
    await DialerStore(db, Hopper(db)).close_recovered_contact(contact, 1, update, "answered_human")
    row = await db.fetchrow("SELECT status, next_attempt_at FROM contacts WHERE id = $1", contact)
    assert row["status"] == "retry", "the rule of no_decision (retry in a day), not the answered call's done"
    assert timedelta(hours=23) < row["next_attempt_at"] - datetime.now(UTC) <= timedelta(days=1)
