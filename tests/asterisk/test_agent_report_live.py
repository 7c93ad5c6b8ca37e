"""A real agent's shift on real Asterisk shows up in the agent productivity report: a SIPp
phone logs in, takes one call (a manual dial), goes through wrap-up, pauses and hangs up;
the report's time per state follows the agent's state changes and its call counts the CDR."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.core.agent_report import report_zone
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign
from hitcall_pbx.dialer.manual import ManualTarget
from hitcall_pbx.records.journal import set_attempt_disposition
from hitcall_pbx.report.agents import load_agent_report
from hitcall_pbx.sandbox import SippAgents

from .conftest import wait_until

pytestmark = pytest.mark.asterisk
TALK_NUMBER = "+358410300001"  # answers at once, hangs up after 3 s of talk


async def test_an_agents_shift_shows_up_in_the_agent_report(service_settings, sandbox, hangup_agents):
    zone = report_zone(None)
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, _ = await create_campaign(pool, "shift", state="paused", wrap_up_s=2, **ALL_DAY)
        agent = await create_agent(pool, "1071", "agent71", [cid], name="Shift Agent")
        with SippAgents(sandbox, ["agent71"], port=5271):
            await wait_until(lambda: agent in app.sessions.by_agent, timeout=15)
            logged_in = time.monotonic()
            await asyncio.sleep(1.0)  # ready
            attempt = await app.dialer.manual.dial(agent, ManualTarget(cid, TALK_NUMBER))
            await wait_until(lambda: app.sessions.get(agent).state.value == "on_call", timeout=10)
            await wait_until(lambda: app.sessions.get(agent).state.value == "wrap_up", timeout=10)
            await wait_until(lambda: app.sessions.get(agent).state.value == "ready", timeout=5)
            app.sessions.pause(agent, "lunch")
            await asyncio.sleep(1.5)
            # The phone hangs up: the agent is logged out.
            await app.ari.rest.hangup(app.sessions.get(agent).channel_id)
            await wait_until(lambda: agent not in app.sessions.by_agent, timeout=10)
        shift_s = time.monotonic() - logged_in
        await app.sessions.drain()
        await app.dialer.idle(5)
        await app.cdr.flush()
        # Logging out closes the agent's open state interval (logged-out time has no rows).
        await wait_until(
            lambda: pool.fetchval(
                "SELECT count(*) = 0 FROM agent_state_log WHERE agent_id = $1 AND ended_at IS NULL", agent
            ),
            timeout=10,
        )
        assert await set_attempt_disposition(pool, attempt.id, agent, "sale")

        cdr = await pool.fetchrow("SELECT * FROM call_attempts WHERE id = $1", attempt.id)
        log = await pool.fetch("SELECT * FROM agent_state_log WHERE agent_id = $1 ORDER BY started_at, id", agent)
        assert [r["state"] for r in log] == [
            "ready",
            "reserved",
            "on_call",
            "wrap_up",
            "ready",
            "paused",
        ]
        day = log[0]["started_at"].astimezone(zone).date()
        (report,) = await load_agent_report(pool, day, zone, now=datetime.now(UTC))

    spans = {r["state"]: 0.0 for r in log}
    for r in log:
        spans[r["state"]] += (r["ended_at"] - r["started_at"]).total_seconds()
    assert (report.agent_id, report.name, report.number) == (agent, "Shift Agent", "1071")
    assert report.logged_in_s == pytest.approx(sum(spans.values()), abs=1e-3)
    assert report.logged_in_s == pytest.approx(shift_s, abs=1.0), "logged-in time is the shift's wall time"
    assert report.talk_s == pytest.approx(float(cdr["talk_s"]), abs=0.5) and 2.0 < report.talk_s < 5.0
    assert report.wrap_up_s == pytest.approx(2.0, abs=0.5)
    assert report.ready_s == pytest.approx(spans["ready"], abs=1e-3) and report.ready_s >= 1.0
    assert report.pause_s.keys() == {"lunch"} and report.paused_s == pytest.approx(1.5, abs=0.7)
    assert (report.calls, report.connects, report.dispositions) == (1, 1, {"sale": 1})
    assert report.average_handle_s == pytest.approx(report.talk_s + report.wrap_up_s)
