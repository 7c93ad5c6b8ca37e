"""Transfers and conference on real Asterisk: SIPp agent phones, simulated customers and
external numbers (the sandbox's trunk is the sim-customer context). Each test checks
the bridges' members through ARI, the agents' states, the CDR's transfer columns and the
call's legs, and the webhook events."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import aiohttp
import pytest

from hitcall_pbx.api import build_registry
from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.ari import AriNotFound
from hitcall_pbx.auth import Actor, AuthService, Passwords, Role
from hitcall_pbx.core.transfer import Target, TargetKind, TransferEvent, TransferKind
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.errors import Conflict, NotFound
from hitcall_pbx.sandbox import SippAgents
from tests.live import free_port

from .conftest import wait_until

pytestmark = pytest.mark.asterisk

BLIND, ATTENDED = TransferKind.BLIND, TransferKind.ATTENDED
SYSTEM = Actor("test", "system")
ANSWERS = "+358401999001"  # an external number that answers and stays
BUSY = "+358402999001"
NO_ANSWER = "+358403999001"


def agent(agent_id: int) -> Target:
    return Target(TargetKind.AGENT, agent_id=agent_id)


def number(n: str) -> Target:
    return Target(TargetKind.NUMBER, number=n)


async def members(app: HitCall, bridge_id: str) -> set[str]:
    try:
        return set((await app.ari.rest.get_bridge(bridge_id)).channels)
    except AriNotFound:
        return set()


def state(app: HitCall, agent_id: int) -> str:
    return app.sessions.get(agent_id).state.value


async def customer_with(app: HitCall, agent_id: int, timeout: float = 15) -> str:
    """The attempt id of the customer bridged to the agent."""
    await wait_until(
        lambda: any(c["bridged_at"] and c["agent_id"] == agent_id for c in app.dialer.live_calls()), timeout=timeout
    )
    return next(c["attempt_id"] for c in app.dialer.live_calls() if c["agent_id"] == agent_id)


async def ended(app: HitCall, pool, attempt_id: str):
    await wait_until(lambda: attempt_id not in app.dialer.calls, timeout=10)
    await app.dialer.idle()
    await app.cdr.flush()
    await app.sessions.drain()
    row = await pool.fetchrow("SELECT * FROM call_attempts WHERE id = $1", attempt_id)
    legs = await pool.fetch("SELECT * FROM call_legs WHERE attempt_id = $1 ORDER BY seq", attempt_id)
    events = [
        r["event_type"]
        for r in await pool.fetch(
            "SELECT event_type FROM webhook_outbox WHERE subject = $1 AND event_type LIKE '%.%' ORDER BY id",
            f"attempt:{attempt_id}",
        )
        if r["event_type"].startswith(("transfer.", "conference."))
    ]
    return row, legs, events


async def no_channels_left(app: HitCall, attempt_id: str) -> None:
    async def gone():
        names = [c.name for c in await app.ari.rest.list_channels()]
        return not any(n.startswith("Local/") for n in names)

    await wait_until(gone, timeout=10)
    await wait_until(lambda: no_transfer_bridge(app, attempt_id), timeout=5)


async def no_transfer_bridge(app: HitCall, attempt_id: str) -> bool:
    """The call's transfer bridges are gone (Asterisk destroys a bridge a moment after the request)."""
    return not [b.id for b in await app.ari.rest.list_bridges() if b.id.startswith(f"hitcall-xfer-{attempt_id}")]


async def campaigns_with_agents(
    pool, name: str, start: int, agents: Sequence[int], *, customers: int = 1, **settings: Any
) -> tuple[int, int, list[int]]:
    """A progressive campaign `name` dialling `customers` sim customers who answer and stay
    (numbers from `start`; `settings` such as wrap_up_s) with the first of `agents` on it, the
    others on a second campaign `name-2`. Agent n has number 1000 + n and phone agent<n>:
    (campaign, second campaign, agent ids)."""
    numbers = sim_numbers(1, customers, start=start)
    cid, _ = await create_campaign(pool, name, mode="progressive", numbers=numbers, **settings, **ALL_DAY)
    other, _ = await create_campaign(pool, f"{name}-2", mode="progressive", **ALL_DAY)
    first, *rest = agents
    ids = [await create_agent(pool, str(1000 + first), f"agent{first}", [cid])]
    ids += [await create_agent(pool, str(1000 + n), f"agent{n}", [other]) for n in rest]
    return cid, other, ids


