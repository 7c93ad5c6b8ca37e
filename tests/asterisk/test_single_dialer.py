"""One process per node id, one node per pool: while the first node has a customer talking
to an agent, a second `hitcall serve` with the same node id refuses to start with one clear
line naming the host and pid that run it; a second node (another node id) for the same
pool starts, serves the API and waits for the pool, leaving the first node's call, agent
and attempt rows exactly as they were; `hitcall serve --api-only` may run beside them.

Sandbox customers +35841 TT SSSSS answer at once and hang up after TT seconds of talk.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign
from hitcall_pbx.sandbox import SippAgents
from hitcall_pbx.settings import SANDBOX_AGI_SECRET

from ..live import free_port
from .conftest import wait_until

pytestmark = pytest.mark.asterisk

HITCALL = Path(sys.executable).with_name("hitcall")


def _serve_env(settings, data_dir: Path, http_port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HITCALL_NODE_ID", "HITCALL_POOL")}
    return {
        **env,
        "DATABASE_URL": settings.database_url,
        "HITCALL_DATA_DIR": str(data_dir),
        "HITCALL_ARI_URL": settings.ari_url,
        "HITCALL_HTTP_PORT": str(http_port),
        "HITCALL_AGI_PORT": str(free_port()),
        "HITCALL_AGI_SECRET": SANDBOX_AGI_SECRET,
        "HITCALL_LOG_LEVEL": "INFO",
        **extra,
    }


async def _healthy(port: int, proc: asyncio.subprocess.Process) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
            return r.status == 200
    except aiohttp.ClientError:
        assert proc.returncode is None, "the process exited"
        return False


async def test_a_second_process_or_node_leaves_the_first_nodes_pool_and_calls_alone(
    service_settings, sandbox, tmp_path, hangup_agents
):
    options = Options(dialer_tick_s=0.05)
    phones = SippAgents(sandbox, ["agent71"], port=5271)
    try:
        async with HitCall(service_settings, options) as first:
            pool = first.db.pool
            cid, _ = await create_campaign(
                pool, "single-dialer", mode="progressive", numbers=["+358412500001"], wrap_up_s=0, **ALL_DAY
            )
            agent = await create_agent(pool, "1071", "agent71", [cid])
            await first.sessions.refresh_campaigns()
            phones.start()
            await wait_until(lambda: agent in first.sessions.by_agent, timeout=15)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            talking = await wait_until(
                lambda: [c for c in first.dialer.live_calls() if c["bridged_at"]], timeout=20, interval=0.05
            )
            attempt_id = talking[0]["attempt_id"]
            await first.journal.flush(5)  # agent state and call progress are written behind
            before_live = [dict(r) for r in await pool.fetch("SELECT * FROM live_attempts ORDER BY id")]
            before_agent = dict(await pool.fetchrow("SELECT * FROM agents WHERE id = $1", agent))
            assert before_agent["state"] == "on_call"
            node_id = service_settings.node_id
            assert (before_agent["pool"], before_agent["node_id"]) == ("main", node_id)
            assert {(r["pool"], r["node_id"]) for r in before_live} == {("main", node_id)}

            # A second full service under the same node id: refused, one readable line, exit 1.
            second = await asyncio.create_subprocess_exec(
                str(HITCALL),
                "serve",
                env=_serve_env(service_settings, tmp_path / "second", free_port()),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            _, err = await asyncio.wait_for(second.communicate(), 60)
            assert second.returncode == 1, err.decode()[-2000:]
            last = err.decode().strip().splitlines()[-1]
            assert last.startswith(f"hitcall serve: node {node_id} is live under another process"), last
            assert f"host {socket.gethostname()}, pid {os.getpid()}" in last, "the refusal names the process"

            # Another node for the same pool: it starts, serves the API and waits for the pool.
            port = free_port()
            standby = await asyncio.create_subprocess_exec(
                str(HITCALL),
                "serve",
                env=_serve_env(service_settings, tmp_path / "standby", port, HITCALL_NODE_ID="standby"),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                await wait_until(lambda: _healthy(port, standby), timeout=30, interval=0.2)
                await asyncio.sleep(first.node.interval_s * 2)  # a heartbeat or two of trying for the pool
                nodes = await asyncio.create_subprocess_exec(
                    str(HITCALL),
                    "nodes",
                    "--json",
                    env=_serve_env(service_settings, tmp_path / "standby", free_port()),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
                out, err = await asyncio.wait_for(nodes.communicate(), 60)
                assert nodes.returncode == 0, err.decode()
                view = json.loads(out)
                by_id = {n["node_id"]: n for n in view["nodes"]}
                assert by_id["standby"]["status"] == "live" and by_id["standby"]["holds"] == []
                assert by_id[node_id]["status"] == "live" and by_id[node_id]["holds"] == ["main"]
                [lease] = view["leases"]
                assert (lease["name"], lease["holder"], lease["live"]) == ("pool:main", node_id, True)
            finally:
                standby.terminate()
                assert await asyncio.wait_for(standby.wait(), 30) == 0

            # The first node's call, agent and rows are untouched; it still holds the pool.
            assert attempt_id in first.dialer.calls and first.dialer.calls[attempt_id].bridged_at is not None
            assert agent in first.sessions.by_agent
            channels = await first.ari.rest.channel_states()
            assert attempt_id in channels, "the customer is still talking"
            assert [dict(r) for r in await pool.fetch("SELECT * FROM live_attempts ORDER BY id")] == before_live
            assert dict(await pool.fetchrow("SELECT * FROM agents WHERE id = $1", agent)) == before_agent
            assert first.node.claim("main") is not None and first.node.fenced is None

            # The API alone may run beside the dialing node.
            port = free_port()
            api = await asyncio.create_subprocess_exec(
                str(HITCALL),
                "serve",
                "--api-only",
                env=_serve_env(service_settings, tmp_path / "api", port),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                await wait_until(lambda: _healthy(port, api), timeout=30, interval=0.2)
            finally:
                api.terminate()
                await asyncio.wait_for(api.wait(), 30)
            assert (
                first.dialer.calls.get(attempt_id) is not None
                or await pool.fetchval("SELECT outcome FROM all_attempts WHERE id = $1::uuid", attempt_id)
                == "answered_human"
            ), "the call went on to its normal end"
            assert first.node.claim("main") is not None
    finally:
        phones.stop()
