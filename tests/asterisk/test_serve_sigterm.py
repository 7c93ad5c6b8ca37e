"""`hitcall serve` as an operator runs it, stopped with SIGTERM while a customer talks to an agent.

The drain: /readyz says not ready at once, nothing new is dialled, the call in the
agent's bridge is left alone until the customer hangs up (or, past the grace limit,
hung up by the service), its CDR and events are written, and the process exits 0.
Sandbox customers +35841 TT SSSSS answer at once and hang up after TT seconds of talk.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign
from hitcall_pbx.sandbox import SippAgents
from hitcall_pbx.settings import SANDBOX_AGI_SECRET
from hitcall_pbx.store.db import create_pool

from .conftest import wait_until

pytestmark = pytest.mark.asterisk

HITCALL = Path(sys.executable).with_name("hitcall")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """`hitcall serve` in a subprocess, configured through the environment only."""

    def __init__(self, settings, tmp_path: Path, grace_s: float) -> None:
        self.port = _free_port()
        self.env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "HITCALL_DATA_DIR": str(tmp_path / "data"),
            "HITCALL_ARI_URL": settings.ari_url,
            "HITCALL_HTTP_PORT": str(self.port),
            "HITCALL_AGI_PORT": str(_free_port()),
            "HITCALL_AGI_SECRET": SANDBOX_AGI_SECRET,
            "HITCALL_SHUTDOWN_GRACE_S": str(grace_s),
        }
        self.log_path = tmp_path / "serve.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [str(HITCALL), "serve"], env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    async def readyz(self) -> tuple[int, dict]:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{self.port}/readyz") as r:
            return r.status, await r.json()

    async def ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log_path.read_text()[-3000:]
        try:
            return (await self.readyz())[0] == 200
        except aiohttp.ClientError:
            return False

    async def exit_code(self, timeout: float) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, "hitcall serve did not exit"
            await asyncio.sleep(0.05)
        return self.proc.returncode


async def _run_until_bridged(service: Service, pool, sandbox, numbers: list[str], sipp_port: int):
    cid, list_id = await create_campaign(
        pool, "sigterm", mode="progressive", numbers=numbers, wrap_up_s=0, ring_timeout_s=15, **ALL_DAY
    )
    agent = await create_agent(pool, "1001", "agent1", [cid])
    service.start()
    await wait_until(service.ready, timeout=30, interval=0.2)
    phones = SippAgents(sandbox, ["agent1"], port=sipp_port)
    phones.start()
    await wait_until(lambda: pool.fetchval("SELECT state = 'ready' FROM agents WHERE id = $1", agent), timeout=15)
    await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
    attempt = await wait_until(
        lambda: pool.fetchrow("SELECT * FROM all_attempts WHERE campaign_id = $1 AND state = 'bridged'", cid),
        timeout=20,
    )
    return cid, list_id, agent, attempt, phones


async def _sigterm_and_watch_readiness(service: Service) -> tuple[datetime, float]:
    """SIGTERM; /readyz must turn 503 while the process is still draining."""
    assert service.proc is not None
    sent_at, sent_mono = datetime.now(UTC), time.monotonic()
    service.proc.send_signal(signal.SIGTERM)

    async def not_ready() -> bool:
        status, body = await service.readyz()
        return status == 503 and body["status"] == "not_ready"

    await wait_until(not_ready, timeout=3, interval=0.05)
    assert service.proc.poll() is None, "still draining while not ready"
    return sent_at, sent_mono


async def test_sigterm_drains_the_bridged_call_until_the_customer_hangs_up(
    service_settings, service_dsn, sandbox, tmp_path, hangup_agents
):
    service = Service(service_settings, tmp_path, grace_s=30)
    pool = await create_pool(service_dsn, min_size=1, max_size=3)
    phones = None
    try:
        # Each customer talks 6 s; three are due, one agent: one call at a time.
        cid, list_id, agent, attempt, phones = await _run_until_bridged(
            service, pool, sandbox, ["+358410600001", "+358410600002", "+358410600003"], sipp_port=5195
        )
        sent_at, sent_mono = await _sigterm_and_watch_readiness(service)
        assert await service.exit_code(timeout=25) == 0, service.log_path.read_text()[-3000:]
        drain_s = time.monotonic() - sent_mono
    finally:
        service.stop()
        if phones is not None:
            phones.stop()

    try:
        rows = await pool.fetch("SELECT * FROM all_attempts WHERE campaign_id = $1", cid)
        assert [r["id"] for r in rows] == [attempt["id"]], "nothing dialled after SIGTERM"
        [cdr] = rows
        assert cdr["state"] == "ended" and cdr["outcome"] == "answered_human", dict(cdr)
        assert cdr["hangup_cause"] == 16 and cdr["agent_id"] == agent
        assert cdr["ended_at"] > sent_at, "the call was not cut by the shutdown"
        assert 4.0 <= float(cdr["talk_s"]) <= 8.0, cdr["talk_s"]  # the customer's 6 s, measured on a busy machine
        assert drain_s < 10, drain_s
        statuses = await pool.fetch("SELECT status FROM contacts WHERE list_id = $1 ORDER BY id", list_id)
        assert sorted(r["status"] for r in statuses) == ["done", "new", "new"]

        subject = f"attempt:{cdr['id']}"
        events = [
            r["event_type"]
            for r in await pool.fetch("SELECT event_type FROM webhook_outbox WHERE subject = $1 ORDER BY id", subject)
        ]
        assert {"call.answered", "call.bridged", "call.ended"} <= set(events), events
        [ended] = await pool.fetch(
            "SELECT payload FROM webhook_outbox WHERE subject = $1 AND event_type = 'call.ended'", subject
        )
        assert ended["payload"]["talk_s"] == float(cdr["talk_s"])
        states = [
            r["payload"]["state"]
            for r in await pool.fetch(
                "SELECT payload FROM webhook_outbox WHERE event_type = 'agent.state_changed' ORDER BY id"
            )
        ]
        assert states[:3] == ["ready", "reserved", "on_call"] and "wrap_up" in states[3:], states
    finally:
        await pool.close()


async def test_sigterm_past_the_grace_limit_hangs_up_and_records_the_call(
    service_settings, service_dsn, sandbox, tmp_path, hangup_agents
):
    service = Service(service_settings, tmp_path, grace_s=2)
    pool = await create_pool(service_dsn, min_size=1, max_size=3)
    phones = None
    try:
        # This customer would talk for 60 s.
        cid, _, agent, attempt, phones = await _run_until_bridged(
            service, pool, sandbox, ["+358416000001"], sipp_port=5197
        )
        sent_at, sent_mono = await _sigterm_and_watch_readiness(service)
        assert await service.exit_code(timeout=15) == 0, service.log_path.read_text()[-3000:]
        drain_s = time.monotonic() - sent_mono
    finally:
        service.stop()
        if phones is not None:
            phones.stop()

    try:
        assert 2.0 <= drain_s < 9, drain_s
        cdr = await pool.fetchrow("SELECT * FROM all_attempts WHERE id = $1", attempt["id"])
        assert cdr["state"] == "ended" and cdr["outcome"] == "answered_human", dict(cdr)
        assert cdr["agent_id"] == agent
        assert (cdr["ended_at"] - sent_at).total_seconds() >= 1.9, "not before the grace limit"
        assert 1.9 <= float(cdr["talk_s"]) < 10, cdr["talk_s"]
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM webhook_outbox WHERE subject = $1 AND event_type = 'call.ended'",
                f"attempt:{cdr['id']}",
            )
            == 1
        )
    finally:
        await pool.close()
