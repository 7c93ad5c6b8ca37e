import asyncio
from contextlib import asynccontextmanager
from dataclasses import replace
from types import SimpleNamespace

import aiohttp
import asyncpg
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from hitcall_pbx.alarms import AlarmMonitor, AlarmSources, service_inputs
from hitcall_pbx.core.alarms import AlarmInputs, Thresholds, evaluate
from hitcall_pbx.core.backoff import Backoff
from hitcall_pbx.core.pacing import PacingStats
from hitcall_pbx.hooks.dispatcher import WebhookDispatcher
from hitcall_pbx.records.journal import CallJournal
from hitcall_pbx.records.recordings import RecordingStore
from hitcall_pbx.store import audit

DEAD = AlarmInputs(webhook_dead=2)
HEALTHY = AlarmInputs()


class Inputs:
    """The health the monitor sees; a test sets `now` (None: reading it fails)."""

    def __init__(self, now: AlarmInputs) -> None:
        self.now = now

    async def __call__(self) -> AlarmInputs:
        if self.now is None:
            raise RuntimeError("health unknown")
        return self.now


def monitor(pool, inputs):
    registry = CollectorRegistry()
    return AlarmMonitor(pool, inputs, registry=registry, interval=0.05, db_timeout=2.0), registry


def gauge(registry, name):
    return registry.get_sample_value("hitcall_alarm", {"name": name})


async def rows(pool):
    return [
        dict(r)
        for r in await pool.fetch(
            "SELECT name, severity, state, details, raised_at, cleared_at FROM alarms ORDER BY id"
        )
    ]


async def events(pool):
    return [dict(r) for r in await pool.fetch("SELECT event_type, subject, payload FROM webhook_outbox ORDER BY id")]


@asynccontextmanager
async def database_down(pg_dsn, pool):
    """Postgres refuses the test database: sessions killed, new connections refused."""
    name = await pool.fetchval("SELECT current_database()")
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
        await asyncio.sleep(0.05)
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


async def test_raise_writes_one_row_and_one_event_then_nothing_while_active(db):
    m, registry = monitor(db, Inputs(DEAD))
    with capture_logs() as logs:
        raised, cleared = await m.check_once()
    assert [a.name for a in raised] == ["webhook_dead_letters"] and cleared == []
    assert [(e["event"], e["alarm"], e["log_level"]) for e in logs] == [
        ("alarm.raised", "webhook_dead_letters", "warning")
    ]
    [row] = await rows(db)
    assert row["name"] == "webhook_dead_letters" and row["state"] == "raised" and row["severity"] == "major"
    assert row["details"]["dead"] == 2 and "dead" in row["details"]["message"]
    [event] = await events(db)
    assert event["event_type"] == "alarm.raised" and event["subject"] == "alarm:webhook_dead_letters"
    assert event["payload"]["name"] == "webhook_dead_letters" and event["payload"]["details"] == {"dead": 2}
    assert gauge(registry, "webhook_dead_letters") == 1.0

    assert await m.check_once() == ([], [])
    assert len(await rows(db)) == 1 and len(await events(db)) == 1
    assert m.pending_writes == 0


async def test_started_monitor_checks_in_the_background(db):
    inputs = Inputs(DEAD)
    m, registry = monitor(db, inputs)
    await m.start()
    try:
        async with asyncio.timeout(5):
            while not await rows(db):
                await asyncio.sleep(0.02)
            inputs.now = HEALTHY
            while (await rows(db))[0]["state"] != "cleared":
                await asyncio.sleep(0.02)
    finally:
        await m.close()
    assert gauge(registry, "webhook_dead_letters") == 0.0
    assert [e["event_type"] for e in await events(db)] == ["alarm.raised", "alarm.cleared"]


async def test_condition_gone_clears_row_and_sends_alarm_cleared(db):
    inputs = Inputs(DEAD)
    m, registry = monitor(db, inputs)
    await m.check_once()
    inputs.now = HEALTHY
    with capture_logs() as logs:
        raised, cleared = await m.check_once()
    assert raised == [] and [a.name for a in cleared] == ["webhook_dead_letters"]
    assert [(e["event"], e["alarm"], e["log_level"]) for e in logs] == [
        ("alarm.cleared", "webhook_dead_letters", "info")
    ]
    [row] = await rows(db)
    assert row["state"] == "cleared" and row["cleared_at"] >= row["raised_at"]
    assert [(e["event_type"], e["subject"]) for e in await events(db)] == [
        ("alarm.raised", "alarm:webhook_dead_letters"),
        ("alarm.cleared", "alarm:webhook_dead_letters"),
    ]
    assert gauge(registry, "webhook_dead_letters") == 0.0

    # Raised again later: a new row, the cleared one stays as history.
    inputs.now = DEAD
    await m.check_once()
    assert [r["state"] for r in await rows(db)] == ["cleared", "raised"]
    assert len(await events(db)) == 3


