"""`hitcall cdr reconcile` on real Postgres: HitCall's side read from all_attempts,
Asterisk's from a Master.csv or from a table shaped like cdr_pgsql's, the command's
output and exit codes."""

from __future__ import annotations

import argparse
import csv
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from structlog.testing import capture_logs

from hitcall_pbx.core.reconcile import DifferenceKind
from hitcall_pbx.records import command
from hitcall_pbx.records.cdr import CdrRecord, inbound_cdr_id, write_cdrs
from hitcall_pbx.records.reconcile import Request, read_hitcall, read_pgsql, reconcile_day
from hitcall_pbx.settings import Settings
from hitcall_pbx.store.db import dsn_with_database

HELSINKI = ZoneInfo("Europe/Helsinki")
DAY = date(2026, 3, 2)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # 11:00 in Helsinki


def _call(n: int, outcome: str, *, campaign: int, at: datetime, ring_s: float, talk_s: float | None) -> CdrRecord:
    originated = at + timedelta(milliseconds=30)
    answered = originated + timedelta(seconds=ring_s) if talk_s is not None else None
    ended = answered + timedelta(seconds=talk_s) if answered is not None and talk_s is not None else None
    ended = ended or originated + timedelta(seconds=ring_s)
    return CdrRecord(
        id=uuid.UUID(int=n),
        campaign_id=campaign,
        dialled_number=f"+35840{1000000 + n}",
        caller_id="+358201234567",
        mode="progressive",
        created_at=at,
        originated_at=originated,
        answered_at=answered,
        ended_at=ended,
        ring_s=Decimal(str(ring_s)),
        talk_s=Decimal(str(talk_s or 0)),
        outcome=outcome,
        abandoned=outcome == "abandoned",
        retention_until=at + timedelta(days=730),
    )


# What Asterisk wrote for each call: (disposition, duration, billsec).
CALLS = [
    (1, "answered_human", T0, 2.4, 30.6, ("ANSWERED", 33, 30)),
    (2, "busy", T0 + timedelta(minutes=1), 0.2, None, ("BUSY", 0, 0)),
    (3, "no_answer", T0 + timedelta(minutes=2), 15.0, None, ("NO ANSWER", 15, 0)),
    (4, "abandoned", T0 + timedelta(minutes=3), 1.1, 6.2, ("ANSWERED", 7, 6)),
    # Created at 23:59:59.99 Helsinki time on the day before: that day's, though Asterisk
    # started it after midnight.
    (5, "busy", datetime(2026, 3, 1, 21, 59, 59, 990000, tzinfo=UTC), 0.3, None, ("BUSY", 0, 0)),
]


def _csv_line(n: int, at: datetime, ring_s: float, disposition: str, duration: int, billsec: int) -> list[str]:
    aid = str(uuid.UUID(int=n))
    start = (at + timedelta(milliseconds=30)).replace(microsecond=0)
    fmt = "%Y-%m-%d %H:%M:%S"
    answer = (start + timedelta(seconds=int(ring_s))).strftime(fmt) if disposition == "ANSWERED" else ""
    end = (start + timedelta(seconds=duration)).strftime(fmt)
    return [
        "", "+358201234567", f"+35840{1000000 + n}", "hitcall-outbound", '"" <+358201234567>',
        f"Local/+35840{1000000 + n}@hitcall-outbound-0000000{n};2", f"PJSIP/trunk-0000000{n}", "Dial",
        f"PJSIP/+35840{1000000 + n}@trunk", start.strftime(fmt), answer, end, str(duration), str(billsec),
        disposition, "DOCUMENTATION", f"{aid};2", f"hitcall:{aid}", "", aid, str(n),
    ]  # fmt: skip


