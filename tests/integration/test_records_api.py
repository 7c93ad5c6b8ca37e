"""The records adapters the REST API uses, on real Postgres and a real recordings store."""

from __future__ import annotations

import uuid
import wave
from datetime import UTC, datetime, timedelta

import pytest

from hitcall_pbx.api import deps
from hitcall_pbx.auth import Actor
from hitcall_pbx.core.retention import RetentionPolicy
from hitcall_pbx.demo.seed import create_campaign
from hitcall_pbx.errors import NotFound, ValidationFailed
from hitcall_pbx.records.api import ApiCdrs, ApiRecordings
from hitcall_pbx.records.recordings import RecordingStore

ACTOR = Actor(name="compliance1", role="compliance", source_ip="127.0.0.1")


async def _recorded_calls(db, store, tmp_path, n):
    cid, _ = await create_campaign(db, "rec-api", mode="progressive", state="running")
    now = datetime.now(UTC)
    ids = []
    for i in range(n):
        attempt = uuid.uuid4()
        await db.execute(
            """INSERT INTO call_attempts (id, campaign_id, caller_id, mode, state, created_at, ended_at, outcome,
                                          retention_until) VALUES ($1, $2, '+358201234567', 'progressive', 'ended',
                                          $3, $3, 'answered_human', $4)""",
            attempt,
            cid,
            now - timedelta(minutes=n - i),
            now + timedelta(days=700),
        )
        src = tmp_path / f"src{i}.wav"
        with wave.open(str(src), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000), w.writeframes(b"\0\0" * 8000)
        rec = await store.finalize(
            db,
            source_path=src,
            recording_id=uuid.uuid4(),
            attempt_id=attempt,
            campaign_id=cid,
            call_at=now - timedelta(minutes=n - i),
            policy=RetentionPolicy(),
            format="wav",
        )
        ids.append(rec.id)
    return cid, ids


async def test_recordings_list_pages_open_hold_release(db, tmp_path):
    store = RecordingStore(tmp_path / "store")
    cid, ids = await _recorded_calls(db, store, tmp_path, 3)
    api = ApiRecordings(db, store)
    first = await api.list(deps.RecordingFilter(campaign_id=cid), limit=2, cursor=None)
    assert [r.id for r in first.items] == ids[:2] and first.next_cursor
    second = await api.list(deps.RecordingFilter(campaign_id=cid), limit=2, cursor=first.next_cursor)
    assert [r.id for r in second.items] == ids[2:] and second.next_cursor is None
    with pytest.raises(ValidationFailed):
        await api.list(deps.RecordingFilter(), limit=2, cursor="not-a-cursor")
    f = await api.open(ids[0])
    assert f.path.is_file() and f.content_type == "audio/wav" and f.filename == f"{ids[0]}.wav"
    held = await api.hold(ids[0], reason="complaint", case_id="C-1", until=None, actor=ACTOR)
    assert held.held_until is not None and held.hold_case_id == "C-1"
    assert (await api.list(deps.RecordingFilter(held=True), limit=10, cursor=None)).items[0].id == ids[0]
    released = await api.release(ids[0], actor=ACTOR)
    assert released.held_until is None
    with pytest.raises(NotFound):
        await api.get(uuid.uuid4())


async def test_cdr_query_adapter(db):
    cid, _ = await create_campaign(db, "cdr-api", mode="progressive", state="running")
    now = datetime.now(UTC)
    for i, outcome in enumerate(["busy", "answered_human", "busy"]):
        await db.execute(
            """INSERT INTO call_attempts (id, campaign_id, caller_id, mode, state, created_at, ended_at, outcome,
                                          retention_until) VALUES ($1, $2, '+358201234567', 'progressive', 'ended',
                                          $3, $3, $4, $5)""",
            uuid.uuid4(),
            cid,
            now - timedelta(minutes=3 - i),
            outcome,
            now + timedelta(days=700),
        )
    api = ApiCdrs(db)
    page = await api.query(deps.CdrFilter(campaign_id=cid, outcome="busy"), limit=10, cursor=None)
    assert [c.outcome for c in page.items] == ["busy", "busy"]
    csv = b"".join([chunk async for chunk in api.export_csv(deps.CdrFilter(campaign_id=cid))]).decode()
    assert csv.splitlines()[0].startswith("id,") and len(csv.strip().splitlines()) == 4
