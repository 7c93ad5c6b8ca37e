"""Complete accounting on the real Asterisk: an answer and a hangup that both fall in an
ARI gap still count as an abandon (the dialplan's answer stamp); a ringing call HitCall
lost track of on a contact's last attempt is retried once more; a call adopted after a
restart keeps its recording and counts in the day's pacing statistics; a preview
callback the agent skips waits the campaign's delay.

Sandbox customers +35841 TT SSSSS answer at once and hang up after TT seconds of talk;
+358403 SSSSSS ring and never answer.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.ari import Resync
from hitcall_pbx.core.states import AgentState
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.sandbox import SippAgents

from .conftest import wait_until

pytestmark = pytest.mark.asterisk


def _customer_events_lost(app: HitCall, lost: list[Any]) -> None:
    """From now on every event of a customer channel (an attempt id) is lost on the way to
    the dialer, as in an ARI WebSocket gap; agents' events still arrive."""
    assert app.ari is not None and app.dialer is not None
    dialer = app.dialer
    handlers = app.ari._handlers
    i = handlers.index(dialer.handle_event)

    async def filtered(ev: Any) -> None:
        channel = getattr(ev, "channel", None)
        if channel is not None and channel.id in dialer.calls:
            lost.append(ev)
            return
        await dialer.handle_event(ev)

    handlers[i] = filtered


async def _resync(app: HitCall) -> None:
    assert app.ari is not None and app.dialer is not None
    snap = Resync(
        channels=await app.ari.rest.list_channels(),
        bridges=await app.ari.rest.list_bridges(),
        reconnect=True,
        downtime_s=1.0,
    )
    await app.dialer.handle_resync(snap)


async def test_an_answer_and_hangup_inside_an_ari_gap_count_as_an_abandon(service_settings, sandbox, hangup_agents):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05, dialer_watchdog_s=None)) as app:
        pool = app.db.pool
        # The customer answers and hangs up after 2 s; nobody hears of either.
        cid, list_id = await create_campaign(
            pool, "gap-abandon", mode="progressive", wrap_up_s=0, numbers=["+358410201701"], **ALL_DAY
        )
        agent = await create_agent(pool, "1171", "agent171", [cid])
        lost: list[Any] = []
        with SippAgents(sandbox, ["agent171"], port=5371):
            await wait_until(lambda: agent in app.sessions.by_agent, timeout=15)
            _customer_events_lost(app, lost)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            (attempt_id,) = await wait_until(lambda: list(app.dialer.calls), timeout=10, interval=0.02)

            async def gone() -> bool:
                return attempt_id not in await app.ari.rest.channel_states()

            await wait_until(gone, timeout=15, interval=0.1)
            assert any(e.type == "StasisStart" for e in lost), "the answer was lost"
            assert any(e.type == "ChannelDestroyed" for e in lost), "the hangup was lost"
            assert app.dialer.calls[attempt_id].answered_at is None
            await pool.execute("UPDATE campaigns SET state = 'paused' WHERE id = $1", cid)
            await app.dialer.refresh_campaigns()
            await _resync(app)
            assert attempt_id not in app.dialer.calls
            await app.dialer.idle(5)
            await app.cdr.flush()
            row = await pool.fetchrow("SELECT * FROM all_attempts WHERE id = $1::uuid", attempt_id)
            assert row["outcome"] == "abandoned" and row["abandoned"], dict(row)
            assert row["answered_at"] is not None and row["answered_at"] >= row["created_at"]
            assert row["bridged_at"] is None
            assert app.dialer.stats[cid].today.abandoned == 1, "the pacing statistics count the abandon"
            events = await pool.fetch(
                "SELECT event_type FROM webhook_outbox WHERE subject = $1 ORDER BY id", f"attempt:{attempt_id}"
            )
            assert "call.abandoned" in [e["event_type"] for e in events]
            contact = await pool.fetchrow("SELECT * FROM contacts WHERE list_id = $1", list_id)
            assert contact["last_outcome"] == "abandoned"


async def test_a_ringing_call_lost_on_the_last_attempt_is_retried_once_more(service_settings, sandbox, hangup_agents):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05, dialer_watchdog_s=None)) as app:
        pool = app.db.pool
        cid, list_id = await create_campaign(
            pool,
            "lost-last-attempt",
            mode="progressive",
            wrap_up_s=0,
            max_attempts=1,
            retry_congestion_s=60,
            numbers=sim_numbers(3, 1, start=1711),  # rings, never answers
            **ALL_DAY,
        )
        agent = await create_agent(pool, "1172", "agent172", [cid])
        lost: list[Any] = []
        with SippAgents(sandbox, ["agent172"], port=5372):
            await wait_until(lambda: agent in app.sessions.by_agent, timeout=15)
            handlers = list(app.ari._handlers)
            _customer_events_lost(app, lost)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            (first,) = await wait_until(lambda: list(app.dialer.calls), timeout=10, interval=0.02)
            await wait_until(lambda: app.dialer.calls[first].originated_at, timeout=5, interval=0.02)
            # Asterisk loses the ringing call while ARI is away.
            await app.ari.rest.hangup(first)

            async def gone() -> bool:
                return first not in await app.ari.rest.channel_states()

            await wait_until(gone, timeout=10, interval=0.05)
            await _resync(app)
            app.ari._handlers[:] = handlers  # events flow again
            await app.journal.flush(5)
            contact = await pool.fetchrow("SELECT * FROM contacts WHERE list_id = $1", list_id)
            assert (contact["status"], contact["attempts"], contact["lost_attempts"]) == ("retry", 1, 1), dict(contact)
            assert contact["next_attempt_at"] > datetime.now(UTC) + timedelta(seconds=50), "the congestion delay"
            await pool.execute("UPDATE contacts SET next_attempt_at = now() WHERE list_id = $1", list_id)  # skip it

            # Dialled once more (attempt 2 of a campaign allowing 1); this one counts.
            second = await wait_until(
                lambda: next((c for c in app.dialer.calls if c != first), None), timeout=15, interval=0.05
            )
            await wait_until(lambda: app.dialer.calls[second].ringing_at, timeout=10, interval=0.05)
            await app.ari.rest.hangup(second)
            await wait_until(lambda: second not in app.dialer.calls, timeout=10, interval=0.05)
            await app.dialer.idle(5)
            await app.cdr.flush()
            rows = await pool.fetch("SELECT * FROM all_attempts WHERE campaign_id = $1 ORDER BY attempt_no", cid)
            assert [(r["attempt_no"], r["outcome"]) for r in rows] == [(1, "congestion"), (2, "no_answer")]
            assert "disconnected" in rows[0]["hangup_cause_txt"]
            contact = await pool.fetchrow("SELECT * FROM contacts WHERE list_id = $1", list_id)
            assert (contact["status"], contact["attempts"], contact["lost_attempts"]) == ("failed", 2, 1)