async def dial_once_logged_in(app: HitCall, cid: int, phones: int) -> None:
    """The campaign starts dialling once `phones` agent phones are logged in."""
    await wait_until(lambda: len(app.sessions.by_agent) == phones, timeout=15)
    await app.db.pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)


async def test_blind_transfer_to_an_agent_then_to_a_campaigns_ready_agent(service_settings, sandbox, hangup_agents):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, other, (a, b, c) = await campaigns_with_agents(pool, "xfer-blind", 810, (81, 82, 83), wrap_up_s=30)
        with SippAgents(sandbox, ["agent81", "agent82", "agent83"], port=5501):
            await dial_once_logged_in(app, cid, 3)
            call_id = await customer_with(app, a)
            xfer = app.dialer.transfers
            sa, sb, sc = (app.sessions.get(x) for x in (a, b, c))

            # Bad requests change nothing: to itself, to an agent not ready, by an agent without a call.
            app.sessions.pause(c, "lunch")
            for bad in (agent(a), agent(c)):
                with pytest.raises(Conflict):
                    await xfer.start(a, BLIND, bad)
            with pytest.raises(Conflict):
                await xfer.start(b, BLIND, agent(a))
            with pytest.raises(NotFound):
                await xfer.start(9999, BLIND, agent(b))
            assert call_id in await members(app, sa.bridge_id)
            assert (state(app, a), state(app, b), state(app, c)) == ("on_call", "ready", "paused")
            app.sessions.unpause(c)

            # Blind to agent B: the customer is in B's bridge at once, A wraps up.
            t = await xfer.start(a, BLIND, agent(b))
            assert t.state.value == "completed" and t.to_agent_id == b
            await wait_until(lambda: members(app, sb.bridge_id), timeout=5)
            assert await members(app, sb.bridge_id) == {sb.channel_id, call_id}
            assert await members(app, sa.bridge_id) == {sa.channel_id}
            assert (state(app, a), state(app, b)) == ("wrap_up", "on_call")
            assert app.dialer.calls[call_id].agent_id == b

            # B passes the customer on to the campaign's ready agents: C (the only one ready).
            t = await xfer.start(b, BLIND, Target(TargetKind.CAMPAIGN, campaign_id=other))
            assert t.to_agent_id == c
            assert await members(app, sc.bridge_id) == {sc.channel_id, call_id}
            assert (state(app, b), state(app, c)) == ("wrap_up", "on_call")

            await app.dialer.hangup(call_id)  # the customer hangs up
            row, legs, events = await ended(app, pool, call_id)
            assert state(app, c) == "wrap_up"
        assert row["agent_id"] == a and row["outcome"] == "answered_human"
        assert (row["transfer_kind"], row["transfer_target"], row["transfer_result"]) == (
            "blind",
            "campaign",
            "completed",
        )
        assert (row["transfer_agent_id"], row["transfer_campaign_id"]) == (c, other)
        assert [(leg["agent_id"], leg["role"]) for leg in legs] == [(a, "agent"), (b, "target"), (c, "target")]
        assert all(leg["left_at"] is not None and leg["talk_s"] >= 0 for leg in legs)
        # each agent's talk time: its own legs, together the customer's whole time with agents
        assert abs(sum(float(leg["talk_s"]) for leg in legs) - float(row["talk_s"])) < 0.5
        assert events == ["transfer.started", "transfer.completed"] * 2


