"""Call outcomes from real Asterisk hangups and AMD, and the retries they schedule."""

from __future__ import annotations

from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.sandbox import SippAgents

from .conftest import wait_until

pytestmark = pytest.mark.asterisk

RETRY = {"retry_busy_s": 60, "retry_no_answer_s": 120, "retry_congestion_s": 180, "retry_machine_s": 300}


async def test_busy_no_answer_congestion_machine(service_settings, sandbox, hangup_agents):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        busy, noanswer, congestion = sim_numbers(2, 1, 300)[0], sim_numbers(3, 1, 300)[0], sim_numbers(4, 1, 300)[0]
        machine = sim_numbers(5, 1, 300)[0]
        plain, _ = await create_campaign(
            pool,
            "outcomes",
            mode="progressive",
            numbers=[busy, noanswer, congestion],
            wrap_up_s=0,
            ring_timeout_s=15,
            max_attempts=2,
            **RETRY,
            **ALL_DAY,
        )
        amd, _ = await create_campaign(
            pool,
            "outcomes-amd",
            mode="progressive",
            numbers=[machine],
            wrap_up_s=0,
            ring_timeout_s=15,
            max_attempts=2,
            amd_enabled=True,
            **RETRY,
            **ALL_DAY,
        )
        agents = [f"agent{n}" for n in range(21, 25)]
        for n, endpoint in enumerate(agents):
            await create_agent(pool, f"102{n}", endpoint, [plain, amd])
        with SippAgents(sandbox, agents, port=5221):
            await wait_until(lambda: len(app.sessions.by_agent) == 4, timeout=15)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = ANY($1::bigint[])", [plain, amd])

            async def all_tried():
                return await pool.fetchval(
                    "SELECT count(*) = 4 FROM contacts WHERE last_outcome IS NOT NULL AND status <> 'in_progress'"
                )

            await wait_until(all_tried, timeout=30, interval=0.25)
            await pool.execute("UPDATE campaigns SET state = 'paused'")
            await app.dialer.idle(timeout=10)
            await app.cdr.flush()

        rows = {
            r["phone_e164"]: r
            for r in await pool.fetch(
                """SELECT c.phone_e164, c.status, c.next_attempt_at, c.attempts, a.outcome, a.hangup_cause, a.ended_at,
                      a.answered_at, a.bridged_at, a.amd_status, a.abandoned, a.ring_s, a.state
               FROM contacts c JOIN all_attempts a ON a.contact_id = c.id"""
            )
        }
        assert len(rows) == 4, "one attempt each"

        def retry_in(r, seconds):
            assert r["status"] == "retry" and r["attempts"] == 1 and r["state"] == "ended"
            assert abs(r["next_attempt_at"] - (r["ended_at"] + timedelta(seconds=seconds))) < timedelta(seconds=2)

        r = rows[busy]
        assert (r["outcome"], r["hangup_cause"], r["answered_at"]) == ("busy", 17, None)
        retry_in(r, 60)
        r = rows[congestion]
        assert (r["outcome"], r["hangup_cause"], r["answered_at"]) == ("congestion", 34, None)
        retry_in(r, 180)
        r = rows[noanswer]
        assert r["outcome"] == "no_answer" and r["answered_at"] is None, dict(r)
        assert 14.5 <= float(r["ring_s"]) < 20, "rang for the campaign's ring timeout"
        retry_in(r, 120)
        r = rows[machine]
        assert (r["outcome"], r["amd_status"]) == ("answered_machine", "MACHINE"), dict(r)
        assert r["answered_at"] is not None and r["bridged_at"] is None and not r["abandoned"], "not a connect"
        retry_in(r, 300)
        assert app.dialer.stats[amd].today.connected == 0


async def test_a_customer_gone_as_they_answer_is_abandoned_and_nothing_fails(service_settings, sandbox, hangup_agents):
    """The customer answers and hangs up before the call reaches its agent: Asterisk still hands
    the call to Stasis (StasisStart after the hangup request), and refuses to bridge a channel
    that is gone (400 "Channel not found"). An abandon, counted; no task of the dialer fails."""
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, _ = await create_campaign(
            pool, "gone-at-answer", mode="progressive", wrap_up_s=0, numbers=sim_numbers(9, 5, start=4700), **ALL_DAY
        )
        agent = await create_agent(pool, "1190", "agent190", [cid])
        dialer = app.dialer
        handlers = app.ari._handlers
        i = handlers.index(dialer.handle_event)
        hung: list[str] = []

        async def customer_hangs_up_at_answer(ev):
            channel = getattr(ev, "channel", None)
            if ev.type == "ChannelStateChange" and channel.id in dialer.calls and channel.state == "Up":
                hung.append(channel.id)
                await app.ari.rest.hangup(channel.id)
            await dialer.handle_event(ev)

        handlers[i] = customer_hangs_up_at_answer
        with capture_logs() as logs, SippAgents(sandbox, ["agent190"], port=5611):
            await wait_until(lambda: agent in app.sessions.by_agent, timeout=15)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            await dialer.refresh_campaigns()
            await wait_until(
                lambda: pool.fetchval(
                    "SELECT count(*) = 5 FROM all_attempts WHERE campaign_id = $1 AND outcome IS NOT NULL", cid
                ),
                timeout=20,
            )
            await dialer.idle(5)
        rows = await pool.fetch("SELECT id, outcome FROM all_attempts WHERE campaign_id = $1", cid)
        assert sorted(str(r["id"]) for r in rows) == sorted(hung)
        # Bridged before the hangup took effect, a call is a (very short) conversation.
        outcomes = [r["outcome"] for r in rows]
        assert set(outcomes) <= {"abandoned", "answered_human"} and "abandoned" in outcomes, outcomes
        assert dialer.pacer.stats_for(dialer.campaigns[cid]).today.abandoned == outcomes.count("abandoned")
        assert [e for e in logs if e["event"].endswith("task_failed")] == []
        assert any(e["event"] == "dialer.bridge_target_gone" for e in logs), "the 400 was met and handled"
