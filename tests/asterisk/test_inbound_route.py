"""The return-call line's "talk to a person" on real Asterisk: the caller presses 2 in the
FastAGI `optout` menu, the dialplan hands the call to Stasis (`inbound,<campaign>,<contact>`)
and the service's inbound router adds it to a ready agent's holding bridge.

The caller is `Local/<line>@hitcall-inbound` whose ;1 half sits in a separate ARI
application of the test and presses keys; the ;2 half runs the product's dialplan.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from dataclasses import replace

import pytest

from hitcall_pbx.agents.sessions import AgentSession
from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.ari import AriClient, AriNotFound
from hitcall_pbx.core.states import AgentState
from hitcall_pbx.demo.seed import create_agent, create_campaign
from hitcall_pbx.dialer.inbound import (
    InboundCall,
    InboundOptions,
    InboundRequest,
    choose_agent,
    choose_caller,
    parse_request,
)
from hitcall_pbx.sandbox import SippAgents
from hitcall_pbx.settings import SANDBOX_ARI_PASSWORD, SANDBOX_ARI_USER

from .conftest import EventLog, wait_until

pytestmark = pytest.mark.asterisk

CALLER = "+358401234567"
LINE = "0201234567"  # the campaigns' caller id +358201234567, dialled nationally
AGI_PORT = 4573  # HITCALL_AGI in dialplan/extensions.conf


@contextlib.asynccontextmanager
async def caller_app(settings):
    """The callers' side: its own Stasis application, with an event log."""
    client = AriClient(
        settings.ari_url, SANDBOX_ARI_USER, SANDBOX_ARI_PASSWORD, f"hitcall-caller-{uuid.uuid4().hex[:6]}"
    )
    client.events_log = EventLog()  # type: ignore[attr-defined]  # tests attach the event log to the client for later lookups
    client.on_event(client.events_log)
    await client.start(wait=15)
    try:
        yield client
    finally:
        for ch in await client.rest.list_channels():
            if ch.id.startswith("t-in-"):
                with contextlib.suppress(Exception):
                    await client.rest.hangup(ch.id)
        await client.close()


async def call_and_ask_for_agent(caller: AriClient, app: HitCall) -> str:
    """Call the return-call line and press 2 until the service has the call; the id of
    the channel the service sees."""
    cid = f"t-in-{uuid.uuid4().hex[:10]}"
    await caller.rest.originate(
        f"Local/{LINE}@hitcall-inbound", cid, app=caller.app, caller_id=CALLER, other_channel_id=f"{cid}-2", timeout=10
    )
    await caller.events_log.wait_for("StasisStart", lambda e: e.channel.id == cid)
    line = f"{cid}-2"
    for _ in range(40):
        with contextlib.suppress(AriNotFound):
            if await caller.rest.get_variable(line, "HITCALL_ROUTE") == "agent":
                break
        with contextlib.suppress(AriNotFound):  # keys before the menu listens are lost, as on a phone
            await caller.rest.send_dtmf(cid, "2")
        await asyncio.sleep(0.5)
    else:
        raise AssertionError("the return-call line did not act on key 2")
    assert app.inbound is not None
    await wait_until(lambda: line in app.inbound.calls, timeout=10)
    return line


async def _service(settings, **inbound: float) -> HitCall:
    return await HitCall(
        settings.model_copy(update={"agi_port": AGI_PORT}),
        Options(agi=True, migrate=False, inbound=InboundOptions(**inbound)),
    ).start()