@pytest.fixture
async def day(db: asyncpg.Pool, tmp_path: Path) -> dict[str, object]:
    campaign = await db.fetchval("INSERT INTO campaigns (name, mode) VALUES ('north', 'progressive') RETURNING id")
    records = [
        _call(n, outcome, campaign=campaign, at=at, ring_s=ring, talk_s=talk) for n, outcome, at, ring, talk, _ in CALLS
    ]
    # A return call (inbound): [hitcall-inbound] tags the caller's channel with its id.
    records.append(
        CdrRecord(
            id=inbound_cdr_id("1772442000.7"),
            direction="inbound",
            campaign_id=None,
            attempt_no=None,
            mode=None,
            caller_id="+358201234567",
            caller_number="+358401234567",
            created_at=T0 + timedelta(minutes=10),
            answered_at=T0 + timedelta(minutes=10, seconds=4),
            bridged_at=T0 + timedelta(minutes=10, seconds=4),
            ended_at=T0 + timedelta(minutes=11),
            outcome="answered_human",
            retention_until=T0 + timedelta(days=730),
        )
    )
    async with db.acquire() as conn:
        await write_cdrs(conn, records)
        # Reserved, never originated, and a live one still ringing: nothing in Asterisk yet.
        for n, state in ((6, "reserved"), (7, "ringing")):
            await conn.execute(
                "INSERT INTO live_attempts (id, campaign_id, caller_id, mode, state, created_at, originated_at,"
                " retention_until) VALUES ($1, $2, '+358201234567', 'progressive', $3, $4, $5, $6)",
                uuid.UUID(int=n),
                campaign,
                state,
                T0,
                T0 if state == "ringing" else None,
                T0 + timedelta(days=1),
            )
    lines = [_csv_line(n, at, ring, *asterisk) for n, _, at, ring, _, asterisk in CALLS]
    # The return call's channel: answered by the line (the menu) 6 s before the router had it.
    inbound = str(inbound_cdr_id("1772442000.7"))
    lines.append(["", "+358401234567", "0201234567", "hitcall-inbound", '"" <+358401234567>',
                  "PJSIP/trunk-00000008", "", "Stasis", "hitcall,inbound,,", "2026-03-02 09:09:54",
                  "2026-03-02 09:09:54", "2026-03-02 09:11:00", "66", "66", "ANSWERED", "DOCUMENTATION",
                  "1772442000.7", f"hitcall:{inbound}", "", "1772442000.7", "8"])  # fmt: skip
    # Asterisk's untagged record of an agent's phone, and one of another day.
    lines.append(["", "agent1", "*70", "hitcall-agents", "", "PJSIP/agent1-00000001", "", "Stasis", "hitcall",
                  "2026-03-02 08:00:00", "2026-03-02 08:00:00", "2026-03-02 16:00:00", "28800", "28800", "ANSWERED",
                  "DOCUMENTATION", "1772438400.1", "", "", "1772438400.1", "1"])  # fmt: skip
    lines.append(_csv_line(99, T0 - timedelta(days=3), 1, "BUSY", 0, 0))
    path = tmp_path / "Master.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh, quoting=csv.QUOTE_ALL).writerows(lines)
    return {"csv": path, "lines": lines}


def _request(path: Path | None, *, dsn: str | None = None, table: str = "cdr", day: date = DAY) -> Request:
    return Request(day, HELSINKI, UTC, 2.0, path, dsn, table)


async def test_a_matching_day_from_master_csv(db: asyncpg.Pool, day: dict) -> None:
    async with db.acquire() as conn:
        result = (await reconcile_day(conn, _request(day["csv"]))).result
        assert result.clean, result.differences
        assert (result.hitcall_attempts, result.asterisk_attempts, result.matched, result.inbound) == (7, 5, 5, 1)
        assert (result.in_progress, result.not_dialled, result.not_reconciled) == (2, 0, 0)
        before = (await reconcile_day(conn, _request(day["csv"], day=DAY - timedelta(days=1)))).result
        assert before.clean and before.matched == 1, "the call across midnight is its HitCall day's"


async def test_differences_from_master_csv(db: asyncpg.Pool, day: dict, tmp_path: Path) -> None:
    lines = [line for line in day["lines"] if line[17] != f"hitcall:{uuid.UUID(int=2)}"]  # busy call gone
    stray = _csv_line(42, T0 + timedelta(hours=2), 1, "ANSWERED", 5, 4)
    answered = next(line for line in lines if line[17] == f"hitcall:{uuid.UUID(int=1)}")
    answered[13] = "20"  # billsec 20 where HitCall talked 30.6 s
    path = tmp_path / "other.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([*lines, stray])
    await db.execute(
        "UPDATE call_attempts SET outcome = 'congestion', abandoned = false WHERE id = $1", uuid.UUID(int=4)
    )
    async with db.acquire() as conn:
        result = (await reconcile_day(conn, _request(path))).result
    kinds = {(d.kind, d.attempt_id) for d in result.differences}
    assert kinds == {
        (DifferenceKind.MISSING_IN_ASTERISK, str(uuid.UUID(int=2))),
        (DifferenceKind.MISSING_IN_HITCALL, str(uuid.UUID(int=42))),
        (DifferenceKind.TALK_TIME, str(uuid.UUID(int=1))),
        (DifferenceKind.OUTCOME, str(uuid.UUID(int=4))),
    }, result.differences


