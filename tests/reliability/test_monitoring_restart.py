"""Asterisk restarted (a clean `core stop now`, and a SIGKILL crash where no event arrives)
while a supervisor whispers to an agent on a live call: after the restart nothing is stuck
(no live monitoring session, no supervisor phone session, no snoop channel, no live call),
the monitoring session is stored ended with its end time, its end is audited and sent as
a webhook event, and the call's CDR is complete.

The service restarted (a process that stops without undoing anything, as a killed one
would) while a supervisor listens or barges: the next process ends the stored session
(service_restart), hangs up the snoop, takes the barging phone out of the call's bridge,
adopts the agent's phone (not the supervisor's) with its call and the supervisor's phone
back in its own holding bridge, and the call ends with one complete CDR.

After each fault `hitcall cdr reconcile` compares the call with Asterisk's own record: no
difference, except after the crash, where Asterisk never wrote the record of the call that
was up when it died (missing_in_asterisk, and nothing else).

It restarts the shared sandbox; the session fixture keeps holding it."""

from __future__ import annotations

import asyncio
import time

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.auth import Actor
from hitcall_pbx.core.monitoring import MonitorMode
from hitcall_pbx.core.retention import add_months
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.sandbox import SippAgents
from tests.live import wait_until

from .harness import crash_asterisk, reconcile_with_asterisk, report, stop_asterisk

pytestmark = pytest.mark.asterisk
ACTOR = Actor("sup-restart", "supervisor")


@pytest.mark.parametrize("how", ["stop", "crash"])
async def test_asterisk_restart_during_monitoring(how, service_settings, sandbox, hangup_agents, asterisk_cdrs):
    phones = SippAgents(sandbox, ["agent191", "agent192"], port=5521)
    try:
        async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
            pool = app.db.pool
            cid, _ = await create_campaign(
                pool, "monitor-restart", mode="progressive", numbers=sim_numbers(1, 1, start=960), **ALL_DAY
            )
            agent = await create_agent(pool, "1191", "agent191", [cid])
            phone = await create_agent(pool, "1192", "agent192", [cid])
            user = await pool.fetchval(
                "INSERT INTO users (username, role) VALUES ('sup-restart', 'supervisor') RETURNING id"
            )
            await pool.execute("UPDATE agents SET user_id = $2 WHERE id = $1", phone, user)
            phones.start()
            await wait_until(
                lambda: agent in app.sessions.by_agent and app.sessions.supervisor_of_user(user) is not None,
                timeout=15,
            )
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            await wait_until(lambda: any(c["bridged_at"] for c in app.dialer.live_calls()), timeout=15)
            call_id = app.dialer.live_calls()[0]["attempt_id"]
            session = await app.monitor.start_session(
                user_id=user,
                username="sup-restart",
                role="supervisor",
                attempt_id=call_id,
                mode=MonitorMode.WHISPER,
                actor=ACTOR,
            )
            assert session["mode"] == "whisper" and app.monitor.live

            stopped_at = time.monotonic()
            await asyncio.to_thread(crash_asterisk if how == "crash" else stop_asterisk, sandbox)
            phones.stop()  # Asterisk never sent them a BYE: the SIPp calls are dead
            await wait_until(lambda: not app.ari.connected.is_set(), timeout=5, interval=0.01)
            reconnects = app.ari.stats.reconnects
            await asyncio.to_thread(sandbox.start)
            await wait_until(
                lambda: app.ari.stats.reconnects > reconnects and app.ari.connected.is_set(), timeout=10, interval=0.01
            )
            await wait_until(lambda: not app.monitor.live and call_id not in app.dialer.calls, timeout=10)
            recovered_s = time.monotonic() - stopped_at
            await app.dialer.idle(timeout=10)
            await app.cdr.flush()
            await app.sessions.drain()
            snoops = [c.id for c in await app.ari.rest.list_channels() if c.id.startswith("hitcall-snoop-")]
            stuck = {
                "monitoring": list(app.monitor.live),
                "supervisor_phones": list(app.sessions.supervisors),
                "agents": list(app.sessions.by_agent),
                "calls": list(app.dialer.calls),
                "snoop_channels": snoops,
            }
            row = await pool.fetchrow("SELECT * FROM monitoring_sessions WHERE id = $1", session["id"])
            audit = [
                r["action"]
                for r in await pool.fetch(
                    "SELECT action FROM audit_log WHERE object_type = 'monitoring_session' AND object_id = $1 "
                    "ORDER BY id",
                    str(session["id"]),
                )
            ]
            events = [
                r["event_type"]
                for r in await pool.fetch(
                    "SELECT event_type FROM webhook_outbox WHERE event_type LIKE 'monitoring.%' ORDER BY id"
                )
            ]
            cdr = await pool.fetchrow("SELECT * FROM all_attempts WHERE id = $1::uuid", call_id)
            reconciled = await reconcile_with_asterisk(pool, asterisk_cdrs)
        report(
            f"monitoring_asterisk_{how}",
            injected={
                "stop": "Asterisk stopped (core stop now) and started again while a supervisor whispered on a call",
                "crash": "Asterisk killed (SIGKILL) and started again while a supervisor whispered on a call",
            }[how],
            recovered_s=round(recovered_s, 3),
            stuck=stuck,
            monitoring_end_reason=row["end_reason"] if row else None,
            cdr_outcome=cdr["outcome"] if cdr else None,
            reconcile=reconciled,
        )
        assert stuck == {"monitoring": [], "supervisor_phones": [], "agents": [], "calls": [], "snoop_channels": []}
        assert row is not None and row["ended_at"] is not None and row["ended_at"] >= row["started_at"], row
        assert row["end_reason"] in ("call_ended", "supervisor_gone", "asterisk_lost"), row["end_reason"]
        # The monitoring leg's retention deadline: the campaign's CDR retention (24 months by default).
        assert row["retention_until"] == add_months(row["started_at"], 24), row
        assert audit == ["monitoring.started", "monitoring.ended"], audit
        assert events == ["monitoring.started", "monitoring.ended"], events
        assert cdr is not None and cdr["state"] == "ended" and cdr["outcome"] == "answered_human", cdr
        assert cdr["ended_at"] is not None and cdr["bridged_at"] is not None and cdr["agent_id"] == agent
        # A clean stop hangs the call up and writes its record; a crash takes it with it.
        differences = {k: v for k, v in reconciled["by_kind"].items() if v}
        assert differences == ({"missing_in_asterisk": [call_id]} if how == "crash" else {}), reconciled
        assert reconciled["matched"] == (0 if how == "crash" else 1), reconciled
    finally:
        phones.stop()


