"""CDR queries and exports on real Postgres: filters, keyset pages, CSV and JSON, the CLI."""

from __future__ import annotations

import argparse
import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from structlog.testing import capture_logs

from hitcall_pbx.errors import ValidationFailed
from hitcall_pbx.records import command
from hitcall_pbx.records.cdr import COLUMNS, CdrRecord, write_cdrs
from hitcall_pbx.records.cdr_query import CdrExport, CdrQuery, csv_cell, query_cdrs
from hitcall_pbx.settings import Settings
from hitcall_pbx.store.db import dsn_with_database

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OUTCOMES = ["answered_human", "no_answer", "busy", "abandoned"]


def _cdr(n: int, campaign: int, agent: int | None, **overrides: object) -> CdrRecord:
    created = T0 + timedelta(minutes=n // 2)  # pairs share created_at: ties broken by id
    outcome = OUTCOMES[n % 4]
    values: dict[str, object] = dict(
        id=uuid.uuid4(),
        campaign_id=campaign,
        agent_id=agent,
        dialled_number=f"+35840{1000000 + n}",
        caller_id="+358201234567",
        mode="predictive",
        created_at=created,
        ended_at=created + timedelta(seconds=30),
        ring_s=Decimal("4.250"),
        talk_s=Decimal(n),
        outcome=outcome,
        abandoned=outcome == "abandoned",
        retention_until=created + timedelta(days=730),
    )
    values.update(overrides)
    return CdrRecord(**values)  # type: ignore[arg-type]  # fields passed as **dict[str, object]; the constructor checks them


@pytest.fixture
async def data(db: asyncpg.Pool) -> dict[str, object]:
    campaigns = [
        await db.fetchval("INSERT INTO campaigns (name, mode) VALUES ($1, 'predictive') RETURNING id", name)
        for name in ("north", "south")
    ]
    agents = [
        await db.fetchval("INSERT INTO agents (number, name) VALUES ($1, $1) RETURNING id", str(n)) for n in (1, 2)
    ]
    records = [_cdr(n, campaigns[n % 2], agents[(n // 2) % 2] if n % 3 else None) for n in range(40)]
    async with db.acquire() as conn:
        await write_cdrs(conn, records)
        # A live attempt is not a CDR yet.
        await conn.execute(
            "INSERT INTO live_attempts (id, campaign_id, caller_id, mode, created_at, retention_until)"
            " VALUES ($1, $2, '+358201234567', 'predictive', $3, $4)",
            uuid.uuid4(),
            campaigns[0],
            T0,
            T0 + timedelta(days=1),
        )
    ordered = sorted(records, key=lambda r: (r.created_at, r.id))
    return {"campaigns": campaigns, "agents": agents, "records": ordered}


async def _all(db: asyncpg.Pool, query: CdrQuery, limit: int = 7) -> list[CdrRecord]:
    out: list[CdrRecord] = []
    cursor = None
    while True:
        page = await query_cdrs(db, query, limit=limit, cursor=cursor)
        out.extend(page.items)
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


async def test_filters_by_campaign_agent_outcome_and_time(db: asyncpg.Pool, data: dict) -> None:
    records: list[CdrRecord] = data["records"]
    north, _ = data["campaigns"]
    agent, other = data["agents"][1], data["agents"][0]
    since, until = T0 + timedelta(minutes=3), T0 + timedelta(minutes=12)
    cases = [
        (CdrQuery(), records),
        (CdrQuery(campaign_id=north), [r for r in records if r.campaign_id == north]),
        (CdrQuery(agent_id=agent), [r for r in records if r.agent_id == agent]),
        (CdrQuery(outcome="busy"), [r for r in records if r.outcome == "busy"]),
        (CdrQuery(since=since, until=until), [r for r in records if since <= r.created_at < until]),
        (
            CdrQuery(campaign_id=north, agent_id=other, outcome="answered_human", since=since),
            [
                r
                for r in records
                if r.campaign_id == north
                and r.agent_id == other
                and r.outcome == "answered_human"
                and r.created_at >= since
            ],
        ),
    ]
    for query, expected in cases:
        assert expected  # every case selects something
        assert (await query_cdrs(db, query, limit=1000)).items == expected, query


async def test_keyset_pages_cover_everything_once_in_stable_order(db: asyncpg.Pool, data: dict) -> None:
    records: list[CdrRecord] = data["records"]
    first = await query_cdrs(db, CdrQuery(), limit=7)
    assert first.items == records[:7] and first.next_cursor
    # A call ending meanwhile (newest) shows up at the end; nothing repeats or goes missing.
    late = _cdr(
        99, data["campaigns"][0], None, created_at=T0 + timedelta(hours=5), ended_at=T0 + timedelta(hours=5, seconds=9)
    )
    async with db.acquire() as conn:
        await write_cdrs(conn, [late])
    rest: list[CdrRecord] = []
    cursor = first.next_cursor
    while cursor:
        page = await query_cdrs(db, CdrQuery(), limit=7, cursor=cursor)
        assert len(page.items) <= 7
        rest.extend(page.items)
        cursor = page.next_cursor
    assert first.items + rest == [*records, late]
    assert await _all(db, CdrQuery(), limit=41) == [*records, late]  # exact fit: no empty page


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: CdrQuery(campaign_id=0), "campaign_id"),
        (lambda: CdrQuery(agent_id="7"), "agent_id"),
        (lambda: CdrQuery(since=datetime(2026, 3, 1)), "since"),
        (lambda: CdrQuery(since=T0, until=T0), "until"),
        (lambda: CdrQuery(outcome="won"), "outcome"),
    ],
)
def test_bad_filters_are_refused_naming_the_field(call, field: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        call()
    assert err.value.details["field"] == field


async def test_bad_cursor_and_limit_are_refused(db: asyncpg.Pool) -> None:
    for kwargs, field in (({"cursor": "garbage!"}, "cursor"), ({"limit": 0}, "limit"), ({"limit": 1001}, "limit")):
        with pytest.raises(ValidationFailed) as err:
            await query_cdrs(db, CdrQuery(), **kwargs)
        assert err.value.details["field"] == field


def test_csv_cells_neutralise_formulas_but_keep_numbers() -> None:
    assert csv_cell('=HYPERLINK("http://x","y")') == '\'=HYPERLINK("http://x","y")'
    assert csv_cell("+1+cmd|' /C calc'!A0") == "'+1+cmd|' /C calc'!A0"
    assert csv_cell("-2+3") == "'-2+3"
    assert csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert csv_cell("\t=1") == "'\t=1"
    assert csv_cell("+358401234567") == "+358401234567"
    assert csv_cell("-12.5") == "-12.5"
    assert csv_cell("ordinary, text") == "ordinary, text"
    assert csv_cell(None) == "" and csv_cell(True) == "true"
    assert csv_cell(T0) == "2026-03-02T09:00:00+00:00"


async def test_csv_export_quotes_rfc4180_and_is_injection_safe(db: asyncpg.Pool, data: dict) -> None:
    campaign = data["campaigns"][0]
    nasty = _cdr(
        100,
        campaign,
        None,
        created_at=T0 + timedelta(days=1),
        ended_at=T0 + timedelta(days=1, seconds=5),
        skip_reason='said "no", then\r\nhung up',
        hangup_cause_txt="=cmd|' /C calc'!A0",
        amd_cause="@evil",
    )
    async with db.acquire() as conn:
        await write_cdrs(conn, [nasty])
    export = CdrExport(db, CdrQuery(campaign_id=campaign), "csv", page_size=5)
    chunks = [chunk async for chunk in export]
    text = "".join(chunks)
    expected = [r for r in data["records"] if r.campaign_id == campaign] + [nasty]
    assert export.rows == len(expected)
    assert len(chunks) == 1 + -(-len(expected) // 5)  # header, then one chunk per page
    assert text.startswith(",".join(COLUMNS) + "\r\n")
    assert '"said ""no"", then\r\nhung up"' in text
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == list(COLUMNS) and len(rows) == len(expected) + 1
    by_id = {row[0]: dict(zip(COLUMNS, row)) for row in rows[1:]}
    last = by_id[str(nasty.id)]
    assert last["skip_reason"] == 'said "no", then\r\nhung up'
    assert last["hangup_cause_txt"] == "'=cmd|' /C calc'!A0"
    assert last["amd_cause"] == "'@evil"
    assert last["dialled_number"] == nasty.dialled_number
    assert last["created_at"] == "2026-03-03T09:00:00+00:00" and last["abandoned"] == "false"
    assert [row[0] for row in rows[1:]] == [str(r.id) for r in expected]


async def test_json_export(db: asyncpg.Pool, data: dict) -> None:
    agent = data["agents"][0]
    export = CdrExport(db, CdrQuery(agent_id=agent), "json", page_size=4)
    items = json.loads("".join([chunk async for chunk in export]))
    expected = [r for r in data["records"] if r.agent_id == agent]
    assert [i["id"] for i in items] == [str(r.id) for r in expected]
    assert items[0]["ring_s"] == 4.25 and items[0]["created_at"] == expected[0].created_at.isoformat()
    empty = CdrExport(db, CdrQuery(outcome="congestion"), "json")
    assert json.loads("".join([chunk async for chunk in empty])) == []


def _cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hitcall")
    command.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["cdr", "export", *argv])


async def test_cli_export_writes_csv_and_audits(
    db: asyncpg.Pool, data: dict, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = dsn_with_database(pg_dsn, await db.fetchval("SELECT current_database()"))
    settings = Settings(database_url=dsn)
    north = data["campaigns"][0]
    with capture_logs():  # logs go to stderr in the CLI; keep them off captured stdout here
        code = await command.run(
            settings, _cli_args("--campaign", str(north), "--outcome", "busy", "--from", "2026-03-02T11:00+02:00")
        )
    out = capsys.readouterr().out
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out, newline="")))
    expected = [r for r in data["records"] if r.campaign_id == north and r.outcome == "busy"]
    assert [row["id"] for row in rows] == [str(r.id) for r in expected] and expected
    audit = await db.fetchrow("SELECT actor, actor_role, details FROM audit_log WHERE action = 'cdr.export'")
    assert audit["actor"].startswith("cli:") and audit["actor_role"] == "system"
    assert audit["details"]["campaign_id"] == north and audit["details"]["outcome"] == "busy"

    with capture_logs():
        code = await command.run(settings, _cli_args("--format", "json", "--agent", str(data["agents"][1])))
    assert code == 0 and json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--campaign", "x1"), "--campaign must be a positive integer"),
        (("--from", "2026-03-02"), "--from '2026-03-02' has no time zone"),
        (("--to", "yesterday"), "--to is not an ISO 8601 time"),
        (("--from", "2026-03-02T10:00Z", "--to", "2026-03-02T09:00Z"), "--to must be after --from"),
        (("--outcome", "won"), "--outcome must be one of"),
        (("--format", "xml"), "--format must be csv or json"),
    ],
)
async def test_cli_bad_input_exits_2_with_one_line(
    argv: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await command.run(Settings(database_url="postgresql://nobody@127.0.0.1:1/x"), _cli_args(*argv))
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"hitcall cdr export: {message}") and err.count("\n") == 1


async def test_cli_unreachable_database_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code = await command.run(Settings(database_url="postgresql://nobody@127.0.0.1:1/x"), _cli_args())
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("hitcall cdr export: cannot connect") and err.count("\n") == 1