async def test_an_adopted_call_keeps_its_recording_and_counts_in_pacing(service_settings, sandbox, hangup_agents):
    options = Options(dialer_tick_s=0.05)
    async with HitCall(service_settings, options) as first:
        pool = first.db.pool
        cid, _ = await create_campaign(
            pool,
            "adopt-recorded",
            mode="progressive",
            wrap_up_s=0,
            record_calls=True,
            numbers=["+358410801731"],  # talks 8 s
            **ALL_DAY,
        )
        agent = await create_agent(pool, "1173", "agent173", [cid])
    with SippAgents(sandbox, ["agent173"], port=5373):
        async with HitCall(service_settings, options) as first:
            await wait_until(lambda: agent in first.sessions.by_agent, timeout=15)
            await first.db.pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            (call,) = await wait_until(
                lambda: [c for c in first.dialer.calls.values() if c.recording_id], timeout=15, interval=0.02
            )
            attempt_id, recording_id = call.channel_id, call.recording_id
            await first.journal.flush(5)

        async with HitCall(service_settings, options) as second:
            pool = second.db.pool
            await wait_until(lambda: attempt_id in second.dialer.calls, timeout=10, interval=0.05)
            adopted = second.dialer.calls[attempt_id]
            assert adopted.recording_id == recording_id, "the adopted call knows its recording"
            await wait_until(lambda: attempt_id not in second.dialer.calls, timeout=20, interval=0.1)
            await second.dialer.idle(10)
            assert second.recorder is not None
            await second.recorder.drain(10)
            await second.cdr.flush()
            row = await pool.fetchrow("SELECT * FROM all_attempts WHERE id = $1::uuid", attempt_id)
            assert row["outcome"] == "answered_human" and row["recording_id"] == recording_id, dict(row)
            rec = await pool.fetchrow("SELECT * FROM recordings WHERE id = $1", recording_id)
            assert rec is not None and rec["attempt_id"] == row["id"] and rec["size_bytes"] > 0
            # The connect happened today and is in no CDR the stats were seeded from.
            assert second.dialer.stats[cid].today.connected == 1


async def test_a_skipped_preview_callback_waits_the_campaigns_delay(service_settings, sandbox, hangup_agents):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, list_id = await create_campaign(
            pool, "callback-skip", mode="preview", wrap_up_s=0, callback_skip_delay_s=600, **ALL_DAY
        )
        agent = await create_agent(pool, "1174", "agent174", [cid])
        due = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
        callback = await pool.fetchval(
            "INSERT INTO contacts (list_id, phone_e164, status, attempts, callback_at, callback_agent_id) "
            "VALUES ($1, '+358410501741', 'callback', 1, $2, $3) RETURNING id",
            list_id,
            due,
            agent,
        )
        fresh = await pool.fetchval(
            "INSERT INTO contacts (list_id, phone_e164) VALUES ($1, '+358410501742') RETURNING id", list_id
        )
        with SippAgents(sandbox, ["agent174"], port=5374):
            await wait_until(lambda: agent in app.sessions.by_agent, timeout=15)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            offer = await wait_until(lambda: app.dialer.offers.get(agent), timeout=10, interval=0.05)
            assert offer.contact_id == callback
            skipped_at = datetime.now(UTC)
            await app.dialer.skip_offer(agent, "customer asked for later")
            row = await pool.fetchrow("SELECT * FROM contacts WHERE id = $1", callback)
            assert (row["status"], row["callback_agent_id"]) == ("callback", agent)
            assert row["callback_at"] >= skipped_at + timedelta(seconds=599), "postponed by the campaign's delay"
            skip = await pool.fetchrow(
                "SELECT decision, skip_reason FROM preview_offers WHERE contact_id = $1 ORDER BY id DESC", callback
            )
            assert (skip["decision"], skip["skip_reason"]) == ("skip", "customer asked for later")
            # The next offer is the other contact, not the callback again.
            started = time.monotonic()
            nxt = await wait_until(
                lambda: (o := app.dialer.offers.get(agent)) is not None and o is not offer and o,
                timeout=10,
                interval=0.05,
            )
            assert nxt.contact_id == fresh, "the skipped callback is not offered again at once"
            assert time.monotonic() - started < 10
            assert app.sessions.by_agent[agent].state is AgentState.RESERVED
