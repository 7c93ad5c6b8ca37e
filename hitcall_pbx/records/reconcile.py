"""`hitcall cdr reconcile`: HitCall's CDRs of a day against Asterisk's own records.

The adapters: HitCall's side from all_attempts, Asterisk's from cdr_csv's Master.csv or
cdr_pgsql's table. The comparison itself is hitcall_pbx.core.reconcile.

Exit codes: 0 no difference, 1 differences (listed), 2 the comparison could not be
made (bad arguments, an unreadable file, a database that does not answer), with one
line on standard error.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from ..core.leases import DEFAULT_POOL
from ..core.reconcile import (
    DEFAULT_TOLERANCE_S,
    AsteriskRecord,
    HitCallAttempt,
    Reconciliation,
    TransferLeg,
    attempt_from_userfield,
    day_bounds,
    reconcile,
    transfer_from_userfield,
)
from ..errors import HitCallError, ValidationFailed
from ..settings import Settings
from ..store.db import Connection, Database

DEFAULT_CSV = Path("/var/log/asterisk/cdr-csv/Master.csv")
# Asterisk's records are read this far either side of the day: an attempt created just
# before midnight can start in Asterisk just after it (and the other way round).
MARGIN = timedelta(hours=1)
_PROG = "hitcall cdr reconcile"

# Master.csv columns (cdr_csv): then uniqueid (loguniqueid), userfield (loguserfield) and
# peeraccount, linkedid, sequence (newcdrcolumns), each only when cdr.conf [csv] turns it on.
_CSV_COLUMNS = (
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
)
_COL = {name: i for i, name in enumerate(_CSV_COLUMNS)}
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_UNANSWERED_BEFORE = datetime(1971, 1, 1)  # cdr_pgsql can write the epoch for "no answer time"


def add_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "reconcile",
        help="compare a day's CDRs with Asterisk's own records (cdr_csv or cdr_pgsql); exit 1 when they differ",
    )
    r.add_argument("--date", required=True, help="the day, YYYY-MM-DD, in --tz")
    source = r.add_mutually_exclusive_group()
    source.add_argument("--csv", type=Path, default=None, help=f"cdr_csv's Master.csv (default {DEFAULT_CSV})")
    source.add_argument("--asterisk-dsn", default=None, help="PostgreSQL DSN of the database cdr_pgsql writes to")
    r.add_argument("--asterisk-table", default="cdr", help="cdr_pgsql's table (default cdr)")
    r.add_argument("--tz", default="UTC", help="time zone of the day, e.g. Europe/Helsinki (default UTC)")
    r.add_argument(
        "--asterisk-tz",
        default="UTC",
        help="zone of Asterisk's times that carry none (default UTC: cdr.conf usegmtime = yes)",
    )
    r.add_argument("--tolerance", default=str(DEFAULT_TOLERANCE_S), help="seconds durations may differ (default 2)")
    r.add_argument("--json", action="store_true", help="the result as JSON on standard output")
    r.add_argument(
        "--pool",
        default=None,
        help="with several Asterisk servers: only the calls of this pool (HITCALL_POOL of the server whose records "
        "are read); default: every call",
    )


@dataclass(frozen=True)
class Request:
    day: date
    tz: tzinfo
    asterisk_tz: tzinfo
    tolerance_s: float
    csv_path: Path | None
    asterisk_dsn: str | None
    asterisk_table: str
    pool: str | None = None  # only HitCall's calls on this Asterisk server (None: all)


def _zone(name: str, flag: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(f"{flag} is not a time zone name: {name!r} (e.g. Europe/Helsinki, UTC)") from None


_POOL = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TABLE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$")


def parse_request(args: argparse.Namespace) -> Request:
    try:
        day = date.fromisoformat(args.date)
    except ValueError:
        raise ValidationFailed(f"--date must be a day as YYYY-MM-DD, not {args.date!r}") from None
    try:
        tolerance = float(args.tolerance)
    except ValueError:
        tolerance = -1.0
    if not 0 <= tolerance <= 3600:
        raise ValidationFailed(f"--tolerance must be seconds between 0 and 3600, not {args.tolerance!r}")
    if not _TABLE.match(args.asterisk_table):
        raise ValidationFailed(f"--asterisk-table must be a table name (schema.table allowed): {args.asterisk_table!r}")
    csv_path = args.csv if args.csv is not None or args.asterisk_dsn is not None else DEFAULT_CSV
    pool = getattr(args, "pool", None)
    if pool is not None and not _POOL.match(pool):
        raise ValidationFailed(f"--pool must be a pool name (letters, digits, _ . -; up to 64): {pool!r}")
    return Request(
        day=day,
        tz=_zone(args.tz, "--tz"),
        asterisk_tz=_zone(args.asterisk_tz, "--asterisk-tz"),
        tolerance_s=tolerance,
        csv_path=csv_path,
        asterisk_dsn=args.asterisk_dsn,
        asterisk_table=args.asterisk_table,
        pool=pool,
    )


# ------------------------------------------------------------------ Asterisk ---
def _time(text: str, tz: tzinfo) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=tz)


def csv_record(row: Sequence[str], order: int, tz: tzinfo) -> AsteriskRecord | None:
    """The tagged record of one Master.csv line, or None when the line carries no
    attempt tag. Raises ValueError for a tagged line that cannot be read."""
    if len(row) <= len(_CSV_COLUMNS):
        return None  # no user field logged
    attempt_id, transfer = None, False
    for value in row[len(_CSV_COLUMNS) :]:  # uniqueid, userfield, ...: the user field holds the tag
        attempt_id = attempt_from_userfield(value)
        if attempt_id is None and (attempt_id := transfer_from_userfield(value)) is not None:
            transfer = True
        if attempt_id is not None:
            break
    if attempt_id is None:
        return None
    start = _time(row[_COL["start"]], tz)
    if start is None:
        raise ValueError("no start time")
    first = row[len(_CSV_COLUMNS)]
    tagged = attempt_from_userfield(first) is not None or transfer_from_userfield(first) is not None
    uniqueid = "" if tagged else first
    return AsteriskRecord(
        attempt_id=attempt_id,
        start=start,
        answer=_time(row[_COL["answer"]], tz),
        end=_time(row[_COL["end"]], tz),
        duration=int(row[_COL["duration"]]),
        billsec=int(row[_COL["billsec"]]),
        disposition=row[_COL["disposition"]],
        channel=row[_COL["channel"]],
        dstchannel=row[_COL["dstchannel"]],
        uniqueid=uniqueid,
        order=order,
        transfer=transfer,
    )


@dataclass
class CsvRead:
    records: list[AsteriskRecord]
    lines: int = 0
    tagged: int = 0
    unreadable: int = 0  # lines that are no CSV, or tagged lines with unreadable fields (a damaged file)


def read_csv(path: Path, tz: tzinfo, since: datetime, until: datetime) -> CsvRead:
    """Tagged records of Master.csv whose start is in [since, until)."""
    out = CsvRead(records=[])
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error:  # e.g. a field past the csv module's size limit: skip the line
                out.lines = reader.line_num
                out.unreadable += 1
                continue
            out.lines = reader.line_num
            try:
                record = csv_record(row, reader.line_num, tz)
            except (ValueError, IndexError, ValidationFailed):
                out.unreadable += 1
                continue
            if record is None:
                continue
            out.tagged += 1
            if since <= record.start < until:
                out.records.append(record)
    return out


def _quoted(table: str) -> str:
    return ".".join(f'"{part}"' for part in table.split("."))


async def read_pgsql(dsn: str, table: str, tz: tzinfo, since: datetime, until: datetime) -> list[AsteriskRecord]:
    """Tagged rows of cdr_pgsql's table whose start (``start`` or ``calldate``) is in [since, until)."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        try:
            stmt = await conn.prepare(f"SELECT * FROM {_quoted(table)} LIMIT 0")  # name checked by _TABLE
        except asyncpg.UndefinedTableError:
            raise ValidationFailed(f"--asterisk-table: no table {table!r} in that database") from None
        types = {a.name: a.type.name for a in stmt.get_attributes()}
        start = "start" if "start" in types else "calldate" if "calldate" in types else None
        missing = [c for c in ("userfield", "disposition", "duration", "billsec") if c not in types]
        if start is None or missing:
            need = ", ".join(missing + ([] if start else ["start (or calldate)"]))
            raise ValidationFailed(f"--asterisk-table {table!r} has no column {need}: is it cdr_pgsql's table?")
        optional = [c for c in ("answer", "end", "channel", "dstchannel", "uniqueid", "sequence") if c in types]
        columns = ", ".join(f'"{c}"' for c in [start, "userfield", "disposition", "duration", "billsec", *optional])
        naive = types[start] == "timestamp"

        def bound(t: datetime) -> datetime:
            return t.astimezone(tz).replace(tzinfo=None) if naive else t

        rows = await conn.fetch(
            f"SELECT {columns} FROM {_quoted(table)} "  # names from the table's own columns
            f"WHERE (userfield LIKE 'hitcall:%' OR userfield LIKE 'hitcall-transfer:%') "
            f'AND "{start}" >= $1 AND "{start}" < $2',
            bound(since),
            bound(until),
        )
    finally:
        await conn.close()

    def when(value: object) -> datetime | None:
        if not isinstance(value, datetime):
            return None
        if value.tzinfo is None:
            if value < _UNANSWERED_BEFORE:
                return None
            return value.replace(tzinfo=tz)
        return value

    out = []
    for n, row in enumerate(rows):
        attempt_id = attempt_from_userfield(row["userfield"] or "")
        transfer = attempt_id is None
        if transfer:
            attempt_id = transfer_from_userfield(row["userfield"] or "")
        begun = when(row[start])
        if attempt_id is None or begun is None:
            continue
        out.append(
            AsteriskRecord(
                attempt_id=attempt_id,
                start=begun,
                answer=when(row["answer"]) if "answer" in optional else None,
                end=when(row["end"]) if "end" in optional else None,
                duration=int(row["duration"] or 0),
                billsec=int(row["billsec"] or 0),
                disposition=row["disposition"] or "",
                channel=(row["channel"] or "") if "channel" in optional else "",
                dstchannel=(row["dstchannel"] or "") if "dstchannel" in optional else "",
                uniqueid=(row["uniqueid"] or "") if "uniqueid" in optional else "",
                order=int(row["sequence"] or 0) if "sequence" in optional else n,
                transfer=transfer,
            )
        )
    return out


