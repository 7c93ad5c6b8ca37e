"""Agent controls from the SIP phone's keypad (SIP INFO DTMF sent by SIPp) and through
the service API; hanging up the phone logs the agent out.

The phone (tests/sipp/agent_keys.xml), after login: 2 s key 1 (pause), 4 s key 2
(ready), 8 s key 0 (hang up the customer), 12 s hangs up."""

from __future__ import annotations

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.errors import Conflict, NotFound
from hitcall_pbx.sandbox import SippAgents

from .conftest import wait_until

pytestmark = pytest.mark.asterisk


async def test_phone_keys_and_service_controls(service_settings, sandbox, hangup_agents):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, _ = await create_campaign(
            pool, "agent-keys", mode="progressive", wrap_up_s=30, numbers=sim_numbers(1, 1, start=600), **ALL_DAY
        )
        agent = await create_agent(pool, "1051", "agent51", [cid])

        async def stored_state():
            await app.sessions.drain()
            return await pool.fetchrow("SELECT state, pause_code FROM agents WHERE id = $1", agent)

        with SippAgents(sandbox, ["agent51"], port=5251, scenario="agent_keys.xml") as phone:
            await wait_until(lambda: agent in app.sessions.by_agent, timeout=15)
            assert (await stored_state())["state"] == "ready"
            # Key 1: pause with the default code; key 2: ready again.
            await wait_until(lambda: app.sessions.get(agent).state.value == "paused", timeout=5)
            assert tuple(await stored_state()) == ("paused", "break")
            await wait_until(lambda: app.sessions.get(agent).state.value == "ready", timeout=5)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            await wait_until(lambda: any(c["bridged_at"] for c in app.dialer.live_calls()), timeout=5)
            assert app.sessions.get(agent).state.value == "on_call"
            # Key 0: the customer (who would stay on the line) is hung up; wrap-up follows.
            await wait_until(lambda: not app.dialer.live_calls(), timeout=6)
            assert app.sessions.get(agent).state.value == "wrap_up"

            # The same controls through the service API.
            assert app.sessions.end_wrap(agent).value == "ready"
            with pytest.raises(Conflict):
                app.sessions.end_wrap(agent)
            assert app.sessions.pause(agent, "lunch").value == "paused"
            assert tuple(await stored_state()) == ("paused", "lunch")
            assert app.sessions.unpause(agent).value == "ready"

            # The phone hangs up: logged out, every state span closed.
            await wait_until(lambda: agent not in app.sessions.by_agent, timeout=8)
            await wait_until(lambda: not phone.running(), timeout=5)
            assert phone.errors() == ""
            with pytest.raises(NotFound):
                app.sessions.pause(agent)
            assert (await stored_state())["state"] == "logged_out"
        await app.cdr.flush()
        r = await pool.fetchrow("SELECT * FROM all_attempts WHERE campaign_id = $1", cid)
        assert r["outcome"] == "answered_human" and r["agent_id"] == agent and 2 < float(r["talk_s"]) < 6
        spans = await pool.fetch(
            "SELECT state, pause_code, ended_at FROM agent_state_log WHERE agent_id = $1 ORDER BY started_at, id", agent
        )
        assert all(s["ended_at"] is not None for s in spans)
        assert [s["state"] for s in spans] == [
            "ready",
            "paused",
            "ready",
            "reserved",
            "on_call",
            "wrap_up",
            "ready",
            "paused",
            "ready",
        ]
        assert [s["pause_code"] for s in spans if s["state"] == "paused"] == ["break", "lunch"]
