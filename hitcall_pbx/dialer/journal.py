"""The call journal: the dialer's per-call Postgres writes, ordered and batched.

The event path queues operations synchronously and never waits for Postgres; one
background task applies what was queued so far in one transaction, with one
multi-row statement per kind, in queue order (outbox ids follow it, so webhook
delivery order per attempt is the order of the calls' events).

When Postgres is unreachable the failure is logged loudly and the queue goes to a
durable spool (`records.spool.Spool`, ``<data_dir>/spool/journal``): the failed batch
and everything queued after it, again at every failed retry, when the queue passes
`max_backlog`, and at `close` with anything left. The spool always holds the oldest
operations: the writer replays it in order (capped backoff) before it writes from
memory again, and a new journal on the same directory replays what an earlier
process left. The happy path never touches the disk; a SIGKILL loses only what was
queued since the last spill (at most one linger while Postgres is up). `backlog`
(memory and spool) and `failing_since` are for metrics and alarms. A connection that
failed is terminated, never reused. Every operation is idempotent, so a batch whose
COMMIT outcome is unknown (the connection died during COMMIT) or a spool segment
replayed again after a crash is simply applied again:

* an outbox event has a client-generated `event_id` (unique): ON CONFLICT DO NOTHING;
* progress and disposition updates set absolute values;
* a contact is closed only while it is in progress and the closing attempt is its
  latest (``contacts.attempts = attempt_no``), so a replay never undoes a later attempt;
* an agent state change inserts its log row only once (agent, start, state), ends only
  rows started before it, and sets ``agents.state`` only if it is not older than the
  stored state, so a replay never moves an agent back.

Operations the database refuses as invalid are isolated one by one and dropped with
an error log; the rest of the batch is written. Without a spool directory (tests of
other layers) the queue stays in memory and operations past `max_backlog` are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from ..core.backoff import Backoff
from ..hooks.events import EVENT_TYPES
from ..logs import get_logger
from ..records.cdr import ATTEMPT_TABLES
from ..records.spool import Spool

log = get_logger("hitcall.dialer.journal")

T = TypeVar("T")


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


@dataclass(frozen=True)
class AgentStateChange:
    agent_id: int
    state: str
    pause_code: str | None
    campaign_id: int | None
    since: datetime


Op = OutboxEvent | Progress | Disposition | CloseContact | AgentStateChange

# Spool lines: {"op": <kind>, <field>: <JSON value>, "run": <journal run>}.
_KINDS: dict[str, type] = {
    "event": OutboxEvent,
    "progress": Progress,
    "disposition": Disposition,
    "close_contact": CloseContact,
    "agent_state": AgentStateChange,
}
_KIND_OF = {cls: kind for kind, cls in _KINDS.items()}
_UUIDS = {"event_id", "attempt_id"}
_TIMES = {"answered_at", "bridged_at", "attempt_created_at", "retry_at", "since"}


def encode_op(op: Op) -> dict[str, Any]:
    item: dict[str, Any] = {"op": _KIND_OF[type(op)]}
    for f in fields(op):
        value = getattr(op, f.name)
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif f.name == "payload":
            value = _dumps(value)
        item[f.name] = value
    return item


def decode_op(item: dict[str, Any]) -> Op:
    """The operation of a spool line; ValueError / KeyError / TypeError when it is not one."""
    cls = _KINDS[item["op"]]
    values: dict[str, Any] = {}
    for f in fields(cls):
        value = item[f.name]
        if value is not None and f.name in _UUIDS:
            value = uuid.UUID(value)
        elif value is not None and f.name in _TIMES:
            value = datetime.fromisoformat(value)
        elif f.name == "payload":
            value = json.loads(value)
        values[f.name] = value
    return cls(**values)


_INSERT_EVENTS = """
INSERT INTO webhook_outbox (event_id, event_type, subject, payload)
SELECT e, t, s, p::jsonb FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS v(e, t, s, p, n)
ORDER BY n
ON CONFLICT (event_id) DO NOTHING
"""
# A progress update never moves a row back (bridged stays bridged, ended stays ended).
_PROGRESS = """
UPDATE live_attempts a
SET state = v.state, answered_at = v.answered_at, bridged_at = v.bridged_at,
    agent_id = coalesce(v.agent_id, a.agent_id), answer_to_bridge_ms = v.ms
FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::bigint[], $6::int[])
     AS v(id, state, answered_at, bridged_at, agent_id, ms)
