"""`hitcall serve` killed with SIGKILL while return calls are up, then started again: a
caller talking to an agent is adopted by the new process and ends with one complete CDR;
a caller who hung up while no process ran, and one whose FastAGI menu died with the
process, each get one CDR with outcome untracked. Asterisk's own CDRs agree."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from hitcall_pbx.ari import AriNotFound
from hitcall_pbx.demo.seed import create_agent, create_campaign
from hitcall_pbx.records.cdr import inbound_cdr_id
from hitcall_pbx.sandbox import SippAgents
from hitcall_pbx.store.db import create_pool
from tests.asterisk.test_inbound_route import AGI_PORT, CALLER, LINE, caller_app
from tests.asterisk_cdr import differences
from tests.live import wait_until

from .harness import report
from .test_sigkill import ServeProcess, serve_env

pytestmark = pytest.mark.asterisk


async def _live(pool: asyncpg.Pool, channel: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM live_attempts WHERE id = $1", inbound_cdr_id(channel))


async def _call(caller, *, press_2: bool) -> str:
    """Call the return-call line (pressing 2 until the menu routes to an agent); the id of
    the channel the service sees."""
    cid = f"t-in-{uuid.uuid4().hex[:10]}"
    await caller.rest.originate(
        f"Local/{LINE}@hitcall-inbound", cid, app=caller.app, caller_id=CALLER, other_channel_id=f"{cid}-2", timeout=10
    )
    await caller.events_log.wait_for("StasisStart", lambda e: e.channel.id == cid)
    line = f"{cid}-2"
    if not press_2:
        return line
    for _ in range(40):
        with contextlib.suppress(AriNotFound):
            if await caller.rest.get_variable(line, "HITCALL_ROUTE") == "agent":
                return line
        with contextlib.suppress(AriNotFound):
            await caller.rest.send_dtmf(cid, "2")
        await asyncio.sleep(0.5)
    raise AssertionError("the return-call line did not act on key 2")


async def test_sigkill_mid_inbound_calls_then_restart(
    product_logging, service_dsn, service_settings, sandbox, hangup_agents, tmp_path, asterisk_cdrs
):
    env = serve_env(service_dsn, tmp_path / "data", agi_port=AGI_PORT)  # the sandbox dialplan's FastAGI address
    pool = await create_pool(service_dsn, min_size=1, max_size=3)
    first = ServeProcess(env, tmp_path / "serve-1.log")
    second = ServeProcess(env, tmp_path / "serve-2.log")
    phones = SippAgents(sandbox, ["agent191"], port=5291)
    try:
        cid, list_id = await create_campaign(pool, "return-line", wrap_up_s=1, retention_cdr_months=12)
        await pool.execute("INSERT INTO contacts (list_id, phone_e164, name) VALUES ($1, $2, 'Maija')", list_id, CALLER)
        agent = await create_agent(pool, "1191", "agent191", [cid])

        first.start()
        await wait_until(first.ready, timeout=30, interval=0.1)
        phones.start()
        await wait_until(lambda: agent_state_is(pool, agent, "ready"), timeout=15)
        async with caller_app(service_settings) as caller:
            talking = await _call(caller, press_2=True)  # put through to the agent
            await wait_until(lambda: _state_is(pool, talking, "bridged"), timeout=15)
            waiting = await _call(caller, press_2=True)  # no agent free: music on hold
            await wait_until(lambda: _in_stasis(caller, waiting), timeout=15)  # the router has it
            await wait_until(lambda: _state_is(pool, waiting, "answered"), timeout=15)
            in_menu = await _call(caller, press_2=False)  # listening to the menu
            await wait_until(lambda: _state_is(pool, in_menu, "answered"), timeout=15)
            before = {c: await _live(pool, c) for c in (talking, waiting, in_menu)}

            first.kill(signal.SIGKILL)
            killed_at = time.monotonic()
            killed = datetime.now(UTC)
            await first.wait(timeout=5)
            # The waiting caller hangs up while no process runs; the menu's caller is hung up
            # by the dialplan when its FastAGI connection dies.
            await caller.rest.hangup(waiting.removesuffix("-2"))
            await caller.events_log.wait_for(
                "ChannelDestroyed", lambda e: e.channel.id == in_menu.removesuffix("-2"), timeout=15
            )
            assert not await pool.fetchval("SELECT count(*) FROM call_attempts WHERE direction = 'inbound'")

            second.start()
            started_at = time.monotonic()
            await wait_until(second.ready, timeout=30, interval=0.05)

            async def closed() -> bool:
                return await pool.fetchval("SELECT count(*) = 2 FROM call_attempts WHERE direction = 'inbound'")

            await wait_until(closed, timeout=15, interval=0.05)
            recovered_s = time.monotonic() - started_at
            assert await _live(pool, talking) is not None, "the talking caller is followed, not closed"
            await wait_until(lambda: agent_state_is(pool, agent, "on_call"), timeout=10)
            await asyncio.sleep(1.0)
            await caller.rest.hangup(talking.removesuffix("-2"))
            hung_up = datetime.now(UTC)

            async def all_written() -> bool:
                return await pool.fetchval("SELECT count(*) = 3 FROM call_attempts WHERE direction = 'inbound'")

            await wait_until(all_written, timeout=15)
        second.kill(signal.SIGTERM)
        assert await second.wait(timeout=40) == 0
        assert phones.running(), "the agent's phone stayed up across the kill"

        rows = {r["id"]: r for r in await pool.fetch("SELECT * FROM call_attempts WHERE direction = 'inbound'")}
        assert set(rows) == {inbound_cdr_id(c) for c in (talking, waiting, in_menu)}, "exactly one CDR per call"
        adopted, gone, menu = (rows[inbound_cdr_id(c)] for c in (talking, waiting, in_menu))
        assert (adopted["outcome"], adopted["agent_id"], adopted["campaign_id"]) == ("answered_human", agent, cid)
        assert adopted["created_at"] == before[talking]["created_at"]
        assert adopted["bridged_at"] == before[talking]["bridged_at"] == adopted["answered_at"]
        assert killed < adopted["ended_at"] <= hung_up + timedelta(seconds=2)
        for row, was in ((gone, before[waiting]), (menu, before[in_menu])):
            assert (row["outcome"], row["abandoned"], row["agent_id"], row["bridged_at"]) == (
                "untracked",
                False,
                None,
                None,
            )
            assert row["created_at"] == was["created_at"] and row["ended_at"] > killed
            assert (row["caller_number"], row["campaign_id"]) == (CALLER, cid)
        assert menu["created_at"] > gone["created_at"], "the menu's row: created when the menu had the caller"
        assert not await pool.fetchval("SELECT count(*) FROM live_attempts"), "no live row left"
        events = await pool.fetch(
            "SELECT subject, payload FROM webhook_outbox WHERE event_type = 'call.ended' ORDER BY id"
        )
        assert sorted(e["subject"] for e in events) == sorted(f"attempt:{i}" for i in rows)
        results = await asterisk_cdrs.reconcile_settled(pool)
        report(
            "inbound_sigkill",
            injected="hitcall serve killed with SIGKILL with return calls up (talking, waiting, in the menu)",
            restart_to_untracked_closed_s=round(recovered_s, 3),
            kill_to_restart_s=round(started_at - killed_at, 3),
            outcomes={str(k): r["outcome"] for k, r in rows.items()},
            reconcile_differences=differences(results),
        )
        assert differences(results) == []
        assert sum(r.result.inbound for r in results) == 3
    finally:
        first.stop()
        second.stop()
        phones.stop()
        await pool.close()


async def agent_state_is(pool: asyncpg.Pool, agent: int, state: str) -> bool:
    return await pool.fetchval("SELECT state FROM agents WHERE id = $1", agent) == state


async def _state_is(pool: asyncpg.Pool, channel: str, state: str) -> bool:
    row = await _live(pool, channel)
    return row is not None and row["state"] == state


async def _in_stasis(caller, channel: str) -> bool:
    return (await caller.rest.get_channel(channel)).dialplan.app_name == "Stasis"