async def test_pool_reconciles_one_asterisk_servers_records_with_that_servers_calls(
    db: asyncpg.Pool, day: dict, tmp_path: Path
) -> None:
    """Two Asterisk servers, each with its own Master.csv: calls 3 and 4 went out on `ast2`
    (their rows say so), the others on the default pool. Each file reconciled alone against
    its pool's calls has no difference; without --pool, the other server's calls are
    missing from each file."""
    on_ast2 = [str(uuid.UUID(int=n)) for n in (3, 4)]
    await db.execute("UPDATE call_attempts SET pool = 'ast2', node_id = 'node-b' WHERE id = ANY($1::uuid[])", on_ast2)
    main_path, ast2_path = tmp_path / "main.csv", tmp_path / "ast2.csv"
    for path, keep in ((main_path, False), (ast2_path, True)):
        with path.open("w", newline="") as fh:
            csv.writer(fh).writerows(line for line in day["lines"] if (line[17][8:] in on_ast2) == keep)

    def req(path: Path, pool: str | None) -> Request:
        return Request(DAY, HELSINKI, UTC, 2.0, path, None, "cdr", pool)

    async with db.acquire() as conn:
        main = (await reconcile_day(conn, req(main_path, "main"))).result
        ast2 = (await reconcile_day(conn, req(ast2_path, "ast2"))).result
        unfiltered = (await reconcile_day(conn, req(ast2_path, None))).result
    assert main.clean and (main.matched, main.asterisk_attempts) == (3, 3), main.differences
    assert ast2.clean and (ast2.matched, ast2.hitcall_attempts, ast2.in_progress) == (2, 2, 0), ast2.differences
    missing = {d.attempt_id for d in unfiltered.differences if d.kind is DifferenceKind.MISSING_IN_ASTERISK}
    main_calls = {str(uuid.UUID(int=n)) for n in (1, 2)} | {str(inbound_cdr_id("1772442000.7"))}
    assert missing == main_calls, unfiltered.differences


async def test_read_hitcall_takes_the_day_and_the_named_attempts(db: asyncpg.Pool, day: dict) -> None:
    start = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)  # the day in Helsinki
    async with db.acquire() as conn:
        rows = await read_hitcall(conn, start, start + timedelta(days=1), [str(uuid.UUID(int=5))])
    by_id = {r.attempt_id: r for r in rows}
    assert sorted(by_id) == sorted([str(uuid.UUID(int=n)) for n in range(1, 8)] + [str(inbound_cdr_id("1772442000.7"))])
    assert by_id[str(inbound_cdr_id("1772442000.7"))].direction == "inbound"
    assert {r.direction for r in rows if r.attempt_id != str(inbound_cdr_id("1772442000.7"))} == {"outbound"}
    assert by_id[str(uuid.UUID(int=7))].state == "ringing" and not by_id[str(uuid.UUID(int=7))].ended
    assert by_id[str(uuid.UUID(int=1))].answered_at is not None and by_id[str(uuid.UUID(int=1))].ended


@pytest.fixture
async def asterisk_db(pg_dsn: str) -> AsyncIterator[str]:
    """A database of its own, as cdr_pgsql's would be."""
    name = f"asterisk_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield dsn_with_database(pg_dsn, name)
    finally:
        admin = await asyncpg.connect(pg_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


# Asterisk's documented cdr_pgsql table (calldate as the start), and one with start,
# answer and end columns of type timestamp (written in UTC: usegmtime = yes).
CDR_CALLDATE = """CREATE TABLE cdr (
    calldate timestamptz NOT NULL DEFAULT now(), clid varchar(80), src varchar(80), dst varchar(80),
    dcontext varchar(80), channel varchar(80), dstchannel varchar(80), lastapp varchar(80), lastdata varchar(80),
    duration bigint NOT NULL DEFAULT 0, billsec bigint NOT NULL DEFAULT 0, disposition varchar(45),
    amaflags bigint, accountcode varchar(20), uniqueid varchar(150), userfield varchar(255),
    peeraccount varchar(20), linkedid varchar(150), sequence int)"""
CDR_START = """CREATE TABLE asterisk.cdr (
    start timestamp, answer timestamp, "end" timestamp, channel text, dstchannel text,
    duration integer, billsec integer, disposition text, uniqueid text, userfield text)"""


async def _fill(dsn: str, lines: list[list[str]], *, calldate: bool) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        if calldate:
            await conn.execute(CDR_CALLDATE)
        else:
            await conn.execute("CREATE SCHEMA asterisk")
            await conn.execute(CDR_START)
        for line in lines:
            start = datetime.strptime(line[9], "%Y-%m-%d %H:%M:%S")
            answer = datetime.strptime(line[10], "%Y-%m-%d %H:%M:%S") if line[10] else None
            end = datetime.strptime(line[11], "%Y-%m-%d %H:%M:%S")
            if calldate:
                await conn.execute(
                    "INSERT INTO cdr (calldate, channel, dstchannel, duration, billsec, disposition, uniqueid,"
                    " userfield, sequence) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    start.replace(tzinfo=UTC), line[5], line[6], int(line[12]), int(line[13]), line[14], line[16],
                    line[17], int(line[20]),
                )  # fmt: skip
            else:
                await conn.execute(
                    'INSERT INTO asterisk.cdr (start, answer, "end", channel, dstchannel, duration, billsec,'
                    " disposition, uniqueid, userfield) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    start, answer, end, line[5], line[6], int(line[12]), int(line[13]), line[14], line[16], line[17],
                )  # fmt: skip
    finally:
        await conn.close()


@pytest.mark.parametrize("calldate", [True, False], ids=["calldate", "start-answer-end"])
async def test_a_matching_day_from_cdr_pgsql(db: asyncpg.Pool, day: dict, asterisk_db: str, calldate: bool) -> None:
    await _fill(asterisk_db, day["lines"], calldate=calldate)
    table = "cdr" if calldate else "asterisk.cdr"
    start = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
    records = await read_pgsql(asterisk_db, table, UTC, start, start + timedelta(days=1))
    assert sorted(r.attempt_id for r in records) == sorted(
        [str(uuid.UUID(int=n)) for n in range(1, 6)] + [str(inbound_cdr_id("1772442000.7"))]
    )
    answered = next(r for r in records if r.attempt_id == str(uuid.UUID(int=1)))
    assert answered.start == datetime(2026, 3, 2, 9, 0, tzinfo=UTC) and answered.billsec == 30
    assert (answered.answer is not None) is (not calldate), "an answer time only where the table has one"
    async with db.acquire() as conn:
        result = (await reconcile_day(conn, _request(None, dsn=asterisk_db, table=table))).result
    assert result.clean and result.matched == 5, result.differences


async def test_a_table_that_is_not_cdr_pgsqls(asterisk_db: str) -> None:
    from hitcall_pbx.errors import ValidationFailed

    conn = await asyncpg.connect(asterisk_db)
    try:
        await conn.execute("CREATE TABLE calls (start timestamptz, disposition text)")
    finally:
        await conn.close()
    start = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
    with pytest.raises(ValidationFailed, match="has no column userfield, duration, billsec"):
        await read_pgsql(asterisk_db, "calls", UTC, start, start + timedelta(days=1))
    with pytest.raises(ValidationFailed, match="no table 'nothing'"):
        await read_pgsql(asterisk_db, "nothing", UTC, start, start + timedelta(days=1))


# ----------------------------------------------------------------- command ---
def _cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hitcall")
    command.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["cdr", "reconcile", *argv])


