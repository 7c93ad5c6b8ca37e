"""Recovery on the real Asterisk: a customer whose answer never reached the dialer (its
StasisStart lost, as in an ARI WebSocket gap) is still put through to the agent by the
next resync or watchdog sweep; a customer talking to an agent across a service restart
is adopted by the next process and ends with its whole talk time in the CDR; callbacks
stay callbacks when the restart recovery or a preview skip gives them back; /readyz
says why while the service drains."""

from __future__ import annotations

import socket
import time
import uuid
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.ari import Resync
from hitcall_pbx.core.states import AgentState
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign
from hitcall_pbx.sandbox import SippAgents

from .conftest import wait_until

pytestmark = pytest.mark.asterisk


def _talkers(seconds: int, count: int, start: int) -> list[str]:
    """Customers who answer at once and hang up after `seconds` of talk (+35841 TT SSSSS)."""
    return [f"+35841{seconds:02d}{n:05d}" for n in range(start, start + count)]


async def test_answer_lost_in_a_gap_is_repaired_by_resync_and_by_sweep(service_settings, sandbox, hangup_agents):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05, dialer_watchdog_s=None)) as app:
        pool = app.db.pool
        cid, list_id = await create_campaign(
            pool, "lost-answer", mode="progressive", wrap_up_s=0, numbers=_talkers(5, 2, start=1610), **ALL_DAY
        )
        agent = await create_agent(pool, "1161", "agent161", [cid])
        lost: list[str] = []
        handlers = app.ari._handlers
        i = handlers.index(app.dialer.handle_event)

        async def filtered(ev):
            # Every customer's StasisStart (its answer) is lost on the way to the dialer.
            if ev.type == "StasisStart" and list(ev.args or [])[:1] == ["customer"]:
                lost.append(ev.channel.id)
                return
            await app.dialer.handle_event(ev)

        handlers[i] = filtered
        with SippAgents(sandbox, ["agent161"], port=5361):
            await wait_until(lambda: agent in app.sessions.by_agent, timeout=15)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)

            # First call: repaired by a resync (what a reconnect after a WebSocket gap runs).
            await wait_until(lambda: len(lost) == 1, timeout=15, interval=0.02)
            first = lost[0]
            assert app.dialer.calls[first].answered_at is None
            snap = Resync(
                channels=await app.ari.rest.list_channels(),
                bridges=await app.ari.rest.list_bridges(),
                reconnect=True,
                downtime_s=0.5,
            )
            await app.dialer.handle_resync(snap)
            await wait_until(
                lambda: app.dialer.calls.get(first) and app.dialer.calls[first].state == "bridged",
                timeout=3,
                interval=0.02,
            )
            assert app.sessions.by_agent[agent].state is AgentState.ON_CALL

            # Second call: repaired by the watchdog's sweep.
            await wait_until(lambda: len(lost) == 2, timeout=15, interval=0.02)
            second = lost[1]
            assert app.dialer.calls[second].answered_at is None
            await app.dialer.sweep()
            await wait_until(
                lambda: app.dialer.calls.get(second) and app.dialer.calls[second].state == "bridged",
                timeout=3,
                interval=0.02,
            )

            async def done():
                return await pool.fetchval(
                    "SELECT count(*) = 2 FROM contacts WHERE list_id = $1 AND status = 'done'", list_id
                )

            await wait_until(done, timeout=20, interval=0.2)
            await app.dialer.idle(10)
            await app.cdr.flush()
            rows = await pool.fetch("SELECT * FROM all_attempts WHERE campaign_id = $1", cid)
            assert {str(r["id"]) for r in rows} == {first, second}
            for r in rows:
                assert r["outcome"] == "answered_human" and r["agent_id"] == agent and not r["abandoned"], dict(r)
                assert r["answered_at"] <= r["bridged_at"] < r["ended_at"]
                assert 0 <= r["answer_to_bridge_ms"] < 2000
                assert 2.0 < float(r["talk_s"]) < 6.0, r["talk_s"]