async def test_blind_transfer_to_an_external_number_and_a_busy_one(service_settings, sandbox, hangup_agents):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, _, (a,) = await campaigns_with_agents(pool, "xfer-external", 820, (84,), customers=2, wrap_up_s=30)
        with SippAgents(sandbox, ["agent84"], port=5503):
            await dial_once_logged_in(app, cid, 1)
            sa = app.sessions.get(a)
            xfer = app.dialer.transfers
            call_id = await customer_with(app, a)

            t = await xfer.start(a, BLIND, number(ANSWERS))
            assert t.state.value == "dialing" and state(app, a) == "wrap_up"
            await wait_until(lambda: xfer.active[call_id].transfer.state.value == "completed", timeout=10)
            bridge = xfer.active[call_id].bridge_id
            target_channel = xfer.active[call_id].target_channel
            assert await members(app, bridge) == {call_id, target_channel}
            assert await members(app, sa.bridge_id) == {sa.channel_id}
            # The external party hangs up: the customer's call ends with it.
            await app.ari.rest.hangup(target_channel)
            row, legs, events = await ended(app, pool, call_id)
            await no_channels_left(app, call_id)
            assert row["transfer_number"] == ANSWERS and row["transfer_result"] == "completed"
            assert [(leg["agent_id"], leg["number"], leg["role"]) for leg in legs] == [
                (a, None, "agent"),
                (None, ANSWERS, "target"),
            ]
            assert events == ["transfer.started", "transfer.completed"]

            # A busy number: the blind transfer fails and the call ends with a clear outcome.
            app.sessions.end_wrap(a)
            call_id = await customer_with(app, a)
            await xfer.start(a, BLIND, number(BUSY))
            row, legs, events = await ended(app, pool, call_id)
            await no_channels_left(app, call_id)
            assert (row["transfer_result"], row["transfer_cause"]) == ("failed", "busy")
            assert row["outcome"] == "answered_human" and row["agent_id"] == a
            assert events == ["transfer.started", "transfer.failed"]
            assert state(app, a) == "wrap_up"


async def test_attended_transfer_cancel_conference_complete(service_settings, sandbox, hangup_agents):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, _, (a, b) = await campaigns_with_agents(pool, "xfer-attended", 830, (85, 86), wrap_up_s=30)
        with SippAgents(sandbox, ["agent85", "agent86"], port=5505):
            await dial_once_logged_in(app, cid, 2)
            sa, sb = app.sessions.get(a), app.sessions.get(b)
            xfer = app.dialer.transfers
            call_id = await customer_with(app, a)

            # Consultation: the customer waits alone (music on hold), B's phone is in A's bridge.
            t = await xfer.start(a, ATTENDED, agent(b))
            assert t.state.value == "consulting"
            hold = xfer.active[call_id].bridge_id
            assert await members(app, hold) == {call_id}
            assert await members(app, sa.bridge_id) == {sa.channel_id, sb.channel_id}
            assert (state(app, a), state(app, b)) == ("on_call", "reserved")
            with pytest.raises(Conflict):
                await xfer.start(a, ATTENDED, agent(b))  # one at a time

            # Cancel: back to the customer, B home and ready.
            await xfer.act(a, TransferEvent.CANCEL)
            assert await members(app, sa.bridge_id) == {sa.channel_id, call_id}
            await wait_until(lambda: members(app, sb.bridge_id), timeout=5)
            assert await members(app, sb.bridge_id) == {sb.channel_id}
            assert (state(app, a), state(app, b)) == ("on_call", "ready")
            with pytest.raises(Conflict):
                await xfer.act(a, TransferEvent.COMPLETE)  # nothing to complete

            # Again, then a three-way conference in A's bridge.
            await xfer.start(a, ATTENDED, agent(b))
            t = await xfer.act(a, TransferEvent.CONFERENCE)
            assert t.state.value == "conference"
            assert await members(app, sa.bridge_id) == {sa.channel_id, sb.channel_id, call_id}
            assert (state(app, a), state(app, b)) == ("on_call", "on_call")

            # A leaves the conference: customer and B in B's bridge, A wraps up.
            t = await xfer.act(a, TransferEvent.COMPLETE)
            assert t.state.value == "completed"
            assert await members(app, sb.bridge_id) == {sb.channel_id, call_id}
            assert await members(app, sa.bridge_id) == {sa.channel_id}
            await wait_until(lambda: no_transfer_bridge(app, call_id), timeout=5)
            assert (state(app, a), state(app, b)) == ("wrap_up", "on_call")

            await app.dialer.hangup(call_id)
            row, legs, events = await ended(app, pool, call_id)
            assert state(app, b) == "wrap_up"
        assert (row["transfer_kind"], row["transfer_target"], row["transfer_agent_id"], row["transfer_result"]) == (
            "attended",
            "agent",
            b,
            "completed",
        )
        assert row["agent_id"] == a
        assert [(leg["agent_id"], leg["role"]) for leg in legs] == [
            (a, "agent"),
            (b, "consult"),
            (b, "consult"),
            (b, "conference"),
            (b, "target"),
        ]
        talk = {}
        for leg in legs:
            talk[leg["agent_id"]] = talk.get(leg["agent_id"], 0) + float(leg["talk_s"])
        assert talk[a] > 0 and talk[b] > 0
        assert events == [
            "transfer.started",
            "transfer.cancelled",
            "transfer.started",
            "conference.started",
            "transfer.completed",
        ]


