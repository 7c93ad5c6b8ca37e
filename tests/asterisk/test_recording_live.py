"""A bridged call on the real sandboxed Asterisk is recorded and finalized into the store."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
import wave
from datetime import UTC, datetime

import pytest

from hitcall_pbx.core.retention import RetentionPolicy, add_months
from hitcall_pbx.records.recordings import RecordingStore

pytestmark = pytest.mark.asterisk


async def test_bridge_recording_lands_in_the_store_with_its_row(ari, sandbox, db, tmp_path):
    tag = uuid.uuid4().hex[:12]
    customer, agent = f"t-{tag}-c", f"t-{tag}-a"
    name = f"t-rec-{tag}"
    log = ari.events_log
    await ari.rest.originate("Local/answer@sim-customer", customer, app=ari.app, timeout=20)
    await ari.rest.originate("Local/hello@sim-customer", agent, app=ari.app, timeout=20)
    for cid in (customer, agent):
        await log.wait_for("StasisStart", lambda e, cid=cid: e.channel.id == cid)
    bridge = await ari.rest.create_bridge(bridge_id=f"t-b-{tag}", type="mixing")
    try:
        await ari.rest.add_channel(bridge.id, [customer, agent])
        for cid in (customer, agent):
            await log.wait_for("ChannelEnteredBridge", lambda e, cid=cid: e.channel and e.channel.id == cid)
        call_at = datetime.now(UTC)
        await ari.rest.record_bridge(bridge.id, name, "wav", if_exists="overwrite")
        await log.wait_for("RecordingStarted", lambda e: e.recording.name == name)
        await asyncio.sleep(1.0)
        await ari.rest.stop_live(name)
        await log.wait_for("RecordingFinished", lambda e: e.recording.name == name)
    finally:
        for cid in (customer, agent):
            await ari.rest.hangup(cid)
        await ari.rest.destroy_bridge(bridge.id)

    source = sandbox.recordings_dir / f"{name}.wav"
    assert source.is_file()
    campaign = await db.fetchval("INSERT INTO campaigns (name, mode) VALUES ('live', 'progressive') RETURNING id")
    attempt = uuid.uuid4()
    await db.execute(
        """INSERT INTO live_attempts (id, campaign_id, dialled_number, caller_id, mode, created_at, retention_until)
           VALUES ($1, $2, '+358401000001', '+358931234567', 'progressive', $3, $4)""",
        attempt,
        campaign,
        call_at,
        add_months(call_at, 24),
    )
    store = RecordingStore(tmp_path / "recordings")
    policy = RetentionPolicy(recordings_months=4)
    rec = await store.finalize(
        db,
        source_path=source,
        recording_id=uuid.uuid4(),
        attempt_id=attempt,
        campaign_id=campaign,
        call_at=call_at,
        policy=policy,
        format="wav",
    )

    stored = store.absolute(rec.path)
    assert stored.is_file() and not source.exists()
    content = stored.read_bytes()
    row = await db.fetchrow("SELECT * FROM recordings WHERE id = $1", rec.id)
    assert row["sha256"] == hashlib.sha256(content).hexdigest()
    assert row["size_bytes"] == len(content) > 44
    with wave.open(str(stored), "rb") as w:
        assert w.getframerate() == 8000 and w.getnframes() > 0
    assert 0.5 <= float(row["duration_s"]) <= 3.0
    assert row["retention_until"] == add_months(call_at, 4)
    assert (await store.check(db)).ok
