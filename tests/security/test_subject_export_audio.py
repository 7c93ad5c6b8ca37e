"""Subject export with audio (POST /api/v1/subjects/export.zip) through the API as the
service wires it: the export directory is created on demand, the zip holds the JSON and
the recording's audio byte for byte, and the audit row is written once the export exists,
with its result (ok, or failed with nothing handed over)."""

from __future__ import annotations

import io
import json
import stat
import zipfile

from hitcall_pbx.auth import Role
from tests.security.service_api import ServiceApi, seed_recorded_call, service_api  # noqa: F401

NUMBER = "+358401234567"


async def export_rows(api: ServiceApi) -> list[dict]:
    rows = await api.pool.fetch("SELECT * FROM audit_log WHERE action = 'subject.export' ORDER BY id")
    return [dict(r) for r in rows]


async def test_export_with_audio_answers_the_zip_with_the_real_recording(service_api: ServiceApi, tmp_path):
    api = service_api
    seeded = await seed_recorded_call(api.pool, api.store, tmp_path, number=NUMBER, name="Maija Meikäläinen")
    recording = seeded["recording"]
    assert not (api.data_dir / "exports").exists()
    headers = await api.login_as(Role.COMPLIANCE)

    resp = await api.client.post("/api/v1/subjects/export.zip", json={"subject": {"phone": NUMBER}}, headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "application/zip"
    body = await resp.read()
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        data = json.loads(z.read("export.json"))
        [entry] = data["recordings"]
        assert entry["id"] == str(recording.id)
        assert entry["audio_file"] == f"recordings/{recording.id}.wav"
        audio = z.read(entry["audio_file"])
    assert audio == seeded["audio"] and audio[:4] == b"RIFF"
    assert data["contacts"][0]["name"] == "Maija Meikäläinen"

    exports = api.data_dir / "exports"
    assert stat.S_IMODE(exports.stat().st_mode) == 0o700
    assert list(exports.iterdir()) == []  # the archive is deleted once sent

    [row] = await export_rows(api)
    assert row["details"]["result"] == "ok"
    assert row["details"]["include_audio"] is True
    assert row["details"]["audio_recording_ids"] == [str(recording.id)]
    assert NUMBER not in json.dumps(row["details"])


async def test_a_failed_export_is_audited_as_failed_and_hands_nothing_over(service_api: ServiceApi, tmp_path):
    api = service_api
    await seed_recorded_call(api.pool, api.store, tmp_path, number=NUMBER, name="Maija")
    api.data_dir.mkdir(parents=True, exist_ok=True)
    (api.data_dir / "exports").write_text("not a directory")  # the archive cannot be written
    headers = await api.login_as(Role.COMPLIANCE)

    resp = await api.client.post("/api/v1/subjects/export.zip", json={"subject": {"phone": NUMBER}}, headers=headers)
    assert resp.status == 503, await resp.text()
    error = await resp.json()
    assert error["error"] == "unavailable"
    assert "exports" not in json.dumps(error)  # no server paths in the answer

    [row] = await export_rows(api)
    assert row["details"]["result"] == "failed"
    assert row["details"]["error"] in ("NotADirectoryError", "FileExistsError")
    assert "audio_recording_ids" not in row["details"]


async def test_json_export_is_audited_with_its_result(service_api: ServiceApi, tmp_path):
    api = service_api
    await seed_recorded_call(api.pool, api.store, tmp_path, number=NUMBER, name="Maija")
    headers = await api.login_as(Role.COMPLIANCE)
    resp = await api.client.post("/api/v1/subjects/export", json={"subject": {"phone": NUMBER}}, headers=headers)
    assert resp.status == 200, await resp.text()
    [row] = await export_rows(api)
    assert (row["details"]["result"], row["details"]["include_audio"]) == ("ok", False)
