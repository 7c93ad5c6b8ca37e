"""Alarm monitor: evaluates the service's health every few seconds and reports changes.

Each raised or cleared alarm is logged and set on the ``hitcall_alarm{name}`` gauge at
once, and written to the `alarms` table together with an ``alarm.raised`` /
``alarm.cleared`` outbox event (subject ``alarm:<name>``) in one transaction, so the
on-call system receives it through the signed webhooks. The conditions are those of
`core.alarms`; the monitor adds the call journal's health to what `gather_inputs`
reports (`service_inputs`: read from the running service through the few readings of
`AlarmSources` the composition root, app.py, wires). While Postgres is down the writes
wait in memory, in order, and go out at the next check that reaches it; the writes are
idempotent, so a write that is retried after an unclear failure does not duplicate a
row or event. On start the raised alarms are loaded from the table:
a restart neither raises them again nor forgets to clear them.

Several nodes share the table: the insert of a raised alarm does nothing while a row of
that name is raised (``ON CONFLICT (name) WHERE state = 'raised' DO NOTHING``), and an
event goes out only with a row written, so an alarm about the cluster is raised once and
cleared once whichever nodes see it. An alarm about one node (`core.alarms.PER_NODE`) is
stored under that node's name (`node_id`, ``<name>.node.<node>``, details ``node``):
each node loads, raises and clears only its own, and a node clearing its condition never
clears another's. Without a node id (one process) every alarm is the process's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg
from prometheus_client import CollectorRegistry, Gauge

from .core.alarms import (
    Alarm,
    AlarmInputs,
    CampaignAbandon,
    JournalHealth,
    Thresholds,
    diff,
    evaluate,
    is_per_node,
    own_alarm,
    stored_name,
)
from .core.pacing import PacingStats
from .hooks.events import enqueue
from .logs import get_logger

__all__ = ["AlarmMonitor", "AlarmSources", "campaign_abandon", "service_inputs"]

log = get_logger("hitcall.alarms")

_DB_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)

_RAISE = """
INSERT INTO alarms (name, severity, raised_at, details) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) WHERE state = 'raised' DO NOTHING
RETURNING id
"""
_CLEAR = """
UPDATE alarms SET state = 'cleared', cleared_at = greatest(raised_at, $2)
WHERE name = $1 AND state = 'raised'
RETURNING id
"""


class Journal(Protocol):
    """What the monitor reads of the `CallJournal`."""

    @property
    def backlog(self) -> int: ...
    @property
    def spool_backlog(self) -> int: ...
    @property
    def failing_since(self) -> float | None: ...


class WebhookHealth(Protocol):
    """What the monitor reads of the webhook dispatcher's stats."""

    @property
    def dead(self) -> int: ...
    @property
    def oldest_pending_age_s(self) -> float | None: ...


class AbandonCapped(Protocol):
    """What the monitor reads of a running campaign."""

    @property
    def abandon_cap(self) -> float: ...


@dataclass(frozen=True)
class AlarmSources:
    """What `service_inputs` reads of the running service, each called at every check."""

    pool: asyncpg.Pool  # probed (SELECT 1); the last purge run is read from its audit log
    ari_connected: Callable[[], bool]  # the ARI events socket is connected now
    cdr_backlog: Callable[[], int]  # CDRs in the local spool
    campaigns: Callable[[], Mapping[int, AbandonCapped]]  # running campaigns by id
    pacing_stats: Callable[[], Mapping[int, PacingStats]]  # their pacing statistics by campaign id
    purge_last_failed: Callable[[], bool | None]  # None: no scheduled purge ran yet
    webhook_stats: Callable[[], Awaitable[WebhookHealth]] | None = None  # None: no webhook alarms
    purge_interval_s: float | None = None  # None: no scheduled purge, no purge alarms
    disk_root: Path | None = None  # where recordings are stored; None: no disk alarms


@dataclass(frozen=True)
class _Transition:
    alarm: Alarm  # as stored: its name in the table, a per-node alarm's details naming the node
    raised: bool
    at: datetime