async def test_cli_exit_codes_and_output(
    db: asyncpg.Pool, day: dict, pg_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(database_url=dsn_with_database(pg_dsn, await db.fetchval("SELECT current_database()")))
    base = ("--date", "2026-03-02", "--tz", "Europe/Helsinki")
    with capture_logs():
        code = await command.run(settings, _cli_args(*base, "--csv", str(day["csv"])))
    out = capsys.readouterr().out
    assert code == 0, out
    assert out == (
        "2026-03-02 (Europe/Helsinki): 7 attempts in HitCall (1 of them inbound), 5 in Asterisk, 5 matched,"
        " 0 never dialled, 2 in progress: no differences\n"
    )

    path = tmp_path / "busy-gone.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(line for line in day["lines"] if line[17] != f"hitcall:{uuid.UUID(int=2)}")
    with capture_logs():
        code = await command.run(settings, _cli_args(*base, "--csv", str(path), "--json"))
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    assert doc["difference_counts"]["missing_in_asterisk"] == 1 and doc["matched"] == 4
    [diff] = doc["differences"]
    assert diff["kind"] == "missing_in_asterisk" and diff["attempt_id"] == str(uuid.UUID(int=2))
    assert diff["hitcall"]["outcome"] == "busy" and diff["asterisk"] is None
    assert doc["source"]["cdr_csv"] == str(path) and doc["tz"] == "Europe/Helsinki"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--date", "02.03.2026"), "--date must be a day as YYYY-MM-DD"),
        (("--date", "2026-03-02", "--tz", "Helsinki"), "--tz is not a time zone name"),
        (("--date", "2026-03-02", "--csv", "/nonexistent/Master.csv"), "no Asterisk CDR file at /nonexistent"),
        (("--date", "2026-03-02", "--pool", "ast 2"), "--pool must be a pool name"),
    ],
)
async def test_cli_bad_input_exits_2_with_one_line(
    argv: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await command.run(Settings(database_url="postgresql://nobody@127.0.0.1:1/x"), _cli_args(*argv))
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"hitcall cdr reconcile: {message}") and err.count("\n") == 1


async def test_cli_unreachable_database_exits_2_not_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """1 means "the sides differ": a comparison that could not be made is not that."""
    (tmp_path / "Master.csv").write_text("")
    args = _cli_args("--date", "2026-03-02", "--csv", str(tmp_path / "Master.csv"))
    code = await command.run(Settings(database_url="postgresql://nobody@127.0.0.1:1/x"), args)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("hitcall cdr reconcile: cannot connect") and err.count("\n") == 1
