"""Failover between two nodes on real Asterisk and PostgreSQL: two `hitcall serve` processes
(node-a, node-b) for the same pool and database, a progressive campaign with a SIPp agent.
node-a holds the pool and puts a customer through to the agent; node-b serves the API and
waits. node-a is killed with SIGKILL: node-b takes the pool once node-a's lease lapsed,
adopts the call still talking (it ends with one complete CDR: talk time, outcome), dials
nothing twice (checked in the CDRs and in Asterisk's own cdr-csv) and goes on dialling the
campaign.

Sandbox customers +35841 TT SSSSS answer at once and hang up after TT seconds of talk.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.ari import AriClient
from hitcall_pbx.sandbox import SippAgents
from hitcall_pbx.settings import SANDBOX_ARI_PASSWORD, SANDBOX_ARI_USER
from hitcall_pbx.store.db import create_pool
from tests.asterisk_cdr import AsteriskCdrs
from tests.reliability.harness import (
    ChannelObserver,
    attempts,
    live_campaign,
    loss_and_duplicates,
    quick_calls,
    reconcile_with_asterisk,
    report,
    run_campaign,
    talkers,
    wait_settled,
)
from tests.reliability.test_sigkill import ServeProcess, serve_env

from ..live import ARI_URL, wait_until

pytestmark = pytest.mark.asterisk

LEASE_S = 5.0
AGENT = "agent191"
TALK_S = 25  # the first customer talks this long: through the kill and the takeover
MORE = 5  # quick customers node-b dials after the takeover


@pytest.fixture
async def observer(sandbox) -> AsyncIterator[ChannelObserver]:
    obs = await ChannelObserver().start()
    try:
        yield obs
    finally:
        await obs.close()


async def test_kill_9_the_node_that_holds_the_pool_and_the_other_takes_over(
    service_dsn, sandbox, hangup_agents, observer, tmp_path
):
    cdrs = AsteriskCdrs(sandbox, tmp_path)
    pool = await create_pool(service_dsn, min_size=1, max_size=3)
    a_env = serve_env(service_dsn, tmp_path / "a") | {"HITCALL_NODE_ID": "node-a", "HITCALL_NODE_LEASE_S": str(LEASE_S)}
    b_env = serve_env(service_dsn, tmp_path / "b") | {"HITCALL_NODE_ID": "node-b", "HITCALL_NODE_LEASE_S": str(LEASE_S)}
    node_a = ServeProcess(a_env, tmp_path / "node-a.log")
    node_b = ServeProcess(b_env, tmp_path / "node-b.log")
    phones = SippAgents(sandbox, [AGENT], port=5291)
    try:
        cid, list_id = await live_campaign(
            pool,
            "failover",
            agents=[AGENT],
            numbers=talkers(1, TALK_S, 91001) + quick_calls(MORE, 91100),
            first_agent_number=1191,
        )

        async def holder() -> str | None:
            return await pool.fetchval("SELECT node_id FROM leases WHERE name = 'pool:main' AND lease_until > now()")

        async def agent_ready() -> bool:
            return await pool.fetchval("SELECT state = 'ready' FROM agents WHERE endpoint = $1", AGENT) or False

        node_a.start()
        await wait_until(node_a.ready, timeout=30, interval=0.1)
        assert await holder() == "node-a"
        phones.start()
        await wait_until(agent_ready, timeout=15)
        node_b.start()

        async def b_serving() -> bool:
            assert node_b.proc is not None and node_b.proc.poll() is None, f"node-b exited; see {node_b.log_path}"
            try:
                async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{node_b.port}/healthz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until(b_serving, timeout=30, interval=0.1)
        assert await pool.fetchval("SELECT lease_until > now() FROM nodes WHERE node_id = 'node-b'")
        assert await holder() == "node-a", "node-b waits while node-a holds the pool"

        await run_campaign(pool, cid)
        talking = await wait_until(
            lambda: pool.fetchrow(
                "SELECT id, agent_id, bridged_at FROM live_attempts WHERE campaign_id = $1 AND state = 'bridged'", cid
            ),
            timeout=20,
            interval=0.05,
        )
        attempt_id = talking["id"]
        assert await pool.fetchval("SELECT node_id FROM live_attempts WHERE id = $1", attempt_id) == "node-a"

        node_a.kill(signal.SIGKILL)
        killed_at = time.monotonic()
        await node_a.wait(timeout=5)
        await wait_until(lambda: _is(holder, "node-b"), timeout=LEASE_S * 3, interval=0.05)
        takeover_s = time.monotonic() - killed_at
        token = await pool.fetchval("SELECT token FROM leases WHERE name = 'pool:main'")

        # The call talking at the kill: adopted by node-b, ended once with its whole talk time.
        cdr = await wait_until(
            lambda: pool.fetchrow("SELECT * FROM call_attempts WHERE id = $1", attempt_id), timeout=TALK_S + 15
        )
        await wait_settled(pool, list_id, timeout=60)
        await wait_until(agent_ready, timeout=15)
        agent = await pool.fetchrow("SELECT pool, node_id FROM agents WHERE endpoint = $1", AGENT)

        node_b.kill(signal.SIGTERM)
        assert await node_b.wait(timeout=40) == 0
        rows = await attempts(pool, cid)
        counts = loss_and_duplicates(rows, observer)
        reconciled = await reconcile_with_asterisk(pool, cdrs)
        after = [r for r in rows if r["created_at"] > cdr["created_at"]]
        report(
            "node_failover",
            injected="the node holding the pool killed with SIGKILL while a customer talked to the agent",
            lease_s=LEASE_S,
            kill_to_takeover_s=round(takeover_s, 3),
            token=token,
            adopted_call={k: str(cdr[k]) for k in ("outcome", "talk_s", "bridged_at", "ended_at", "node_id")},
            dialled_after_takeover=len(after),
            **counts,
            reconcile=reconciled,
        )

        assert takeover_s <= LEASE_S + LEASE_S / 3 + 3.0, takeover_s
        assert token == 2, "node-b holds the pool with the next fencing token"
        assert cdr["outcome"] == "answered_human" and cdr["agent_id"] == talking["agent_id"], dict(cdr)
        assert cdr["bridged_at"] == talking["bridged_at"] and cdr["node_id"] == "node-b" and cdr["pool"] == "main"
        assert TALK_S - 2 <= float(cdr["talk_s"]) <= TALK_S + 3, cdr["talk_s"]
        assert observer.created[str(attempt_id)] == 1
        assert counts["duplicated"] == 0 and counts["lost"] == 0 and counts["orphan_originates"] == 0, counts
        assert counts["open_attempts"] == 0 and counts["bridged_lost"] == 0, counts
        assert len(rows) == 1 + MORE and {r["outcome"] for r in rows} == {"answered_human"}, counts
        assert len(after) == MORE and {r["node_id"] for r in after} == {"node-b"}, "node-b went on dialling"
        assert (agent["pool"], agent["node_id"]) == ("main", "node-b"), "node-b follows the agent's phone"
        assert reconciled["matched"] == counts["originated"] == 1 + MORE and not reconciled["differences"], reconciled
    finally:
        node_a.stop()
        node_b.stop()
        phones.stop()
        await pool.close()


async def _is(fn: Callable[[], Awaitable[object]], value: object) -> bool:
    return await fn() == value


async def test_a_node_cut_off_from_the_database_fences_itself_without_hanging_up_then_takes_its_pool_back(
    service_settings, sandbox, hangup_agents, observer
):
    """node-a loses PostgreSQL while a customer talks to its agent: before its lease can
    lapse it stops dialling and closes its pool's stack without hanging up (its ARI
    websocket closes and does not reconnect); once the
    database is back and nobody took the pool, it takes it again (next token), adopts the
    call and writes its one CDR."""
    settings = service_settings.model_copy(update={"node_id": "node-a", "node_lease_s": 3.0})
    phones = SippAgents(sandbox, [AGENT], port=5292)
    try:
        async with HitCall(settings, Options(dialer_tick_s=0.05)) as app:
            pool = app.db.pool
            node = app.node
            assert node is not None
            cid, _ = await live_campaign(
                pool, "fenced", agents=[AGENT], numbers=talkers(1, 20, 92001), first_agent_number=1192
            )
            await app.sessions.refresh_campaigns()
            phones.start()
            agent = await pool.fetchval("SELECT id FROM agents WHERE endpoint = $1", AGENT)
            await wait_until(lambda: agent in app.sessions.by_agent, timeout=15)
            await run_campaign(pool, cid)
            talking = await wait_until(
                lambda: [c for c in app.dialer.live_calls() if c["bridged_at"]], timeout=20, interval=0.05
            )
            attempt_id = talking[0]["attempt_id"]
            stack = app.pools.stacks["main"]
            assert node.claim("main") is not None and node.claim("main").token == 1

            # Cut off: the registry's connection is killed and it cannot connect again.
            reconnect = node._connect

            async def refused() -> Any:
                raise ConnectionRefusedError("cut off from PostgreSQL")

            node._connect = refused
            await pool.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'hitcall-node node-a'"
            )
            await wait_until(lambda: node.fenced, timeout=10, interval=0.02)
            assert node.last_renewed is not None  # the last renewal that went through, before the cut
            fenced_after = asyncio.get_running_loop().time() - node.last_renewed
            assert fenced_after <= settings.node_lease_s - node.margin_s + 0.5, fenced_after
            await wait_until(lambda: "main" not in app.pools.stacks, timeout=10, interval=0.05)
            assert not stack.ari.connected.is_set()
            connects = stack.ari.stats.reconnects
            async with AriClient(ARI_URL, SANDBOX_ARI_USER, SANDBOX_ARI_PASSWORD, "hitcall-check") as check:
                await asyncio.sleep(2.0)  # time for a reconnect, were it trying
                assert not stack.ari.connected.is_set() and stack.ari.stats.reconnects == connects
                assert attempt_id in await check.rest.channel_states(), "the customer was not hung up"
            assert observer.destroyed[attempt_id] == 0

            # Back on the database, nobody took the pool: node-a takes it again and adopts the call.
            node._connect = reconnect
            await wait_until(lambda: "main" in app.pools.stacks, timeout=15, interval=0.05)
            assert node.fenced is None and node.claim("main").token == 2
            await wait_until(lambda: attempt_id in app.dialer.calls, timeout=15, interval=0.05)
            cdr = await wait_until(
                lambda: pool.fetchrow("SELECT * FROM call_attempts WHERE id = $1::uuid", attempt_id), timeout=30
            )
            assert cdr["outcome"] == "answered_human" and 18 <= float(cdr["talk_s"]) <= 23, dict(cdr)
            assert observer.created[attempt_id] == 1
    finally:
        phones.stop()
