"""Inbound accounting on real Asterisk: a return call still up when the service stops is
not forgotten (its live row: adopted by the next process and finished with one complete
CDR, or closed as ``untracked`` when it ended meanwhile), and return calls reconcile with
the records Asterisk's cdr_csv wrote for them ([hitcall-inbound] tags the caller's
channel with the id of HitCall's CDR).

The callers are placed as in test_inbound_route: `Local/<line>@hitcall-inbound`, key 2."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from hitcall_pbx.app import HitCall
from hitcall_pbx.core.states import AgentState
from hitcall_pbx.demo.seed import create_agent, create_campaign
from hitcall_pbx.records.cdr import inbound_cdr_id
from hitcall_pbx.report import load_report
from hitcall_pbx.sandbox import SippAgents
from tests.asterisk_cdr import AsteriskCdrs, differences

from .conftest import wait_until
from .test_inbound_route import CALLER, LINE, _service, call_and_ask_for_agent, caller_app

pytestmark = pytest.mark.asterisk


async def _inbound_rows(app: HitCall) -> dict:
    assert app.cdr is not None and app.journal is not None
    await app.cdr.flush()
    await app.journal.flush(5)
    rows = await app.db.pool.fetch("SELECT * FROM call_attempts WHERE direction = 'inbound'")
    return {r["id"]: r for r in rows}


async def _live_rows(app: HitCall) -> dict:
    rows = await app.db.pool.fetch("SELECT * FROM live_attempts WHERE direction = 'inbound'")
    return {r["id"]: r for r in rows}


async def _ended_events(app: HitCall, attempt_id) -> list[dict]:
    rows = await app.db.pool.fetch(
        "SELECT payload FROM webhook_outbox WHERE event_type = 'call.ended' AND subject = $1", f"attempt:{attempt_id}"
    )
    return [r["payload"] for r in rows]


async def test_a_restart_mid_inbound_call_adopts_the_talking_caller_and_closes_the_gone_one(
    service_settings, sandbox, hangup_agents, tmp_path
):
    cdrs = AsteriskCdrs(sandbox, tmp_path)
    first = await _service(service_settings)
    phones = None
    try:
        pool = first.db.pool
        cid, list_id = await create_campaign(pool, "return-line", wrap_up_s=1, retention_cdr_months=12)
        contact = await pool.fetchval(
            "INSERT INTO contacts (list_id, phone_e164, name) VALUES ($1, $2, 'Maija') RETURNING id", list_id, CALLER
        )
        agent = await create_agent(pool, "1001", "agent1", [cid])
        phones = SippAgents(sandbox, ["agent1"], port=5271)
        phones.start()
        await wait_until(lambda: len(first.sessions.ready_agents(cid)) == 1, timeout=15)
        async with caller_app(service_settings) as caller:
            # One caller talks to the agent; a second one waits for an agent (music on hold).
            talking = await call_and_ask_for_agent(caller, first)
            assert first.inbound is not None
            await wait_until(lambda: first.inbound.calls[talking].bridged, timeout=10)
            waiting = await call_and_ask_for_agent(caller, first)
            await wait_until(lambda: first.inbound.calls[waiting].waiting, timeout=10)
            arrived = {c: first.inbound.calls[c].arrived_at for c in (talking, waiting)}
            bridged_at = first.inbound.calls[talking].bridged_at
            await first.journal.flush(5)
            live = await _live_rows(first)
            assert set(live) == {inbound_cdr_id(talking), inbound_cdr_id(waiting)}, "a live row from the arrival"
            assert live[inbound_cdr_id(talking)]["state"] == "bridged"
            assert live[inbound_cdr_id(talking)]["agent_id"] == agent
            assert live[inbound_cdr_id(waiting)]["state"] == "answered"

            # The service stops with both calls up; the waiting caller hangs up meanwhile.
            await first.close()
            stopped = datetime.now(UTC)
            await caller.rest.hangup(waiting.removesuffix("-2"))
            await caller.events_log.wait_for(
                "ChannelDestroyed", lambda e: e.channel.id == waiting.removesuffix("-2"), timeout=10
            )
            await asyncio.sleep(0.5)
            assert not await _inbound_rows_raw(service_settings), "no CDR while nobody follows the calls"

            second = await _service(service_settings)
            try:
                assert second.inbound is not None
                # The talking caller is adopted with its agent; the gone one is closed at once.
                await wait_until(lambda: talking in second.inbound.calls, timeout=15)
                call = second.inbound.calls[talking]
                assert call.bridged and call.agent_id == agent and call.arrived_at == arrived[talking]
                session = second.sessions.by_agent[agent]
                assert session.state is AgentState.ON_CALL and session.attempt_id == talking
                assert phones.running(), "the agent stayed logged in across the restart"
                await asyncio.sleep(1.0)  # still talking
                await caller.rest.hangup(talking.removesuffix("-2"))
                hung_up = datetime.now(UTC)
                await wait_until(lambda: session.state is not AgentState.ON_CALL, timeout=10)
                await wait_until(lambda: talking not in second.inbound.calls, timeout=10)
                rows = await _inbound_rows(second)

                assert set(rows) == {inbound_cdr_id(talking), inbound_cdr_id(waiting)}, "exactly one CDR per call"
                adopted, gone = rows[inbound_cdr_id(talking)], rows[inbound_cdr_id(waiting)]
                assert (adopted["direction"], adopted["outcome"], adopted["agent_id"], adopted["abandoned"]) == (
                    "inbound",
                    "answered_human",
                    agent,
                    False,
                )
                assert (adopted["campaign_id"], adopted["contact_id"], adopted["caller_number"]) == (
                    cid,
                    contact,
                    CALLER,
                )
                # The whole call: its arrival and bridge before the restart, its end after it.
                assert adopted["created_at"] == arrived[talking]
                assert abs(adopted["bridged_at"] - bridged_at) < timedelta(milliseconds=5)
                assert adopted["answered_at"] == adopted["bridged_at"]
                assert stopped < adopted["ended_at"] <= hung_up + timedelta(seconds=2)
                assert float(adopted["talk_s"]) == pytest.approx(
                    (adopted["ended_at"] - adopted["bridged_at"]).total_seconds(), abs=0.01
                )
                assert (gone["direction"], gone["outcome"], gone["abandoned"], gone["agent_id"]) == (
                    "inbound",
                    "untracked",
                    False,
                    None,
                )
                assert gone["created_at"] == arrived[waiting] and gone["bridged_at"] is None
                assert stopped < gone["ended_at"] < datetime.now(UTC)
                assert float(gone["ring_s"]) == pytest.approx(
                    (gone["ended_at"] - gone["created_at"]).total_seconds(), abs=0.01
                )
                assert "restart" in gone["hangup_cause_txt"]
                for row in (adopted, gone):
                    assert row["retention_until"] > row["created_at"] + timedelta(days=300)
                    [event] = await _ended_events(second, row["id"])
                    assert (event["direction"], event["outcome"]) == ("inbound", row["outcome"])
                assert not await _live_rows(second), "no live row left"
                # Asterisk's records agree: the adopted call's end, the untracked one's end not after HitCall's.
                results = await cdrs.reconcile_settled(second.db.pool)
                assert differences(results) == []
                assert sum(r.result.inbound for r in results) == 2
                [report] = await load_report(second.db.pool, datetime.now(UTC).date(), cid)
                assert (report.inbound.calls, report.inbound.connected, report.inbound.untracked) == (2, 1, 1)
            finally:
                await second.close()
    finally:
        if phones is not None:
            phones.stop()
        await first.close()


async def _inbound_rows_raw(settings) -> list:
    import asyncpg

    conn = await asyncpg.connect(settings.database_url)
    try:
        return list(await conn.fetch("SELECT id FROM call_attempts WHERE direction = 'inbound'"))
    finally:
        await conn.close()


async def test_return_calls_reconcile_with_asterisks_cdrs(service_settings, sandbox, hangup_agents, tmp_path):
    cdrs = AsteriskCdrs(sandbox, tmp_path)
    app = await _service(service_settings)
    try:
        pool = app.db.pool
        cid, list_id = await create_campaign(pool, "return-line", wrap_up_s=1)
        await pool.execute("INSERT INTO contacts (list_id, phone_e164, name) VALUES ($1, $2, 'Maija')", list_id, CALLER)
        agent = await create_agent(pool, "1001", "agent1", [cid])
        assert app.inbound is not None
        with SippAgents(sandbox, ["agent1"], port=5275):
            await wait_until(lambda: len(app.sessions.ready_agents(cid)) == 1, timeout=15)
            async with caller_app(service_settings) as caller:
                # Put through to the agent, talks a second, hangs up.
                talked = await call_and_ask_for_agent(caller, app)
                await wait_until(lambda: app.inbound.calls[talked].bridged, timeout=10)
                await asyncio.sleep(1.0)
                await caller.rest.hangup(talked.removesuffix("-2"))
                await wait_until(lambda: talked not in app.inbound.calls, timeout=10)
                # Served by the menu: hangs up while it plays.
                menu = f"t-in-menu{datetime.now(UTC).strftime('%H%M%S%f')}"
                await caller.rest.originate(
                    f"Local/{LINE}@hitcall-inbound",
                    menu,
                    app=caller.app,
                    caller_id=CALLER,
                    other_channel_id=f"{menu}-2",
                )
                await caller.events_log.wait_for("StasisStart", lambda e: e.channel.id == menu)
                await asyncio.sleep(1.5)
                await caller.rest.hangup(menu)
                # Waits for an agent (the agent is on a break) and hangs up.
                session = app.sessions.by_agent[agent]
                await wait_until(lambda: session.state is AgentState.READY, timeout=10)
                app.sessions.pause(agent, "meeting")
                waited = await call_and_ask_for_agent(caller, app)
                await asyncio.sleep(1.0)
                await caller.rest.hangup(waited.removesuffix("-2"))
                await wait_until(lambda: waited not in app.inbound.calls, timeout=10)

                async def menu_written() -> bool:
                    return bool(
                        await pool.fetchval(
                            "SELECT count(*) FROM call_attempts WHERE id = $1", inbound_cdr_id(f"{menu}-2")
                        )
                    )

                await wait_until(menu_written, timeout=10)
        rows = await _inbound_rows(app)
        outcomes = {k: r["outcome"] for k, r in rows.items()}
        assert outcomes == {
            inbound_cdr_id(talked): "answered_human",
            inbound_cdr_id(f"{menu}-2"): "self_service",
            inbound_cdr_id(waited): "abandoned",
        }
        assert not await _live_rows(app), "every live row retired with its CDR"

        results = await cdrs.reconcile_settled(app.db.pool)
        assert differences(results) == []
        assert sum(r.result.inbound for r in results) == 3
        assert sum(r.result.matched for r in results) == 3
        [report] = await load_report(pool, datetime.now(UTC).date(), cid)
        assert (report.inbound.calls, report.inbound.connected, report.inbound.abandoned) == (3, 1, 1)
        assert report.inbound.self_service == 1
    finally:
        await app.close()


async def test_a_caller_waiting_across_a_restart_queues_again_and_reaches_the_agent(
    service_settings, sandbox, hangup_agents
):
    first = await _service(service_settings)
    phones = None
    try:
        pool = first.db.pool
        cid, _ = await create_campaign(pool, "return-line", wrap_up_s=1)
        agent = await create_agent(pool, "1001", "agent1", [cid])
        phones = SippAgents(sandbox, ["agent1"], port=5279)
        phones.start()
        await wait_until(lambda: len(first.sessions.ready_agents(cid)) == 1, timeout=15)
        async with caller_app(service_settings) as caller:
            assert first.inbound is not None
            talking = await call_and_ask_for_agent(caller, first)
            await wait_until(lambda: first.inbound.calls[talking].bridged, timeout=10)
            waiting = await call_and_ask_for_agent(caller, first)
            await wait_until(lambda: first.inbound.calls[waiting].waiting, timeout=10)
            arrived = first.inbound.calls[waiting].arrived_at
            await first.close()

            second = await _service(service_settings)
            try:
                assert second.inbound is not None
                await wait_until(lambda: waiting in second.inbound.calls, timeout=15)
                assert second.inbound.calls[waiting].waiting, "queued again: the agent is busy"
                assert second.inbound.calls[waiting].arrived_at == arrived
                # The agent's first caller hangs up; after the wrap-up the agent takes the waiting one.
                await caller.rest.hangup(talking.removesuffix("-2"))
                await wait_until(lambda: second.inbound.calls[waiting].bridged, timeout=15)
                session = second.sessions.by_agent[agent]
                assert session.state is AgentState.ON_CALL and session.attempt_id == waiting
                await asyncio.sleep(1.0)
                await caller.rest.hangup(waiting.removesuffix("-2"))
                await wait_until(lambda: waiting not in second.inbound.calls, timeout=10)
                rows = await _inbound_rows(second)
                assert set(rows) == {inbound_cdr_id(talking), inbound_cdr_id(waiting)}, "exactly one CDR per call"
                row = rows[inbound_cdr_id(waiting)]
                assert (row["outcome"], row["agent_id"], row["created_at"]) == ("answered_human", agent, arrived)
                waited = (row["bridged_at"] - arrived).total_seconds()
                assert float(row["ring_s"]) == pytest.approx(waited, abs=0.01) and waited > 1.0
                assert float(row["talk_s"]) >= 0.9
                assert rows[inbound_cdr_id(talking)]["outcome"] == "answered_human"
                assert not await _live_rows(second), "no live row left"
            finally:
                await second.close()
    finally:
        if phones is not None:
            phones.stop()
        await first.close()