WHERE a.id = v.id AND a.state <> 'ended' AND (a.state <> 'bridged' OR v.state = 'bridged')
"""
# The attempt is live or already a CDR (in the order `ATTEMPT_TABLES` explains).
_DISPOSITIONS = tuple(
    f"""
UPDATE {table} a SET disposition = v.code
FROM unnest($1::uuid[], $2::text[]) AS v(id, code) WHERE a.id = v.id
"""
    for table in ATTEMPT_TABLES
)


async def set_attempt_disposition(pool: asyncpg.Pool, attempt_id: uuid.UUID, agent_id: int, code: str) -> bool:
    """Set the disposition of one attempt the agent handled, live or already a CDR (in
    the order `ATTEMPT_TABLES` explains). False when the agent has no such attempt."""
    changed = 0
    async with pool.acquire() as conn, conn.transaction():
        for table in ATTEMPT_TABLES:
            status = await conn.execute(
                f"UPDATE {table} SET disposition = $3 WHERE id = $1 AND agent_id = $2", attempt_id, agent_id, code
            )
            changed += int(status.rsplit(" ", 1)[-1])
    return changed > 0


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
# Agent state changes, in queue order per agent: the open row started before the first
# change ends there; each change's row ends where the next begins; agents.state gets the last.
_AGENT_CHANGES = (
    "unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::timestamptz[]) "
    "WITH ORDINALITY AS u(a, st, pc, c, s, n)"
)
_AGENT_END_OPEN = f"""
UPDATE agent_state_log l SET ended_at = v.s
FROM (SELECT a, min(s) AS s FROM {_AGENT_CHANGES} GROUP BY a) v
WHERE l.agent_id = v.a AND l.ended_at IS NULL AND l.started_at < v.s
"""
_AGENT_LOG = f"""
INSERT INTO agent_state_log (agent_id, state, pause_code, campaign_id, started_at, ended_at)
SELECT a, st, pc, c, s, e FROM (
    SELECT a, st, pc, c, s, n, lead(s) OVER (PARTITION BY a ORDER BY n) AS e FROM {_AGENT_CHANGES}) v
WHERE st <> 'logged_out'
  AND NOT EXISTS (SELECT 1 FROM agent_state_log l WHERE l.agent_id = v.a AND l.started_at = v.s AND l.state = v.st)
ORDER BY n
"""
_AGENT_STATE = f"""
UPDATE agents g SET state = v.st, pause_code = v.pc, state_since = v.s
FROM (SELECT DISTINCT ON (a) a, st, pc, s FROM {_AGENT_CHANGES} ORDER BY a, n DESC) v
WHERE g.id = v.a AND g.state_since <= v.s
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
    agents = [op for op in ops if isinstance(op, AgentStateChange)]
    if progress:
        p = list(progress.values())
        await conn.execute(
            _PROGRESS,
            [o.attempt_id for o in p],
            [o.state for o in p],
            [o.answered_at for o in p],
            [o.bridged_at for o in p],
            [o.agent_id for o in p],
            [o.answer_to_bridge_ms for o in p],
        )
    if dispositions:
        d = list(dispositions.values())
        for statement in _DISPOSITIONS:
            await conn.execute(statement, [o.attempt_id for o in d], [o.code for o in d])
    if closes:
        c = list(closes.values())
        await conn.execute(
            _CLOSE_CONTACTS,
            [o.contact_id for o in c],
            [o.attempt_no for o in c],
            [o.attempt_created_at for o in c],
            [o.status for o in c],
            [o.retry_at for o in c],
            [o.outcome for o in c],
            [o.cancelled for o in c],
        )
    if agents:
        args = (
            [o.agent_id for o in agents],
            [o.state for o in agents],
            [o.pause_code for o in agents],
            [o.campaign_id for o in agents],
            [o.since for o in agents],
        )
        for statement in (_AGENT_END_OPEN, _AGENT_LOG, _AGENT_STATE):
            await conn.execute(statement, *args)
    if events:
        await conn.execute(
            _INSERT_EVENTS,
            [o.event_id for o in events],
            [o.event_type for o in events],
            [o.subject for o in events],
            [_dumps(o.payload) for o in events],
        )


def _is_data_error(exc: BaseException) -> bool:
    """The database refused the data itself: retrying cannot help."""
    return isinstance(exc, (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)) or (
        isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError)
    )


