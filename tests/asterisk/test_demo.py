"""`hitcall demo`, shortened, end to end on the real sandbox: its summary matches the database."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from hitcall_pbx.demo import run_demo

pytestmark = pytest.mark.asterisk


async def test_demo_summary_matches_the_database(service_settings, service_dsn, sandbox, hangup_agents, capsys):
    args = argparse.Namespace(agents=2, customers=30, minutes=0.5, keep_sandbox=True, json=True)
    assert await run_demo(service_settings, args, sandbox=sandbox) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert "preview" in captured.err and "predictive" in captured.err, "live progress went to stderr"
    assert "/web/supervisor?campaign=" in captured.err and "/web/agent" in captured.err, "the browser addresses"

    assert summary["agents_logged_in"] == 2
    assert summary["attempts"] > 0 and summary["by_mode"].get("preview", 0) > 0
    conn = await asyncpg.connect(service_dsn)
    try:
        cid = summary["campaign_id"]
        rows = await conn.fetch("SELECT * FROM all_attempts WHERE campaign_id = $1", cid)
        assert summary["attempts"] == len(rows) == summary["cdrs"], "one CDR per attempt"
        assert all(r["state"] == "ended" and r["outcome"] for r in rows), "no call left open"
        outcomes: dict[str, int] = {}
        for r in rows:
            outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
        assert summary["outcomes"] == outcomes
        assert summary["connects"] == sum(1 for r in rows if r["bridged_at"] is not None)
        assert summary["abandoned"] == sum(1 for r in rows if r["abandoned"])
        assert await conn.fetchval("SELECT state FROM campaigns WHERE id = $1", cid) == "finished"

        recordings = await conn.fetch("SELECT * FROM recordings WHERE campaign_id = $1", cid)
        assert summary["recordings"] == len(recordings)
        # A recording campaign: connected calls are recorded (one that ends within milliseconds may not be).
        assert 0 < len(recordings) <= summary["connects"]
        root = service_settings.data_dir / "recordings"
        for rec in recordings:
            path = root / rec["path"]
            assert path.is_file() and path.stat().st_size == rec["size_bytes"]
            assert rec["retention_until"] is not None
            assert (
                rec["created_at"] + timedelta(days=59)
                < rec["retention_until"]
                <= rec["created_at"] + timedelta(days=186)
            )

        html, csv_path, json_path = summary["report_files"]
        report = json.loads(Path(json_path).read_text())["campaigns"][0]
        assert report["campaign_id"] == cid and report["calls"] == len(rows)
        assert report["connects"] == summary["connects"]
        assert Path(html).read_text().startswith("<!DOCTYPE html>")
        assert Path(csv_path).read_text().startswith("day,")
        assert await conn.fetchval("SELECT count(*) FROM agents WHERE state <> 'logged_out'") == 0
    finally:
        await conn.close()


def test_customer_mix_and_bad_options(capsys):
    import random

    from hitcall_pbx.demo.run import CUSTOMER_MIX, check_args, customer_numbers

    numbers = customer_numbers(200, 5001, random.Random(1))
    assert len(numbers) == len(set(numbers)) == 200
    by_behaviour = {b: sum(1 for n in numbers if n[6] == str(b)) for b, _ in CUSTOMER_MIX}
    assert by_behaviour == {b: round(200 * share) for b, share in CUSTOMER_MIX}
    assert all(n.startswith("+35840") and len(n) == 13 for n in numbers)
    assert check_args(argparse.Namespace(agents=0, customers=10, minutes=1)) == "--agents must be 1..100"
    assert check_args(argparse.Namespace(agents=2, customers=10, minutes=0.01)) == "--minutes must be 0.1..120"


async def test_bad_option_exits_2_before_starting_anything(tmp_path, capsys):
    from hitcall_pbx.settings import load_settings

    settings = load_settings(data_dir=tmp_path / "never")
    args = argparse.Namespace(agents=2, customers=0, minutes=1.0, keep_sandbox=False, json=True)
    assert await run_demo(settings, args) == 2
    assert capsys.readouterr().err == "hitcall demo: --customers must be 1..100000\n"
    assert not (tmp_path / "never").exists()
