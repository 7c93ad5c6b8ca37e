"""Predictive dialing end to end: customers outnumber agents, so some answered calls
get no agent in time; they hear the information message and count as abandoned.
Never dials with no agent logged in; an abandoned number is not dialled again
predictively for 72 hours."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.dialer.models import Campaign
from hitcall_pbx.sandbox import SippAgents

from .conftest import wait_until

pytestmark = pytest.mark.asterisk


async def _stop_campaign(app: HitCall, cid: int) -> None:
    await app.db.pool.execute("UPDATE campaigns SET state = 'paused' WHERE id = $1", cid)
    await app.dialer.refresh_campaigns()
    for call in app.dialer.live_calls():
        try:
            await app.dialer.hangup_call(call["attempt_id"])
        except Exception:
            pass
    await app.dialer.idle(timeout=15)
    await app.cdr.flush()


async def test_predictive_abandons_hear_info_message_within_2s(service_settings, sandbox, hangup_agents):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        events: list[tuple[float, object]] = []
        app.ari.on_event(lambda ev: events.append((time.monotonic(), ev)))
        ended: list[str] = []
        app.dialer.on_call_end.append(lambda call, outcome: ended.append(outcome.value))
        cid, list_id = await create_campaign(
            pool,
            "predictive-e2e",
            mode="predictive",
            numbers=sim_numbers(7, 2, start=100),
            wrap_up_s=0,
            ring_timeout_s=15,
            max_attempts=1,
            info_message_sound="sound:hello-world",
            **ALL_DAY,
        )
        agent = await create_agent(pool, "1011", "agent11", [cid])
        other = await create_agent(pool, "1012", "agent12", [cid])
        with SippAgents(sandbox, ["agent11", "agent12"], port=5211):
            await wait_until(lambda: len(app.sessions.by_agent) == 2, timeout=15)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            # Two calls ring (customers answer after 1-4 s) for two ready agents; one agent
            # leaves before they answer, so one answered customer has no agent.
            await wait_until(lambda: len(app.dialer.live_calls()) >= 2, timeout=10, interval=0.02)
            assert all(c["answered_at"] is None for c in app.dialer.live_calls())
            app.sessions.pause(other, "meeting")
            await wait_until(lambda: "abandoned" in ended, timeout=15)
            await wait_until(lambda: any(c["bridged_at"] for c in app.dialer.live_calls()), timeout=5)
            await _stop_campaign(app, cid)

        rows = await pool.fetch("SELECT * FROM all_attempts WHERE campaign_id = $1", cid)
        assert all(r["state"] == "ended" and r["outcome"] for r in rows)
        abandoned = [r for r in rows if r["abandoned"]]
        connected = [r for r in rows if r["bridged_at"] is not None]
        assert abandoned and connected, [(r["outcome"], r["abandoned"]) for r in rows]
        assert len(rows) == 2
        for r in connected:
            assert r["agent_id"] == agent and r["answer_to_bridge_ms"] < 2000 and not r["abandoned"]
        for r in abandoned:
            assert r["outcome"] == "abandoned" and r["bridged_at"] is None and r["answered_at"] is not None
            cid_ = str(r["id"])
            answered = [t for t, e in events if e.type == "StasisStart" and e.channel.id == cid_]
            started = [
                t for t, e in events if e.type == "PlaybackStarted" and e.playback.target_uri == f"channel:{cid_}"
            ]
            finished = [
                t for t, e in events if e.type == "PlaybackFinished" and e.playback.target_uri == f"channel:{cid_}"
            ]
            assert answered and started and finished, "the abandoned customer heard the information message"
            # The 2-second rule: no agent within 2 s of answer -> the message starts then.
            assert started[0] - answered[0] < 2.3, started[0] - answered[0]
        assert await pool.fetchval("SELECT count(*) FROM webhook_outbox WHERE event_type = 'call.abandoned'") >= len(
            abandoned
        )

        # The 72-hour rule: the abandoned number, due again, is refused by the hopper.
        victim = abandoned[0]["contact_id"]
        await pool.execute(
            "UPDATE contacts SET status = 'retry', attempts = 0, next_attempt_at = NULL WHERE id = $1", victim
        )
        await pool.execute("UPDATE contacts SET status = 'done' WHERE list_id = $1 AND id <> $2", list_id, victim)
        campaign = Campaign.from_row(await pool.fetchrow("SELECT * FROM campaigns WHERE id = $1", cid))
        result = await app.dialer.hopper.take(campaign, 1, datetime.now(UTC))
        assert result.attempts == [] and result.blocked == {"abandoned_72h": 1}
        assert await pool.fetchval("SELECT count(*) FROM all_attempts WHERE contact_id = $1", victim) == 1
        assert (
            await pool.fetchval(
                "SELECT blocked FROM dial_blocks WHERE campaign_id = $1 AND reason = 'abandoned_72h'", cid
            )
            == 1
        )


async def test_predictive_never_dials_without_agents(service_settings, sandbox):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, _ = await create_campaign(
            pool,
            "predictive-no-agents",
            mode="predictive",
            state="running",
            numbers=sim_numbers(1, 5, start=200),
            **ALL_DAY,
        )
        await create_agent(pool, "1012", "agent12", [cid])  # assigned, not logged in
        await app.dialer.refresh_campaigns()
        assert cid in app.dialer.campaigns
        await asyncio.sleep(2.5)
        assert app.dialer.live_calls() == []
        assert await pool.fetchval("SELECT count(*) FROM all_attempts WHERE campaign_id = $1", cid) == 0