# ------------------------------------------------------------------- HitCall ---
async def read_hitcall(
    conn: Connection, since: datetime, until: datetime, ids: Iterable[str], pool: str | None = None
) -> list[HitCallAttempt]:
    """HitCall's calls created in [since, until) (outbound attempts and inbound calls; with
    `pool`, only those on that Asterisk server), and those with the given ids."""
    columns = {a.name for a in (await conn.prepare("SELECT * FROM all_attempts LIMIT 0")).get_attributes()}
    direction = "direction" if "direction" in columns else "'outbound'::text AS direction"
    in_pool = f"coalesce(pool, '{DEFAULT_POOL}') = $4" if "pool" in columns else "$4::text = $4"
    rows = await conn.fetch(
        f"""SELECT id, created_at, state, outcome, originated_at, answered_at, ended_at, {direction}
              FROM all_attempts
             WHERE (created_at >= $1 AND created_at < $2 AND ($4::text IS NULL OR {in_pool}))
                OR id = ANY($3::uuid[])""",  # fixed text
        since,
        until,
        sorted(set(ids)),
        pool,
    )
    return [
        HitCallAttempt(
            attempt_id=str(r["id"]),
            created_at=r["created_at"],
            state=r["state"],
            outcome=r["outcome"],
            originated_at=r["originated_at"],
            answered_at=r["answered_at"],
            ended_at=r["ended_at"],
            direction=r["direction"] or "outbound",
        )
        for r in rows
    ]


