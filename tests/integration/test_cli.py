"""The `hitcall` command: migrations and settings errors, as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HITCALL = [sys.executable, "-m", "hitcall_pbx.cli"]


def _run(args, env_extra, timeout=120):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITCALL_") and k != "DATABASE_URL"}
    env.update(env_extra)
    return subprocess.run(HITCALL + args, env=env, capture_output=True, text=True, timeout=timeout)


async def test_migrate_twice_then_status(empty_db_dsn, tmp_path):
    env = {"DATABASE_URL": empty_db_dsn, "HITCALL_DATA_DIR": str(tmp_path)}
    first = _run(["migrate"], env)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_initial" in first.stdout
    second = _run(["migrate"], env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "up to date"
    status = _run(["migrate", "--status"], env)
    assert status.returncode == 0
    lines = status.stdout.strip().splitlines()
    assert lines[0].startswith("0001_initial ") and "pending" not in status.stdout


@pytest.mark.parametrize(
    "env, setting",
    [
        ({"HITCALL_ARI_URL": "ftp://asterisk"}, "HITCALL_ARI_URL"),
        ({"DATABASE_URL": "mysql://x@y/z"}, "DATABASE_URL"),
        ({"HITCALL_LOG_LEVEL": "LOUD"}, "HITCALL_LOG_LEVEL"),
        ({"HITCALL_HTTP_PORT": "99999"}, "HITCALL_HTTP_PORT"),
        ({"HITCALL_ARI_URL": "http://10.1.2.3:8088/ari"}, "HITCALL_ARI_PASSWORD"),
        ({"HITCALL_PURGE_INTERVAL_S": "hourly"}, "HITCALL_PURGE_INTERVAL_S"),
        ({"HITCALL_PURGE_INTERVAL_S": "-1"}, "HITCALL_PURGE_INTERVAL_S"),
        ({"HITCALL_SHUTDOWN_GRACE_S": "nan"}, "HITCALL_SHUTDOWN_GRACE_S"),
        ({"HITCALL_SHUTDOWN_GRACE_S": "1e9"}, "HITCALL_SHUTDOWN_GRACE_S"),
    ],
)
def test_bad_setting_is_one_readable_line_exit_2(env, setting):
    proc = _run(["migrate", "--status"], env, timeout=30)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert setting in lines[0]


def test_unreachable_database_is_one_line_exit_1(tmp_path):
    proc = _run(["migrate"], {"DATABASE_URL": "postgresql://u:secret@127.0.0.1:1/db"}, timeout=60)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "secret" not in proc.stderr and "127.0.0.1" in proc.stderr
