"""The purge worker: removes what has passed its retention deadline, in small batches.

Recordings: the file is deleted, then the row becomes a tombstone (``purged_at``,
``purge_reason = 'retention'``; metadata kept) and ``recording.purged`` is emitted.
CDRs (``call_attempts``): the personal data (``dialled_number``, ``caller_number`` of an
inbound call, ``contact_id``) is cleared and ``anonymised_at`` set; the rest of the row
stays for statistics.
Rejected CDRs in the CDR spool (given ``spool_dir``): files past the CDR minimum
retention are deleted (`spool.expire_rejected`).

With ``outbox_keep`` (the scheduled purge of `hitcall serve`), settled webhook events
older than that are pruned in the same run (`hooks.retention.prune_outbox`).

One node at a time: a run (but a dry run, which changes nothing) holds the PostgreSQL
advisory lock `PURGE_LOCK_KEY` on a connection of its own. A node that does not get it
skips that run: it returns a report with ``skipped`` set, logged at debug, audited
nowhere (the node that runs audits it). The lock ends with its session, so a node that
dies or loses the database mid-run blocks nobody.

Nothing under a running complaint hold (nor the CDR of a held recording) and nothing
younger than the minimum (call + 2 months) is touched, whatever its stamped deadline.
Each batch locks its rows with ``FOR NO KEY UPDATE SKIP LOCKED`` in its own short
transaction, so several workers share the work, concurrent CDR writes never wait for a
purge (rows another transaction holds are left for the next run), and a run interrupted
anywhere is completed by the next one.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from ..auth import Actor
from ..core.retention import purge_eligible
from ..errors import ValidationFailed
from ..hooks.events import enqueue
from ..hooks.retention import prune_outbox
from ..logs import get_logger
from ..store import audit
from ..store.db import Connection, unlock_or_drop
from .recordings import RecordingStore
from .spool import expire_rejected

__all__ = ["PURGE_LOCK_KEY", "PurgeReport", "PurgeWorker", "purge_recordings"]

_log = get_logger("hitcall.records.purge")

PURGER = Actor("purge", "system")

# pg_advisory_lock key held for a purge run: the ASCII of "HCpurge\0" as a signed 64-bit integer.
PURGE_LOCK_KEY = int.from_bytes(b"HCpurge\0", "big", signed=True)

# Rows past the deadline and the minimum; $1 = now. Mirrors core.retention.purge_eligible.
_RECORDINGS_DUE = """
    purged_at IS NULL AND retention_until <= $1 AND hitcall_add_months(created_at, 2) <= $1
    AND (held_until IS NULL OR held_until <= $1)"""
_ATTEMPTS_DUE = """
    anonymised_at IS NULL AND retention_until <= $1 AND hitcall_add_months(created_at, 2) <= $1
    AND NOT EXISTS (SELECT 1 FROM recordings r
                    WHERE r.attempt_id = call_attempts.id AND r.purged_at IS NULL AND r.held_until > $1)"""
# Supervisors' monitoring sessions (monitoring legs) past their deadline, ended: deleted.
_MONITORING_DUE = """
    ended_at IS NOT NULL AND retention_until <= $1 AND hitcall_add_months(started_at, 2) <= $1"""


@dataclass(frozen=True)
class PurgeReport:
    started_at: datetime
    now: datetime
    dry_run: bool
    recordings_purged: int
    recordings_failed: int
    attempts_anonymised: int
    seconds: float
    rejected_files_deleted: int = 0
    monitoring_sessions_deleted: int = 0
    outbox_events_pruned: int = 0
    skipped: bool = False  # another node was purging: this run did nothing

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["started_at"] = self.started_at.isoformat()
        d["now"] = self.now.isoformat()
        return d


def _purged_payload(row: asyncpg.Record, now: datetime, reason: str) -> dict[str, Any]:
    return {
        "recording_id": str(row["id"]),
        "attempt_id": str(row["attempt_id"]),
        "campaign_id": row["campaign_id"],
        "purged_at": now.isoformat(),
        "reason": reason,
    }


async def purge_recordings(
    conn: Connection,
    store: RecordingStore,
    rows: Sequence[asyncpg.Record],
    *,
    now: datetime,
    reason: str,
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Delete the files of `rows` (recordings rows the caller has locked in `conn`'s
    transaction), then tombstone the rows whose file is gone and emit ``recording.purged``
    for each. Returns (purged ids, ids whose file could not be deleted)."""
    gone: list[asyncpg.Record] = []
    failed: list[uuid.UUID] = []
    for row in rows:
        try:
            await asyncio.to_thread(store.delete_file, row["path"])
        except OSError as exc:
            _log.error("recording_delete_failed", recording_id=str(row["id"]), error=str(exc))
            failed.append(row["id"])
        else:
            gone.append(row)
    ids = [r["id"] for r in gone]
    if ids:
        await conn.execute(
            """UPDATE recordings SET purged_at = $2, purge_reason = $3,
                                     held_until = NULL, hold_reason = NULL, hold_case_id = NULL
               WHERE id = ANY($1::uuid[]) AND purged_at IS NULL""",
            ids,
            now,
            reason,
        )
        for row in gone:
            await enqueue(conn, "recording.purged", f"recording:{row['id']}", _purged_payload(row, now, reason))
    return ids, failed