async def test_caller_pressing_2_lands_in_the_agents_bridge(service_settings, sandbox, hangup_agents):
    app = await _service(service_settings)
    try:
        pool = app.db.pool
        cid, list_id = await create_campaign(pool, "return-line", wrap_up_s=30)
        other, _ = await create_campaign(pool, "other", caller_id="+358209999999")
        await pool.execute("INSERT INTO contacts (list_id, phone_e164, name) VALUES ($1, $2, 'Maija')", list_id, CALLER)
        other_agent = await create_agent(pool, "1001", "agent1", [other])
        agent = await create_agent(pool, "1002", "agent2", [cid])
        service_events = EventLog()
        app.ari.on_event(service_events)
        with SippAgents(sandbox, ["agent1", "agent2"], port=5199):
            await wait_until(
                lambda: len(app.sessions.ready_agents(cid) + app.sessions.ready_agents(other)) == 2, timeout=15
            )
            async with caller_app(service_settings) as caller:
                channel = await call_and_ask_for_agent(caller, app)
                entered = await service_events.wait_for(
                    "ChannelEnteredBridge", lambda e: e.channel is not None and e.channel.id == channel, timeout=10
                )
                # The campaign's own agent, not the other campaign's.
                assert entered.bridge.id == f"hitcall-agent-{agent}"
                session = app.sessions.by_agent[agent]
                assert session.state is AgentState.ON_CALL and session.attempt_id == channel
                assert app.sessions.by_agent[other_agent].state is AgentState.READY
                assert app.inbound.calls[channel].request.campaign_id == cid

                await caller.rest.hangup(channel.removesuffix("-2"))  # the caller hangs up
                await wait_until(lambda: session.state is AgentState.WRAP_UP, timeout=10)
                assert not app.inbound.calls
            await app.sessions.drain()

        log = await pool.fetch("SELECT state, campaign_id FROM agent_state_log WHERE agent_id = $1 ORDER BY id", agent)
        assert [(r["state"], r["campaign_id"]) for r in log][-3:] == [
            ("reserved", cid),
            ("on_call", cid),
            ("wrap_up", cid),
        ]
        events = [
            r["payload"]
            for r in await pool.fetch(
                "SELECT payload FROM webhook_outbox WHERE event_type = 'agent.state_changed' AND subject = $1"
                " ORDER BY id",
                f"agent:{agent}",
            )
        ]
        assert [e["state"] for e in events] == ["ready", "reserved", "on_call", "wrap_up"]
        assert events[2]["campaign_id"] == cid
    finally:
        await app.close()


async def test_caller_waits_for_an_agent_then_gives_up_when_none_is_free(service_settings, sandbox, hangup_agents):
    app = await _service(service_settings, max_wait_s=3.0)
    try:
        pool = app.db.pool
        cid, _ = await create_campaign(pool, "return-line", wrap_up_s=5)
        agent = await create_agent(pool, "1001", "agent1", [cid])
        async with caller_app(service_settings) as caller:
            # Nobody logged in: the caller waits (music on hold) and gets the agent who logs in.
            first = await call_and_ask_for_agent(caller, app)
            await wait_until(lambda: app.inbound.calls[first].waiting, timeout=5)
            assert app.inbound.calls[first].request.campaign_id == cid, "campaign from the dialled caller id"
            with SippAgents(sandbox, ["agent1"], port=5201):
                await wait_until(lambda: first in app.inbound.calls and app.inbound.calls[first].bridged, timeout=15)
                assert app.sessions.by_agent[agent].state is AgentState.ON_CALL

                # The only agent is busy: the next caller hears the message after the limit and is hung up.
                second = await call_and_ask_for_agent(caller, app)
                started = asyncio.get_running_loop().time()
                await caller.events_log.wait_for(
                    "ChannelDestroyed", lambda e: e.channel.id == second.removesuffix("-2"), timeout=20
                )
                waited = asyncio.get_running_loop().time() - started
                assert 3.0 <= waited < 15, waited  # the limit, then the message
                # The service hears of the hang-up on its own event stream, a moment after the caller's.
                await wait_until(lambda: second not in app.inbound.calls, timeout=5)
                assert first in app.inbound.calls
    finally:
        await app.close()


def test_routing_choices():
    """Pure choices: Stasis arguments, the agent for a caller, the caller for an agent."""
    assert parse_request(["3", "17"]) == InboundRequest(3, 17)
    assert parse_request(["", ""]) == InboundRequest(None, None)
    assert parse_request([]) == InboundRequest(None, None)

    def agent(agent_id: int, campaigns: set[int], ready_since: float, state: AgentState = AgentState.READY):
        s = AgentSession(
            agent_id=agent_id,
            number=str(agent_id),
            name="",
            endpoint=None,
            channel_id=f"c{agent_id}",
            bridge_id=f"b{agent_id}",
            campaigns=frozenset(campaigns),
            ready_since=ready_since,
        )
        s.fsm = replace(s.fsm, state=state)
        return s

    longest, mine, busy = agent(1, {9}, 1.0), agent(2, {3}, 2.0), agent(3, {3}, 0.5, AgentState.ON_CALL)
    assert choose_agent(3, [busy, longest, mine]) is mine
    assert choose_agent(5, [busy, mine, longest]) is longest, "anyone ready when the campaign has nobody"
    assert choose_agent(None, [busy, mine, longest]) is longest
    assert choose_agent(3, [busy]) is None

    first, second = InboundCall("x", InboundRequest(9, None)), InboundCall("y", InboundRequest(3, None))
    assert choose_caller(mine, deque([first, second])) is second
    assert choose_caller(longest, deque([second, first])) is first
    assert choose_caller(agent(4, {7}, 0.0), deque([second, first])) is second
    assert choose_caller(mine, deque()) is None