@pytest.mark.parametrize("mode", [MonitorMode.LISTEN, MonitorMode.BARGE])
async def test_service_restart_during_monitoring(mode, service_settings, sandbox, hangup_agents, asterisk_cdrs):
    phones = SippAgents(sandbox, ["agent193", "agent194"], port=5531)
    try:
        first = HitCall(service_settings, Options(dialer_tick_s=0.05))
        await first.start()
        try:
            pool = first.db.pool
            cid, _ = await create_campaign(
                pool, f"monitor-svc-{mode}", mode="progressive", numbers=sim_numbers(1, 1, start=970), **ALL_DAY
            )
            agent = await create_agent(pool, "1193", "agent193", [cid])
            phone = await create_agent(pool, "1194", "agent194", [cid])
            user = await pool.fetchval(
                "INSERT INTO users (username, role) VALUES ('sup-svc', 'supervisor') RETURNING id"
            )
            await pool.execute("UPDATE agents SET user_id = $2 WHERE id = $1", phone, user)
            phones.start()
            await wait_until(
                lambda: agent in first.sessions.by_agent and first.sessions.supervisor_of_user(user) is not None,
                timeout=15,
            )
            agent_channel = first.sessions.by_agent[agent].channel_id
            sup_channel = first.sessions.supervisor_of_user(user).channel_id
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            await wait_until(lambda: any(c["bridged_at"] for c in first.dialer.live_calls()), timeout=15)
            call_id = first.dialer.live_calls()[0]["attempt_id"]
            session = await first.monitor.start_session(
                user_id=user, username="sup-svc", role="supervisor", attempt_id=call_id, mode=mode, actor=ACTOR
            )
        finally:
            first.monitor.live.clear()  # the process goes away without undoing the monitoring
            await first.close()

        async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
            await wait_until(lambda: call_id in app.dialer.calls and app.sessions.supervisors, timeout=10)
            pool = app.db.pool
            adopted = app.sessions.by_agent[agent]
            sup = app.sessions.supervisor_of_user(user)
            call_bridge = await app.ari.rest.get_bridge(f"hitcall-agent-{agent}")
            home = await app.ari.rest.get_bridge(f"hitcall-supervisor-{phone}")
            snoops = [c.id for c in await app.ari.rest.list_channels() if c.id.startswith("hitcall-snoop-")]
            row = await pool.fetchrow("SELECT * FROM monitoring_sessions WHERE id = $1", session["id"])
            # The call goes on under the new process and ends with one complete CDR.
            await app.dialer.hangup_call(call_id)
            await wait_until(lambda: call_id not in app.dialer.calls, timeout=10)
            await app.dialer.idle(timeout=10)
            await app.cdr.flush()
            cdr = await pool.fetchrow("SELECT * FROM all_attempts WHERE id = $1::uuid", call_id)
            reconciled = await reconcile_with_asterisk(pool, asterisk_cdrs)
            audit = [
                r["action"]
                for r in await pool.fetch(
                    "SELECT action FROM audit_log WHERE object_type = 'monitoring_session' ORDER BY id"
                )
            ]
        report(
            f"monitoring_service_restart_{mode}",
            injected=f"the service stopped without undoing a supervisor's {mode} session and started again",
            end_reason=row["end_reason"],
            snoops_left=snoops,
            call_bridge=sorted(call_bridge.channels),
            reconcile=reconciled,
        )
        assert adopted.channel_id == agent_channel and sup is not None and sup.channel_id == sup_channel
        assert sup_channel not in call_bridge.channels and agent_channel in call_bridge.channels
        assert len(call_bridge.channels) == 2  # the agent's phone and the customer
        assert home.channels == [sup_channel] and snoops == []
        assert row["end_reason"] == "service_restart" and row["ended_at"] >= row["started_at"], row
        assert audit == ["monitoring.started", "monitoring.ended"], audit
        assert cdr["state"] == "ended" and cdr["outcome"] == "answered_human" and cdr["agent_id"] == agent, cdr
        assert reconciled["differences"] == [] and reconciled["matched"] == 1, reconciled
    finally:
        phones.stop()