class AlarmMonitor:
    def __init__(
        self,
        pool: asyncpg.Pool,
        gather_inputs: Callable[[], Awaitable[AlarmInputs]],
        *,
        registry: CollectorRegistry,
        interval: float = 5.0,
        thresholds: Thresholds = Thresholds(),
        db_timeout: float = 5.0,
        journal: Journal | None = None,
        node_id: str | None = None,
    ) -> None:
        if interval <= 0 or db_timeout <= 0:
            raise ValueError("interval and db_timeout must be > 0")
        self._pool = pool
        self._gather = gather_inputs
        self._interval = interval
        self._thresholds = thresholds
        self._db_timeout = db_timeout
        self._journal = journal
        self._node_id = node_id
        self._log = log.bind(node=node_id) if node_id is not None else log
        self._gauge = Gauge("hitcall_alarm", "1 while the alarm is raised", ["name"], registry=registry)
        self._active: dict[str, Alarm] = {}
        self._pending: list[_Transition] = []
        self._loaded = False
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> dict[str, Alarm]:
        return dict(self._active)

    @property
    def pending_writes(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        """Load the raised alarms (retried at each check while Postgres is down) and start checking."""
        if self._task is not None:
            return
        await self._load()
        self._task = asyncio.create_task(self._run(), name="alarm-monitor")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        async with self._lock:
            await self._flush()
        if self._pending:
            log.warning("alarm.writes_lost_on_close", pending=len(self._pending))

    async def check_once(self) -> tuple[list[Alarm], list[Alarm]]:
        """Evaluate once; returns (raised, cleared). Logs and the gauge change at once; the
        table and outbox writes (with those still pending) are tried before it returns."""
        async with self._lock:
            return await self._check()

    async def _check(self) -> tuple[list[Alarm], list[Alarm]]:
        if not self._loaded:
            # Writes first: a deferred clear may end a row the load would bring back.
            await self._flush()
            await self._load()
        try:
            inputs = await self._gather()
        except Exception:
            log.exception("alarm.gather_failed")
            await self._flush()
            return [], []
        if self._journal is not None:
            inputs = replace(inputs, journal=self._journal_health())
        now = evaluate(inputs, self._thresholds, self._active)
        raised, cleared = diff(self._active, now)
        self._active = now
        at = datetime.now(UTC)
        for alarm in raised:
            self._log.warning(
                "alarm.raised",
                alarm=alarm.name,
                severity=alarm.severity,
                message=alarm.message,
                details=dict(alarm.details),
            )
            self._gauge.labels(alarm.name).set(1)
            self._pending.append(_Transition(self._stored(alarm), True, at))
        for alarm in cleared:
            self._log.info("alarm.cleared", alarm=alarm.name, severity=alarm.severity)
            self._gauge.labels(alarm.name).set(0)
            self._pending.append(_Transition(self._stored(alarm), False, at))
        await self._flush()
        return raised, cleared

    def _stored(self, alarm: Alarm) -> Alarm:
        """`alarm` as the table and its events have it."""
        name = stored_name(alarm.name, self._node_id)
        if name == alarm.name:
            return alarm
        return replace(alarm, name=name, details={**alarm.details, "node": self._node_id})

    def _journal_health(self) -> JournalHealth:
        j = self._journal
        assert j is not None
        since = j.failing_since
        return JournalHealth(
            backlog=j.backlog,
            spool_backlog=j.spool_backlog,
            failing_s=0.0 if since is None else max(0.0, time.monotonic() - since),
        )

    async def _run(self) -> None:
        while True:
            try:
                await self.check_once()
            except Exception:
                log.exception("alarm.check_failed")
            await asyncio.sleep(self._interval)

    async def _load(self) -> None:
        try:
            async with asyncio.timeout(self._db_timeout):
                rows = await self._pool.fetch(
                    "SELECT name, severity, details FROM alarms WHERE state = 'raised' ORDER BY raised_at"
                )
        except _DB_ERRORS as exc:
            log.warning("alarm.load_failed", error=str(exc) or type(exc).__name__)
            return
        for r in rows:
            details = dict(r["details"])
            message = str(details.pop("message", r["name"]))
            name = own_alarm(r["name"], self._node_id)
            if name is None:  # another node's
                continue
            if self._node_id is not None and is_per_node(name) and name == r["name"]:
                # Raised by a process that had no node id (before the nodes were named):
                # no process of that name runs now, so its alarm is cleared.
                stale = Alarm(r["name"], r["severity"], message, details)
                self._pending.append(_Transition(stale, False, datetime.now(UTC)))
                self._log.info("alarm.cleared", alarm=r["name"], severity=r["severity"], reason="raised unnamed")
                continue
            details.pop("node", None)
            # What this process saw first wins; an alarm known only from the table is
            # kept so that its clear is written when the condition is found gone.
            if name not in self._active:
                self._active[name] = Alarm(name, r["severity"], message, details)
                self._gauge.labels(name).set(1)
        self._loaded = True

    async def _flush(self) -> None:
        while self._pending:
            transition = self._pending[0]
            try:
                async with asyncio.timeout(self._db_timeout):
                    await self._write(transition)
            except _DB_ERRORS as exc:
                self._log.warning(
                    "alarm.write_deferred",
                    alarm=transition.alarm.name,
                    pending=len(self._pending),
                    error=str(exc) or type(exc).__name__,
                )
                return
            self._pending.pop(0)

    async def _write(self, t: _Transition) -> None:
        a = t.alarm
        payload: dict[str, Any] = {
            "name": a.name,
            "severity": a.severity,
            "message": a.message,
            "details": dict(a.details),
        }
        async with self._pool.acquire() as conn, conn.transaction():
            if t.raised:
                written = await conn.fetchval(_RAISE, a.name, a.severity, t.at, {**a.details, "message": a.message})
                payload["raised_at"] = t.at.isoformat()
            else:
                written = await conn.fetchval(_CLEAR, a.name, t.at)
                payload["cleared_at"] = t.at.isoformat()
            if written is not None:
                await enqueue(conn, "alarm.raised" if t.raised else "alarm.cleared", f"alarm:{a.name}", payload)


def campaign_abandon(
    stats: Mapping[int, PacingStats], campaigns: Mapping[int, AbandonCapped]
) -> tuple[CampaignAbandon, ...]:
    """Each running campaign's abandon rates against its cap (campaigns without stats yet are left out)."""
    out = []
    for cid, st in list(stats.items()):
        campaign = campaigns.get(cid)
        if campaign is None:
            continue
        out.append(
            CampaignAbandon(
                campaign_id=cid,
                cap=float(campaign.abandon_cap),
                today_rate=float(st.today_rate),
                rate_30_days=float(st.rate_30_days),
                answered_today=float(st.today.answered(st.amd_false_positive_rate)),
            )
        )
    return tuple(out)


class _ServiceInputs:
    """Reads the running service for the monitor; remembers since when ARI and Postgres
    are down and the previous spool backlog (the spool trend)."""

    def __init__(self, sources: AlarmSources, probe_timeout: float) -> None:
        self._src = sources
        self._probe_timeout = probe_timeout
        self._started = time.monotonic()
        self._ari_down_at: float | None = None
        self._db_down_at: float | None = None
        self._backlog: int | None = None

    async def __call__(self) -> AlarmInputs:
        src, now = self._src, time.monotonic()
        ari_connected = src.ari_connected()
        self._ari_down_at = None if ari_connected else (self._ari_down_at or now)
        db_ok = await self._probe(src.pool)
        self._db_down_at = None if db_ok else (self._db_down_at or now)

        backlog = int(src.cdr_backlog())
        trend = 0 if self._backlog is None else backlog - self._backlog
        self._backlog = backlog

        dead, oldest = await self._webhooks() if db_ok else (None, None)
        interval = src.purge_interval_s
        success_age = await self._purge_success_age(src.pool, interval, now) if db_ok and interval else None
        free, total = await self._disk(src.disk_root)
        return AlarmInputs(
            ari_connected=ari_connected,
            ari_down_s=0.0 if self._ari_down_at is None else now - self._ari_down_at,
            db_ok=db_ok,
            db_down_s=0.0 if self._db_down_at is None else now - self._db_down_at,
            spool_backlog=backlog,
            spool_trend=trend,
            campaigns=campaign_abandon(src.pacing_stats(), src.campaigns()),
            webhook_dead=dead,
            webhook_oldest_pending_age_s=oldest,
            purge_interval_s=interval or None,
            last_purge_success_age_s=success_age,
            last_purge_failed=src.purge_last_failed(),
            disk_free_bytes=free,
            disk_total_bytes=total,
        )

    async def _probe(self, pool: asyncpg.Pool) -> bool:
        try:
            async with asyncio.timeout(self._probe_timeout):
                await pool.fetchval("SELECT 1")
        except _DB_ERRORS:
            return False
        return True

    async def _webhooks(self) -> tuple[int | None, float | None]:
        if self._src.webhook_stats is None:
            return None, None
        try:
            async with asyncio.timeout(self._probe_timeout):
                stats = await self._src.webhook_stats()
        except _DB_ERRORS:
            return None, None
        return int(stats.dead), stats.oldest_pending_age_s

    async def _purge_success_age(self, pool: asyncpg.Pool, interval: float, now: float) -> float | None:
        # Bounded look-back on the audit index; any process's purge run counts.
        window = 3 * interval
        try:
            async with asyncio.timeout(self._probe_timeout):
                row = await pool.fetchrow(
                    """SELECT (SELECT extract(epoch FROM now() - max(at))::float8 FROM audit_log
                               WHERE action = 'purge.run' AND at > now() - make_interval(secs => $1)) AS age,
                              (SELECT extract(epoch FROM now() - min(started_at))::float8 FROM nodes
                               WHERE lease_until > now() AND stopped_at IS NULL) AS cluster_up""",
                    window,
                )
        except _DB_ERRORS:
            return None
        assert row is not None  # scalar subqueries: one row
        if row["age"] is not None:
            return float(row["age"])
        # No run in the window: the age is at least the time the service has been up, that is
        # its longest-running live node (every node then reads the same), this process at least.
        return max(now - self._started, float(row["cluster_up"] or 0.0))

    @staticmethod
    async def _disk(root: Path | None) -> tuple[int | None, int | None]:
        if root is None:
            return None, None
        try:
            usage = await asyncio.to_thread(shutil.disk_usage, root)
        except OSError:
            return None, None
        return usage.free, usage.total


def service_inputs(sources: AlarmSources, *, probe_timeout: float = 2.0) -> Callable[[], Awaitable[AlarmInputs]]:
    """The monitor's `gather_inputs` for the running service: each call reads one `AlarmInputs`.

    Stateful (one per monitor): it measures how long ARI and Postgres have been down and
    the spool backlog's change between calls."""
    return _ServiceInputs(sources, probe_timeout)
