"""A campaign with recording on: each bridged call's recording lands in the store
with its row (sha256, size, duration, retention_until = call date + policy)."""

from __future__ import annotations

import hashlib

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.core.retention import RetentionPolicy, recording_deadline
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.sandbox import SippAgents

from .conftest import wait_until

pytestmark = pytest.mark.asterisk


async def test_bridged_calls_are_recorded_into_the_store(service_settings, sandbox, hangup_agents):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, list_id = await create_campaign(
            pool,
            "recorded",
            mode="progressive",
            numbers=sim_numbers(9, 3),
            wrap_up_s=0,
            ring_timeout_s=15,
            record_calls=True,
            retention_recordings_months=3,
            **ALL_DAY,
        )
        await create_agent(pool, "3001", "agent31", [cid])
        with SippAgents(sandbox, ["agent31"], port=5191):
            await wait_until(lambda: len(app.sessions.by_agent) == 1, timeout=15)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            await wait_until(
                lambda: pool.fetchval(
                    "SELECT count(*) = 3 FROM contacts WHERE list_id = $1 AND status = 'done'", list_id
                ),
                timeout=60,
            )
            await app.dialer.idle()
            await app.recorder.drain()
            await app.cdr.flush()
        rows = await pool.fetch(
            """SELECT r.*, a.answered_at, a.recording_id AS cdr_recording FROM recordings r
               JOIN all_attempts a ON a.id = r.attempt_id WHERE r.campaign_id = $1""",
            cid,
        )
        assert len(rows) == 3, "one recording per bridged call"
        for r in rows:
            path = app.store.absolute(r["path"])
            data = path.read_bytes()
            assert hashlib.sha256(data).hexdigest() == r["sha256"]
            assert r["size_bytes"] == len(data) > 44
            assert r["duration_s"] > 0.5, "about 1.5 s of talk was recorded"
            assert r["format"] == "wav"
            assert r["cdr_recording"] == r["id"], "the CDR points at its recording"
            assert r["retention_until"] == recording_deadline(r["created_at"], RetentionPolicy(recordings_months=3))
        # Nothing left behind in Asterisk's spool.
        assert not any((sandbox.recordings_dir / f"{r['id']}.wav").exists() for r in rows)
        events = await pool.fetchval("SELECT count(*) FROM webhook_outbox WHERE event_type = 'recording.ready'")
        assert events == 3
