"""Agent login with keys on the phone (SIP INFO DTMF sent by SIPp, tests/sipp/agent_pin.xml).

Four phones dial the login extension at once and type ten keys each:
agent141 is agent 1141's endpoint and types the PIN after empty entries; agent142 is
no agent's endpoint, the agent types its number and PIN; agent143 (agent 1143) types
three wrong PINs; agent144 types agent 1141's number with a wrong PIN."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.sandbox import SippAgents

from .conftest import wait_until

pytestmark = pytest.mark.asterisk


def phone(endpoint: str, keys: str) -> str:
    """One -inf CSV line of agent_pin.xml: the endpoint, then the ten keys."""
    assert len(keys) == 10
    return ";".join([endpoint, *keys])


async def test_pin_login_right_and_wrong(service_settings, sandbox, hangup_agents):
    hasher = PasswordHasher()
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, _ = await create_campaign(
            pool, "agent-pin", mode="progressive", numbers=sim_numbers(1, 1, start=700), **ALL_DAY
        )
        by_endpoint = await create_agent(pool, "1141", "agent141", [cid], pin_hash=hasher.hash("4321"))
        hot_desk = await create_agent(pool, "1142", None, [cid], pin_hash=hasher.hash("2468"))
        wrong = await create_agent(pool, "1143", "agent143", [cid], pin_hash=hasher.hash("1357"))
        sessions = app.sessions
        phones = [
            phone("agent141", "#####4321#"),
            phone("agent142", "1142#2468#"),
            phone("agent143", "####1#2#3#"),
            phone("agent144", "1141#9999#"),
        ]

        with SippAgents(sandbox, phones, port=5331, scenario="agent_pin.xml") as sipp:
            # Until its PIN is typed an agent is only a login in progress.
            await wait_until(lambda: sessions.counts().get("login_pin") == 4, timeout=10)
            assert not sessions.by_agent

            await wait_until(lambda: {by_endpoint, hot_desk} <= sessions.by_agent.keys(), timeout=20)
            assert sessions.get(by_endpoint).state.value == "ready"
            assert sessions.get(hot_desk).state.value == "ready"
            assert sessions.get(hot_desk).endpoint == "agent142"
            assert {s.agent_id for s in sessions.ready_agents(cid)} == {by_endpoint, hot_desk}

            # Three wrong PINs: refused and hung up; a wrong PIN for agent 1141's number from
            # another phone leaves agent 1141's session alone and asks for the number again.
            await wait_until(lambda: sessions.counts().get("login_pin") == 1, timeout=10)
            assert wrong not in sessions.by_agent
            # The phone's wrong PIN lands a moment after its agent number: wait for the question again.
            pending = await wait_until(
                lambda: next(
                    (s for s in sessions.by_channel.values() if s.pin_pending and s.number_pending and s.attempts),
                    None,
                ),
                timeout=10,
            )
            assert pending.endpoint == "agent144" and pending.agent_id == 0 and pending.attempts == 1
            assert sessions.by_agent[by_endpoint].endpoint == "agent141"
            await sessions.logout(pending.channel_id)
            await sessions.drain()

            states = dict(await pool.fetch("SELECT id, state FROM agents"))
            assert states == {by_endpoint: "ready", hot_desk: "ready", wrong: "logged_out"}
            assert await pool.fetchval("SELECT count(*) FROM agent_state_log WHERE agent_id = $1", wrong) == 0
            failed = await pool.fetch(
                "SELECT actor, object_id, details FROM audit_log WHERE action = 'agent.login_failed' ORDER BY actor, id"
            )
            assert [(r["actor"], r["object_id"], r["details"]["refused"]) for r in failed] == [
                ("endpoint:agent143", str(wrong), False),
                ("endpoint:agent143", str(wrong), False),
                ("endpoint:agent143", str(wrong), True),
                ("endpoint:agent144", str(by_endpoint), False),
            ]

            # The agents logged in with a PIN work as any other: hanging up logs them out.
            for agent in (by_endpoint, hot_desk):
                await sessions.logout(sessions.get(agent).channel_id)
            await wait_until(lambda: not sipp.running(), timeout=10)
            assert sipp.errors() == ""
            await sessions.drain()
            assert set(await pool.fetchval("SELECT array_agg(DISTINCT state) FROM agents")) == {"logged_out"}
