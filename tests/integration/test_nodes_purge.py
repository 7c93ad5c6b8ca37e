"""The retention purge runs on one node at a time: a run holds a PostgreSQL advisory lock
(`PURGE_LOCK_KEY`) on a session of its own; a node that does not get it skips that run.
Two nodes' workers (two pools, as two processes) on real PostgreSQL, one recordings store."""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from hitcall_pbx.metrics import MetricsSources, ServiceMetrics
from hitcall_pbx.records import records_command
from hitcall_pbx.records.purge import PURGE_LOCK_KEY, PurgeWorker
from hitcall_pbx.records.recordings import RecordingStore
from hitcall_pbx.settings import Settings
from hitcall_pbx.store.db import dsn_with_database
from tests.integration.nodes import NodeDb, two_nodes
from tests.integration.test_purge import NOW, make_attempt, make_campaign, make_recording

RECORDINGS = 6
BATCH = 2


class CountingStore(RecordingStore):
    """The real store; counts each file delete and can make them slow or stop them at the
    first one (`pause`) until `go` is set, so that a test knows a run is under way."""

    def __init__(self, root: Path, delay_s: float = 0.0) -> None:
        super().__init__(root)
        self.delay_s = delay_s
        self.deletes: Counter[str] = Counter()
        self.pause = False
        self.paused = threading.Event()
        self.go = threading.Event()
        self._lock = threading.Lock()

    def delete_file(self, relative: str) -> None:
        with self._lock:
            self.deletes[relative] += 1
        if self.pause:
            self.paused.set()
            self.go.wait(30)
        time.sleep(self.delay_s)
        super().delete_file(relative)


@pytest.fixture
async def nodes(pg_dsn, db) -> AsyncIterator[tuple[NodeDb, NodeDb]]:
    async with two_nodes(pg_dsn, db) as pair:
        yield pair


async def expired(db, store: RecordingStore) -> list[uuid.UUID]:
    """RECORDINGS recordings and their CDRs, all past their deadline at NOW."""
    campaign = await make_campaign(db)
    created = NOW - timedelta(days=300)
    ids = []
    for _ in range(RECORDINGS):
        attempt = await make_attempt(db, campaign, created, created + timedelta(days=200))
        ids.append(await make_recording(db, store, campaign, attempt, created, 6))
    return ids


async def audited(db, action: str) -> list[dict]:
    return [r["details"] for r in await db.fetch("SELECT details FROM audit_log WHERE action = $1 ORDER BY id", action)]


async def assert_purged_once(db, store: CountingStore, ids: list[uuid.UUID]) -> None:
    """Everything purged, each file deleted once, each event and audit row written once."""
    assert await db.fetchval("SELECT count(*) FROM recordings WHERE purged_at IS NULL") == 0
    assert await db.fetchval("SELECT count(*) FROM call_attempts WHERE anonymised_at IS NULL") == 0
    assert len(store.deletes) == RECORDINGS and set(store.deletes.values()) == {1}
    subjects = [r["subject"] for r in await db.fetch("SELECT subject FROM webhook_outbox")]
    assert sorted(subjects) == sorted(f"recording:{i}" for i in ids)
    in_audit = [i for d in await audited(db, "recording.purge") for i in d["recording_ids"]]
    assert sorted(in_audit) == sorted(str(i) for i in ids)
    assert sum(d["count"] for d in await audited(db, "cdr.anonymise")) == RECORDINGS


async def test_two_nodes_started_together_one_purges_the_other_skips(db, nodes, tmp_path):
    store = CountingStore(tmp_path / "store", delay_s=0.05)  # a run takes >= 0.3 s
    ids = await expired(db, store)
    workers = [PurgeWorker(n.pool, store, batch_size=BATCH) for n in nodes]

    reports = await asyncio.gather(*(w.run_once(now=NOW) for w in workers))

    assert sorted(r.skipped for r in reports) == [False, True]
    ran, skipped = sorted(reports, key=lambda r: r.skipped)
    assert (ran.recordings_purged, ran.attempts_anonymised) == (RECORDINGS, RECORDINGS)
    assert (skipped.recordings_purged, skipped.attempts_anonymised, skipped.recordings_failed) == (0, 0, 0)
    await assert_purged_once(db, store, ids)
    [run] = await audited(db, "purge.run")  # the skipped run is audited nowhere
    assert run["recordings_purged"] == RECORDINGS and run["skipped"] is False

    # The lock went with the run: the next run (on either node) runs, and finds nothing left.
    again = await workers[1].run_once(now=NOW)
    assert not again.skipped and (again.recordings_purged, again.attempts_anonymised) == (0, 0)
    assert len(await audited(db, "purge.run")) == 2