async def test_restart_neither_raises_again_nor_forgets(db):
    inputs = Inputs(replace(DEAD, ari_connected=False, ari_down_s=10.0))
    first, _ = monitor(db, inputs)
    await first.check_once()
    assert len(await rows(db)) == 2 and len(await events(db)) == 2

    second, registry = monitor(db, inputs)
    await second.start()
    try:
        assert gauge(registry, "ari_down") == 1.0 and set(second.active) == {"ari_down", "webhook_dead_letters"}
        assert await second.check_once() == ([], [])
        assert len(await rows(db)) == 2 and len(await events(db)) == 2

        inputs.now = HEALTHY
        raised, cleared = await second.check_once()
        assert raised == [] and {a.name for a in cleared} == {"ari_down", "webhook_dead_letters"}
        assert {r["state"] for r in await rows(db)} == {"cleared"}
        assert sorted(e["event_type"] for e in await events(db)) == ["alarm.cleared"] * 2 + ["alarm.raised"] * 2
    finally:
        await second.close()


async def test_raise_while_postgres_is_down_is_written_when_it_returns(db, pg_dsn):
    inputs = Inputs(HEALTHY)
    m, registry = monitor(db, inputs)
    await m.check_once()
    async with database_down(pg_dsn, db):
        inputs.now = AlarmInputs(db_ok=False, db_down_s=30.0, spool_backlog=4, spool_trend=4)
        with capture_logs() as logs:
            raised, _ = await m.check_once()
            # Still down at the next check: kept, nothing raised twice.
            assert await m.check_once() == ([], [])
        assert {a.name for a in raised} == {"db_down", "cdr_spool_growing"}
        assert {e["alarm"] for e in logs if e["event"] == "alarm.raised"} == {"db_down", "cdr_spool_growing"}
        assert any(e["event"] == "alarm.write_deferred" for e in logs)
        assert gauge(registry, "db_down") == 1.0 and m.pending_writes == 2

    # Postgres is back; a check whose gather fails still writes what waits.
    inputs.now = None
    with capture_logs() as logs:
        assert await m.check_once() == ([], [])
    assert [e["event"] for e in logs] == ["alarm.gather_failed"]
    assert m.pending_writes == 0
    assert sorted((r["name"], r["state"]) for r in await rows(db)) == [
        ("cdr_spool_growing", "raised"),
        ("db_down", "raised"),
    ]
    assert [e["event_type"] for e in await events(db)] == ["alarm.raised"] * 2

    inputs.now = HEALTHY
    raised, cleared = await m.check_once()
    assert raised == [] and {a.name for a in cleared} == {"db_down", "cdr_spool_growing"}
    assert m.pending_writes == 0
    assert sorted((r["name"], r["state"]) for r in await rows(db)) == [
        ("cdr_spool_growing", "cleared"),
        ("db_down", "cleared"),
    ]
    ev = await events(db)
    assert sorted(e["event_type"] for e in ev) == ["alarm.cleared"] * 2 + ["alarm.raised"] * 2
    # Per subject, raised is delivered before cleared.
    for name in ("db_down", "cdr_spool_growing"):
        assert [e["event_type"] for e in ev if e["subject"] == f"alarm:{name}"] == ["alarm.raised", "alarm.cleared"]


async def test_start_with_postgres_down_loads_the_table_when_it_returns(db, pg_dsn):
    inputs = Inputs(DEAD)
    first, _ = monitor(db, inputs)
    await first.check_once()
    inputs.now = HEALTHY
    second, registry = monitor(db, inputs)
    async with database_down(pg_dsn, db):
        await second.start()
        await second.close()
    # The alarm raised before the restart ended while the table was unreadable: cleared once it is read.
    await second.check_once()
    [row] = await rows(db)
    assert row["state"] == "cleared"
    assert [e["event_type"] for e in await events(db)] == ["alarm.raised", "alarm.cleared"]
    assert gauge(registry, "webhook_dead_letters") == 0.0


