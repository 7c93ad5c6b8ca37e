"""The call journal: the dialer's per-call Postgres writes, ordered and batched.

The event path queues operations synchronously and never waits for Postgres; one
background task applies what was queued so far in one transaction, with one
multi-row statement per kind, in queue order (outbox ids follow it, so webhook
delivery order per attempt is the order of the calls' events).

When Postgres is unreachable the queue is kept (bounded by `max_backlog`; its size is
`backlog`, for metrics and alarms), the failure is logged loudly and the same batch is
retried with capped backoff until it commits. Every operation is idempotent, so a
batch whose COMMIT outcome is unknown (the connection died during COMMIT) is simply
applied again:

* an outbox event has a client-generated `event_id` (unique): ON CONFLICT DO NOTHING;
* progress and disposition updates set absolute values;
* a contact is closed only while it is in progress and the closing attempt is its
  latest (``contacts.attempts = attempt_no``), so a replay never undoes a later attempt.

Operations the database refuses as invalid are isolated one by one and dropped with
an error log; the rest of the batch is written.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

import asyncpg

from ..core.backoff import Backoff
from ..hooks.events import EVENT_TYPES
from ..logs import get_logger

log = get_logger("hitcall.dialer.journal")


@dataclass(frozen=True)
class OutboxEvent:
    event_id: uuid.UUID
    event_type: str
    subject: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Progress:
    attempt_id: uuid.UUID
    state: str  # 'answered' | 'bridged'
    answered_at: datetime | None
    bridged_at: datetime | None
    agent_id: int | None
    answer_to_bridge_ms: int | None


@dataclass(frozen=True)
class Disposition:
    attempt_id: uuid.UUID
    code: str


@dataclass(frozen=True)
class CloseContact:
    contact_id: int
    attempt_no: int
    attempt_created_at: datetime
    status: str
    retry_at: datetime | None
    outcome: str
    cancelled: bool


Op = OutboxEvent | Progress | Disposition | CloseContact

_INSERT_EVENTS = """
INSERT INTO webhook_outbox (event_id, event_type, subject, payload)
SELECT e, t, s, p::jsonb FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS v(e, t, s, p, n)
ORDER BY n
ON CONFLICT (event_id) DO NOTHING
"""
# A progress update never moves a row back (bridged stays bridged, ended stays ended).
_PROGRESS = """
UPDATE call_attempts a
SET state = v.state, answered_at = v.answered_at, bridged_at = v.bridged_at,
    agent_id = coalesce(v.agent_id, a.agent_id), answer_to_bridge_ms = v.ms
FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::bigint[], $6::int[])
     AS v(id, state, answered_at, bridged_at, agent_id, ms)
WHERE a.id = v.id AND a.state <> 'ended' AND (a.state <> 'bridged' OR v.state = 'bridged')
"""
_DISPOSITION = """
UPDATE call_attempts a SET disposition = v.code
FROM unnest($1::uuid[], $2::text[]) AS v(id, code) WHERE a.id = v.id
"""
# A callback stays scheduled when the attempt was cancelled before dialling or the
# callback is due only after this attempt was created; a callback that was dialled is done.
_KEEP_CALLBACK = "(c.callback_at IS NOT NULL AND (v.cancelled OR c.callback_at > v.created))"
_CLOSE_CONTACTS = f"""
UPDATE contacts c
SET status = CASE WHEN {_KEEP_CALLBACK} THEN 'callback' ELSE v.status END,
    next_attempt_at = v.retry_at, last_outcome = v.outcome,
    callback_agent_id = CASE WHEN {_KEEP_CALLBACK} THEN c.callback_agent_id END,
    callback_at = CASE WHEN {_KEEP_CALLBACK} THEN c.callback_at END
FROM unnest($1::bigint[], $2::int[], $3::timestamptz[], $4::text[], $5::timestamptz[], $6::text[], $7::bool[])
     AS v(id, attempt_no, created, status, retry_at, outcome, cancelled)
WHERE c.id = v.id AND c.status = 'in_progress' AND c.attempts = v.attempt_no
"""


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), default=str)


async def apply_ops(conn: asyncpg.Connection, ops: list[Op]) -> None:
    """Apply operations in the caller's transaction: one statement per kind."""
    events = [op for op in ops if isinstance(op, OutboxEvent)]
    # The latest progress / disposition of an attempt wins (a row is updated once per statement).
    progress = {op.attempt_id: op for op in ops if isinstance(op, Progress)}
    dispositions = {op.attempt_id: op for op in ops if isinstance(op, Disposition)}
    closes = {op.contact_id: op for op in ops if isinstance(op, CloseContact)}
    if progress:
        p = list(progress.values())
        await conn.execute(_PROGRESS, [o.attempt_id for o in p], [o.state for o in p], [o.answered_at for o in p],
                           [o.bridged_at for o in p], [o.agent_id for o in p], [o.answer_to_bridge_ms for o in p])
    if dispositions:
        d = list(dispositions.values())
        await conn.execute(_DISPOSITION, [o.attempt_id for o in d], [o.code for o in d])
    if closes:
        c = list(closes.values())
        await conn.execute(_CLOSE_CONTACTS, [o.contact_id for o in c], [o.attempt_no for o in c],
                           [o.attempt_created_at for o in c], [o.status for o in c], [o.retry_at for o in c],
                           [o.outcome for o in c], [o.cancelled for o in c])
    if events:
        await conn.execute(_INSERT_EVENTS, [o.event_id for o in events], [o.event_type for o in events],
                           [o.subject for o in events], [_dumps(o.payload) for o in events])


