"""Call outcomes from real Asterisk hangups and AMD, and the retries they schedule."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.sandbox import SippAgents

from .conftest import wait_until

pytestmark = pytest.mark.asterisk

RETRY = {"retry_busy_s": 60, "retry_no_answer_s": 120, "retry_congestion_s": 180, "retry_machine_s": 300}


async def test_busy_no_answer_congestion_machine(service_settings, sandbox, hangup_agents):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        busy, noanswer, congestion = sim_numbers(2, 1, 300)[0], sim_numbers(3, 1, 300)[0], sim_numbers(4, 1, 300)[0]
        machine = sim_numbers(5, 1, 300)[0]
        plain, _ = await create_campaign(
            pool,
            "outcomes",
            mode="progressive",
            numbers=[busy, noanswer, congestion],
            wrap_up_s=0,
            ring_timeout_s=15,
            max_attempts=2,
            **RETRY,
            **ALL_DAY,
        )
        amd, _ = await create_campaign(
            pool,
            "outcomes-amd",
            mode="progressive",
            numbers=[machine],
            wrap_up_s=0,
            ring_timeout_s=15,
            max_attempts=2,
            amd_enabled=True,
            **RETRY,
            **ALL_DAY,
        )
        agents = [f"agent{n}" for n in range(21, 25)]
        for n, endpoint in enumerate(agents):
            await create_agent(pool, f"102{n}", endpoint, [plain, amd])
        with SippAgents(sandbox, agents, port=5221):
            await wait_until(lambda: len(app.sessions.by_agent) == 4, timeout=15)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = ANY($1::bigint[])", [plain, amd])

            async def all_tried():
                return await pool.fetchval(
                    "SELECT count(*) = 4 FROM contacts WHERE last_outcome IS NOT NULL AND status <> 'in_progress'"
                )

            await wait_until(all_tried, timeout=30, interval=0.25)
            await pool.execute("UPDATE campaigns SET state = 'paused'")
            await app.dialer.idle(timeout=10)
            await app.cdr.flush()

        rows = {
            r["phone_e164"]: r
            for r in await pool.fetch(
                """SELECT c.phone_e164, c.status, c.next_attempt_at, c.attempts, a.outcome, a.hangup_cause, a.ended_at,
                      a.answered_at, a.bridged_at, a.amd_status, a.abandoned, a.ring_s, a.state
               FROM contacts c JOIN all_attempts a ON a.contact_id = c.id"""
            )
        }
        assert len(rows) == 4, "one attempt each"

        def retry_in(r, seconds):
            assert r["status"] == "retry" and r["attempts"] == 1 and r["state"] == "ended"
            assert abs(r["next_attempt_at"] - (r["ended_at"] + timedelta(seconds=seconds))) < timedelta(seconds=2)

        r = rows[busy]
        assert (r["outcome"], r["hangup_cause"], r["answered_at"]) == ("busy", 17, None)
        retry_in(r, 60)
        r = rows[congestion]
        assert (r["outcome"], r["hangup_cause"], r["answered_at"]) == ("congestion", 34, None)
        retry_in(r, 180)
        r = rows[noanswer]
        assert r["outcome"] == "no_answer" and r["answered_at"] is None, dict(r)
        assert 14.5 <= float(r["ring_s"]) < 20, "rang for the campaign's ring timeout"
        retry_in(r, 120)
        r = rows[machine]
        assert (r["outcome"], r["amd_status"]) == ("answered_machine", "MACHINE"), dict(r)
        assert r["answered_at"] is not None and r["bridged_at"] is None and not r["abandoned"], "not a connect"
        retry_in(r, 300)
        assert app.dialer.stats[amd].today.connected == 0
