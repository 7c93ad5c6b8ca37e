"""`hitcall doctor --json` against the sandboxed Asterisk 22 and a migrated database."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.asterisk


def _doctor(env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITCALL_") and k != "DATABASE_URL"}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "hitcall_pbx.cli", "doctor", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_doctor_reports_everything_ok(sandbox, service_dsn, tmp_path):
    proc = _doctor({"DATABASE_URL": service_dsn, "HITCALL_DATA_DIR": str(tmp_path)})
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, report
    assert report["ok"] is True
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["asterisk_version"]["detail"].startswith("Asterisk 22.")
    for name in (
        "database",
        "migrations",
        "database_role",  # the fixtures' service role: no superuser, owns no table
        "ari",
        "stasis_app",
        "module:app_amd.so",
        "module:chan_pjsip.so",
        "module:res_stasis_recording.so",
    ):
        assert checks[name]["ok"], checks[name]


async def test_doctor_fails_readably_when_ari_is_wrong(sandbox, service_dsn, tmp_path):
    proc = _doctor({"DATABASE_URL": service_dsn, "HITCALL_DATA_DIR": str(tmp_path), "HITCALL_ARI_PASSWORD": "wrong"})
    report = json.loads(proc.stdout)
    assert proc.returncode == 1
    ari = next(c for c in report["checks"] if c["name"] == "ari")
    assert not ari["ok"]
    assert "Authentication required" in ari["detail"], ari


async def test_doctor_reports_pending_migrations(sandbox, empty_db_dsn, tmp_path):
    proc = _doctor({"DATABASE_URL": empty_db_dsn, "HITCALL_DATA_DIR": str(tmp_path)})
    report = json.loads(proc.stdout)
    assert proc.returncode == 1
    mig = next(c for c in report["checks"] if c["name"] == "migrations")
    assert not mig["ok"] and "pending" in mig["detail"]
