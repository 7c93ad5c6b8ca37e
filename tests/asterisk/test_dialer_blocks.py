"""Pre-dial blocks on the service's own path: DNC (global and campaign) and the calling
window in the callee's time zone. A blocked contact is never dialled and the block
is counted in dial_blocks."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.sandbox import SippAgents

from .conftest import wait_until

pytestmark = pytest.mark.asterisk


async def test_dnc_and_calling_window_block_dials(service_settings, sandbox, hangup_agents):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        dnc_global, dnc_campaign, allowed = sim_numbers(9, 3, start=400)
        cid, list_id = await create_campaign(
            pool, "blocks-dnc", mode="progressive", wrap_up_s=0, numbers=[dnc_global, dnc_campaign, allowed], **ALL_DAY
        )
        # Open every day but today (callee's local time, Finland from +358): the next opening is tomorrow 00:00.
        helsinki = ZoneInfo("Europe/Helsinki")
        today = datetime.now(helsinki).isoweekday()
        closed, closed_list = await create_campaign(
            pool,
            "blocks-window",
            mode="progressive",
            wrap_up_s=0,
            numbers=sim_numbers(9, 2, start=410),
            window_start=time(0, 0),
            window_end=time(23, 59, 59),
            window_days=[d for d in range(1, 8) if d != today],
        )
        await pool.execute("INSERT INTO dnc_entries (phone_e164, source) VALUES ($1, 'manual')", dnc_global)
        await pool.execute(
            "INSERT INTO dnc_entries (phone_e164, campaign_id, source) VALUES ($1, $2, 'manual')", dnc_campaign, cid
        )
        await create_agent(pool, "1031", "agent31", [cid, closed])
        with SippAgents(sandbox, ["agent31"], port=5231):
            await wait_until(lambda: len(app.sessions.by_agent) == 1, timeout=15)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = ANY($1::bigint[])", [cid, closed])

            async def settled():
                return await pool.fetchval(
                    """SELECT bool_and(status IN ('done', 'dnc') OR coalesce(next_attempt_at > now(), false))
                       FROM contacts"""
                )

            await wait_until(settled, timeout=20, interval=0.25)
            await pool.execute("UPDATE campaigns SET state = 'paused'")
            await app.dialer.idle(timeout=10)
            await app.cdr.flush()

        dialled = {r["dialled_number"] for r in await pool.fetch("SELECT dialled_number FROM all_attempts")}
        assert dialled == {allowed}, "only the allowed contact was dialled"
        status = {r["phone_e164"]: r["status"] for r in await pool.fetch("SELECT phone_e164, status FROM contacts")}
        assert status[dnc_global] == "dnc" and status[dnc_campaign] == "dnc" and status[allowed] == "done"
        blocks = {(r["campaign_id"], r["reason"]): r["blocked"] for r in await pool.fetch("SELECT * FROM dial_blocks")}
        assert blocks[(cid, "dnc_global")] == 1 and blocks[(cid, "dnc_campaign")] == 1
        assert blocks[(closed, "outside_window")] == 2
        opening = datetime.combine(datetime.now(helsinki).date() + timedelta(days=1), time(0, 0), helsinki)
        waits = await pool.fetch(
            "SELECT status, next_attempt_at, attempts FROM contacts WHERE list_id = $1", closed_list
        )
        assert all(r["status"] == "new" and r["attempts"] == 0 for r in waits)
        assert all(r["next_attempt_at"] == opening.astimezone(UTC) for r in waits), [
            r["next_attempt_at"] for r in waits
        ]