async def test_call_talking_across_a_service_restart_is_adopted(service_settings, sandbox, hangup_agents):
    options = Options(dialer_tick_s=0.05)
    async with HitCall(service_settings, options) as first:
        pool = first.db.pool
        cid, list_id = await create_campaign(
            pool,
            "adopt-talking",
            mode="progressive",
            wrap_up_s=0,
            max_attempts=2,
            numbers=_talkers(10, 1, start=1620),
            **ALL_DAY,
        )
        agent = await create_agent(pool, "1162", "agent162", [cid])
    with SippAgents(sandbox, ["agent162"], port=5363):
        async with HitCall(service_settings, options) as first:
            await wait_until(lambda: agent in first.sessions.by_agent, timeout=15)
            await first.db.pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            await wait_until(lambda: any(c["bridged_at"] for c in first.dialer.live_calls()), timeout=15, interval=0.02)
            (call,) = first.dialer.live_calls()
            await first.journal.flush(5)
        restarted_at = time.monotonic()
        talked_before = (datetime.now(UTC) - call["bridged_at"]).total_seconds()

        async with HitCall(service_settings, options) as second:
            pool = second.db.pool
            await wait_until(lambda: call["attempt_id"] in second.dialer.calls, timeout=10, interval=0.05)
            adopted = second.dialer.calls[call["attempt_id"]]
            assert adopted.state == "bridged" and adopted.agent_id == agent
            assert second.sessions.by_agent[agent].state is AgentState.ON_CALL
            assert second.sessions.by_agent[agent].attempt_id == call["attempt_id"]
            assert not second.sessions.ready_agents(cid), "the agent talking is not offered another call"

            async def done():
                return await pool.fetchval("SELECT status = 'done' FROM contacts WHERE list_id = $1", list_id)

            await wait_until(done, timeout=20, interval=0.2)
            await second.dialer.idle(10)
            await second.cdr.flush()
            (row,) = await pool.fetch("SELECT * FROM all_attempts WHERE campaign_id = $1", cid)
            assert time.monotonic() - restarted_at > 2.0, "the call outlived the restart"
            assert row["state"] == "ended" and row["outcome"] == "answered_human", dict(row)
            assert row["agent_id"] == agent and row["bridged_at"] == call["bridged_at"]
            # The whole talk: before the restart, across it and after it (10 s in all).
            assert float(row["talk_s"]) > talked_before + 2.0 and 8.0 < float(row["talk_s"]) < 12.5, dict(row)
            assert "restart" not in (row["hangup_cause_txt"] or "")
            await wait_until(lambda: second.sessions.by_agent[agent].state is AgentState.READY, timeout=5)


async def test_callbacks_stay_callbacks_through_restart_recovery_and_preview_skip(
    service_settings, sandbox, hangup_agents
):
    numbers = _talkers(5, 3, start=1630)
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as first:
        pool = first.db.pool
        cid, list_id = await create_campaign(pool, "callback-recovery", mode="preview", wrap_up_s=0, **ALL_DAY)
        agent = await create_agent(pool, "1163", "agent163", [cid])
        contacts = {}
        for number in numbers:
            contacts[number] = await pool.fetchval(
                "INSERT INTO contacts (list_id, phone_e164, status, attempts, callback_at, callback_agent_id) "
                "VALUES ($1, $2, 'callback', 1, $3, $4) RETURNING id",
                list_id,
                number,
                later,
                agent,
            )
        dialled, offered, skipped = (contacts[n] for n in numbers)
        # What a killed process leaves: one callback being dialled (its attempt open, no
        # channel), one held by an open preview offer.
        await pool.execute("UPDATE contacts SET status = 'in_progress', attempts = 2 WHERE id = $1", dialled)
        await pool.execute(
            """INSERT INTO live_attempts (id, campaign_id, contact_id, attempt_no, dialled_number, caller_id, agent_id,
                                          mode, state, created_at, retention_until)
               VALUES ($1, $2, $3, 2, $4, '+358201234567', $5, 'preview', 'originating', now(),
                       now() + interval '2 years')""",
            uuid.uuid4(),
            cid,
            dialled,
            numbers[0],
            agent,
        )
        await pool.execute("UPDATE contacts SET status = 'in_progress' WHERE id = $1", offered)
        await pool.execute(
            "INSERT INTO preview_offers (agent_id, campaign_id, contact_id, expires_at) "
            "VALUES ($1, $2, $3, now() + interval '1 minute')",
            agent,
            cid,
            offered,
        )
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        for contact in (dialled, offered):
            row = await pool.fetchrow("SELECT * FROM contacts WHERE id = $1", contact)
            assert (row["status"], row["callback_at"], row["callback_agent_id"]) == ("callback", later, agent), dict(
                row
            )
        await app.cdr.flush()
        assert await pool.fetchval("SELECT outcome FROM all_attempts WHERE contact_id = $1", dialled) == "cancelled"

        # A due callback offered to its agent and skipped stays a callback.
        due = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
        await pool.execute("UPDATE contacts SET callback_at = $2 WHERE id = $1", skipped, due)
        with SippAgents(sandbox, ["agent163"], port=5365):
            await wait_until(lambda: agent in app.sessions.by_agent, timeout=15)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            await wait_until(lambda: agent in app.dialer.offers, timeout=10, interval=0.05)
            assert app.dialer.offers[agent].contact_id == skipped
            await pool.execute("UPDATE campaigns SET state = 'paused' WHERE id = $1", cid)
            await app.dialer.refresh_campaigns()
            skipped_at = datetime.now(UTC)
            await app.dialer.skip_offer(agent, "not now")
            row = await pool.fetchrow("SELECT * FROM contacts WHERE id = $1", skipped)
            assert (row["status"], row["callback_agent_id"]) == ("callback", agent), dict(row)
            # Postponed by the campaign's skip delay (900 s by default), not offered again at once.
            assert row["callback_at"] >= skipped_at + timedelta(seconds=899), dict(row)


async def test_readyz_says_draining_while_the_service_drains(service_settings, sandbox):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = service_settings.model_copy(update={"http_port": port})
    async with HitCall(settings, Options(http=True)) as app, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{app.http_port}/readyz"
        async with http.get(url) as r:
            assert r.status == 200 and (await r.json())["checks"] == {"database": "ok", "ari": "ok"}
        await app.drain_calls(0.5)
        async with http.get(url) as r:
            assert r.status == 503
            assert await r.json() == {
                "status": "not_ready",
                "checks": {"database": "ok", "ari": "ok", "service": "draining"},
            }
