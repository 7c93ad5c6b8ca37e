"""Callbacks on the real Asterisk with SIPp agent phones: due callbacks are dialled
first, and a callback that names an agent goes only to that agent: it is offered to
that agent as a preview offer once the agent is ready (progressive and predictive), and
dialled for that agent when the offer is accepted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign
from hitcall_pbx.sandbox import SippAgents

from .conftest import wait_until

pytestmark = pytest.mark.asterisk

# Customers answer at once and hang up after 1 s of talk.
NUMBERS = [f"+35841010{i:04d}" for i in range(6)]


async def _callback(pool, list_id: int, number: str, agent_id: int | None, ago_s: int) -> int:
    return await pool.fetchval(
        """UPDATE contacts SET status = 'callback', callback_at = $3, callback_agent_id = $4
           WHERE list_id = $1 AND phone_e164 = $2 RETURNING id""",
        list_id,
        number,
        datetime.now(UTC) - timedelta(seconds=ago_s),
        agent_id,
    )


async def _finished(pool, list_id: int, n: int) -> None:
    async def done():
        return await pool.fetchval(
            "SELECT count(*) >= $2 FROM contacts WHERE list_id = $1 AND status IN ('done', 'failed')", list_id, n
        )

    await wait_until(done, timeout=40, interval=0.2)


async def test_progressive_callbacks_first_and_to_the_named_agent(service_settings, sandbox, hangup_agents):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, list_id = await create_campaign(
            pool, "callback-progressive", mode="progressive", wrap_up_s=0, numbers=NUMBERS, **ALL_DAY
        )
        a1 = await create_agent(pool, "1122", "agent122", [cid])
        a2 = await create_agent(pool, "1123", "agent123", [cid])
        named = await _callback(pool, list_id, NUMBERS[4], a2, ago_s=30)
        anyone = await _callback(pool, list_id, NUMBERS[5], None, ago_s=60)
        with SippAgents(sandbox, ["agent122", "agent123"], port=5323):
            await wait_until(lambda: len(app.sessions.by_agent) == 2, timeout=15)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            offer = await wait_until(lambda: app.dialer.offers.get(a2), timeout=10)
            assert offer.contact_id == named, "the named agent is offered its callback first"
            await app.dialer.accept_offer(a2)
            await _finished(pool, list_id, len(NUMBERS))
            await app.dialer.idle()
            await app.cdr.flush()
        rows = await pool.fetch("SELECT * FROM all_attempts WHERE campaign_id = $1 ORDER BY created_at", cid)
        assert len(rows) == len(NUMBERS) and all(r["outcome"] == "answered_human" for r in rows), [
            (r["contact_id"], r["outcome"]) for r in rows
        ]
        first = rows[0]["created_at"]
        by_contact = {r["contact_id"]: r for r in rows}
        assert by_contact[anyone]["created_at"] == first, "the due callback was taken before the other contacts"
        assert by_contact[named]["agent_id"] == a2, "the callback went to the agent it names"
        offered = await pool.fetchrow("SELECT * FROM preview_offers WHERE agent_id = $1 ORDER BY id LIMIT 1", a2)
        assert (offered["contact_id"], offered["decision"]) == (named, "accept")
        assert all(r["created_at"] >= offered["offered_at"] for r in rows if r["agent_id"] == a2), (
            "the named agent's first call was its callback"
        )
        assert {r["agent_id"] for r in rows} == {a1, a2}
        contact = await pool.fetchrow(
            "SELECT status, callback_at, callback_agent_id FROM contacts WHERE id = $1", named
        )
        assert (contact["status"], contact["callback_at"], contact["callback_agent_id"]) == ("done", None, None)


async def test_predictive_callback_waits_for_its_agent(service_settings, sandbox, hangup_agents):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, list_id = await create_campaign(
            pool, "callback-predictive", mode="predictive", wrap_up_s=0, numbers=NUMBERS[:4], **ALL_DAY
        )
        a1 = await create_agent(pool, "1124", "agent124", [cid])
        a2 = await create_agent(pool, "1125", "agent125", [cid])
        named = await _callback(pool, list_id, NUMBERS[3], a2, ago_s=30)
        with SippAgents(sandbox, ["agent124", "agent125"], port=5325):
            await wait_until(lambda: len(app.sessions.by_agent) == 2, timeout=15)
            app.sessions.pause(a2)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            await _finished(pool, list_id, 3)  # the others, all while agent a2 is paused
            assert await pool.fetchval("SELECT count(*) FROM all_attempts WHERE contact_id = $1", named) == 0
            assert await pool.fetchval("SELECT status FROM contacts WHERE id = $1", named) == "callback"

            app.sessions.unpause(a2)
            offer = await wait_until(lambda: app.dialer.offers.get(a2), timeout=10)
            assert offer.contact_id == named
            await app.dialer.accept_offer(a2)
            await _finished(pool, list_id, 4)
            await app.dialer.idle()
            await app.cdr.flush()
        (row,) = await pool.fetch("SELECT * FROM all_attempts WHERE contact_id = $1", named)
        assert (row["outcome"], row["agent_id"]) == ("answered_human", a2)
        assert row["answer_to_bridge_ms"] < 2000 and not row["abandoned"]
        others = await pool.fetch(
            "SELECT agent_id FROM all_attempts WHERE campaign_id = $1 AND contact_id <> $2 "
            "AND outcome = 'answered_human'",
            cid,
            named,
        )
        assert others and {r["agent_id"] for r in others} == {a1}
