"""One dialing process per database: a second `hitcall serve` started while the first
one has a customer talking to an agent refuses to start its dialer with one clear
line, and the first one's call, agent and attempt rows are left exactly as they were.
`hitcall serve --api-only` may run beside it.

Sandbox customers +35841 TT SSSSS answer at once and hang up after TT seconds of talk.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign
from hitcall_pbx.sandbox import SippAgents
from hitcall_pbx.settings import SANDBOX_AGI_SECRET
from hitcall_pbx.store.dialer_lock import holder_name

from .conftest import wait_until
from .test_serve_sigterm import _free_port

pytestmark = pytest.mark.asterisk

HITCALL = Path(sys.executable).with_name("hitcall")


def _serve_env(settings, tmp_path: Path, http_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "HITCALL_DATA_DIR": str(tmp_path / "second"),
        "HITCALL_ARI_URL": settings.ari_url,
        "HITCALL_HTTP_PORT": str(http_port),
        "HITCALL_AGI_PORT": str(_free_port()),
        "HITCALL_AGI_SECRET": SANDBOX_AGI_SECRET,
    }


async def test_a_second_process_refuses_to_dial_and_leaves_the_first_ones_calls_alone(
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
            before_agent = dict(await pool.fetchrow("SELECT state, state_since FROM agents WHERE id = $1", agent))
            assert before_agent["state"] == "on_call"

            # A second full service on the same database: refused, one readable line, exit 1.
            second = await asyncio.create_subprocess_exec(
                str(HITCALL),
                "serve",
                env=_serve_env(service_settings, tmp_path, _free_port()),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            _, err = await asyncio.wait_for(second.communicate(), 60)
            assert second.returncode == 1, err.decode()[-2000:]
            last = err.decode().strip().splitlines()[-1]
            assert last.startswith("hitcall serve: another HitCall process dials on this database"), last
            assert holder_name() in last, "the refusal names the process that dials"

            # The first process's call, agent and rows are untouched.
            assert attempt_id in first.dialer.calls and first.dialer.calls[attempt_id].bridged_at is not None
            assert agent in first.sessions.by_agent
            channels = await first.ari.rest.channel_states()
            assert attempt_id in channels, "the customer is still talking"
            assert [dict(r) for r in await pool.fetch("SELECT * FROM live_attempts ORDER BY id")] == before_live
            assert dict(await pool.fetchrow("SELECT state, state_since FROM agents WHERE id = $1", agent)) == (
                before_agent
            )
            assert first.dialer_lock is not None and first.dialer_lock.held and first.dialer_lock.lost is None

            # The API alone may run beside the dialing process.
            port = _free_port()
            api = await asyncio.create_subprocess_exec(
                str(HITCALL),
                "serve",
                "--api-only",
                env=_serve_env(service_settings, tmp_path, port),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:

                async def healthy() -> bool:
                    try:
                        async with (
                            aiohttp.ClientSession() as http,
                            http.get(f"http://127.0.0.1:{port}/healthz") as r,
                        ):
                            return r.status == 200
                    except aiohttp.ClientError:
                        assert api.returncode is None, "the API-only process exited"
                        return False

                await wait_until(healthy, timeout=30, interval=0.2)
            finally:
                api.terminate()
                await asyncio.wait_for(api.wait(), 30)
            assert (
                first.dialer.calls.get(attempt_id) is not None
                or await pool.fetchval("SELECT outcome FROM all_attempts WHERE id = $1::uuid", attempt_id)
                == "answered_human"
            ), "the call went on to its normal end"
            assert first.dialer_lock.held
    finally:
        phones.stop()
