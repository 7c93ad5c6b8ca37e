"""The watchdog on the real Asterisk: events are dropped before they reach the dialer
(a lost hangup of a customer talking to an agent, a lost bridge entry, a lost hangup
of an agent's phone), and the periodic sweep against GET /channels still finishes the
call with a correct CDR, frees the agent, and logs out the agent whose phone is gone."""

from __future__ import annotations

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign
from hitcall_pbx.sandbox import SippAgents

from .conftest import wait_until

pytestmark = pytest.mark.asterisk


def _drop_events(app: HitCall) -> list:
    """Put a filter between the ARI socket and the dialer; an event is dropped when
    one of the predicates added to the returned list says so."""
    drops: list = []
    handlers = app.ari._handlers
    i = handlers.index(app.dialer.handle_event)

    async def filtered(ev):
        if not any(drop(ev) for drop in drops):
            await app.dialer.handle_event(ev)

    handlers[i] = filtered
    return drops


async def test_watchdog_finishes_calls_and_agents_whose_events_were_lost(service_settings, sandbox, hangup_agents):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05, dialer_watchdog_s=0.3)) as app:
        pool = app.db.pool
        # Customers answer at once and hang up after 2 s of talk.
        cid, list_id = await create_campaign(
            pool,
            "watchdog-e2e",
            mode="progressive",
            wrap_up_s=0,
            numbers=[f"+35841020000{i}" for i in range(3)],
            **ALL_DAY,
        )
        agent = await create_agent(pool, "1121", "agent121", [cid])
        lost: dict[str, str] = {}  # channel id -> the event type dropped for it

        def drop(ev) -> bool:
            ch = getattr(ev, "channel", None)
            if ch is None or ch.id not in app.dialer.calls:
                return False
            if ev.type == "ChannelEnteredBridge" and not lost:
                lost[ch.id] = ev.type  # first call: its bridge entry is lost
                return True
            if ev.type == "ChannelDestroyed" and len(lost) == 1 and ch.id not in lost:
                lost[ch.id] = ev.type  # second call: its hangup is lost
                return True
            return False

        drops = _drop_events(app)
        drops.append(drop)
        with SippAgents(sandbox, ["agent121"], port=5321):
            await wait_until(lambda: agent in app.sessions.by_agent, timeout=15)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)

            async def all_done():
                return await pool.fetchval(
                    "SELECT count(*) = 3 FROM contacts WHERE list_id = $1 AND status = 'done'", list_id
                )

            await wait_until(all_done, timeout=30, interval=0.2)
            await app.dialer.idle(10)
            await app.cdr.flush()
            assert sorted(lost.values()) == ["ChannelDestroyed", "ChannelEnteredBridge"]
            rows = {str(r["id"]): r for r in await pool.fetch("SELECT * FROM all_attempts WHERE campaign_id = $1", cid)}
            assert len(rows) == 3, "one attempt per contact"
            for r in rows.values():
                assert r["state"] == "ended" and r["outcome"] == "answered_human", dict(r)
                assert r["agent_id"] == agent and r["answered_at"] <= r["bridged_at"] <= r["ended_at"]
                assert 0 <= r["answer_to_bridge_ms"] < 2000 and not r["abandoned"]
            (gone,) = [c for c, t in lost.items() if t == "ChannelDestroyed"]
            assert "watchdog" in rows[gone]["hangup_cause_txt"]
            # Talk lasted 2 s; the sweep ended the call within two sweeps of the hangup.
            assert 1.5 < float(rows[gone]["talk_s"]) < 4.5, rows[gone]["talk_s"]

            # The agent's phone goes away and neither its StasisEnd nor its ChannelDestroyed arrives.
            phone = app.sessions.by_agent[agent].channel_id
            drops.append(lambda ev: getattr(getattr(ev, "channel", None), "id", None) == phone)
            await app.ari.rest.hangup(phone)
            await wait_until(lambda: agent not in app.sessions.by_agent, timeout=5, interval=0.05)
            await app.sessions.drain()
            assert await pool.fetchval("SELECT state FROM agents WHERE id = $1", agent) == "logged_out"
