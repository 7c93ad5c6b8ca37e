"""An agent in several campaigns takes the next call from the one with the highest
priority that needs an agent; the lower one gets the agent when the higher has nothing due."""

from __future__ import annotations

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.sandbox import SippAgents

from .conftest import wait_until

pytestmark = pytest.mark.asterisk


async def test_free_agent_serves_the_highest_priority_campaign_first(service_settings, sandbox, hangup_agents):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        low, low_list = await create_campaign(
            pool,
            "prio-low",
            mode="progressive",
            priority=1,
            wrap_up_s=0,
            numbers=sim_numbers(9, 3, start=901),
            **ALL_DAY,
        )
        high, high_list = await create_campaign(
            pool,
            "prio-high",
            mode="progressive",
            priority=5,
            wrap_up_s=0,
            numbers=sim_numbers(9, 3, start=911),
            **ALL_DAY,
        )
        await create_agent(pool, "1095", "agent95", [low, high])
        with SippAgents(sandbox, ["agent95"], port=5311):
            await wait_until(lambda: len(app.sessions.by_agent) == 1, timeout=15)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = ANY($1::bigint[])", [low, high])

            async def all_done():
                return await pool.fetchval(
                    "SELECT bool_and(status IN ('done', 'failed')) FROM contacts WHERE list_id = ANY($1::bigint[])",
                    [low_list, high_list],
                )

            await wait_until(all_done, timeout=60, interval=0.25)
            await app.dialer.idle()
            await app.cdr.flush()
            rows = await pool.fetch("SELECT campaign_id, outcome FROM all_attempts ORDER BY created_at")
    assert [r["campaign_id"] for r in rows] == [high] * 3 + [low] * 3
    assert all(r["outcome"] == "answered_human" for r in rows)
