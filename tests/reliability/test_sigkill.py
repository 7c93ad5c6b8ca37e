"""`hitcall serve` killed with SIGKILL mid-campaign and started again: the new process
recovers the in-flight attempts from Postgres and Asterisk (GET /channels), keeps the
agents' parked phones, dials none of them twice and leaves none out of the CDRs.
Originates are counted on the Asterisk side (channels created per attempt id)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from hitcall_pbx.sandbox import SippAgents
from hitcall_pbx.settings import SANDBOX_AGI_SECRET
from hitcall_pbx.store.db import create_pool
from tests.live import ARI_URL, free_port, wait_until

from .harness import (
    asterisk_attempt_channels,
    attempts,
    live_campaign,
    loss_and_duplicates,
    quick_calls,
    reconcile_with_asterisk,
    report,
    run_campaign,
    wait_settled,
)

pytestmark = pytest.mark.asterisk

AGENTS = ["agent187", "agent188", "agent189"]
CONTACTS = 12


def serve_env(dsn: str, data_dir: Path, *, agi_port: int | None = None) -> dict[str, str]:
    """The environment of `hitcall serve` on the sandbox: a free HTTP port, FastAGI on
    `agi_port` (a free port unless given), INFO logs, no purge while the test runs."""
    return dict(
        os.environ,
        DATABASE_URL=dsn,
        HITCALL_DATA_DIR=str(data_dir),
        HITCALL_ARI_URL=ARI_URL,
        HITCALL_HTTP_PORT=str(free_port()),
        HITCALL_AGI_PORT=str(agi_port or free_port()),
        HITCALL_AGI_SECRET=SANDBOX_AGI_SECRET,
        HITCALL_LOG_LEVEL="INFO",
        HITCALL_PURGE_INTERVAL_S="86400",
    )


class ServeProcess:
    """`hitcall serve` in a child process, configured by environment."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.port = int(env["HITCALL_HTTP_PORT"])
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        exe = Path(sys.executable).with_name("hitcall")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(exe), "serve"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"hitcall serve exited with {self.proc.returncode}; see {self.log_path}")
        try:
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{self.port}/readyz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    def kill(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    async def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(asyncio.to_thread(self.proc.wait), timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def test_sigkill_mid_campaign_then_restart(
    product_logging, service_dsn, sandbox, hangup_agents, observer, tmp_path, asterisk_cdrs
):
    env = serve_env(service_dsn, tmp_path / "data")
    pool = await create_pool(service_dsn, min_size=1, max_size=3)
    first = ServeProcess(env, tmp_path / "serve-1.log")
    second = ServeProcess(env, tmp_path / "serve-2.log")
    phones = SippAgents(sandbox, AGENTS, port=5287)
    try:
        cid, list_id = await live_campaign(
            pool, "sigkill", agents=AGENTS, numbers=quick_calls(CONTACTS, 870), first_agent_number=1187
        )

        async def agents_ready() -> bool:
            return await pool.fetchval("SELECT count(*) FROM agents WHERE state <> 'logged_out'") == len(AGENTS)

        first.start()
        await wait_until(first.ready, timeout=30, interval=0.1)
        phones.start()
        await wait_until(agents_ready, timeout=15)
        await run_campaign(pool, cid)
        await wait_until(
            lambda: pool.fetchval(
                "SELECT count(*) FROM all_attempts WHERE campaign_id = $1 AND state = 'bridged'", cid
            ),
            timeout=20,
        )

        first.kill(signal.SIGKILL)
        killed_at = time.monotonic()
        await first.wait(timeout=5)
        in_flight = {
            str(r["id"]): r["state"]
            for r in await pool.fetch(
                "SELECT id, state FROM all_attempts WHERE campaign_id = $1 AND state <> 'ended'", cid
            )
        }
        up_at_kill = set(await _attempt_channels())

        second.start()
        started_at = time.monotonic()
        await wait_until(second.ready, timeout=30, interval=0.05)
        ready_s = time.monotonic() - started_at
        await wait_until(
            lambda: pool.fetchval(
                "SELECT count(*) = 0 FROM all_attempts WHERE id = ANY($1::uuid[]) AND state <> 'ended'", list(in_flight)
            ),
            timeout=15,
            interval=0.05,
        )
        recovered_at = time.monotonic()
        recovered_s = recovered_at - started_at
        killed_to_recovered_s = time.monotonic() - killed_at
        await wait_until(agents_ready, timeout=15)
        await wait_settled(pool, list_id, timeout=45)

        second.kill(signal.SIGTERM)  # graceful: the CDR writer flushes
        assert await second.wait(timeout=40) == 0
        assert phones.running(), "the agents' phones stayed up across the kill"
        rows = await attempts(pool, cid)
        left_in_asterisk = await _attempt_channels()
        counts = loss_and_duplicates(rows, observer)
        by_id = {str(r["id"]): r for r in rows}
        reconciled = await reconcile_with_asterisk(pool, asterisk_cdrs)
        # In flight at the kill, and their channels gone before the new process recovered them.
        unfollowed = {aid for aid in in_flight if killed_at <= observer.destroyed_at.get(aid, -1.0) <= recovered_at}
        report(
            "sigkill",
            injected="hitcall serve killed with SIGKILL mid-campaign, then started again",
            in_flight_at_kill=in_flight,
            channels_up_at_kill=len(up_at_kill),
            restart_to_ready_s=round(ready_s, 3),
            restart_to_in_flight_closed_s=round(recovered_s, 3),
            kill_to_in_flight_closed_s=round(killed_to_recovered_s, 3),
            in_flight_outcomes={aid: by_id[aid]["outcome"] for aid in in_flight},
            **counts,
            reconcile=reconciled,
            ended_while_no_process_ran=sorted(unfollowed),
        )

        assert in_flight, "calls were in flight at the kill"
        assert counts["duplicated"] == 0 and counts["lost"] == 0 and counts["orphan_originates"] == 0, counts
        assert counts["open_attempts"] == 0 and not left_in_asterisk, counts
        assert counts["answered_lost"] == 0 and counts["bridged_lost"] == 0, counts
        for aid, state in in_flight.items():
            if state == "bridged":
                assert by_id[aid]["outcome"] == "answered_human", dict(by_id[aid])
        # Every contact dialled (an attempt closed unanswered by the recovery may be retried as a new attempt).
        assert len({r["contact_id"] for r in rows if str(r["id"]) in observer.created}) == CONTACTS, counts
        # Asterisk's own CDRs agree on every call, with one explained exception: a call that ended
        # while no process followed it is closed when the new process recovers it, and that moment is
        # its recorded end (the real one is nowhere to be read). Its talk time and duration may then
        # run past Asterisk's, by at most the time from the kill to the recovery; never its outcome.
        assert reconciled["matched"] == counts["originated"], reconciled
        for diff in reconciled["differences"]:
            assert diff["kind"] in ("talk_time", "duration") and diff["attempt_id"] in unfollowed, diff
            late = datetime.fromisoformat(diff["hitcall"]["ended_at"]) - datetime.fromisoformat(diff["asterisk"]["end"])
            # Asterisk's times are whole seconds: 1 s of slack either side.
            assert timedelta(seconds=-1) <= late <= timedelta(seconds=killed_to_recovered_s + 1), (late, diff)
    finally:
        first.stop()
        second.stop()
        phones.stop()
        await pool.close()


async def _attempt_channels() -> list[str]:
    from hitcall_pbx.ari import AriClient
    from hitcall_pbx.settings import SANDBOX_ARI_PASSWORD, SANDBOX_ARI_USER

    client = AriClient(ARI_URL, SANDBOX_ARI_USER, SANDBOX_ARI_PASSWORD, "hitcall-reliability")
    await client.start_rest()
    try:
        return await asterisk_attempt_channels(client.rest)
    finally:
        await client.close()
