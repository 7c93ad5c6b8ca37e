"""Bad input to the engine's service API and to the stored campaign gets a typed error
and changes nothing."""

from __future__ import annotations

import asyncpg
import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.demo.seed import ALL_DAY, add_contacts, create_agent, create_campaign, sim_numbers
from hitcall_pbx.errors import NotFound

pytestmark = pytest.mark.asterisk


async def test_bad_input_is_refused_and_changes_nothing(service_settings, sandbox):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, list_id = await create_campaign(
            pool, "bad-input", mode="preview", numbers=sim_numbers(9, 1, 800), **ALL_DAY
        )
        agent = await create_agent(pool, "1071", "agent71", [cid])  # never logs in

        async def snapshot():
            return [
                await pool.fetch(f"SELECT * FROM {t} ORDER BY 1")
                for t in (
                    "campaigns",
                    "contacts",
                    "live_attempts",
                    "call_attempts",
                    "preview_offers",
                    "agent_state_log",
                    "agents",
                )
            ]

        before = await snapshot()
        for call in (
            lambda: app.dialer.accept_offer(agent),
            lambda: app.dialer.accept_offer(999_999),
            lambda: app.dialer.skip_offer(agent, "x"),
            lambda: app.dialer.set_disposition(agent, "sale"),
            lambda: app.dialer.hangup_call("00000000-0000-0000-0000-000000000000"),
        ):
            with pytest.raises(NotFound) as exc:
                await call()
            assert exc.value.details
        for call in (
            lambda: app.sessions.pause(agent, "lunch"),
            lambda: app.sessions.unpause(agent),
            lambda: app.sessions.end_wrap(agent),
            lambda: app.sessions.get(999_999),
        ):
            with pytest.raises(NotFound) as exc:
                call()
            assert exc.value.details["agent_id"] in (agent, 999_999)

        # The schema refuses a ring timeout under 15 s and numbers that are not E.164.
        with pytest.raises(asyncpg.CheckViolationError, match="ring_timeout_s"):
            await create_campaign(pool, "too-short", ring_timeout_s=10, **ALL_DAY)
        with pytest.raises(asyncpg.CheckViolationError, match="phone_e164"):
            async with pool.acquire() as conn, conn.transaction():
                await add_contacts(conn, list_id, [sim_numbers(9, 1, 801)[0], "040 123 4567"])
        with pytest.raises(asyncpg.CheckViolationError, match="caller_id"):
            await pool.execute("UPDATE campaigns SET caller_id = '0401234567' WHERE id = $1", cid)
        assert await snapshot() == before
