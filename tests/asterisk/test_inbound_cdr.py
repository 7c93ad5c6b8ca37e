"""Inbound CDRs on real Asterisk: every caller the return-call line hands to the service
writes exactly one CDR (direction inbound) with its agent, times, outcome and retention
deadline, and a call.ended event; a caller who hangs up waiting is an inbound abandon that
leaves the outbound abandon rate (pacing stats, their seed, the campaign API, the report)
as it was.

The callers are placed as in test_inbound_route: `Local/<line>@hitcall-inbound`, key 2."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from hitcall_pbx.api.repos.campaigns import abandon_counts
from hitcall_pbx.app import HitCall
from hitcall_pbx.core.retention import RetentionPolicy, cdr_deadline
from hitcall_pbx.core.states import AgentState
from hitcall_pbx.demo.seed import create_agent, create_campaign
from hitcall_pbx.dialer.store import DialerStore
from hitcall_pbx.records.cdr import CdrRecord, inbound_cdr_id
from hitcall_pbx.report import load_report
from hitcall_pbx.sandbox import SippAgents

from .conftest import wait_until
from .test_inbound_route import CALLER, _service, call_and_ask_for_agent, caller_app

pytestmark = pytest.mark.asterisk

LINE_E164 = "+358201234567"  # the line the callers dial (test_inbound_route.LINE), in E.164


async def _inbound_rows(app: HitCall) -> list:
    assert app.cdr is not None and app.journal is not None
    await app.cdr.flush()
    await app.journal.flush(5)
    return list(await app.db.pool.fetch("SELECT * FROM call_attempts WHERE direction = 'inbound' ORDER BY created_at"))


async def _ended_events(app: HitCall, attempt_id: uuid.UUID) -> list[dict]:
    rows = await app.db.pool.fetch(
        "SELECT payload FROM webhook_outbox WHERE event_type = 'call.ended' AND subject = $1", f"attempt:{attempt_id}"
    )
    return [r["payload"] for r in rows]


async def test_a_caller_put_through_to_an_agent_writes_one_inbound_cdr(service_settings, sandbox, hangup_agents):
    app = await _service(service_settings)
    try:
        pool = app.db.pool
        cid, list_id = await create_campaign(pool, "return-line", wrap_up_s=2, retention_cdr_months=12)
        contact = await pool.fetchval(
            "INSERT INTO contacts (list_id, phone_e164, name) VALUES ($1, $2, 'Maija') RETURNING id", list_id, CALLER
        )
        agent = await create_agent(pool, "1001", "agent1", [cid])
        with SippAgents(sandbox, ["agent1"], port=5205):
            await wait_until(lambda: len(app.sessions.ready_agents(cid)) == 1, timeout=15)
            async with caller_app(service_settings) as caller:
                channel = await call_and_ask_for_agent(caller, app)
                assert app.inbound is not None
                await wait_until(lambda: channel in app.inbound.calls and app.inbound.calls[channel].bridged, 10)
                await asyncio.sleep(1.0)  # talking
                await caller.rest.hangup(channel.removesuffix("-2"))
                session = app.sessions.by_agent[agent]
                await wait_until(lambda: session.state is not AgentState.ON_CALL, timeout=10)
            rows = await _inbound_rows(app)
        assert len(rows) == 1, rows
        row = rows[0]
        assert row["id"] == inbound_cdr_id(channel)
        assert (row["direction"], row["outcome"], row["abandoned"], row["agent_id"]) == (
            "inbound",
            "answered_human",
            False,
            agent,
        )
        assert (row["campaign_id"], row["contact_id"], row["attempt_no"], row["mode"]) == (cid, contact, None, None)
        assert (row["caller_number"], row["caller_id"], row["dialled_number"]) == (CALLER, LINE_E164, None)
        created, bridged, ended = row["created_at"], row["bridged_at"], row["ended_at"]
        assert created <= bridged <= ended and row["answered_at"] == bridged
        assert ended - created < timedelta(seconds=30) and abs(created - datetime.now(UTC)) < timedelta(minutes=2)
        assert float(row["talk_s"]) >= 0.9 and float(row["ring_s"]) < 5
        assert row["retention_until"] == cdr_deadline(created, RetentionPolicy(cdr_months=12))
        # The record reads back as what the writer takes, and its call.ended event says inbound.
        assert CdrRecord.from_row(dict(row)).direction == "inbound"
        [event] = await _ended_events(app, row["id"])
        assert (event["direction"], event["outcome"], event["agent_id"], event["caller_number"]) == (
            "inbound",
            "answered_human",
            agent,
            CALLER,
        )
        assert await pool.fetchval("SELECT count(*) FROM call_attempts WHERE direction = 'outbound'") == 0
    finally:
        await app.close()


async def test_a_caller_who_hangs_up_waiting_is_an_inbound_abandon_outside_the_abandon_rate(
    service_settings, sandbox, hangup_agents
):
    app = await _service(service_settings, max_wait_s=4.0)
    try:
        pool = app.db.pool
        assert app.cdr is not None and app.dialer is not None and app.inbound is not None
        cid, _ = await create_campaign(pool, "return-line", retention_cdr_months=6)
        await create_agent(pool, "1001", "agent1", [cid])  # not logged in: nobody takes the callers
        # Today's outbound calls of the campaign: one abandoned, three put through (25 %).
        now = datetime.now(UTC) - timedelta(minutes=10)
        for outcome in ("abandoned", "answered_human", "answered_human", "answered_human"):
            app.cdr.submit(
                CdrRecord(
                    id=uuid.uuid4(),
                    campaign_id=cid,
                    dialled_number="+358409876543",
                    caller_id=LINE_E164,
                    mode="predictive",
                    created_at=now,
                    answered_at=now + timedelta(seconds=5),
                    bridged_at=now + timedelta(seconds=5.1) if outcome == "answered_human" else None,
                    ended_at=now + timedelta(seconds=60),
                    outcome=outcome,
                    abandoned=outcome == "abandoned",
                    retention_until=cdr_deadline(now, RetentionPolicy()),
                )
            )
        await app.cdr.flush()
        await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
        await wait_until(lambda: cid in app.dialer.pacing_stats(), timeout=10)

        async def rates() -> tuple[object, ...]:
            tallies = await DialerStore(pool, None).abandon_tallies(cid)  # type: ignore[arg-type]  # no hopper: only the abandon history is read
            async with pool.acquire() as conn:
                api = await abandon_counts(conn, cid, "UTC")
            [report] = await load_report(pool, datetime.now(UTC).date(), cid)
            return (
                app.dialer.pacing_stats()[cid].today_rate,
                sorted((t.abandoned, t.connected) for t in tallies.values()),
                (api["day_abandoned"], api["day_connected"]),
                (report.abandoned, report.connects, report.abandon_rate_day),
            )

        before = await rates()
        assert before[1:] == ([(1, 3)], (1, 3), (1, 3, 0.25)) and before[0] == pytest.approx(0.25)

        async with caller_app(service_settings) as caller:
            # The first caller waits (music on hold) and hangs up before anyone takes the call.
            gone = await call_and_ask_for_agent(caller, app)
            await wait_until(lambda: gone in app.inbound.calls and app.inbound.calls[gone].waiting, timeout=5)
            await asyncio.sleep(1.0)
            await caller.rest.hangup(gone.removesuffix("-2"))
            await wait_until(lambda: gone not in app.inbound.calls, timeout=10)
            # The second one waits out the limit and hears the message.
            message = await call_and_ask_for_agent(caller, app)
            await caller.events_log.wait_for(
                "ChannelDestroyed", lambda e: e.channel.id == message.removesuffix("-2"), timeout=30
            )
            await wait_until(lambda: message not in app.inbound.calls, timeout=10)
        rows = {r["id"]: r for r in await _inbound_rows(app)}
        assert set(rows) == {inbound_cdr_id(gone), inbound_cdr_id(message)}, "exactly one CDR per call"
        abandoned, no_agent = rows[inbound_cdr_id(gone)], rows[inbound_cdr_id(message)]
        assert (abandoned["outcome"], abandoned["abandoned"], abandoned["agent_id"], abandoned["bridged_at"]) == (
            "abandoned",
            True,
            None,
            None,
        )
        assert 0.9 <= float(abandoned["ring_s"]) < 4, "waited about a second, then hung up"
        assert (no_agent["outcome"], no_agent["abandoned"], no_agent["agent_id"]) == ("no_agent", False, None)
        assert float(no_agent["ring_s"]) >= 4.0, "the wait limit, then the message"
        for row in (abandoned, no_agent):
            assert (row["direction"], row["campaign_id"], row["caller_number"]) == ("inbound", cid, CALLER)
            assert row["created_at"] < row["ended_at"]
            assert row["retention_until"] == cdr_deadline(row["created_at"], RetentionPolicy(cdr_months=6))
            [event] = await _ended_events(app, row["id"])
            assert (event["direction"], event["outcome"]) == ("inbound", row["outcome"])

        # The outbound abandon rate is what it was: pacing, its seed, the API and the report.
        assert await rates() == before
        [report] = await load_report(pool, datetime.now(UTC).date(), cid)
        assert (report.inbound.calls, report.inbound.abandoned, report.inbound.no_agent) == (2, 1, 1)
    finally:
        await app.close()