async def test_attended_failures_end_cleanly(service_settings, sandbox, hangup_agents):
    """A busy number and a refusing agent give the customer back to the agent; the customer
    hanging up during a consultation with a number ends everything."""
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, _, (a, b) = await campaigns_with_agents(pool, "xfer-failures", 840, (87, 88), wrap_up_s=30)
        with SippAgents(sandbox, ["agent87", "agent88"], port=5507):
            await dial_once_logged_in(app, cid, 2)
            sa, sb = app.sessions.get(a), app.sessions.get(b)
            xfer = app.dialer.transfers
            call_id = await customer_with(app, a)

            await xfer.start(a, ATTENDED, number(BUSY))
            await wait_until(lambda: xfer.active.get(call_id) is None, timeout=10)
            assert app.dialer.calls[call_id].transfer.cause == "busy"
            assert await members(app, sa.bridge_id) == {sa.channel_id, call_id}
            assert state(app, a) == "on_call"

            # A number that does not answer within the ring time: back to the customer.
            xfer.ring_s = 3
            await xfer.start(a, ATTENDED, number(NO_ANSWER))
            await wait_until(lambda: xfer.active.get(call_id) is None, timeout=10)
            assert app.dialer.calls[call_id].transfer.cause == "no answer"
            assert await members(app, sa.bridge_id) == {sa.channel_id, call_id}

            # B refuses with key 0 on its phone (the DTMF event's path).
            await xfer.start(a, ATTENDED, agent(b))
            app.sessions.dtmf(sb.channel_id, "0")
            await wait_until(lambda: xfer.active.get(call_id) is None, timeout=5)
            assert app.dialer.calls[call_id].transfer.cause == "refused"
            assert await members(app, sa.bridge_id) == {sa.channel_id, call_id}
            await wait_until(lambda: members(app, sb.bridge_id), timeout=5)
            assert await members(app, sb.bridge_id) == {sb.channel_id}
            assert (state(app, a), state(app, b)) == ("on_call", "ready")

            # Consulting an external number, the customer hangs up: all of it ends.
            await xfer.start(a, ATTENDED, number(ANSWERS))
            await wait_until(lambda: xfer.active[call_id].transfer.state.value == "consulting", timeout=10)
            target_channel = xfer.active[call_id].target_channel
            assert await members(app, sa.bridge_id) == {sa.channel_id, target_channel}
            await app.dialer.hangup(call_id)
            row, legs, events = await ended(app, pool, call_id)
            await no_channels_left(app, call_id)
            assert (state(app, a), state(app, b)) == ("wrap_up", "ready")
        assert (row["transfer_kind"], row["transfer_number"], row["transfer_result"]) == (
            "attended",
            ANSWERS,
            "customer_gone",
        )
        assert events == [
            "transfer.started",
            "transfer.failed",
            "transfer.started",
            "transfer.failed",
            "transfer.started",
            "transfer.failed",
            "transfer.started",
        ]
        assert [(leg["agent_id"], leg["number"], leg["role"]) for leg in legs] == [
            (a, None, "agent"),
            (b, None, "consult"),
            (None, ANSWERS, "consult"),
        ]


async def test_a_recorded_call_keeps_one_recording_across_the_transfer(service_settings, sandbox, hangup_agents):
    """The recording follows the customer into the target agent's bridge: one file, both parts."""
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, _, (a, b) = await campaigns_with_agents(
            pool, "xfer-recorded", 850, (89, 90), wrap_up_s=30, record_calls=True
        )
        with SippAgents(sandbox, ["agent89", "agent90"], port=5509):
            await dial_once_logged_in(app, cid, 2)
            call_id = await customer_with(app, a)
            await wait_until(lambda: app.dialer.calls[call_id].recording_id is not None, timeout=5)
            name = str(app.dialer.calls[call_id].recording_id)
            assert (await app.ari.rest.get_live(name)).target_uri == f"bridge:{app.sessions.get(a).bridge_id}"
            await asyncio.sleep(2)
            await app.dialer.transfers.start(a, BLIND, agent(b))
            live = await app.ari.rest.get_live(name)
            assert live.target_uri == f"bridge:{app.sessions.get(b).bridge_id}"
            # Asterisk may report the moved recording `queued` for a moment before `recording`
            await wait_until(lambda: _live_state(app, name, "recording"), timeout=3, interval=0.05)
            await asyncio.sleep(2)
            await app.dialer.hangup(call_id)
            row, _, _ = await ended(app, pool, call_id)
            await app.recorder.drain()
        recordings = await pool.fetch("SELECT * FROM recordings WHERE attempt_id = $1", call_id)
        assert [r["id"] for r in recordings] == [row["recording_id"]], "one recording of the call"
        # both parts are in the file: about 4 s, not the 2 s before the transfer
        assert float(recordings[0]["duration_s"]) >= 3.5, recordings[0]["duration_s"]
        assert abs(float(recordings[0]["duration_s"]) - float(row["talk_s"])) < 1.0