async def test_service_inputs_read_the_service_through_its_sources(db, tmp_path):
    await audit.record(db, actor="system:purge", actor_role="system", action="purge.run")
    stats = PacingStats(trusted_volume=1)
    stats.observe_connect(30)
    stats.observe_abandon(1)
    connected = asyncio.Event()
    service = SimpleNamespace(spool_backlog=3)
    sources = AlarmSources(
        pool=db,
        ari_connected=connected.is_set,
        cdr_backlog=lambda: service.spool_backlog,
        campaigns=lambda: {5: SimpleNamespace(abandon_cap=0.03), 6: SimpleNamespace(abandon_cap=0.03)},
        pacing_stats=lambda: {5: stats},  # campaign 6 has no stats yet: left out
        purge_last_failed=lambda: False,
        webhook_stats=WebhookDispatcher(db, aiohttp.ClientSession).stats,
        purge_interval_s=3600.0,
        disk_root=RecordingStore(tmp_path).root,
    )
    gather = service_inputs(sources)
    first = await gather()
    assert not first.ari_connected and first.db_ok and first.db_down_s == 0.0
    assert first.spool_backlog == 3 and first.spool_trend == 0
    [c] = first.campaigns
    assert (c.campaign_id, c.cap, c.answered_today) == (5, 0.03, 31.0) and abs(c.today_rate - 1 / 31) < 1e-9
    assert first.last_purge_success_age_s is not None and first.last_purge_success_age_s < 60
    assert first.last_purge_failed is False and first.webhook_dead == 0
    assert first.disk_total_bytes > 0 and 0 <= first.disk_free_bytes <= first.disk_total_bytes

    service.spool_backlog = 7
    await asyncio.sleep(0.01)
    second = await gather()
    assert second.spool_trend == 4 and second.ari_down_s > first.ari_down_s
    connected.set()
    assert (await gather()).ari_down_s == 0.0

    # The whole path: the monitor raises the near-cap alarm (3.2 % > 80 % of 3 %) from these sources.
    m, registry = monitor(db, gather)
    raised, _ = await m.check_once()
    assert {a.name for a in raised} == {"campaign.5.abandon_near_cap", "campaign.5.abandon_over_cap"}
    assert gauge(registry, "campaign.5.abandon_over_cap") == 1.0


async def test_service_inputs_without_webhooks_purge_or_disk_leave_those_unknown(db):
    sources = AlarmSources(
        pool=db,
        ari_connected=lambda: True,
        cdr_backlog=lambda: 0,
        campaigns=dict,
        pacing_stats=dict,
        purge_last_failed=lambda: None,
    )
    inputs = await service_inputs(sources)()
    assert inputs.ari_connected and inputs.db_ok and inputs.campaigns == ()
    assert (inputs.webhook_dead, inputs.webhook_oldest_pending_age_s) == (None, None)
    assert (inputs.purge_interval_s, inputs.last_purge_success_age_s, inputs.last_purge_failed) == (None, None, None)
    assert (inputs.disk_free_bytes, inputs.disk_total_bytes) == (None, None)
    assert evaluate(inputs, Thresholds(), {}) == {}, "nothing to raise on what is not known"


async def test_journal_failing_raises_journal_backlog_and_clears_once_replayed(db, pg_dsn, tmp_path):
    journal = CallJournal(db, spool_dir=tmp_path / "journal", backoff=Backoff(base=0.05, cap=0.2), write_timeout_s=1)
    await journal.start()
    registry = CollectorRegistry()
    m = AlarmMonitor(
        db,
        Inputs(HEALTHY),
        registry=registry,
        interval=0.05,
        db_timeout=1.0,
        journal=journal,
        thresholds=Thresholds(journal_failing_s=0.3, journal_backlog=1000),
    )
    try:
        async with database_down(pg_dsn, db):
            journal.event("alarm.raised", "alarm:test", {"n": 1})
            async with asyncio.timeout(10):
                while journal.failing_since is None or journal.spool_backlog == 0:
                    await asyncio.sleep(0.05)
            assert await m.check_once() == ([], []), "not before failing_s"
            await asyncio.sleep(0.3)
            raised, _ = await m.check_once()
            assert [(a.name, a.severity, a.details["spool_backlog"]) for a in raised] == [
                ("journal_backlog", "critical", 1)
            ]
            assert gauge(registry, "journal_backlog") == 1.0
        await journal.flush(10)
        assert journal.backlog == 0
        raised, cleared = await m.check_once()
        assert raised == [] and [a.name for a in cleared] == ["journal_backlog"]
        assert [(r["name"], r["state"]) for r in await rows(db)] == [("journal_backlog", "cleared")]
        assert gauge(registry, "journal_backlog") == 0.0
    finally:
        await journal.close()
        await m.close()
