"""Every way of fetching recording audio is audited before a byte leaves: stream and download
with any Range (none, from 0, from 1, a suffix, a middle slice, several ranges, garbage),
HEAD, and the subject export with audio; at least once per user x recording x session or
API token. With the audit write failing, no audio byte leaves at all."""

from __future__ import annotations

import hashlib
import io
import uuid
import zipfile

import asyncpg
import pytest

from hitcall_pbx.auth import Role
from hitcall_pbx.store.db import dsn_with_database
from tests.integration.test_api_support import SYSTEM
from tests.security.service_api import ServiceApi, seed_recorded_call, service_api  # noqa: F401

NUMBER = "+358401234567"
RANGES: list[str | None] = [
    None,
    "bytes=0-",
    "bytes=1-",
    "bytes=-100000",
    "bytes=-100",
    "bytes=100-199",
    "bytes=0-1,5-6",
    "bytes=10-20, 30-40",
    "bytes=abc",
    "items=0-1",
]
ROUTES = {"stream": "recording.listen", "download": "recording.download"}


async def _credential(api: ServiceApi, kind: str) -> dict[str, str]:
    if kind == "session":  # (a supervisor would need a phone on the recorded campaign)
        return await api.login_as(Role.ADMIN)
    name = f"cmp-{uuid.uuid4().hex[:8]}"
    user = await api.auth.create_user(username=name, role=Role.COMPLIANCE, password=None, actor=SYSTEM)
    grant = await api.auth.create_token(
        user_id=user["id"], name="player", scopes=["recordings:read"], expires_at=None, actor=SYSTEM
    )
    return {"Authorization": f"Bearer {grant.token}"}


async def _rows(api: ServiceApi, recording_id: object, action: str | None = None) -> list[dict]:
    """Rows of accesses to the recording's audio (not its recording.store row)."""
    rows = await api.pool.fetch(
        "SELECT * FROM audit_log WHERE object_type = 'recording' AND object_id = $1"
        " AND action IN ('recording.listen', 'recording.download', 'recording.export')"
        " AND ($2::text IS NULL OR action = $2) ORDER BY id",
        str(recording_id),
        action,
    )
    return [dict(r) for r in rows]


@pytest.fixture
async def recorded(service_api: ServiceApi, tmp_path) -> dict:
    return await seed_recorded_call(service_api.pool, service_api.store, tmp_path, number=NUMBER, name="Maija M")


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("kind", ["session", "token"])
async def test_every_range_form_is_audited_before_audio_leaves(
    service_api: ServiceApi, recorded: dict, route: str, kind: str
) -> None:
    api, rec, audio = service_api, recorded["recording"].id, recorded["audio"]
    served = 0
    for rng in RANGES:
        headers = await _credential(api, kind)  # a new credential per form: each must leave its own row
        if rng is not None:
            headers["Range"] = rng
        before = len(await _rows(api, rec))
        resp = await api.client.get(f"/api/v1/recordings/{rec}/{route}", headers=headers)
        body = await resp.read()
        assert resp.status in (200, 206, 416), (rng, resp.status)
        assert resp.headers["Cache-Control"] == "no-store"
        if resp.status in (200, 206):
            served += 1
            assert body and body in audio, rng
        else:
            assert body[:4] != b"RIFF"
        new = (await _rows(api, rec))[before:]
        assert [r["action"] for r in new] == [ROUTES[route]], (rng, new)
        me = await (await api.client.get("/api/v1/me", headers=headers)).json()
        assert new[0]["actor"] == (me["username"] if kind == "session" else f"token:{me['token_id']}")
        credential = new[0]["details"]["credential"]
        assert credential.startswith("token:" if kind == "token" else "session:")
        token = headers["Authorization"].removeprefix("Bearer ")
        assert token not in credential and hashlib.sha256(token.encode()).hexdigest() not in str(new[0]["details"])
    assert served == 6  # the whole file and each single range were served, each audited first