async def read_transfer_legs(conn: Connection, attempt_ids: Iterable[str]) -> list[TransferLeg]:
    """The legs of external parties (no agent: a number transferred to or consulted) of the attempts."""
    rows = await conn.fetch(
        """SELECT attempt_id, seq, number, joined_at, left_at FROM call_legs
            WHERE attempt_id = ANY($1::uuid[]) AND agent_id IS NULL""",
        sorted(set(attempt_ids)),
    )
    return [
        TransferLeg(
            attempt_id=str(r["attempt_id"]),
            seq=r["seq"],
            number=r["number"],
            joined_at=r["joined_at"],
            left_at=r["left_at"],
        )
        for r in rows
    ]


# ------------------------------------------------------------------- command ---
@dataclass
class DayResult:
    result: Reconciliation
    source: dict[str, object]  # where Asterisk's records came from, and how many lines were read


async def reconcile_day(conn: Connection, req: Request) -> DayResult:
    """Read both sides for the request's day and compare them."""
    day_start, day_end = day_bounds(req.day, req.tz)
    since, until = day_start - MARGIN, day_end + MARGIN
    source: dict[str, object]
    if req.asterisk_dsn is not None:
        records = await read_pgsql(req.asterisk_dsn, req.asterisk_table, req.asterisk_tz, since, until)
        source = {"cdr_pgsql": req.asterisk_table}
    else:
        assert req.csv_path is not None
        read = read_csv(req.csv_path, req.asterisk_tz, since, until)
        records = read.records
        source = {"cdr_csv": str(req.csv_path), "lines": read.lines, "tagged": read.tagged}
        if read.unreadable:
            source["unreadable_lines"] = read.unreadable
    hitcall = await read_hitcall(conn, day_start, day_end, {r.attempt_id for r in records}, req.pool)
    legs = await read_transfer_legs(conn, [h.attempt_id for h in hitcall])
    result = reconcile(
        hitcall, records, day_start=day_start, day_end=day_end, tolerance_s=req.tolerance_s, transfer_legs=legs
    )
    return DayResult(result, source)


