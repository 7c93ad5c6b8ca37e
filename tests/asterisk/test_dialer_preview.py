"""Preview dialing end to end: a ready agent is offered a contact; skip stores the
reason and offers the next contact; accept dials and the customer joins the agent's
bridge; an unanswered offer times out."""

from __future__ import annotations

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.sandbox import SippAgents

from .conftest import wait_until

pytestmark = pytest.mark.asterisk


async def test_preview_skip_accept_timeout(service_settings, sandbox, hangup_agents):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, list_id = await create_campaign(
            pool,
            "preview-e2e",
            mode="preview",
            state="running",
            wrap_up_s=0,
            numbers=sim_numbers(9, 3, start=500),
            preview_offer_timeout_s=5,
            **ALL_DAY,
        )
        agent = await create_agent(pool, "1041", "agent41", [cid])
        with SippAgents(sandbox, ["agent41"], port=5241):
            first = await wait_until(lambda: app.dialer.offers.get(agent), timeout=15)
            row = await pool.fetchrow("SELECT * FROM preview_offers WHERE id = $1", first.offer_id)
            assert row["agent_id"] == agent and row["contact_id"] == first.contact_id and row["decision"] is None
            event = await pool.fetchrow("SELECT payload FROM webhook_outbox WHERE event_type = 'preview.offered'")
            assert event["payload"]["offer_id"] == first.offer_id and event["payload"]["number"] == first.number
            assert app.sessions.get(agent).state.value == "reserved"

            await app.dialer.skip_offer(agent, "wrong person")
            row = await pool.fetchrow("SELECT * FROM preview_offers WHERE id = $1", first.offer_id)
            assert (row["decision"], row["skip_reason"]) == ("skip", "wrong person")
            second = await wait_until(lambda: app.dialer.offers.get(agent), timeout=5)
            assert second.contact_id != first.contact_id, "skip moves on to the next contact"

            attempt = await app.dialer.accept_offer(agent)
            assert attempt.contact_id == second.contact_id and attempt.agent_id == agent
            await wait_until(lambda: any(c["bridged_at"] for c in app.dialer.live_calls()), timeout=5)
            await wait_until(lambda: not app.dialer.live_calls(), timeout=10)
            third = await wait_until(lambda: app.dialer.offers.get(agent), timeout=5)
            assert third.contact_id not in (first.contact_id, second.contact_id)
            # Nobody decides: the offer times out and the agent gets the next one.
            await wait_until(lambda: app.dialer.offers.get(agent) is not third, timeout=8)
            await pool.execute("UPDATE campaigns SET state = 'paused' WHERE id = $1", cid)
            await app.cdr.flush()

        offers = {r["id"]: r for r in await pool.fetch("SELECT * FROM preview_offers")}
        assert offers[second.offer_id]["decision"] == "accept"
        assert offers[second.offer_id]["attempt_id"] == attempt.id
        assert offers[third.offer_id]["decision"] == "timeout" and offers[third.offer_id]["skip_reason"] is None
        waited = offers[third.offer_id]["decided_at"] - offers[third.offer_id]["offered_at"]
        assert 4.5 <= waited.total_seconds() < 7
        rows = await pool.fetch("SELECT * FROM all_attempts WHERE campaign_id = $1", cid)
        assert len(rows) == 1, "only the accepted contact was dialled"
        r = rows[0]
        assert r["id"] == attempt.id and r["outcome"] == "answered_human" and r["agent_id"] == agent
        assert r["bridged_at"] is not None and r["answer_to_bridge_ms"] < 2000 and r["mode"] == "preview"
