"""Progressive dialing end to end: SIPp agent phones log in, customers are dialled
through the product's outbound context and land in the agents' bridges."""

from __future__ import annotations

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.sandbox import SippAgents

from .conftest import wait_until

pytestmark = pytest.mark.asterisk


async def _logged_in(app: HitCall, n: int) -> None:
    await wait_until(lambda: len(app.sessions.by_agent) >= n, timeout=15)


async def test_progressive_20_contacts_2_agents(service_settings, sandbox, hangup_agents):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, list_id = await create_campaign(
            pool,
            "progressive-e2e",
            mode="progressive",
            numbers=sim_numbers(9, 20),
            wrap_up_s=0,
            ring_timeout_s=15,
            **ALL_DAY,
        )
        a1 = await create_agent(pool, "1001", "agent1", [cid])
        a2 = await create_agent(pool, "1002", "agent2", [cid])
        with SippAgents(sandbox, ["agent1", "agent2"], port=5181):
            await _logged_in(app, 2)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)

            async def all_done():
                return await pool.fetchval(
                    "SELECT count(*) = 20 FROM contacts WHERE list_id = $1 AND status IN ('done', 'failed')", list_id
                )

            try:
                await wait_until(all_done, timeout=60, interval=0.25)
            except AssertionError as exc:
                raise AssertionError(
                    await pool.fetch(
                        "SELECT status, last_outcome, count(*) FROM contacts WHERE list_id = $1 GROUP BY 1, 2", list_id
                    )
                ) from exc
            await app.dialer.idle()
            await app.cdr.flush()
            await app.sessions.drain()

            rows = await pool.fetch("SELECT * FROM all_attempts WHERE campaign_id = $1", cid)
            assert len(rows) == 20, "one attempt per contact, none dialled twice"
            assert len({r["contact_id"] for r in rows}) == 20
            assert all(r["state"] == "ended" for r in rows)
            assert all(r["outcome"] == "answered_human" for r in rows), [r["outcome"] for r in rows]
            assert not any(r["abandoned"] for r in rows), "progressive never abandons"
            assert {r["agent_id"] for r in rows} <= {a1, a2}
            assert {r["agent_id"] for r in rows} == {a1, a2}, "both agents took calls"
            ms = sorted(r["answer_to_bridge_ms"] for r in rows)
            assert ms[-1] < 2000, ms
            for r in rows:
                assert r["answered_at"] <= r["bridged_at"] <= r["ended_at"]
                assert r["talk_s"] > 0 and r["retention_until"] > r["created_at"]
            # Agent time accounting: the transitions are stored.
            states = await pool.fetch("SELECT state FROM agent_state_log WHERE agent_id = $1", a1)
            assert {"ready", "reserved", "on_call"} <= {r["state"] for r in states}
            print(f"\nanswer->bridge ms: p50={ms[len(ms) // 2]} max={ms[-1]}")