def render_text(day: date, tz: tzinfo, outcome: DayResult) -> str:
    r = outcome.result
    inbound = f" ({r.inbound} of them inbound)" if r.inbound else ""
    head = (
        f"{day.isoformat()} ({tz}): {r.hitcall_attempts} attempts in HitCall{inbound}, {r.asterisk_attempts} in "
        f"Asterisk, {r.matched} matched, {r.not_dialled} never dialled, {r.in_progress} in progress"
    )
    if r.transfers:
        head += f", {r.transfers} transfer legs to numbers matched"
    if r.not_reconciled:
        head += f", {r.not_reconciled} of another direction not reconciled"
    unreadable = outcome.source.get("unreadable_lines")
    if unreadable:
        head += f", {unreadable} unreadable lines in Master.csv"
    if r.clean:
        return head + ": no differences\n"
    count = len(r.differences)
    lines = [head + f": {count} difference{'' if count == 1 else 's'}"]
    lines += [f"{d.kind.value}\t{d.attempt_id}\t{d.detail}" for d in r.differences]
    return "\n".join(lines) + "\n"


async def run_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    try:
        req = parse_request(args)
        if req.csv_path is not None and not req.csv_path.is_file():
            raise ValidationFailed(f"no Asterisk CDR file at {req.csv_path} (cdr_csv's Master.csv; see --csv)")
        async with Database(settings) as db, db.pool.acquire() as conn:
            outcome = await reconcile_day(conn, req)
    except (HitCallError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        message = exc.message if isinstance(exc, HitCallError) else f"{type(exc).__name__}: {exc}"
        line = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
        sys.stderr.write(f"{_PROG}: {line}\n")
        return 2
    if args.json:
        doc = {"date": req.day.isoformat(), "tz": str(req.tz), "source": outcome.source} | outcome.result.as_dict()
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write(render_text(req.day, req.tz, outcome))
    sys.stdout.flush()
    return 0 if outcome.result.clean else 1