class CallJournal:
    """Ordered, batched, retried writes of the dialer's call path (and agent states)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        spool_dir: Path | str | None = None,
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
        self.dropped = 0  # refused by the database, or past max_backlog without a spool
        self.spilled = 0  # operations written to the spool
        self.failing_since: float | None = None  # monotonic time of the first failed write in a row
        self._spool = Spool(spool_dir) if spool_dir is not None else None
        self._run_id = uuid.uuid4().hex  # tells this journal's operations in the spool from earlier ones
        self._ops: deque[Op] = deque()
        self._queued = 0
        self._done = 0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._spool_io: asyncio.Future[Any] | None = None

    @property
    def backlog(self) -> int:
        """Operations queued or spooled and not yet committed."""
        return len(self._ops) + (self._spool.backlog if self._spool is not None else 0)

    @property
    def spool_backlog(self) -> int:
        return self._spool.backlog if self._spool is not None else 0

    # ------------------------------------------------------------ queue ---
    def event(self, event_type: str, subject: str, payload: dict[str, Any]) -> uuid.UUID:
        """Queue a webhook outbox event (`subject` orders delivery, e.g. "attempt:<id>")."""
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown webhook event type {event_type!r}")
        event_id = uuid.uuid4()
        self._put(OutboxEvent(event_id, event_type, subject, payload))
        return event_id

    def progress(
        self,
        attempt_id: uuid.UUID,
        *,
        answered_at: datetime | None,
        bridged_at: datetime | None,
        agent_id: int | None,
        answer_to_bridge_ms: int | None,
    ) -> None:
        """Answer and bridge facts of a live attempt (the row shows what a crash would leave)."""
        self._put(
            Progress(
                attempt_id,
                "bridged" if bridged_at else "answered",
                answered_at,
                bridged_at,
                agent_id if bridged_at else None,
                answer_to_bridge_ms,
            )
        )

    def disposition(self, attempt_id: uuid.UUID, code: str) -> None:
        self._put(Disposition(attempt_id, code))

    def close_contact(
        self,
        contact_id: int,
        *,
        attempt_no: int,
        attempt_created_at: datetime,
        status: str,
        retry_at: datetime | None,
        outcome: str,
        cancelled: bool,
    ) -> None:
        """Contact bookkeeping after its attempt `attempt_no` ended."""
        self._put(CloseContact(contact_id, attempt_no, attempt_created_at, status, retry_at, outcome, cancelled))

    def agent_state(
        self, agent_id: int, *, state: str, pause_code: str | None, campaign_id: int | None, since: datetime
    ) -> None:
        """An agent's new state from `since` (agent_state_log, agents.state); queue its
        ``agent.state_changed`` event right after it."""
        self._put(AgentStateChange(agent_id, state, pause_code, campaign_id, since))

    def _put(self, op: Op) -> None:
        if len(self._ops) >= self.max_backlog:
            if self._spool is None:
                self.dropped += 1
                log.error("dialer.journal_full", backlog=len(self._ops), dropped=self.dropped, op=repr(op))
                return
            self._full.set()  # the writer moves the queue to the spool
        self._ops.append(op)
        self._queued += 1
        self._wake.set()

    # ------------------------------------------------------------- life ---
    async def start(self) -> None:
        """Open the spool (what an earlier process left is written first) and start writing."""
        if self._task is None:
            if self._spool is not None:
                await asyncio.to_thread(self._spool.open)
                if self._spool.backlog:
                    self._wake.set()
            self._task = asyncio.create_task(self._run(), name="call-journal")

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until everything queued before this call is committed (or dropped)."""
        target = self._queued
        async with self._progress:
            await asyncio.wait_for(self._progress.wait_for(lambda: self._done >= target), timeout)

    async def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to `timeout`), spool what is left, then stop."""
        if self._task is None:
            return
        try:
            if self._spool is None or self.failing_since is None:  # else: spool at once
                await self.flush(timeout)
        except TimeoutError:
            log.error("dialer.journal_closed_with_backlog", backlog=self.backlog, spooled=self._spool is not None)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        if self._spool_io is not None:
            await asyncio.wait([self._spool_io])
        if self._spool is not None:
            await self._spill_or_log()  # a batch cut short may have committed too: replaying it is harmless
            await asyncio.to_thread(self._spool.close)

    # ----------------------------------------------------------- writer ---
    async def _run(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.linger_s:
                # Let the call path's own requests go first; what queues meanwhile joins the batch.
                await asyncio.sleep(self.linger_s)
            while self._ops or self.spool_backlog:
                if self._full.is_set():
                    await self._spill_or_log()
                try:
                    if self.spool_backlog:
                        await self._replay()
                    else:
                        batch = list(islice(self._ops, self.batch_size))
                        self._committed(len(batch), await self._write(batch))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures += 1
                    self._unavailable(exc, failures)
                    await self._spill_or_log()
                    await self._pause(self.backoff.delay(failures - 1))
                    continue
                if failures:
                    self._recovered(failures)
                    failures = 0
                await self._notify()

    async def _replay(self) -> None:
        """Write the spool's oldest segment, batch by batch; remove it once all is committed."""
        assert self._spool is not None
        segment = (await self._io(self._spool.segments))[0]
        read = await self._io(self._spool.read, segment)
        ops: list[Op] = []
        mine = 0
        for item in read.items:
            try:
                ops.append(decode_op(item))
            except (KeyError, TypeError, ValueError) as exc:
                self.dropped += 1
                log.error("dialer.journal_bad_spool_line", segment=segment.name, error=f"{type(exc).__name__}: {exc}")
                continue
            mine += item.get("run") == self._run_id
        refused = 0
        for start in range(0, len(ops), self.batch_size):
            refused += await self._write(ops[start : start + self.batch_size])
        await self._io(self._spool.remove, segment)
        self.applied += len(ops) - refused
        self.dropped += refused
        self._done += mine
        log.info(
            "dialer.journal_replayed",
            segment=segment.name,
            ops=len(ops),
            refused=refused,
            spool_backlog=self.spool_backlog,
        )

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        """Spool I/O in a thread; when the writer is cancelled meanwhile the call still
        completes, and `close` waits for it: one caller at a time."""
        self._spool_io = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        return await asyncio.shield(self._spool_io)

    async def _spill_or_log(self) -> None:
        if self._spool is None:
            return
        try:
            await self._spill()
        except OSError as exc:
            log.error("dialer.journal_spool_failed", error=f"{type(exc).__name__}: {exc}", backlog=len(self._ops))

    async def _spill(self) -> None:
        """Move the whole queue (the oldest unwritten operations follow the spool's) to the spool."""
        assert self._spool is not None
        self._full.clear()
        ops = list(self._ops)
        if not ops:
            return
        try:
            await self._io(self._spool.append, [encode_op(op) | {"run": self._run_id} for op in ops])
        finally:
            write = self._spool_io
            assert write is not None
            await asyncio.wait([write])  # cancelled meanwhile (close): it still completes
            if not write.cancelled() and write.exception() is None:
                for _ in ops:
                    self._ops.popleft()
        self.spilled += len(ops)
        log.warning("dialer.journal_spilled", ops=len(ops), spool_backlog=self._spool.backlog)

    async def _pause(self, delay: float) -> None:
        """Back off; a queue past `max_backlog` meanwhile goes to the spool at once."""
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), left)
            if self._full.is_set():
                await self._spill_or_log()

    async def _write(self, batch: list[Op]) -> int:
        """Commit the batch in one transaction; return how many operations the database
        refused. A connection that failed otherwise (or timed out) is terminated."""
        conn = await asyncio.wait_for(self.pool.acquire(), self.write_timeout_s)
        try:
            return await asyncio.wait_for(self._apply(conn, batch), self.write_timeout_s)
        except BaseException:
            conn.terminate()
            raise
        finally:
            await self.pool.release(conn)

    @staticmethod
    async def _apply(conn: asyncpg.Connection, batch: list[Op]) -> int:
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
        log.error(
            "dialer.journal_unavailable",
            error=f"{type(exc).__name__}: {exc}",
            backlog=self.backlog,
            failures=failures,
            down_s=round(time.monotonic() - self.failing_since, 1),
        )

    def _recovered(self, failures: int) -> None:
        log.warning(
            "dialer.journal_recovered",
            failures=failures,
            backlog=self.backlog,
            down_s=round(time.monotonic() - (self.failing_since or time.monotonic()), 1),
        )
        self.failing_since = None

    def _committed(self, n: int, refused: int) -> None:
        for _ in range(n):
            self._ops.popleft()
        self.applied += n - refused
        self.dropped += refused
        self._done += n

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()
