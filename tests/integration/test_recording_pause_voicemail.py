"""Recording pause spans through the call journal (written once, audited once, replay-safe,
through the spool) and the campaign API's voicemail drop settings, on embedded Postgres."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import asyncpg
import pytest

from hitcall_pbx.auth import Role
from hitcall_pbx.dialer.recording_pause import RecordingPauser
from hitcall_pbx.records.journal import CallJournal, RecordingPauseSpan, apply_ops, decode_op, encode_op
from tests.ari_fake import FakeAri

from .test_api_support import Api, api  # noqa: F401  (fixture)

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _spans(rec: uuid.UUID, att: uuid.UUID) -> list[RecordingPauseSpan]:
    opened = RecordingPauseSpan(rec, att, 1, T0, "agent:7", "agent")
    closed = RecordingPauseSpan(rec, att, 1, T0, "agent:7", None, T0 + timedelta(seconds=20), "alice", "admin")
    second = RecordingPauseSpan(rec, att, 2, T0 + timedelta(seconds=30), "agent:7", "agent")
    ended = RecordingPauseSpan(
        rec, att, 2, T0 + timedelta(seconds=30), "agent:7", None, T0 + timedelta(seconds=45), "system", "system", True
    )
    return [opened, closed, second, ended]


async def test_pause_spans_are_written_and_audited_once_even_when_replayed(db: asyncpg.Pool) -> None:
    rec, att = uuid.uuid4(), uuid.uuid4()
    ops = _spans(rec, att)
    async with db.acquire() as conn:
        async with conn.transaction():
            await apply_ops(conn, ops[:1])  # the open span alone: a batch of its own
        async with conn.transaction():
            await apply_ops(conn, ops)  # a replay of the first with the rest
        async with conn.transaction():
            await apply_ops(conn, [decode_op(encode_op(op)) for op in ops])  # the spool's copy, replayed again
    rows = await db.fetch("SELECT * FROM recording_pauses WHERE recording_id = $1 ORDER BY seq", rec)
    assert [(r["seq"], r["paused_by"], r["resumed_by"], r["ended_by_call"]) for r in rows] == [
        (1, "agent:7", "alice", False),
        (2, "agent:7", "system", True),
    ]
    assert rows[0]["resumed_at"] == T0 + timedelta(seconds=20) and rows[0]["attempt_id"] == att
    audit = await db.fetch(
        "SELECT actor, actor_role, action, object_type, object_id, details FROM audit_log"
        " WHERE object_id = $1 ORDER BY (details->>'seq')::int, id",
        str(rec),
    )
    assert [(a["action"], a["actor"], a["actor_role"]) for a in audit] == [
        ("recording.pause", "agent:7", "agent"),
        ("recording.resume", "alice", "admin"),
        ("recording.pause", "agent:7", "agent"),
        ("recording.resume", "system", "system"),
    ]
    assert all(a["object_type"] == "recording" and a["details"]["attempt_id"] == str(att) for a in audit)
    assert audit[3]["details"]["ended_by_call"] is True


async def test_a_span_opened_and_closed_in_one_batch_gets_both_rows(db: asyncpg.Pool) -> None:
    rec, att = uuid.uuid4(), uuid.uuid4()
    async with db.acquire() as conn, conn.transaction():
        await apply_ops(conn, _spans(rec, att)[:2])
    row = await db.fetchrow("SELECT * FROM recording_pauses WHERE recording_id = $1", rec)
    assert row["resumed_by"] == "alice"
    actions = await db.fetch("SELECT action, actor_role FROM audit_log WHERE object_id = $1 ORDER BY id", str(rec))
    assert [(a["action"], a["actor_role"]) for a in actions] == [
        ("recording.pause", "agent"),
        ("recording.resume", "admin"),
    ]


GOOD = {"name": "Voicemail", "mode": "progressive", "caller_id": "09 4245 1234", "info_message_sound": "sound:info"}


@pytest.fixture
async def boss(api: Api) -> dict[str, str]:
    """A supervisor with a phone: the campaigns they create are theirs to manage."""
    user_id = await api.user("boss", Role.SUPERVISOR)
    await api.pool.execute("INSERT INTO agents (number, name, user_id) VALUES ('9900', 'Boss phone', $1)", user_id)
    return await api.login("boss")


async def test_voicemail_drop_settings_are_validated_naming_the_field(api: Api, boss: dict[str, str]) -> None:
    post = api.client.post
    for bad in ("../../etc/passwd", "acme/vm.wav", "/abs", "a b", "x" * 65, "a/b/c/d/e"):
        resp = await post("/api/v1/campaigns", json={**GOOD, "voicemail_message": bad}, headers=boss)
        assert resp.status == 422, bad
        assert [f["field"] for f in (await resp.json())["details"]["fields"]] == ["voicemail_message"], bad
    resp = await post(
        "/api/v1/campaigns", json={**GOOD, "voicemail_drop": True, "voicemail_message": "acme/vm"}, headers=boss
    )
    assert resp.status == 422
    body = await resp.json()
    assert body["details"]["field"] == "voicemail_drop" and "amd_enabled" in body["message"]
    assert await api.pool.fetchval("SELECT count(*) FROM campaigns") == 0, "nothing half-written"

    good = {**GOOD, "amd_enabled": True, "voicemail_drop": True, "voicemail_message": "acme/vm-fi_2"}
    resp = await post("/api/v1/campaigns", json=good, headers=boss)
    assert resp.status == 201, await resp.text()
    c = await resp.json()
    assert (c["amd_enabled"], c["voicemail_drop"], c["voicemail_message"]) == (True, True, "acme/vm-fi_2")

    # AMD off (or no message) while voicemail drop is on: refused, the campaign unchanged.
    for change in ({"amd_enabled": False}, {"voicemail_message": None}):
        resp = await api.client.patch(f"/api/v1/campaigns/{c['id']}", json=change, headers=boss)
        assert resp.status == 422, change
        assert (await resp.json())["details"]["field"] == "voicemail_drop"
    got = await (await api.client.get(f"/api/v1/campaigns/{c['id']}", headers=boss)).json()
    assert got == c
    resp = await api.client.patch(
        f"/api/v1/campaigns/{c['id']}", json={"voicemail_drop": False, "amd_enabled": False}, headers=boss
    )
    assert resp.status == 200 and (await resp.json())["voicemail_drop"] is False


async def test_openapi_describes_voicemail_drop_and_recording_pause(api: Api) -> None:
    doc = await (await api.client.get("/api/v1/openapi.json")).json()
    create = doc["components"]["schemas"]["CampaignCreate"]["properties"]
    assert {"voicemail_drop", "voicemail_message"} <= set(create)
    assert "/api/v1/agents/{agent_id}/recording/pause" in doc["paths"]
    assert "/api/v1/agents/{agent_id}/recording/resume" in doc["paths"]
    assert "voicemail_dropped" in doc["components"]["schemas"]["Cdr"]["properties"]


class _Recovery:
    def __init__(self) -> None:
        self.on_restart: list = []


class _Dialer:
    """What the recording pauser uses of the dialer: its live calls, pool and hooks."""

    def __init__(self, pool: asyncpg.Pool, calls: dict) -> None:
        self.pool, self.calls = pool, calls
        self.on_call_end: list = []
        self.recovery = _Recovery()


class _Sessions:
    def on_dtmf(self, fn) -> None:
        self.key = fn


def _live_call(attempt: uuid.UUID, recording: uuid.UUID) -> SimpleNamespace:
    return SimpleNamespace(
        channel_id=str(attempt),
        recording_id=recording,
        agent_id=3,
        attempt=SimpleNamespace(id=attempt),
        campaign=SimpleNamespace(id=1),
        fsm=SimpleNamespace(ended_at=T0 + timedelta(minutes=5)),
    )


async def test_after_a_restart_an_adopted_call_stays_paused_and_orphaned_spans_close(db: asyncpg.Pool) -> None:
    adopted_rec, adopted_att = uuid.uuid4(), uuid.uuid4()
    gone_rec, gone_att = uuid.uuid4(), uuid.uuid4()
    async with db.acquire() as conn, conn.transaction():  # what the previous process left
        await apply_ops(
            conn,
            [
                RecordingPauseSpan(adopted_rec, adopted_att, 1, T0, "agent:3", "agent"),
                RecordingPauseSpan(gone_rec, gone_att, 1, T0, "agent:4", "agent"),
            ],
        )
    journal = CallJournal(db)
    await journal.start()
    try:
        call = _live_call(adopted_att, adopted_rec)
        dialer = _Dialer(db, {call.channel_id: call})
        ari = FakeAri()
        pauser = RecordingPauser(ari, dialer, _Sessions(), journal)
        assert dialer.recovery.on_restart == [pauser.recover] and dialer.on_call_end == [pauser.call_ended]
        await pauser.recover(None)
        live = pauser._live[call.channel_id]
        assert live.pauses.paused and live.pauses.current.paused_by == "agent:3"
        # A transfer carries the recording to another bridge: the new live recording is muted too.
        started = SimpleNamespace(type="RecordingStarted", recording=SimpleNamespace(name=str(adopted_rec)))
        await pauser.handle_event(started)
        other = SimpleNamespace(type="RecordingStarted", recording=SimpleNamespace(name=str(uuid.uuid4())))
        await pauser.handle_event(other)
        assert [(r.method, r.args) for r in ari.rest.requests] == [("mute_live", (str(adopted_rec),))]
        gone = await db.fetchrow("SELECT * FROM recording_pauses WHERE recording_id = $1", gone_rec)
        assert gone["resumed_by"] == "system" and gone["ended_by_call"] and gone["resumed_at"] is not None
        event = await db.fetchrow("SELECT * FROM webhook_outbox WHERE event_type = 'recording.resumed'")
        assert event["payload"]["recording_id"] == str(gone_rec) and event["payload"]["ended_by_call"] is True
        # The adopted call ends while still paused: its span closes at the call's end.
        pauser.call_ended(call, None)
        await journal.flush()
    finally:
        await journal.close()
    row = await db.fetchrow("SELECT * FROM recording_pauses WHERE recording_id = $1", adopted_rec)
    assert row["resumed_at"] == T0 + timedelta(minutes=5) and row["ended_by_call"]
    actions = await db.fetch("SELECT object_id, action, actor FROM audit_log WHERE action = 'recording.resume'")
    assert {(a["object_id"], a["actor"]) for a in actions} == {(str(gone_rec), "system"), (str(adopted_rec), "system")}