async def _live_state(app, name: str, state: str) -> bool:
    return (await app.ari.rest.get_live(name)).state == state


async def _tokens(pool, agent_id: int, campaigns: list[int]) -> tuple[dict[str, str], ...]:
    """Bearer headers of a supervisor of `campaigns` (through their phone's agent row), of a
    supervisor of none, and of the agent's own user."""
    auth = AuthService(
        pool,
        passwords=Passwords(time_cost=1, memory_cost=1024, parallelism=1),
        role_scopes=build_registry().role_scopes(),
    )
    out = []
    for role, link in ((Role.SUPERVISOR, "phone"), (Role.SUPERVISOR, None), (Role.AGENT, "agent")):
        name = f"{role.value}-{uuid.uuid4().hex[:6]}"
        user = await auth.create_user(username=name, role=role, password=None, actor=SYSTEM)
        if link == "agent":
            await pool.execute("UPDATE agents SET user_id = $1 WHERE id = $2", user["id"], agent_id)
        elif link == "phone":
            phone = await create_agent(pool, "1999", f"sup-{name}", campaigns)
            await pool.execute("UPDATE agents SET user_id = $1 WHERE id = $2", user["id"], phone)
        grant = await auth.create_token(
            user_id=user["id"], name="t", scopes=sorted(auth.scopes_for(role)), expires_at=None, actor=SYSTEM
        )
        out.append({"Authorization": f"Bearer {grant.token}"})
    return tuple(out)


async def test_attended_transfer_to_a_number_through_the_api(service_settings, sandbox, hangup_agents):
    """The REST API on the real stack: the agent's own call only, bad input refused with the
    field named and nothing changed, every request audited."""
    settings = service_settings.model_copy(update={"http_port": free_port()})
    async with (
        HitCall(settings, Options(http=True, dialer_tick_s=0.05)) as app,
        aiohttp.ClientSession() as http,
    ):
        pool = app.db.pool
        cid, other, (a, b) = await campaigns_with_agents(pool, "xfer-api", 860, (91, 92), wrap_up_s=30)
        supervisor, stranger, agent_a = await _tokens(pool, a, [cid, other])
        base = f"http://127.0.0.1:{app.http_port}/api/v1/agents"
        with SippAgents(sandbox, ["agent91", "agent92"], port=5513):
            await dial_once_logged_in(app, cid, 2)
            sa = app.sessions.get(a)
            call_id = await customer_with(app, a)

            async def post(path: str, headers: dict[str, str], body: dict | None = None) -> tuple[int, dict]:
                async with http.post(f"{base}/{path}", json=body, headers=headers) as r:
                    return r.status, (await r.json() if r.content_length else {})

            # Not the agent's call, a bad number, an agent without a call: refused, nothing changed.
            status, _ = await post(f"{b}/transfer", agent_a, {"kind": "blind", "target": {"agent_id": a}})
            assert status == 403
            status, body = await post(f"{a}/transfer", agent_a, {"kind": "blind", "target": {"number": "+35812"}})
            assert (status, body["details"]["field"]) == (422, "target.number")
            status, body = await post(f"{b}/transfer", supervisor, {"kind": "blind", "target": {"agent_id": a}})
            assert (status, body["error"]) == (409, "no_call")
            status, body = await post(f"{a}/transfer/complete", agent_a)
            assert (status, body["error"]) == (409, "no_transfer")
            status, body = await post(f"{a}/transfer", stranger, {"kind": "blind", "target": {"agent_id": b}})
            assert (status, body["error"]) == (403, "agent_not_supervised")  # a supervisor of other campaigns
            assert await members(app, sa.bridge_id) == {sa.channel_id, call_id}
            assert call_id not in app.dialer.transfers.active

            status, body = await post(
                f"{a}/transfer", agent_a, {"kind": "attended", "target": {"number": "040 1999002"}}
            )
            assert status == 200 and (body["state"], body["number"]) == ("dialing", "+358401999002")
            await wait_until(lambda: app.dialer.transfers.active[call_id].transfer.state.value == "consulting", 10)
            status, body = await post(f"{a}/transfer/complete", supervisor)
            assert status == 200 and body["state"] == "completed"
            target_channel = app.dialer.transfers.active[call_id].target_channel
            assert await members(app, app.dialer.transfers.active[call_id].bridge_id) == {call_id, target_channel}
            assert await members(app, sa.bridge_id) == {sa.channel_id}
            assert state(app, a) == "wrap_up"
            await app.dialer.hangup(call_id)
            row, legs, events = await ended(app, pool, call_id)
            await no_channels_left(app, call_id)
        assert (row["transfer_kind"], row["transfer_number"], row["transfer_result"]) == (
            "attended",
            "+358401999002",
            "completed",
        )
        assert [(leg["agent_id"], leg["number"], leg["role"]) for leg in legs] == [
            (a, None, "agent"),
            (None, "+358401999002", "consult"),
            (None, "+358401999002", "target"),
        ]
        assert events == ["transfer.started", "transfer.completed"]
        audit = await pool.fetch(
            "SELECT actor_role, action, details FROM audit_log WHERE action LIKE 'call.transfer%' ORDER BY id"
        )
        assert [(r["actor_role"], r["action"]) for r in audit] == [
            ("agent", "call.transfer"),
            ("supervisor", "call.transfer_complete"),
        ]
        assert all(r["details"]["attempt_id"] == call_id for r in audit)