def _is_data_error(exc: BaseException) -> bool:
    """The database refused the data itself: retrying cannot help."""
    return isinstance(exc, (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)) or (
        isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError)
    )


class CallJournal:
    """Ordered, batched, retried writes of the dialer's call path."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_backlog: int = 200_000,
        batch_size: int = 2000,
        linger_s: float = 0.02,
        write_timeout_s: float = 10.0,
        backoff: Backoff = Backoff(base=0.1, cap=5.0),
    ) -> None:
        self.pool = pool
        self.max_backlog = max_backlog
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.write_timeout_s = write_timeout_s
        self.backoff = backoff
        self.applied = 0
        self.dropped = 0  # refused by the database, or past max_backlog
        self.failing_since: float | None = None  # monotonic time of the first failed write in a row
        self._ops: deque[Op] = deque()
        self._queued = 0
        self._done = 0
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    @property
    def backlog(self) -> int:
        """Operations queued and not yet committed."""
        return len(self._ops)

    # ------------------------------------------------------------ queue ---
    def event(self, event_type: str, subject: str, payload: dict[str, Any]) -> uuid.UUID:
        """Queue a webhook outbox event (`subject` orders delivery, e.g. "attempt:<id>")."""
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown webhook event type {event_type!r}")
        event_id = uuid.uuid4()
        self._put(OutboxEvent(event_id, event_type, subject, payload))
        return event_id

    def progress(self, attempt_id: uuid.UUID, *, answered_at: datetime | None, bridged_at: datetime | None,
                 agent_id: int | None, answer_to_bridge_ms: int | None) -> None:
        """Answer and bridge facts of a live attempt (the row shows what a crash would leave)."""
        self._put(Progress(attempt_id, "bridged" if bridged_at else "answered", answered_at, bridged_at,
                           agent_id if bridged_at else None, answer_to_bridge_ms))

    def disposition(self, attempt_id: uuid.UUID, code: str) -> None:
        self._put(Disposition(attempt_id, code))

    def close_contact(self, contact_id: int, *, attempt_no: int, attempt_created_at: datetime, status: str,
                      retry_at: datetime | None, outcome: str, cancelled: bool) -> None:
        """Contact bookkeeping after its attempt `attempt_no` ended."""
        self._put(CloseContact(contact_id, attempt_no, attempt_created_at, status, retry_at, outcome, cancelled))

    def _put(self, op: Op) -> None:
        if len(self._ops) >= self.max_backlog:
            self.dropped += 1
            log.error("dialer.journal_full", backlog=len(self._ops), dropped=self.dropped, op=repr(op))
            return
        self._ops.append(op)
        self._queued += 1
        self._wake.set()

    # ------------------------------------------------------------- life ---
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="call-journal")

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until everything queued before this call is committed (or dropped)."""
        target = self._queued
        async with self._progress:
            await asyncio.wait_for(self._progress.wait_for(lambda: self._done >= target), timeout)

    async def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to `timeout`), then stop."""
        if self._task is None:
            return
        try:
            await self.flush(timeout)
        except TimeoutError:
            log.error("dialer.journal_closed_with_backlog", backlog=self.backlog)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    # ----------------------------------------------------------- writer ---
    async def _run(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.linger_s:
                # Let the call path's own requests go first; what queues meanwhile joins the batch.
                await asyncio.sleep(self.linger_s)
            while self._ops:
                batch = list(islice(self._ops, self.batch_size))
                try:
                    refused = await asyncio.wait_for(self._write(batch), self.write_timeout_s)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures += 1
                    self._unavailable(exc, failures)
                    await asyncio.sleep(self.backoff.delay(failures - 1))
                    continue
                self._committed(len(batch), refused)
                if failures:
                    log.warning("dialer.journal_recovered", failures=failures, backlog=self.backlog,
                                down_s=round(time.monotonic() - (self.failing_since or time.monotonic()), 1))
                    failures, self.failing_since = 0, None
                await self._notify()

    async def _write(self, batch: list[Op]) -> int:
        """Commit the batch in one transaction; return how many operations the database refused."""
        async with self.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    await apply_ops(conn, batch)
                return 0
            except Exception as exc:
                if not _is_data_error(exc):
                    raise
            # Isolate the operations the database refuses (a savepoint each); write the others.
            refused = 0
            async with conn.transaction():
                for op in batch:
                    try:
                        async with conn.transaction():
                            await apply_ops(conn, [op])
                    except Exception as exc:
                        if not _is_data_error(exc):
                            raise
                        refused += 1
                        log.error("dialer.journal_refused", op=repr(op), error=f"{type(exc).__name__}: {exc}")
            return refused

    def _unavailable(self, exc: BaseException, failures: int) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        log.error("dialer.journal_unavailable", error=f"{type(exc).__name__}: {exc}", backlog=self.backlog,
                  failures=failures, down_s=round(time.monotonic() - self.failing_since, 1))

    def _committed(self, n: int, refused: int) -> None:
        for _ in range(n):
            self._ops.popleft()
        self.applied += n - refused
        self.dropped += refused
        self._done += n

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()