async def test_stream_is_audited_once_per_credential_download_every_time(service_api: ServiceApi, recorded: dict):
    api, rec = service_api, recorded["recording"].id
    first, second = await _credential(api, "session"), await _credential(api, "session")
    for rng in ("bytes=1000-1999", "bytes=0-", "bytes=-500", "bytes=2000-"):
        resp = await api.client.get(f"/api/v1/recordings/{rec}/stream", headers={**first, "Range": rng})
        assert resp.status == 206
        await resp.read()
    assert len(await _rows(api, rec, "recording.listen")) == 1  # one listen of one session
    resp = await api.client.get(f"/api/v1/recordings/{rec}/stream", headers={**second, "Range": "bytes=500-"})
    assert resp.status == 206
    assert len(await _rows(api, rec, "recording.listen")) == 2  # another session: its own row
    for _ in range(3):
        assert (await api.client.get(f"/api/v1/recordings/{rec}/download", headers=first)).status == 200
    assert len(await _rows(api, rec, "recording.download")) == 3


async def test_head_serves_no_audio(service_api: ServiceApi, recorded: dict) -> None:
    api, rec = service_api, recorded["recording"].id
    headers = await _credential(api, "session")
    for route in ROUTES:
        resp = await api.client.head(f"/api/v1/recordings/{rec}/{route}", headers=headers)
        assert resp.status == 405
        assert await resp.read() == b""
    assert await _rows(api, rec) == []


async def test_subject_export_audio_is_audited_per_recording(service_api: ServiceApi, recorded: dict) -> None:
    api, rec = service_api, recorded["recording"].id
    headers = await api.login_as(Role.COMPLIANCE)
    resp = await api.client.post("/api/v1/subjects/export.zip", json={"subject": {"phone": NUMBER}}, headers=headers)
    assert resp.status == 200, await resp.text()
    with zipfile.ZipFile(io.BytesIO(await resp.read())) as z:
        assert z.read(f"recordings/{rec}.wav") == recorded["audio"]
    [row] = await _rows(api, rec)
    assert row["action"] == "recording.export" and row["details"]["credential"].startswith("session:")
    # the JSON export (no audio) is not an access to audio
    resp = await api.client.post("/api/v1/subjects/export", json={"subject": {"phone": NUMBER}}, headers=headers)
    assert resp.status == 200
    assert len(await _rows(api, rec)) == 1


async def test_no_audio_leaves_when_the_audit_row_cannot_be_written(
    service_api: ServiceApi, recorded: dict, pg_dsn: str
) -> None:
    api, rec, audio = service_api, recorded["recording"].id, recorded["audio"]
    # the audit store refuses recording rows (installed by the server's admin, not the service's role)
    admin = await asyncpg.connect(dsn_with_database(pg_dsn, await api.pool.fetchval("SELECT current_database()")))
    try:
        await admin.execute(
            """CREATE FUNCTION test_refuse_recording_audit() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN IF NEW.action LIKE 'recording.%' THEN RAISE EXCEPTION 'audit store refuses'; END IF;
                  RETURN NEW; END $$;
               CREATE TRIGGER test_refuse_recording_audit BEFORE INSERT ON audit_log
               FOR EACH ROW EXECUTE FUNCTION test_refuse_recording_audit();"""
        )
    finally:
        await admin.close()
    headers = await _credential(api, "session")
    for route in ROUTES:
        for rng in RANGES:
            h = dict(headers) if rng is None else {**headers, "Range": rng}
            resp = await api.client.get(f"/api/v1/recordings/{rec}/{route}", headers=h)
            body = await resp.read()
            assert resp.status == 500, (route, rng, resp.status)
            assert b"RIFF" not in body and audio[100:200] not in body
    compliance = await api.login_as(Role.COMPLIANCE)
    resp = await api.client.post("/api/v1/subjects/export.zip", json={"subject": {"phone": NUMBER}}, headers=compliance)
    body = await resp.read()
    assert resp.status == 500 and not body.startswith(b"PK") and audio[:64] not in body
    exports = api.data_dir / "exports"
    assert not exports.exists() or list(exports.iterdir()) == []  # the archive was not kept either