async def test_the_transferring_agent_hanging_up_hands_the_customer_over(service_settings, sandbox, hangup_agents):
    """As on a desk phone: the agent who hangs up during a consultation completes the transfer."""
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, _, (a, b) = await campaigns_with_agents(pool, "xfer-hangup", 870, (93, 94), wrap_up_s=30)
        with SippAgents(sandbox, ["agent93", "agent94"], port=5515):
            await dial_once_logged_in(app, cid, 2)
            sa, sb = app.sessions.get(a), app.sessions.get(b)
            call_id = await customer_with(app, a)
            await app.dialer.transfers.start(a, ATTENDED, agent(b))
            await app.ari.rest.hangup(sa.channel_id)  # A's phone hangs up
            await wait_until(lambda: a not in app.sessions.by_agent, timeout=5)
            await wait_until(lambda: members(app, sb.bridge_id), timeout=5)
            assert await members(app, sb.bridge_id) == {sb.channel_id, call_id}
            assert state(app, b) == "on_call" and app.dialer.calls[call_id].agent_id == b
            await app.dialer.hangup(call_id)
            row, legs, events = await ended(app, pool, call_id)
            await no_channels_left(app, call_id)
            assert state(app, b) == "wrap_up"
        assert (row["agent_id"], row["transfer_agent_id"], row["transfer_result"]) == (a, b, "completed")
        assert [(leg["agent_id"], leg["role"]) for leg in legs] == [(a, "agent"), (b, "consult"), (b, "target")]
        assert events == ["transfer.started", "transfer.completed"]
        states = [
            r["state"] for r in await pool.fetch("SELECT state FROM agent_state_log WHERE agent_id = $1 ORDER BY id", a)
        ]
        assert states[-2:] == ["on_call", "wrap_up"], states


