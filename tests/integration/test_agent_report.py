"""The agent productivity report on real Postgres: constructed state logs and CDRs give the
right figures through the loader, the `hitcall report agents` command and the API, and
each role sees only the agents it may."""

from __future__ import annotations

import argparse
import csv
import io
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hitcall_pbx.auth import Role
from hitcall_pbx.demo.seed import create_agent, create_campaign
from hitcall_pbx.report import command as report_command
from hitcall_pbx.report.agents import load_agent_report
from hitcall_pbx.report.agents_render import render_agents
from hitcall_pbx.store.db import Database

from .test_api_support import Api, api  # noqa: F401  (fixture)

HEL = ZoneInfo("Europe/Helsinki")
DAY = date(2026, 3, 10)
# 08:00 in Helsinki on DAY (UTC+2 in March).
EIGHT = datetime(2026, 3, 10, 6, 0, tzinfo=UTC)


async def _shift(pool, agent_id: int, campaign_id: int, at: datetime, spans: list[tuple[str, float, str | None]]):
    """Back-to-back agent_state_log rows from `at`; the last one stays open."""
    for i, (state, seconds, code) in enumerate(spans):
        end = None if i == len(spans) - 1 else at + timedelta(seconds=seconds)
        await pool.execute(
            """INSERT INTO agent_state_log (agent_id, state, pause_code, campaign_id, started_at, ended_at)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            agent_id,
            state,
            code,
            campaign_id,
            at,
            end,
        )
        at += timedelta(seconds=seconds)


async def _cdr(pool, campaign_id: int, agent_id: int, created: datetime, *, bridged: bool, disposition=None):
    await pool.execute(
        """INSERT INTO call_attempts (id, campaign_id, dialled_number, caller_id, agent_id, mode, state, created_at,
               answered_at, bridged_at, ended_at, ring_s, talk_s, outcome, disposition, retention_until)
           VALUES ($1, $2, '+358401000001', '+358201234567', $3, 'progressive', 'ended', $4::timestamptz, $5, $5,
                   $4::timestamptz + interval '5 min', 3, 200, $6, $7, $4::timestamptz + interval '2 years')""",
        uuid.uuid4(),
        campaign_id,
        agent_id,
        created,
        created + timedelta(seconds=3) if bridged else None,
        "answered_human" if bridged else "no_answer",
        disposition,
    )


async def _world(pool) -> dict[str, int]:
    c1, _ = await create_campaign(pool, "report-a", state="running")
    c2, _ = await create_campaign(pool, "report-b", state="running")
    a1 = await create_agent(pool, "2001", "agent201", [c1], name="Aino")
    a2 = await create_agent(pool, "2002", "agent202", [c2], name="Bertil")
    await _shift(
        pool,
        a1,
        c1,
        EIGHT,
        [
            ("ready", 600, None),
            ("reserved", 20, None),
            ("on_call", 300, None),
            ("wrap_up", 60, None),
            ("paused", 900, "lunch"),
            ("ready", 120, None),
            ("logged_out", 0, None),
        ],
    )
    await _cdr(pool, c1, a1, EIGHT + timedelta(seconds=600), bridged=True, disposition="sale")
    await _cdr(pool, c1, a1, EIGHT + timedelta(seconds=1700), bridged=False)
    # The day before in Helsinki (23:30 local), though the same UTC day as nothing: not counted.
    await _cdr(pool, c1, a1, datetime(2026, 3, 9, 21, 30, tzinfo=UTC), bridged=True, disposition="sale")
    await _shift(pool, a2, c2, EIGHT, [("ready", 3600, None), ("paused", 600, "coffee"), ("logged_out", 0, None)])
    return {"c1": c1, "c2": c2, "a1": a1, "a2": a2}


async def test_loader_figures_from_state_log_and_cdrs(db) -> None:
    w = await _world(db)
    days = await load_agent_report(db, DAY, HEL, now=EIGHT + timedelta(days=2))
    by_id = {d.agent_id: d for d in days}
    a1 = by_id[w["a1"]]
    assert (a1.number, a1.name) == ("2001", "Aino")
    assert (a1.ready_s, a1.reserved_s, a1.talk_s, a1.wrap_up_s, a1.paused_s) == (720, 20, 300, 60, 900)
    assert a1.logged_in_s == 2000 and a1.pause_s == {"lunch": 900}
    assert (a1.calls, a1.connects, a1.dispositions, a1.average_handle_s) == (2, 1, {"sale": 1}, 360)
    a2 = by_id[w["a2"]]
    assert (a2.logged_in_s, a2.pause_s, a2.calls, a2.average_handle_s) == (4200, {"coffee": 600}, 0, None)
    only = await load_agent_report(db, DAY, HEL, agent_ids=[w["a2"]], now=EIGHT + timedelta(days=2))
    assert [d.agent_id for d in only] == [w["a2"]]
    # UTC days put the 23:30 call on DAY-1 as well; the Helsinki day is what counts here.
    assert (await load_agent_report(db, DAY - timedelta(days=1), HEL, now=EIGHT))[0].calls == 1

    data = json.loads(render_agents(days, "json", day=DAY, zone=HEL))
    assert data["time_zone"] == "Europe/Helsinki" and data["agents"][0]["pause_s"] == {"lunch": 900.0}
    rows = list(csv.DictReader(io.StringIO(render_agents(days, "csv", day=DAY, zone=HEL))))
    assert rows[0]["pause_codes"] == "lunch=900" and rows[0]["dispositions"] == "sale=1"
    assert rows[0]["average_handle_s"] == "360.0" and rows[1]["average_handle_s"] == ""
    page = render_agents(days, "html", day=DAY, zone=HEL)
    assert page.count("<svg") == 2 and "Aino" in page and "Agent productivity" in page


async def test_api_roles_see_their_agents_and_bad_input_is_422(api: Api) -> None:
    w = await _world(api.pool)
    api.clock.now = EIGHT + timedelta(days=2)
    admin = await api.as_role(Role.ADMIN)
    url = f"/api/v1/reports/agents?date={DAY.isoformat()}"
    resp = await api.client.get(url, headers=admin)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["time_zone"] == "Europe/Helsinki" and body["day"] == DAY.isoformat()
    assert sorted(a["agent_id"] for a in body["agents"]) == sorted([w["a1"], w["a2"]])
    mine = next(a for a in body["agents"] if a["agent_id"] == w["a1"])
    assert (mine["logged_in_s"], mine["talk_s"], mine["calls"], mine["dispositions"]) == (2000, 300, 2, {"sale": 1})

    # An agent sees itself only.
    await api.user("aino", Role.AGENT)
    user_id = await api.pool.fetchval("SELECT id FROM users WHERE username = 'aino'")
    await api.pool.execute("UPDATE agents SET user_id = $1 WHERE id = $2", user_id, w["a1"])
    aino = await api.login("aino")
    resp = await api.client.get(url, headers=aino)
    assert [a["agent_id"] for a in (await resp.json())["agents"]] == [w["a1"]]
    resp = await api.client.get(f"{url}&agent_id={w['a2']}", headers=aino)
    assert resp.status == 403

    # A supervisor sees the agents of the campaigns of their own phone's agent row.
    await api.user("sari", Role.SUPERVISOR)
    sup_id = await api.pool.fetchval("SELECT id FROM users WHERE username = 'sari'")
    phone = await create_agent(api.pool, "2099", "sup299", [w["c2"]], name="Sari")
    await api.pool.execute("UPDATE agents SET user_id = $1 WHERE id = $2", sup_id, phone)
    sari = await api.login("sari")
    resp = await api.client.get(url, headers=sari)
    assert [a["agent_id"] for a in (await resp.json())["agents"]] == [w["a2"]]
    resp = await api.client.get(f"{url}&agent_id={w['a1']}", headers=sari)
    assert resp.status == 403 and (await resp.json())["details"]["field"] == "agent_id"

    for query, field in (("date=2026-13-01", "date"), ("date=yesterday", "date"), ("tz=Mars/Olympus", "tz")):
        resp = await api.client.get(f"/api/v1/reports/agents?{query}", headers=admin)
        assert resp.status == 422, query
        assert [f["field"] for f in (await resp.json())["details"]["fields"]] == [field]
    audits = await api.audit_rows("report.agents")
    assert len(audits) == 3, "each report served is audited"
    assert audits[0]["details"] == {"day": DAY.isoformat(), "tz": "Europe/Helsinki", "agents": 2}


def _args(**kw) -> argparse.Namespace:
    base = {"kind": "agents", "date": DAY.isoformat(), "format": "json", "out": None, "tz": None, "agent": None}
    return argparse.Namespace(**(base | kw))


async def test_command_writes_each_format_and_refuses_bad_input(report_settings, tmp_path, capsys) -> None:
    async with Database(report_settings) as database:
        await _world(database.pool)
    out = tmp_path / "out"
    assert await report_command.run(report_settings, _args(out=out / "a.json")) == 0
    assert [a["name"] for a in json.loads((out / "a.json").read_text())["agents"]] == ["Aino", "Bertil"]
    assert await report_command.run(report_settings, _args(format="csv", agent=1, out=out / "a.csv")) == 0
    lines = (out / "a.csv").read_text().splitlines()
    assert lines[0].startswith("day,agent_id,number,name,logged_in_s") and len(lines) == 2
    target = tmp_path / "out" / "agents.html"
    assert await report_command.run(report_settings, _args(format="html", out=target)) == 0
    assert target.read_text().count("<svg") == 2

    capsys.readouterr()
    assert await report_command.run(report_settings, _args(date="10.3.2026")) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == ["hitcall report: --date must be a date as YYYY-MM-DD, got '10.3.2026'"]
    assert await report_command.run(report_settings, _args(tz="Nowhere/City")) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "time zone" in err[0]


def test_parser_takes_the_agents_report() -> None:
    parser = argparse.ArgumentParser()
    report_command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", "agents", "--date", "2026-03-10", "--format", "csv", "--tz", "UTC"])
    assert (args.kind, args.date, args.format, args.tz, args.agent) == ("agents", "2026-03-10", "csv", "UTC", None)
    assert parser.parse_args(["report", "--date", "2026-03-10"]).kind == "campaigns"
