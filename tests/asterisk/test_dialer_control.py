"""The dialing engine's controls as the REST API calls them (EngineControl), on a live agent."""

from __future__ import annotations

import uuid

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.auth import Actor
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign
from hitcall_pbx.dialer.control import EngineControl
from hitcall_pbx.errors import Conflict, NotFound
from hitcall_pbx.sandbox import SippAgents

from .conftest import wait_until

pytestmark = pytest.mark.asterisk
SUP = Actor(name="sup1", role="supervisor", source_ip="127.0.0.1")


async def test_engine_control_pause_unpause_audited(service_settings, sandbox, hangup_agents):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, _ = await create_campaign(pool, "control", mode="progressive", **ALL_DAY)
        agent_id = await create_agent(pool, "7001", "agent71", [cid])
        control = EngineControl(app.dialer, app.sessions)
        with SippAgents(sandbox, ["agent71"], port=5271):
            await wait_until(lambda: agent_id in app.sessions.by_agent, timeout=15)
            await control.pause_agent(agent_id, "lunch", actor=SUP)
            assert app.sessions.get(agent_id).state.value == "paused"
            with pytest.raises(Conflict):
                await control.end_wrap_up(agent_id, actor=SUP)
            await control.unpause_agent(agent_id, actor=SUP)
            assert app.sessions.get(agent_id).state.value == "ready"
            assert await control.live_calls() == []
            with pytest.raises(NotFound):
                await control.hang_up(uuid.uuid4(), actor=SUP)
            with pytest.raises(NotFound):
                await control.accept_offer(agent_id, actor=SUP)
            actions = [
                r["action"] for r in await pool.fetch("SELECT action FROM audit_log WHERE actor = 'sup1' ORDER BY id")
            ]
            assert actions == ["agent.pause", "agent.unpause"]
            await app.sessions.drain()
            states = [
                r["state"]
                for r in await pool.fetch("SELECT state FROM agent_state_log WHERE agent_id = $1 ORDER BY id", agent_id)
            ]
            assert states == ["ready", "paused", "ready"]