async def test_a_service_restart_after_transfers(service_settings, sandbox, hangup_agents):
    """The process stops (calls left up) after a customer went to agent B and another to an
    external number. The next process adopts B's call (B talks on, wraps up when it ends)
    and ends the other one: the customer, the external channel and its bridge."""
    options = Options(dialer_tick_s=0.05)
    phones = SippAgents(sandbox, ["agent97", "agent98"], port=5517)
    try:
        async with HitCall(service_settings, options) as first:
            pool = first.db.pool
            cid, _, (a, b) = await campaigns_with_agents(pool, "xfer-restart", 880, (97, 98), customers=2, wrap_up_s=0)
            phones.start()
            await dial_once_logged_in(first, cid, 2)
            with_b = await customer_with(first, a)
            await first.dialer.transfers.start(a, BLIND, agent(b))
            with_number = await customer_with(first, a)  # A is ready again at once (no wrap-up)
            await pool.execute("UPDATE campaigns SET state = 'paused' WHERE id = $1", cid)
            await first.dialer.transfers.start(a, BLIND, number(ANSWERS))
            await wait_until(
                lambda: first.dialer.transfers.active[with_number].transfer.state.value == "completed", timeout=10
            )
            await first.journal.flush()
        async with HitCall(service_settings, options) as second:
            pool = second.db.pool
            await wait_until(lambda: len(second.sessions.by_agent) == 2, timeout=10)
            await wait_until(lambda: with_number not in second.dialer.calls and with_b in second.dialer.calls, 10)
            assert second.dialer.calls[with_b].agent_id == b and state(second, b) == "on_call"
            sb = second.sessions.get(b)
            assert await members(second, sb.bridge_id) == {sb.channel_id, with_b}
            await no_transfer_left(second)
            await second.dialer.hangup(with_b)
            row, _, _ = await ended(second, pool, with_b)
            b_states = [
                r["state"]
                for r in await pool.fetch("SELECT state FROM agent_state_log WHERE agent_id = $1 ORDER BY id", b)
            ]
            closed = await pool.fetchrow("SELECT * FROM call_attempts WHERE id = $1", with_number)
        # B wrapped up (the campaign, paused meanwhile, has no wrap-up time)
        assert b_states[-3:] == ["on_call", "wrap_up", "ready"], b_states
        assert row["agent_id"] == b and row["outcome"] == "answered_human"
        assert closed["outcome"] == "answered_human" and closed["state"] == "ended"
    finally:
        phones.stop()


async def no_transfer_left(app: HitCall) -> None:
    """No external transfer target's channel (nor its trunk leg), no transfer bridge at all."""

    async def only_it():
        names = [c.name for c in await app.ari.rest.list_channels()]
        bridges = [b.id for b in await app.ari.rest.list_bridges() if b.id.startswith("hitcall-xfer-")]
        return not any("hitcall-transfer" in n or ANSWERS in n for n in names) and not bridges

    try:
        await wait_until(only_it, timeout=10)
    except AssertionError:
        left = [(c.id, c.name) for c in await app.ari.rest.list_channels()]
        raise AssertionError((left, [(b.id, b.channels) for b in await app.ari.rest.list_bridges()])) from None


async def test_a_service_restart_during_a_consultation(service_settings, sandbox, hangup_agents):
    """The process stops while agent A consults agent B (B's phone in A's bridge, the
    customer on hold). The next process knows each phone by its endpoint: both agents stay
    logged in, each phone in its own bridge (B never hears A's next customer); the customer
    on hold, whom no agent talks to, is ended with a CDR; nothing is left of the transfer."""
    options = Options(dialer_tick_s=0.05)
    phones = SippAgents(sandbox, ["agent99", "agent100"], port=5519)
    try:
        async with HitCall(service_settings, options) as first:
            pool = first.db.pool
            cid, _, (a, b) = await campaigns_with_agents(pool, "xfer-consult-restart", 890, (99, 100))
            phones.start()
            await dial_once_logged_in(first, cid, 2)
            call_id = await customer_with(first, a)
            phone_a, phone_b = first.sessions.get(a).channel_id, first.sessions.get(b).channel_id
            await first.dialer.transfers.start(a, ATTENDED, agent(b))
            assert await members(first, first.sessions.get(a).bridge_id) == {phone_a, phone_b}
            await first.journal.flush()
        async with HitCall(service_settings, options) as second:
            pool = second.db.pool
            await wait_until(lambda: len(second.sessions.by_agent) == 2, timeout=10)
            await wait_until(lambda: call_id not in second.dialer.calls, timeout=10)
            sa, sb = second.sessions.get(a), second.sessions.get(b)
            assert (sa.channel_id, sb.channel_id) == (phone_a, phone_b)
            await wait_until(lambda: members(second, sb.bridge_id), timeout=5)
            assert await members(second, sa.bridge_id) == {phone_a}
            assert await members(second, sb.bridge_id) == {phone_b}
            assert (state(second, a), state(second, b)) == ("ready", "ready")
            await no_transfer_left(second)
            await second.cdr.flush()
            row = await pool.fetchrow("SELECT * FROM call_attempts WHERE id = $1", call_id)
        assert row["state"] == "ended" and row["outcome"] == "answered_human" and row["agent_id"] == a
    finally:
        phones.stop()