class PurgeWorker:
    """Purges expired recordings and CDR personal data; one run at a time across processes
    (nodes): a run that finds another one going is skipped."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        store: RecordingStore,
        *,
        batch_size: int = 1000,
        actor: Actor = PURGER,
        spool_dir: Path | str | None = None,
        outbox_keep: timedelta | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValidationFailed("batch_size must be a positive integer", details={"field": "batch_size"})
        self._pool = pool
        self._store = store
        self._batch = batch_size
        self._actor = actor
        self._spool_dir = None if spool_dir is None else Path(spool_dir)
        if outbox_keep is not None and outbox_keep <= timedelta(0):
            raise ValidationFailed("outbox_keep must be positive", details={"field": "outbox_keep"})
        self._outbox_keep = outbox_keep

    async def run_once(self, now: datetime | None = None, dry_run: bool = False) -> PurgeReport:
        started = datetime.now(UTC)
        now = started if now is None else now
        if now.tzinfo is None:
            raise ValidationFailed("now must be timezone-aware", details={"field": "now"})
        if dry_run:
            return await self._run(started, now, dry_run=True)
        async with self._pool.acquire() as lock:
            if not await lock.fetchval("SELECT pg_try_advisory_lock($1)", PURGE_LOCK_KEY):
                _log.debug("purge.skipped", reason="another node is purging")
                return PurgeReport(started, now, False, 0, 0, 0, 0.0, skipped=True)
            try:
                return await self._run(started, now, dry_run=False)
            finally:
                await unlock_or_drop(lock, PURGE_LOCK_KEY)

    async def _run(self, started: datetime, now: datetime, *, dry_run: bool) -> PurgeReport:
        t0 = time.monotonic()
        if dry_run:
            recordings = await self._pool.fetchval(f"SELECT count(*) FROM recordings WHERE {_RECORDINGS_DUE}", now)
            attempts = await self._pool.fetchval(f"SELECT count(*) FROM call_attempts WHERE {_ATTEMPTS_DUE}", now)
            monitoring = await self._pool.fetchval(
                f"SELECT count(*) FROM monitoring_sessions WHERE {_MONITORING_DUE}", now
            )
            failed = 0
        else:
            recordings, failed = await self._recordings(now)
            attempts = await self._attempts(now)
            monitoring = await self._monitoring(now)
        rejected = pruned = 0
        if self._spool_dir is not None and not dry_run:
            rejected = len(await asyncio.to_thread(expire_rejected, self._spool_dir, now))
        if self._outbox_keep is not None and not dry_run:
            pruned = await prune_outbox(self._pool, now=now, keep=self._outbox_keep)
        report = PurgeReport(
            started,
            now,
            dry_run,
            recordings,
            failed,
            attempts,
            round(time.monotonic() - t0, 3),
            rejected,
            monitoring,
            pruned,
        )
        details = report.as_dict()
        await audit.record(
            self._pool,
            **self._actor.audit_fields(),
            action="purge.dry_run" if dry_run else "purge.run",
            details=details,
        )
        _log.info("purge_run", **details)
        return report

    async def _recordings(self, now: datetime) -> tuple[int, int]:
        purged = 0
        failed: list[uuid.UUID] = []
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(
                    f"""SELECT id, path, attempt_id, campaign_id, created_at, retention_until, held_until, purged_at
                        FROM recordings WHERE {_RECORDINGS_DUE} AND id <> ALL($3::uuid[])
                        ORDER BY retention_until LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED""",
                    now,
                    self._batch,
                    failed,
                )
                if not rows:
                    return purged, len(failed)
                due = [
                    r
                    for r in rows
                    if purge_eligible(now, r["created_at"], r["retention_until"], r["held_until"], r["purged_at"])
                ]
                ids, bad = await purge_recordings(conn, self._store, due, now=now, reason="retention")
                if ids:
                    await audit.record(
                        conn,
                        **self._actor.audit_fields(),
                        action="recording.purge",
                        object_type="recording",
                        details={"reason": "retention", "recording_ids": [str(i) for i in ids]},
                    )
            purged += len(ids)
            failed += bad
            if len(due) < len(rows):  # the SQL and the core rule disagree: stop rather than loop
                _log.error("purge_rule_mismatch", rows=len(rows), eligible=len(due))
                return purged, len(failed)

    async def _monitoring(self, now: datetime) -> int:
        """Deletes the monitoring sessions past their retention deadline, a batch per transaction."""
        deleted = 0
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    f"""WITH done AS (
                            DELETE FROM monitoring_sessions WHERE id = ANY(ARRAY(
                                SELECT id FROM monitoring_sessions WHERE {_MONITORING_DUE}
                                ORDER BY retention_until LIMIT $2 FOR UPDATE SKIP LOCKED))
                            RETURNING retention_until)
                        SELECT count(*) AS n, max(retention_until) AS last FROM done""",
                    now,
                    self._batch,
                )
                assert row is not None  # an aggregate without GROUP BY has one row
                if row["n"] == 0:
                    return deleted
                await audit.record(
                    conn,
                    **self._actor.audit_fields(),
                    action="monitoring.purge",
                    object_type="monitoring_session",
                    details={"reason": "retention", "count": row["n"], "retention_until_max": row["last"].isoformat()},
                )
            deleted += row["n"]

    async def _attempts(self, now: datetime) -> int:
        anonymised = 0
        floor = datetime.min.replace(tzinfo=UTC)  # batches go in deadline order; never rescan behind
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                # A batch lost in a crash is simply redone by the next run: no need to wait for
                # the WAL flush, which also keeps it out of the way of concurrent CDR commits.
                # The rows are locked by the inner SELECT, so their ctid (the version locked)
                # stays theirs until commit: the UPDATE fetches them directly, no key look-ups.
                await conn.execute("SET LOCAL synchronous_commit = off")
                row = await conn.fetchrow(
                    f"""WITH done AS (
                            UPDATE call_attempts
                            SET dialled_number = NULL, caller_number = NULL, contact_id = NULL, anonymised_at = $1
                            WHERE ctid = ANY(ARRAY(
                                SELECT ctid FROM call_attempts WHERE {_ATTEMPTS_DUE} AND retention_until >= $3
                                ORDER BY retention_until LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED))
                            RETURNING retention_until)
                        SELECT count(*) AS n, max(retention_until) AS last FROM done""",
                    now,
                    self._batch,
                    floor,
                )
                assert row is not None  # an aggregate without GROUP BY has one row
                if row["n"] == 0:
                    return anonymised
                await audit.record(
                    conn,
                    **self._actor.audit_fields(),
                    action="cdr.anonymise",
                    object_type="call_attempt",
                    details={"reason": "retention", "count": row["n"], "retention_until_max": row["last"].isoformat()},
                )
            anonymised += row["n"]
            floor = row["last"]