async def test_node_skips_while_another_is_mid_run_and_counts_the_skip(db, nodes, tmp_path):
    store = CountingStore(tmp_path / "store")
    ids = await expired(db, store)
    a, b = (PurgeWorker(n.pool, store, batch_size=BATCH) for n in nodes)
    store.pause = True
    run_a = asyncio.create_task(a.run_once(now=NOW))
    try:
        assert await asyncio.to_thread(store.paused.wait, 10)  # A holds the lock, in its first batch
        registry = CollectorRegistry()
        metrics = ServiceMetrics(registry, MetricsSources(lambda: True, lambda: 0, dict, dict, dict, int, int))
        metrics.purge_failed()  # B's own previous run had failed
        report = await asyncio.wait_for(b.run_once(now=NOW), 5)  # not waited for: skipped
        metrics.purge_done(report)
        assert report.skipped and report.recordings_purged == 0
        assert registry.get_sample_value("hitcall_purge_skipped_total") == 1.0
        assert metrics.purge_last_failed is True  # a skip says nothing about this node's own purge
    finally:
        store.go.set()
    assert (await run_a).recordings_purged == RECORDINGS
    await assert_purged_once(db, store, ids)
    assert len(await audited(db, "purge.run")) == 1


async def test_node_losing_postgres_mid_run_leaves_no_lock_behind(db, nodes, tmp_path):
    store = CountingStore(tmp_path / "store")
    ids = await expired(db, store)
    node_a, node_b = nodes
    a, b = PurgeWorker(node_a.pool, store, batch_size=BATCH), PurgeWorker(node_b.pool, store, batch_size=BATCH)
    store.pause = True
    run_a = asyncio.create_task(a.run_once(now=NOW))
    try:
        assert await asyncio.to_thread(store.paused.wait, 10)
        assert await node_a.cut() >= 2  # A's lock session and its batch's transaction die
        store.pause = False
        report = await asyncio.wait_for(b.run_once(now=NOW), 10)
        assert not report.skipped and report.recordings_purged == RECORDINGS  # A's batch was never committed
    finally:
        store.go.set()
    with pytest.raises((OSError, asyncpg.InterfaceError, asyncpg.PostgresError)):
        await run_a
    # A's thread went on deleting the files of its batch after B had purged them (deleting
    # a file that is gone is fine); rows, events and audit rows are B's alone.
    assert sum(store.deletes.values()) == RECORDINGS + BATCH
    store.deletes = Counter(dict.fromkeys(store.deletes, 1))
    await assert_purged_once(db, store, ids)
    assert len(await audited(db, "purge.run")) == 1


async def test_purge_command_says_when_another_node_is_purging(db, pg_dsn, tmp_path, capsys):
    name = await db.fetchval("SELECT current_database()")
    settings_ = Settings(database_url=dsn_with_database(pg_dsn, name), data_dir=tmp_path / "data")
    parser = argparse.ArgumentParser()
    records_command.add_parser(parser.add_subparsers(dest="command"))
    async with db.acquire() as other_node:
        assert await other_node.fetchval("SELECT pg_try_advisory_lock($1)", PURGE_LOCK_KEY)
        try:
            assert await records_command.run(settings_, parser.parse_args(["purge"])) == 1
            assert (
                capsys.readouterr().err
                == "hitcall purge: another node is purging now; nothing done (run it again later)\n"
            )
            # A dry run changes nothing and needs no lock.
            assert await records_command.run(settings_, parser.parse_args(["purge", "--dry-run"])) == 0
        finally:
            await other_node.fetchval("SELECT pg_advisory_unlock($1)", PURGE_LOCK_KEY)
    assert await records_command.run(settings_, parser.parse_args(["purge"])) == 0
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'purge.run'") == 1


async def test_the_scheduled_run_prunes_settled_webhook_events_under_the_same_lock(db, tmp_path):
    old = datetime.now(UTC) - timedelta(days=40)
    await db.execute(
        """INSERT INTO webhook_outbox (event_id, event_type, subject, payload, created_at, dispatched_at)
           VALUES ($1, 'call.ended', 'call:1', '{}', $2, $2), ($3, 'call.ended', 'call:2', '{}', now(), now())""",
        uuid.uuid4(),
        old,
        uuid.uuid4(),
    )
    worker = PurgeWorker(db, RecordingStore(tmp_path / "store"), outbox_keep=timedelta(days=30))
    report = await worker.run_once()
    assert report.outbox_events_pruned == 1
    assert [r["subject"] for r in await db.fetch("SELECT subject FROM webhook_outbox")] == ["call:2"]
