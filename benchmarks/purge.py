"""Purge benchmark: N expired CDR rows plus a sample of real recording files, purged by
the product's PurgeWorker while another connection keeps inserting CDRs; then the same
rows through a raw batched UPDATE (the same anonymisation) and a raw batched DELETE.

    python benchmarks/purge.py --rows 1000000

Prints one JSON document. Targets: the product purges 1 M rows in under 30 s, and no
concurrent CDR insert waits more than 100 ms. The inserter is a separate process with its
own connection.

Each measured run starts from a checkpoint on a server whose WAL segments already exist
(an unmeasured warm-up pass creates them), as on a server that has been running. `--pg-setting` applies
server settings to the benchmark's own embedded server (e.g. ``wal_init_zero=off``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
import wave
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from hitcall_pbx.core.retention import RetentionPolicy
from hitcall_pbx.logs import configure_logging
from hitcall_pbx.records.purge import PurgeWorker
from hitcall_pbx.records.recordings import RecordingStore
from hitcall_pbx.store import migrations
from hitcall_pbx.store.db import create_pool, dsn_with_database
from hitcall_pbx.store.embedded import EmbeddedPostgres

CALLER = "+358931234567"


async def populate(pool: asyncpg.Pool, campaign: int, rows: int) -> float:
    """`rows` ended CDRs, 30..26 months old, whose 24-month deadline has passed."""
    t0 = time.monotonic()
    await pool.execute("TRUNCATE recordings, call_attempts CASCADE")
    await pool.execute(
        """INSERT INTO call_attempts (id, campaign_id, dialled_number, caller_id, mode, state, created_at,
                                      ended_at, outcome, talk_s, retention_until)
           SELECT gen_random_uuid(), $1, '+35840' || lpad(g::text, 7, '0'), $3, 'progressive', 'ended', t,
                  t + interval '40 seconds', 'answered_human', 35, hitcall_add_months(t, 24)
           FROM generate_series(1, $2) g,
                LATERAL (SELECT now() - interval '30 months' + g * interval '10 seconds' AS t) s""",
        campaign,
        rows,
        CALLER,
    )
    await pool.execute("VACUUM ANALYZE call_attempts")
    await pool.execute("CHECKPOINT")
    return time.monotonic() - t0


def write_wav(path: Path, seconds: float) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(os.urandom(int(seconds * 8000) * 2))


async def add_recordings(pool: asyncpg.Pool, store: RecordingStore, spool: Path, campaign: int, n: int) -> float:
    t0 = time.monotonic()
    attempts = await pool.fetch("SELECT id, created_at FROM call_attempts ORDER BY created_at LIMIT $1", n)
    for a in attempts:
        source = spool / f"{a['id']}.wav"
        write_wav(source, 2.0)
        await store.finalize(
            pool,
            source_path=source,
            recording_id=uuid.uuid4(),
            attempt_id=a["id"],
            campaign_id=campaign,
            call_at=a["created_at"],
            policy=RetentionPolicy(),
            format="wav",
        )
    await pool.execute("VACUUM ANALYZE recordings")
    return time.monotonic() - t0


async def _sample_waits(conn: asyncpg.Connection, pid: int, waits: Counter[str]) -> None:
    """What the inserting backend waits on whenever one insert has run for over 20 ms."""
    while True:
        row = await conn.fetchrow(
            """SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE pid = $1 AND state = 'active'
                 AND clock_timestamp() - query_start > interval '20 ms'""",
            pid,
        )
        if row is not None:
            waits[f"{row['wait_event_type'] or 'CPU'}:{row['wait_event'] or '-'}"] += 1
        await asyncio.sleep(0.005)


async def _insert_loop(dsn: str, campaign: int, interval_s: float, stop, ready) -> tuple[list[float], dict]:
    conn, monitor = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    latencies: list[float] = []
    waits: Counter[str] = Counter()
    sampler = asyncio.create_task(_sample_waits(monitor, conn.get_server_pid(), waits))
    try:
        ready.set()
        while not stop.is_set():
            t = time.perf_counter()
            await conn.execute(
                """INSERT INTO call_attempts (id, campaign_id, dialled_number, caller_id, mode, retention_until,
                                              ended_at, outcome)
                   VALUES ($1, $2, '+358401999999', $3, 'progressive', now() + interval '24 months', now(), 'busy')""",
                uuid.uuid4(),
                campaign,
                CALLER,
            )
            latencies.append(time.perf_counter() - t)
            await asyncio.sleep(interval_s)
    finally:
        sampler.cancel()
        await conn.close()
        await monitor.close()
    return latencies, dict(waits.most_common())


def _inserter_process(dsn: str, campaign: int, interval_s: float, stop, ready, out) -> None:
    out.put(asyncio.run(_insert_loop(dsn, campaign, interval_s, stop, ready)))


class Inserter:
    """Inserts one live CDR every `interval_s` from its own process and connection, so that
    its latencies are the database's, not this process's scheduling."""

    def __init__(self, dsn: str, campaign: int, interval_s: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._stop, self._ready, self._out = ctx.Event(), ctx.Event(), ctx.Queue()
        self._proc = ctx.Process(
            target=_inserter_process, args=(dsn, campaign, interval_s, self._stop, self._ready, self._out)
        )
        self.latencies: list[float] = []
        self.slow_waits: dict[str, int] = {}

    def __enter__(self) -> Inserter:
        self._proc.start()
        if not self._ready.wait(30):
            raise RuntimeError("the inserter process did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.latencies, self.slow_waits = self._out.get(timeout=30)
        self._proc.join(10)

    def summary(self) -> dict[str, float | int]:
        ms = sorted(x * 1000 for x in self.latencies)
        return {
            "count": len(ms),
            "p50_ms": round(statistics.median(ms), 2),
            "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2),
            "max_ms": round(ms[-1], 2),
            "waits_while_slow": self.slow_waits,  # 5 ms samples of inserts running over 20 ms
        }


async def raw_batched(pool: asyncpg.Pool, statement: str, batch: int) -> int:
    done = 0
    while True:
        n = int((await pool.execute(statement, batch)).split()[-1])
        if n == 0:
            return done
        done += n


_RAW_BATCH = """id = ANY(ARRAY(SELECT id FROM call_attempts WHERE anonymised_at IS NULL AND retention_until <= now()
                                ORDER BY retention_until LIMIT $1))"""
RAW_UPDATE = (
    f"UPDATE call_attempts SET dialled_number = NULL, contact_id = NULL, anonymised_at = now() WHERE {_RAW_BATCH}"
)
RAW_DELETE = f"DELETE FROM call_attempts WHERE {_RAW_BATCH}"


async def bench(dsn: str, args: argparse.Namespace, work: Path) -> dict:
    conn = await asyncpg.connect(dsn)
    try:
        await migrations.apply(conn)
    finally:
        await conn.close()
    pool = await create_pool(dsn, min_size=2, max_size=4)
    try:
        campaign = await pool.fetchval(
            "INSERT INTO campaigns (name, mode) VALUES ('bench', 'progressive') RETURNING id"
        )
        store = RecordingStore(work / "recordings")
        spool = work / "spool"
        spool.mkdir()
        result: dict = {
            "rows": args.rows,
            "recordings": args.recordings,
            "batch_size": args.batch_size,
            "cpu_count": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "insert_interval_ms": args.insert_interval_ms,
            "pg_settings": dict(args.pg_setting),
        }

        # Warm-up: one unmeasured pass so that every measured run finds the server's WAL
        # segments already created (recycled), as on a server that has been running.
        await populate(pool, campaign, args.rows)
        t0 = time.monotonic()
        await raw_batched(pool, RAW_UPDATE, args.batch_size)
        result["warmup_s"] = round(time.monotonic() - t0, 2)

        populate_s = await populate(pool, campaign, args.rows)
        recordings_s = await add_recordings(pool, store, spool, campaign, args.recordings)
        await pool.execute("CHECKPOINT")
        worker = PurgeWorker(pool, store, batch_size=args.batch_size)
        lsn = await pool.fetchval("SELECT pg_current_wal_lsn()")
        with Inserter(dsn, campaign, args.insert_interval_ms / 1000) as ins:
            t0 = time.monotonic()
            report = await worker.run_once(now=datetime.now(UTC))
            seconds = time.monotonic() - t0
        wal = await pool.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)", lsn)
        files_left = sum(1 for p in store.root.rglob("*") if p.is_file())
        result["populate_s"] = round(populate_s, 2)
        result["recordings_setup_s"] = round(recordings_s, 2)
        result["product"] = {
            "seconds": round(seconds, 2),
            "rows_per_s": round(report.attempts_anonymised / seconds),
            "attempts_anonymised": report.attempts_anonymised,
            "recordings_purged": report.recordings_purged,
            "recording_files_left": files_left,
            "wal_mb": round(float(wal) / 2**20),
            "concurrent_inserts": ins.summary(),
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }

        for name, statement in (("raw_update", RAW_UPDATE), ("raw_delete", RAW_DELETE)):
            await populate(pool, campaign, args.rows)
            with Inserter(dsn, campaign, args.insert_interval_ms / 1000) as ins:
                t0 = time.monotonic()
                n = await raw_batched(pool, statement, args.batch_size)
                seconds = time.monotonic() - t0
            result[name] = {"seconds": round(seconds, 2), "rows": n, "concurrent_inserts": ins.summary()}

        product = result["product"]
        result["targets"] = {
            "purge_under_30s_per_1m": product["seconds"] * 1_000_000 / args.rows < 30,
            "inserts_never_blocked_over_100ms": product["concurrent_inserts"]["max_ms"] < 100,
            "product_vs_raw_update": round(product["seconds"] / result["raw_update"]["seconds"], 2),
        }
        return result
    finally:
        await pool.close()


async def main_async(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="hitcall-bench-purge-"))
    os.chmod(work, 0o755)  # the embedded server's user must reach <work>/pg
    pg = None
    try:
        if args.dsn:
            name = f"bench_purge_{uuid.uuid4().hex[:8]}"
            admin = await asyncpg.connect(args.dsn)
            await admin.execute(f'CREATE DATABASE "{name}"')
            try:
                return await bench(dsn_with_database(args.dsn, name), args, work)
            finally:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await admin.close()
        pg = EmbeddedPostgres(work)
        await asyncio.to_thread(pg.start)
        if args.pg_setting:
            conn = await asyncpg.connect(pg.uri)
            try:
                for name, value in args.pg_setting:
                    await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
                await conn.execute("SELECT pg_reload_conf()")
            finally:
                await conn.close()
        return await bench(pg.uri, args, work)
    finally:
        if pg is not None:
            await asyncio.to_thread(pg.stop)
        shutil.rmtree(work, ignore_errors=True)


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.replace("_", "").isalnum() or "'" in value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--recordings", type=int, default=200, help="real recording files in the sample")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--insert-interval-ms", type=float, default=5.0)
    p.add_argument("--dsn", help="admin DSN of a PostgreSQL server (default: embedded server in a temp dir)")
    p.add_argument(
        "--pg-setting",
        type=_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="server setting for the embedded server (repeatable)",
    )
    args = p.parse_args()
    if args.dsn and args.pg_setting:
        p.error("--pg-setting applies to the embedded server only")
    configure_logging("WARNING")
    if args.rows < args.recordings or args.recordings < 0:
        p.error("--rows must be at least --recordings")
    sys.stdout.write(json.dumps(asyncio.run(main_async(args)), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
