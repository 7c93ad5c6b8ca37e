"""Live control from any node, on two real Asterisk servers: node A drives the first server
(pool main), node B the second (pool ast2); both serve the REST API on one database. An
agent's phone logs in on the second server, so node B follows it. Requests sent to node A's
API pause and unpause that agent and hang up its customer: node B carries them out on its
Asterisk (its audit rows name the user who asked node A), and node A answers with node B's
result; a supervisor (an admin) listens to and whispers on that call from a phone on the
second server through node A's API. Once node B has stopped, node A answers 503
node_unavailable naming it."""

from __future__ import annotations

import time
import uuid

import aiohttp
import pytest

from hitcall_pbx.api import build_registry
from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.auth import Actor, AuthService, Passwords, Role
from hitcall_pbx.core.states import AgentState
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.sandbox import SippAgents
from tests.live import free_port, wait_until

pytestmark = pytest.mark.asterisk
SYSTEM = Actor("test", "system")


async def test_node_a_api_controls_an_agent_and_a_call_node_b_drives(
    service_settings, sandbox, sandbox2, hangup_agents2, tmp_path
):
    settings_a = service_settings.model_copy(
        update={"node_id": "node-a", "data_dir": tmp_path / "a", "http_port": free_port()}
    )
    settings_b = service_settings.model_copy(
        update={
            "node_id": "node-b",
            "pool": "ast2",
            "ari_url": sandbox2.ari_url,
            "data_dir": tmp_path / "b",
            "http_port": free_port(),
        }
    )
    options = Options(http=True, dialer_tick_s=0.05)
    b = await HitCall(settings_b, options).start()
    try:
        async with HitCall(settings_a, options) as a, aiohttp.ClientSession() as http:
            pool = a.db.pool
            api_a = f"http://127.0.0.1:{a.http_port}/api/v1"
            auth = AuthService(
                pool,
                passwords=Passwords(time_cost=1, memory_cost=1024, parallelism=1),
                role_scopes=build_registry().role_scopes(),
            )
            user = await auth.create_user(
                username=f"admin-{uuid.uuid4().hex[:6]}", role=Role.ADMIN, password=None, actor=SYSTEM
            )
            grant = await auth.create_token(
                user_id=user["id"],
                name="t",
                scopes=sorted(auth.scopes_for(Role.ADMIN)),
                expires_at=None,
                actor=SYSTEM,
            )
            admin = {"Authorization": f"Bearer {grant.token}"}
            asker = f"token:{grant.record['id']}"

            cid, _ = await create_campaign(
                pool, "two-nodes", mode="progressive", numbers=sim_numbers(9, 1), wrap_up_s=0, **ALL_DAY
            )
            agent = await create_agent(pool, "1171", "agent171", [cid])
            phone = await create_agent(pool, "1172", "agent172", [cid])  # the admin's own phone, to monitor with
            await pool.execute("UPDATE agents SET user_id = $2 WHERE id = $1", phone, user["id"])
            with SippAgents(sandbox2, ["agent171", "agent172"], port=5571):
                await wait_until(lambda: b.sessions is not None and agent in b.sessions.by_agent, timeout=15)
                await wait_until(lambda: b.sessions.supervisor_of_user(user["id"]) is not None, timeout=15)

                async def followed_by_b() -> bool:
                    row = await pool.fetchrow("SELECT state, node_id, pool FROM agents WHERE id = $1", agent)
                    return tuple(row) == ("ready", "node-b", "ast2")

                await wait_until(followed_by_b, timeout=10, interval=0.1)
                assert a.sessions is not None and agent not in a.sessions.by_agent

                # Pause through node A: node B pauses the agent on its Asterisk.
                started = time.monotonic()
                async with http.post(f"{api_a}/agents/{agent}/pause", json={"pause_code": "lunch"}, headers=admin) as r:
                    assert r.status == 200, await r.text()
                    took = time.monotonic() - started
                    body = await r.json()
                assert (body["state"], body["pause_code"]) == ("paused", "lunch")
                assert b.sessions.by_agent[agent].state is AgentState.PAUSED
                command = await pool.fetchrow("SELECT * FROM node_commands WHERE method = 'agent.pause'")
                assert (command["node_id"], command["from_node"], command["state"]) == ("node-b", "node-a", "done")
                audit = await pool.fetchrow("SELECT * FROM audit_log WHERE action = 'agent.pause'")
                assert (audit["actor"], audit["object_id"]) == (asker, str(agent))
                assert took < 2.0, took

                async with http.post(f"{api_a}/agents/{agent}/unpause", headers=admin) as r:
                    assert r.status == 200, await r.text()
                    assert (await r.json())["state"] == "ready"
                assert b.sessions.by_agent[agent].state is AgentState.READY

                # The same through node B's own API (its own control): the same answers.
                api_b = f"http://127.0.0.1:{b.http_port}/api/v1"
                for action, state in (("pause", "paused"), ("unpause", "ready")) * 3:
                    body_in = {"pause_code": "break"} if action == "pause" else None
                    async with http.post(f"{api_b}/agents/{agent}/{action}", json=body_in, headers=admin) as r:
                        assert r.status == 200, await r.text()
                        assert (await r.json())["state"] == state

                # A customer dialled by node B on its server; node A lists it and hangs it up.
                await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)

                async def bridged() -> bool:
                    return await pool.fetchval(
                        "SELECT count(*) = 1 FROM live_attempts WHERE campaign_id = $1 AND state = 'bridged'"
                        " AND node_id = 'node-b'",
                        cid,
                    )

                await wait_until(bridged, timeout=20, interval=0.1)
                attempt = await pool.fetchval("SELECT id FROM live_attempts WHERE campaign_id = $1", cid)
                async with http.get(f"{api_a}/calls", headers=admin) as r:
                    assert r.status == 200
                    assert [c["attempt_id"] for c in (await r.json())["items"]] == [str(attempt)]

                # Monitoring through node A: node B puts the admin's phone on the call and back.
                monitor_url = f"{api_a}/calls/{attempt}/monitor"
                async with http.post(monitor_url, json={"mode": "listen"}, headers=admin) as r:
                    assert r.status == 201, await r.text()
                    session = await r.json()
                assert (session["attempt_id"], session["mode"], session["phone_agent_id"]) == (
                    str(attempt),
                    "listen",
                    phone,
                )
                assert b.monitor is not None and session["id"] in b.monitor.live
                async with http.patch(f"{monitor_url}/{session['id']}", json={"mode": "whisper"}, headers=admin) as r:
                    assert r.status == 200, await r.text()
                    assert [m["mode"] for m in (await r.json())["modes"]] == ["listen", "whisper"]
                async with http.delete(f"{monitor_url}/{session['id']}", headers=admin) as r:
                    assert r.status == 200, await r.text()
                    assert (await r.json())["end_reason"] == "stopped"
                stored = await pool.fetchrow("SELECT node_id, ended_at FROM monitoring_sessions")
                assert stored["node_id"] == "node-b" and stored["ended_at"] is not None
                audited = await pool.fetch(
                    "SELECT action, actor FROM audit_log WHERE action LIKE 'monitoring.%' ORDER BY id"
                )
                assert [tuple(r) for r in audited] == [
                    ("monitoring.started", asker),
                    ("monitoring.changed", asker),
                    ("monitoring.ended", asker),
                ]

                async with http.post(f"{api_a}/calls/{attempt}/hangup", headers=admin) as r:
                    assert r.status == 204, await r.text()

                async def ended() -> bool:
                    return await pool.fetchval("SELECT count(*) = 1 FROM call_attempts WHERE id = $1", attempt)

                await wait_until(ended, timeout=15, interval=0.1)
                assert await pool.fetchval("SELECT actor FROM audit_log WHERE action = 'call.hangup'") == asker

                # Node B stops (its lease ends at once): node A names it instead of answering for it.
                await b.close()
                started = time.monotonic()
                async with http.post(f"{api_a}/agents/{agent}/pause", json={"pause_code": "lunch"}, headers=admin) as r:
                    took = time.monotonic() - started
                    assert r.status == 503, await r.text()
                    body = await r.json()
                assert body["error"] == "node_unavailable" and body["details"]["node_id"] == "node-b", body
                assert took < 1.0, took
    finally:
        await b.close()
