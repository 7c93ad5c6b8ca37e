"""Two HitCall nodes and two Asterisk servers on one PostgreSQL, on the real thing: node-a
drives server 1 (pool `ast1`), node-b server 2 (pool `ast2`), each may take the other's
pool over. One progressive campaign has an agent on each server (SIPp phones).

- Both servers' agents take the campaign's calls, each customer originated on the server
  of the agent who takes it; live control through either node's API reaches the agent
  wherever it is logged in.
- node-a killed with SIGKILL while its agent talks: node-b takes pool `ast1` once node-a's
  lease lapsed, adopts the call (one complete CDR), and drives both servers from then on.
- Asterisk 2 killed while its agent talks: server 1's agent goes on taking calls; when
  server 2 is back, its call is closed with its outcome.

No contact is dialled twice: checked in HitCall's CDRs, in what each Asterisk created
(an ARI observer per server), and in each server's own cdr-csv, reconciled with the calls
of its pool (`hitcall cdr reconcile --pool`).

Sandbox customers +35841 TT SSSSS answer at once and hang up after TT seconds of talk.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import asyncpg
import pytest

from hitcall_pbx.demo.seed import add_contacts
from hitcall_pbx.sandbox import Sandbox, SippAgents
from hitcall_pbx.store.db import create_pool
from tests.asterisk_cdr import AsteriskCdrs

from ..live import wait_until
from .harness import (
    ChannelObserver,
    admin_headers,
    attempts,
    crash_asterisk,
    live_campaign,
    loss_and_duplicates,
    quick_calls,
    reconcile_with_asterisk,
    report,
    run_campaign,
    talkers,
    wait_settled,
)
from .test_sigkill import ServeProcess, serve_env

pytestmark = pytest.mark.asterisk

LEASE_S = 5.0
AGENT_1, AGENT_2 = "agent195", "agent196"  # on server 1 and server 2
PASSWORD = "two servers, one campaign"


@pytest.fixture
async def observers(sandbox: Sandbox, sandbox2: Sandbox) -> AsyncIterator[tuple[ChannelObserver, ChannelObserver]]:
    one = await ChannelObserver(sandbox.ari_url).start()
    two = await ChannelObserver(sandbox2.ari_url).start()
    try:
        yield one, two
    finally:
        await one.close()
        await two.close()


def _both(one: ChannelObserver, two: ChannelObserver) -> Any:
    """What the two servers created, as one observer: an attempt with a channel on each
    server counts as dialled twice."""
    return SimpleNamespace(
        created=one.created + two.created, answered=one.answered | two.answered, bridged=one.bridged | two.bridged
    )


def _nodes(dsn: str, tmp_path: Path, sandbox: Sandbox, sandbox2: Sandbox) -> tuple[ServeProcess, ServeProcess]:
    common = {"HITCALL_NODE_LEASE_S": str(LEASE_S)}
    a_env = serve_env(dsn, tmp_path / "a") | common
    a_env |= {"HITCALL_NODE_ID": "node-a", "HITCALL_POOL": "ast1", "HITCALL_ARI_URL": sandbox.ari_url}
    a_env["HITCALL_TAKEOVER_POOLS"] = f"ast2={sandbox2.ari_url}"
    b_env = serve_env(dsn, tmp_path / "b") | common
    b_env |= {"HITCALL_NODE_ID": "node-b", "HITCALL_POOL": "ast2", "HITCALL_ARI_URL": sandbox2.ari_url}
    b_env["HITCALL_TAKEOVER_POOLS"] = f"ast1={sandbox.ari_url}"
    return ServeProcess(a_env, tmp_path / "node-a.log"), ServeProcess(b_env, tmp_path / "node-b.log")


async def _holders(pool: asyncpg.Pool) -> dict[str, str]:
    rows = await pool.fetch("SELECT name, node_id FROM leases WHERE lease_until > now()")
    return {r["name"]: r["node_id"] for r in rows}


async def _agent(pool: asyncpg.Pool, endpoint: str) -> asyncpg.Record:
    return await pool.fetchrow("SELECT id, state, pool, node_id FROM agents WHERE endpoint = $1", endpoint)


async def _both_ready(pool: asyncpg.Pool) -> bool:
    rows = [await _agent(pool, e) for e in (AGENT_1, AGENT_2)]
    return all(r["state"] == "ready" for r in rows)


async def _bridged(pool: asyncpg.Pool, campaign_id: int) -> dict[str, asyncpg.Record]:
    rows = await pool.fetch(
        """SELECT id, pool, node_id, agent_id, bridged_at FROM live_attempts
           WHERE campaign_id = $1 AND state = 'bridged'""",
        campaign_id,
    )
    return {r["pool"]: r for r in rows}


async def _start(pool: asyncpg.Pool, node_a: ServeProcess, node_b: ServeProcess, phones: list[SippAgents]) -> None:
    node_a.start()
    node_b.start()
    await wait_until(node_a.ready, timeout=30, interval=0.1)
    await wait_until(node_b.ready, timeout=30, interval=0.1)
    assert await _holders(pool) == {"pool:ast1": "node-a", "pool:ast2": "node-b"}
    for p in phones:
        p.start()
    await wait_until(lambda: _both_ready(pool), timeout=20)


async def test_two_servers_one_campaign_and_the_node_of_one_killed(
    service_dsn, sandbox, sandbox2, hangup_agents, hangup_agents2, observers, tmp_path
):
    talk_s, more = 20, 6
    pool = await create_pool(service_dsn, min_size=1, max_size=3)
    cdrs1 = AsteriskCdrs(sandbox, tmp_path / "1", pool="ast1")
    cdrs2 = AsteriskCdrs(sandbox2, tmp_path / "2", pool="ast2")
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    node_a, node_b = _nodes(service_dsn, tmp_path, sandbox, sandbox2)
    phones = [SippAgents(sandbox, [AGENT_1], port=5301), SippAgents(sandbox2, [AGENT_2], port=5302)]
    try:
        cid, list_id = await live_campaign(
            pool,
            "two-servers",
            agents=[AGENT_1, AGENT_2],
            numbers=talkers(2, talk_s, 95001) + quick_calls(more, 95100),
            first_agent_number=1195,
        )
        headers = await admin_headers(pool, "two-servers-admin", PASSWORD)
        await _start(pool, node_a, node_b, phones)
        one, two = await _agent(pool, AGENT_1), await _agent(pool, AGENT_2)
        assert (one["pool"], one["node_id"], two["pool"], two["node_id"]) == ("ast1", "node-a", "ast2", "node-b")

        # Live control from either node: node-a's API pauses the agent on server 2, node-b's
        # API lets it go again (each carried to the node that drives the phone); node-a's
        # wallboard, open in a supervisor's browser, shows both changes as they happen.
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser,
        ):
            base_a = f"http://127.0.0.1:{node_a.port}"
            page = await (await browser.get(f"{base_a}/web/login")).text()
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
            assert csrf is not None
            login = {"username": "two-servers-admin", "password": PASSWORD, "csrf_token": csrf[1]}
            async with browser.post(f"{base_a}/web/login", data=login, allow_redirects=False) as r:
                assert r.status == 303, await r.text()
            async with browser.get(f"{base_a}/web/live/wallboard", params={"campaign": str(cid)}) as stream:
                assert stream.status == 200, await stream.text()
                await _sse_until(stream, lambda e, d: e == "snapshot")
                url_a = f"{base_a}/api/v1/agents/{two['id']}"
                paused_at = time.monotonic()
                async with http.post(f"{url_a}/pause", json={"pause_code": "break"}) as r:
                    assert r.status == 200, await r.text()
                    assert (await r.json())["state"] == "paused"
                await _sse_until(stream, lambda e, d: _is_state(e, d, two["id"], "paused"))
                seen_s = time.monotonic() - paused_at
                url_b = f"http://127.0.0.1:{node_b.port}/api/v1/agents/{two['id']}"
                async with http.post(f"{url_b}/unpause") as r:
                    assert r.status == 200, await r.text()
                await _sse_until(stream, lambda e, d: _is_state(e, d, two["id"], "ready"))
            await wait_until(lambda: _ok(_agent(pool, AGENT_2), lambda a: a["state"] == "ready"), timeout=5)
            audited = await pool.fetch(
                "SELECT action FROM audit_log WHERE object_type = 'agent' AND object_id = $1 ORDER BY id",
                str(two["id"]),
            )
            assert [r["action"] for r in audited][-2:] == ["agent.pause", "agent.unpause"]

        await run_campaign(pool, cid)
        bridged = await wait_until(
            lambda: _ok(_bridged(pool, cid), lambda b: set(b) == {"ast1", "ast2"}), timeout=20, interval=0.05
        )
        assert bridged["ast1"]["node_id"] == "node-a" and bridged["ast2"]["node_id"] == "node-b"
        assert bridged["ast1"]["agent_id"] == one["id"] and bridged["ast2"]["agent_id"] == two["id"]
        calls_b = f"http://127.0.0.1:{node_b.port}/api/v1/calls"
        async with aiohttp.ClientSession(headers=headers) as http, http.get(calls_b) as r:
            assert r.status == 200, await r.text()
            listed = {c["attempt_id"] for c in (await r.json())["items"]}
        assert {str(b["id"]) for b in bridged.values()} <= listed, "node-b lists node-a's call too"
        talking = bridged["ast1"]

        node_a.kill(signal.SIGKILL)
        killed_at = time.monotonic()
        await node_a.wait(timeout=5)
        await wait_until(lambda: _ok(_holders(pool), lambda h: h.get("pool:ast1") == "node-b"), timeout=3 * LEASE_S)
        takeover_s = time.monotonic() - killed_at
        token = await pool.fetchval("SELECT token FROM leases WHERE name = 'pool:ast1'")

        cdr = await wait_until(
            lambda: pool.fetchrow("SELECT * FROM call_attempts WHERE id = $1", talking["id"]), timeout=talk_s + 15
        )
        await wait_settled(pool, list_id, timeout=90)
        after = [r for r in await attempts(pool, cid) if r["created_at"] > cdr["created_at"]]
        agent_1 = await _agent(pool, AGENT_1)

        node_b.kill(signal.SIGTERM)
        assert await node_b.wait(timeout=40) == 0
        rows = await attempts(pool, cid)
        counts = loss_and_duplicates(rows, _both(*observers))
        reconciled = {
            "ast1": await reconcile_with_asterisk(pool, cdrs1),
            "ast2": await reconcile_with_asterisk(pool, cdrs2),
        }
        report(
            "two_servers_node_killed",
            injected="node-a (driving server 1) killed with SIGKILL while its agent talked; node-b drives server 2",
            lease_s=LEASE_S,
            kill_to_takeover_s=round(takeover_s, 3),
            pause_via_node_a_on_node_a_wallboard_s=round(seen_s, 3),
            token=token,
            adopted_call={k: str(cdr[k]) for k in ("outcome", "talk_s", "pool", "node_id")},
            after_takeover_by_pool={p: sum(1 for r in after if r["pool"] == p) for p in ("ast1", "ast2")},
            **counts,
            reconcile={p: {"matched": r["matched"], "differences": r["differences"]} for p, r in reconciled.items()},
        )

        assert takeover_s <= LEASE_S + LEASE_S / 3 + 3.0, takeover_s
        assert token == 2, "node-b holds pool ast1 with the next fencing token"
        assert cdr["outcome"] == "answered_human" and cdr["agent_id"] == one["id"], dict(cdr)
        assert (cdr["pool"], cdr["node_id"]) == ("ast1", "node-b") and cdr["bridged_at"] == talking["bridged_at"]
        assert talk_s - 2 <= float(cdr["talk_s"]) <= talk_s + 3, cdr["talk_s"]
        assert (agent_1["pool"], agent_1["node_id"]) == ("ast1", "node-b"), "node-b follows server 1's agent"
        assert {r["node_id"] for r in after} == {"node-b"} and {r["pool"] for r in after} == {"ast1", "ast2"}, [
            (r["pool"], r["node_id"]) for r in after
        ]
        assert len(rows) == 2 + more and {r["outcome"] for r in rows} == {"answered_human"}, counts
        assert counts["duplicated"] == 0 and counts["lost"] == 0 and counts["orphan_originates"] == 0, counts
        assert counts["open_attempts"] == 0 and counts["bridged_lost"] == 0, counts
        by_pool = {p: sum(1 for r in rows if r["pool"] == p) for p in ("ast1", "ast2")}
        for p, r in reconciled.items():
            assert r["matched"] == by_pool[p] and not r["differences"], (p, r)
    finally:
        node_a.stop()
        node_b.stop()
        for p in phones:
            p.stop()
        await pool.close()


async def test_one_asterisk_killed_and_the_other_servers_agent_keeps_working(
    service_dsn, sandbox, sandbox2, hangup_agents, hangup_agents2, observers, tmp_path
):
    more = 6
    pool = await create_pool(service_dsn, min_size=1, max_size=3)
    cdrs1 = AsteriskCdrs(sandbox, tmp_path / "1", pool="ast1")
    (tmp_path / "1").mkdir()
    node_a, node_b = _nodes(service_dsn, tmp_path, sandbox, sandbox2)
    phones = [SippAgents(sandbox, [AGENT_1], port=5303), SippAgents(sandbox2, [AGENT_2], port=5304)]
    restarted = False
    try:
        # One long talker first, for server 2's agent (server 1's is paused until it talks).
        cid, list_id = await live_campaign(
            pool,
            "one-server-down",
            agents=[AGENT_1, AGENT_2],
            numbers=talkers(1, 60, 96001),
            first_agent_number=1197,
        )
        headers = await admin_headers(pool, "two-servers-admin", PASSWORD)
        await _start(pool, node_a, node_b, phones)
        one = await _agent(pool, AGENT_1)
        async with aiohttp.ClientSession(headers=headers) as http:
            url = f"http://127.0.0.1:{node_a.port}/api/v1/agents/{one['id']}"
            async with http.post(f"{url}/pause", json={"pause_code": "break"}) as r:
                assert r.status == 200, await r.text()
            await run_campaign(pool, cid)
            bridged = await wait_until(
                lambda: _ok(_bridged(pool, cid), lambda b: "ast2" in b), timeout=20, interval=0.05
            )
            on_2 = bridged["ast2"]
            await add_contacts(pool, list_id, quick_calls(more, 96100))
            async with http.post(f"{url}/unpause") as r:
                assert r.status == 200, await r.text()
        await wait_until(
            lambda: pool.fetchval("SELECT count(*) FROM call_attempts WHERE campaign_id = $1 AND pool = 'ast1'", cid),
            timeout=20,
        )

        crash_db = await pool.fetchval("SELECT now()")
        await asyncio.to_thread(crash_asterisk, sandbox2)
        crashed_at = time.monotonic()
        phones[1].stop()  # Asterisk 2 never sent it a BYE
        quick_during = await wait_until(
            lambda: _ok(
                pool.fetch(
                    """SELECT id FROM call_attempts WHERE campaign_id = $1 AND pool = 'ast1'
                       AND outcome = 'answered_human' AND created_at > $2""",
                    cid,
                    crash_db,
                ),
                lambda rows: len(rows) >= 2,
            ),
            timeout=30,
        )
        worked_s = time.monotonic() - crashed_at
        # Nobody can tell how server 2's call went while server 2 is away: it stays open until then.
        assert await pool.fetchval("SELECT state FROM live_attempts WHERE id = $1", on_2["id"]) == "bridged"
        assert await _holders(pool) == {"pool:ast1": "node-a", "pool:ast2": "node-b"}, "no node took the other's pool"

        await asyncio.to_thread(sandbox2.start)
        restarted = True
        back_at = time.monotonic()
        closed = await wait_until(
            lambda: pool.fetchrow("SELECT * FROM call_attempts WHERE id = $1", on_2["id"]), timeout=20
        )
        closed_s = time.monotonic() - back_at
        await wait_settled(pool, list_id, timeout=60)
        node_a.kill(signal.SIGTERM)
        node_b.kill(signal.SIGTERM)
        assert await node_a.wait(timeout=40) == 0 and await node_b.wait(timeout=40) == 0
        rows = await attempts(pool, cid)
        counts = loss_and_duplicates(rows, _both(*observers))
        reconciled = await reconcile_with_asterisk(pool, cdrs1)
        report(
            "two_servers_asterisk_killed",
            injected="Asterisk 2 killed with SIGKILL while its agent talked; server 1 and its agent went on",
            quick_calls_on_server_1_while_2_was_down=len(quick_during),
            two_of_them_done_within_s=round(worked_s, 3),
            server_2_call_closed_after_restart_s=round(closed_s, 3),
            server_2_call={k: str(closed[k]) for k in ("outcome", "talk_s", "pool", "node_id", "agent_id")},
            **counts,
            reconcile_ast1={"matched": reconciled["matched"], "differences": reconciled["differences"]},
        )
        assert closed["outcome"] == "answered_human" and closed["bridged_at"] is not None, dict(closed)
        assert (closed["pool"], closed["node_id"]) == ("ast2", "node-b"), dict(closed)
        assert counts["duplicated"] == 0 and counts["lost"] == 0 and counts["orphan_originates"] == 0, counts
        assert counts["open_attempts"] == 0, counts
        assert len(rows) == 1 + more and all(r["state"] == "ended" for r in rows), counts
        assert {r["pool"] for r in rows if r["id"] != on_2["id"]} == {"ast1"}, "the quick customers went to server 1"
        assert reconciled["matched"] == more and not reconciled["differences"], reconciled
    finally:
        if not restarted and sandbox2.pid() is None:
            await asyncio.to_thread(sandbox2.start)
        node_a.stop()
        node_b.stop()
        for p in phones:
            p.stop()
        await pool.close()


async def _sse_until(stream: aiohttp.ClientResponse, pred: Any, timeout: float = 5.0) -> dict[str, Any]:
    """Read the stream's server-sent events until one (event name, data) matches."""
    event = "message"
    async with asyncio.timeout(timeout):
        while True:
            line = (await stream.content.readline()).decode().rstrip("\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = json.loads(line[5:].strip())
                if pred(event, data):
                    return data
            elif not line:
                event = "message"


def _is_state(event: str, data: Any, agent_id: int, state: str) -> bool:
    return (
        event == "live"
        and data.get("type") == "agent.state_changed"
        and data.get("agent_id") == agent_id
        and data.get("state") == state
    )


async def _ok(value: Any, pred: Any) -> Any:
    got = await value
    return got if pred(got) else None
