"""A service restart mid-campaign never dials one attempt twice: the first process is
closed while calls are up, a second one on the same database takes over (adopts the
agents' parked phones, closes the orphaned attempts) and finishes the campaign."""

from __future__ import annotations

from collections import Counter

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.sandbox import SippAgents
from tests.live import OriginateCounter

from .conftest import wait_until

pytestmark = pytest.mark.asterisk


async def test_restart_mid_campaign_never_double_dials(service_settings, sandbox, hangup_agents):
    originates = OriginateCounter()  # both processes' originate requests
    originated = originates.sent
    options = Options(dialer_tick_s=0.05)
    async with HitCall(service_settings, options, ari_factory=originates.ari_factory) as first:
        pool = first.db.pool
        cid, list_id = await create_campaign(
            pool,
            "restart-e2e",
            mode="progressive",
            wrap_up_s=0,
            max_attempts=2,
            numbers=sim_numbers(9, 10, start=700),
            **ALL_DAY,
        )
        await create_agent(pool, "1061", "agent61", [cid])
        await create_agent(pool, "1062", "agent62", [cid])
    phones = SippAgents(sandbox, ["agent61", "agent62"], port=5261)
    try:
        async with HitCall(service_settings, options, ari_factory=originates.ari_factory) as first:
            phones.start()
            await wait_until(lambda: len(first.sessions.by_agent) == 2, timeout=15)
            await first.db.pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            await wait_until(
                lambda: len(originated) >= 3 and any(c["bridged_at"] for c in first.dialer.live_calls()),
                timeout=15,
                interval=0.02,
            )
            talking = {c["attempt_id"] for c in first.dialer.live_calls() if c["bridged_at"]}
        assert talking

        async with HitCall(service_settings, options, ari_factory=originates.ari_factory) as second:
            pool = second.db.pool
            await wait_until(lambda: len(second.sessions.by_agent) == 2, timeout=10)

            async def finished():
                # Done or failed; a customer the restart left answered with no agent (abandoned)
                # waits the campaign's abandon retry delay like any abandoned call.
                return await pool.fetchval(
                    """SELECT bool_and(status IN ('done', 'failed')
                                       OR (status = 'retry' AND last_outcome = 'abandoned'
                                           AND next_attempt_at > now() + interval '30 minutes'))
                       FROM contacts WHERE list_id = $1""",
                    list_id,
                )

            await wait_until(finished, timeout=45, interval=0.25)
            await second.dialer.idle(timeout=10)
            await second.cdr.flush()
            assert phones.running(), "the agents stayed logged in across the restart"

            rows = await pool.fetch("SELECT * FROM all_attempts WHERE campaign_id = $1", cid)
            assert max(originated.values()) == 1, "no attempt originated twice"
            assert set(originated) == {str(r["id"]) for r in rows}, "every originate has its attempt row"
            per_contact = Counter(r["contact_id"] for r in rows)
            assert len(per_contact) == 10 and max(per_contact.values()) <= 2
            assert all(r["state"] == "ended" and r["outcome"] for r in rows), [(r["state"], r["outcome"]) for r in rows]
            contacts = await pool.fetch("SELECT attempts FROM contacts WHERE list_id = $1", list_id)
            assert all(c["attempts"] <= 2 for c in contacts)
            assert sum(1 for r in rows if r["outcome"] == "answered_human") >= 8
            # A customer talking to an agent at the restart is not called again.
            for r in rows:
                if str(r["id"]) in talking:
                    assert r["outcome"] == "answered_human" and per_contact[r["contact_id"]] == 1, dict(r)
    finally:
        phones.stop()
