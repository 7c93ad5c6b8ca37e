"""The call journal: the dialer's per-call Postgres writes (and agent states), ordered and batched.

The event path queues operations synchronously and never waits for Postgres. A
`WriteBehind` (see `records.writebehind`) applies what was queued so far in one
transaction, with one multi-row statement per kind, in queue order (outbox ids follow
it, so webhook delivery order per attempt is the order of the calls' events): a batch
starts `linger_s` after the first operation queued, so that what the call path queues
meanwhile joins it.

When Postgres is unreachable the failure is logged loudly and the queue goes to a
durable spool (`records.spool.Spool`, ``<data_dir>/spool/journal``): the failed batch
and everything queued after it, then what is queued while the spool is not empty (each
linger), the queue past `max_backlog`, and at `close` anything left. The spool always
holds the oldest operations: the writer replays it in order (capped backoff) before it
writes from memory again, and a new journal on the same directory replays what an
earlier process left. The happy path never touches the disk; a SIGKILL loses only what
was queued since the last spill (at most one linger while Postgres is up, one write
timeout when it just went down). `backlog` (memory and spool) and `failing_since` are
for metrics and alarms. A connection that failed is terminated, never reused. Every
operation is idempotent, so a batch whose COMMIT outcome is unknown (the connection
died during COMMIT) or a spool segment replayed again after a crash is simply applied
again:

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

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from ..core.backoff import Backoff
from ..hooks.events import EVENT_TYPES
from ..logs import get_logger
from .cdr import ATTEMPT_TABLES
from .writebehind import Rows, WriteBehind

_log = get_logger("hitcall.journal")


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
class RecordingLink:
    """The recording a live call's bridge is being recorded to: stored on the attempt at
    once, so that a process adopting the call after a restart keeps the link."""

    attempt_id: uuid.UUID
    recording_id: uuid.UUID


@dataclass(frozen=True)
class RecordingPauseSpan:
    """A paused span of a call's recording as it stands: opened (`resumed_at` None), or
    closed. Its audit row (recording.pause / recording.resume) is written with it, once."""

    recording_id: uuid.UUID
    attempt_id: uuid.UUID
    seq: int
    paused_at: datetime
    paused_by: str
    paused_role: str | None
    resumed_at: datetime | None = None
    resumed_by: str | None = None
    resumed_role: str | None = None
    ended_by_call: bool = False


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
    lost: bool = False  # not counted against max_attempts (contacts.lost_attempts)


@dataclass(frozen=True)
class AgentStateChange:
    agent_id: int
    state: str
    pause_code: str | None
    campaign_id: int | None
    since: datetime
    pool: str | None = None  # the Asterisk (pool) the agent's phone is on (agents.pool)
    node_id: str | None = None  # the node following it (agents.node_id)


@dataclass(frozen=True)
class CallLeg:
    """One party's time on a call (call_legs): an agent or an external transfer target."""

    attempt_id: uuid.UUID
    seq: int
    agent_id: int | None
    number: str | None
    role: str
    joined_at: datetime
    left_at: datetime


@dataclass(frozen=True)
class InboundArrival:
    """A caller reached the return-call menu or the inbound router: the call's live row
    (direction inbound, id = the id its CDR will have), so that restart recovery finds a
    call the service stopped following. A replay, or the router taking over the menu's
    row, rewrites the same row; a call whose CDR is already written gets none."""

    attempt_id: uuid.UUID
    campaign_id: int | None
    contact_id: int | None
    caller_id: str | None  # the line the caller dialled (E.164)
    caller_number: str | None  # the caller's number (E.164)
    created_at: datetime
    retention_until: datetime
    pool: str | None = None  # the Asterisk (pool) the call is on; None: not known here (the FastAGI menu)
    node_id: str | None = None


Op = (
    OutboxEvent
    | Progress
    | RecordingLink
    | RecordingPauseSpan
    | Disposition
    | CloseContact
    | AgentStateChange
    | CallLeg
    | InboundArrival
)

# Spool lines: {"op": <kind>, <field>: <JSON value>}; other keys (a "run" from earlier versions) are ignored.
_KINDS: dict[str, type] = {
    "event": OutboxEvent,
    "progress": Progress,
    "disposition": Disposition,
    "recording": RecordingLink,
    "recording_pause": RecordingPauseSpan,
    "close_contact": CloseContact,
    "agent_state": AgentStateChange,
    "leg": CallLeg,
    "inbound": InboundArrival,
}
_KIND_OF = {cls: kind for kind, cls in _KINDS.items()}
_UUIDS = {"event_id", "attempt_id", "recording_id"}
_TIMES = {
    "answered_at",
    "bridged_at",
    "attempt_created_at",
    "retry_at",
    "since",
    "paused_at",
    "resumed_at",
    "joined_at",
    "left_at",
    "created_at",
    "retention_until",
}


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
        # a field added later (a default) may be missing from a line an earlier version spooled
        value = item[f.name] if f.name in item or f.default is MISSING else item.get(f.name, f.default)
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
# The attempt is live or already a CDR (in the order `ATTEMPT_TABLES` explains); a link
# already stored wins.
_RECORDING_LINKS = tuple(
    f"""
UPDATE {table} a SET recording_id = v.rec
FROM unnest($1::uuid[], $2::uuid[]) AS v(id, rec) WHERE a.id = v.id AND a.recording_id IS NULL
"""
    for table in ATTEMPT_TABLES
)
# A span is inserted once and closed once; each writes its audit row only when it changed
# the table, so a replayed batch neither duplicates nor reopens anything.
_PAUSE_OPEN = """
WITH v AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::timestamptz[], $5::text[], $6::text[])
                    WITH ORDINALITY AS u(rec, att, seq, at_, by_, role_, n)),
s AS (INSERT INTO recording_pauses (recording_id, attempt_id, seq, paused_at, paused_by)
      SELECT rec, att, seq, at_, by_ FROM v ORDER BY n
      ON CONFLICT (recording_id, seq) DO NOTHING
      RETURNING recording_id, seq)
INSERT INTO audit_log (actor, actor_role, action, object_type, object_id, details)
SELECT v.by_, v.role_, 'recording.pause', 'recording', v.rec::text,
       jsonb_build_object('attempt_id', v.att, 'seq', v.seq, 'at', v.at_)
FROM v JOIN s ON s.recording_id = v.rec AND s.seq = v.seq ORDER BY v.n
"""
_PAUSE_CLOSE = """
WITH v AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::timestamptz[], $5::text[], $6::text[],
                                $7::bool[]) WITH ORDINALITY AS u(rec, att, seq, at_, by_, role_, ended, n)),
s AS (UPDATE recording_pauses p SET resumed_at = v.at_, resumed_by = v.by_, ended_by_call = v.ended
      FROM v WHERE p.recording_id = v.rec AND p.seq = v.seq AND p.resumed_at IS NULL
      RETURNING p.recording_id, p.seq)
INSERT INTO audit_log (actor, actor_role, action, object_type, object_id, details)
SELECT v.by_, v.role_, 'recording.resume', 'recording', v.rec::text,
       jsonb_build_object('attempt_id', v.att, 'seq', v.seq, 'at', v.at_, 'ended_by_call', v.ended)
FROM v JOIN s ON s.recording_id = v.rec AND s.seq = v.seq ORDER BY v.n
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
    callback_at = CASE WHEN {_KEEP_CALLBACK} THEN c.callback_at END,
    lost_attempts = least(1, c.lost_attempts + v.lost::int)
FROM unnest($1::bigint[], $2::int[], $3::timestamptz[], $4::text[], $5::timestamptz[], $6::text[], $7::bool[],
            $8::bool[])
     AS v(id, attempt_no, created, status, retry_at, outcome, cancelled, lost)
WHERE c.id = v.id AND c.status = 'in_progress' AND c.attempts = v.attempt_no
"""
# The scheduled callback an attempt dialled (due when the attempt was created) is done when
# the customer reached an agent, else missed; run before the contact is closed.
_CLOSE_CALLBACKS = """
UPDATE callbacks b
SET state = CASE WHEN v.outcome = 'answered_human' THEN 'done' ELSE 'missed' END, closed_at = now()
FROM unnest($1::bigint[], $2::int[], $3::timestamptz[], $4::text[], $5::timestamptz[], $6::text[], $7::bool[],
            $8::bool[])
     AS v(id, attempt_no, created, status, retry_at, outcome, cancelled, lost)
JOIN contacts c ON c.id = v.id
WHERE b.contact_id = v.id AND b.state = 'scheduled' AND b.due_at <= v.created AND NOT v.cancelled
  AND c.status = 'in_progress' AND c.attempts = v.attempt_no
"""
# Agent state changes, in queue order per agent: the open row started before the first
# change ends there; each change's row ends where the next begins; agents.state gets the last.
_AGENT_CHANGES = (
    "unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::timestamptz[], $6::text[], $7::text[]) "
    "WITH ORDINALITY AS u(a, st, pc, c, s, pool, node, n)"
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
UPDATE agents g SET state = v.st, pause_code = v.pc, state_since = v.s,
    pool = coalesce(v.pool, g.pool), node_id = coalesce(v.node, g.node_id)
FROM (SELECT DISTINCT ON (a) a, st, pc, s, pool, node FROM {_AGENT_CHANGES} ORDER BY a, n DESC) v
WHERE g.id = v.a AND g.state_since <= v.s
"""


# A leg is written once (a replay changes nothing).
_LEGS = """
INSERT INTO call_legs (attempt_id, seq, agent_id, number, role, joined_at, left_at)
SELECT * FROM unnest($1::uuid[], $2::smallint[], $3::bigint[], $4::text[], $5::text[], $6::timestamptz[],
                     $7::timestamptz[])
ON CONFLICT (attempt_id, seq) DO NOTHING
"""


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), default=str)


# An inbound call's live row (`InboundArrival`). A campaign or contact that does not
# exist (any more) is stored as NULL; a row already a CDR is not brought back.
_INBOUND_ARRIVALS = """
INSERT INTO live_attempts (id, direction, campaign_id, contact_id, attempt_no, mode, dialled_number, caller_id,
                           caller_number, state, created_at, retention_until, pool, node_id)
SELECT v.id, 'inbound', c.id, k.id, NULL, NULL, NULL, v.line, v.caller, 'answered', v.created, v.deadline,
       v.pool, v.node
FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[],
            $8::text[], $9::text[])
     AS v(id, campaign, contact, line, caller, created, deadline, pool, node)
LEFT JOIN campaigns c ON c.id = v.campaign
LEFT JOIN contacts k ON k.id = v.contact
WHERE NOT EXISTS (SELECT 1 FROM call_attempts a WHERE a.id = v.id)
ON CONFLICT (id) DO UPDATE SET
    campaign_id = EXCLUDED.campaign_id, contact_id = EXCLUDED.contact_id, caller_id = EXCLUDED.caller_id,
    caller_number = EXCLUDED.caller_number, created_at = EXCLUDED.created_at,
    retention_until = EXCLUDED.retention_until,
    pool = coalesce(EXCLUDED.pool, live_attempts.pool), node_id = coalesce(EXCLUDED.node_id, live_attempts.node_id)
WHERE live_attempts.direction = 'inbound' AND live_attempts.anonymised_at IS NULL
"""


async def write_inbound_arrivals(conn: asyncpg.Connection, arrivals: Sequence[InboundArrival]) -> None:
    """Insert (or rewrite) inbound calls' live rows; the latest arrival of a call wins."""
    latest = list({a.attempt_id: a for a in arrivals}.values())
    if not latest:
        return
    await conn.execute(
        _INBOUND_ARRIVALS,
        [a.attempt_id for a in latest],
        [a.campaign_id for a in latest],
        [a.contact_id for a in latest],
        [a.caller_id for a in latest],
        [a.caller_number for a in latest],
        [a.created_at for a in latest],
        [a.retention_until for a in latest],
        [a.pool for a in latest],
        [a.node_id for a in latest],
    )


async def apply_ops(conn: asyncpg.Connection, ops: list[Op]) -> None:
    """Apply operations in the caller's transaction: one statement per kind."""
    events = [op for op in ops if isinstance(op, OutboxEvent)]
    # First: an inbound call's progress in the same batch updates the row this inserts.
    await write_inbound_arrivals(conn, [op for op in ops if isinstance(op, InboundArrival)])
    # The latest progress / disposition of an attempt wins (a row is updated once per statement).
    progress = {op.attempt_id: op for op in ops if isinstance(op, Progress)}
    dispositions = {op.attempt_id: op for op in ops if isinstance(op, Disposition)}
    links = {op.attempt_id: op for op in ops if isinstance(op, RecordingLink)}
    pauses = [op for op in ops if isinstance(op, RecordingPauseSpan)]
    closes = {op.contact_id: op for op in ops if isinstance(op, CloseContact)}
    agents = [op for op in ops if isinstance(op, AgentStateChange)]
    legs = [op for op in ops if isinstance(op, CallLeg)]
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
    if links:
        r = list(links.values())
        for statement in _RECORDING_LINKS:
            await conn.execute(statement, [o.attempt_id for o in r], [o.recording_id for o in r])
    if pauses:
        await _apply_pauses(conn, pauses)
    if dispositions:
        d = list(dispositions.values())
        for statement in _DISPOSITIONS:
            await conn.execute(statement, [o.attempt_id for o in d], [o.code for o in d])
    if closes:
        c = list(closes.values())
        close_args = (
            [o.contact_id for o in c],
            [o.attempt_no for o in c],
            [o.attempt_created_at for o in c],
            [o.status for o in c],
            [o.retry_at for o in c],
            [o.outcome for o in c],
            [o.cancelled for o in c],
            [o.lost for o in c],
        )
        await conn.execute(_CLOSE_CALLBACKS, *close_args)
        await conn.execute(_CLOSE_CONTACTS, *close_args)
    if agents:
        args = (
            [o.agent_id for o in agents],
            [o.state for o in agents],
            [o.pause_code for o in agents],
            [o.campaign_id for o in agents],
            [o.since for o in agents],
            [o.pool for o in agents],
            [o.node_id for o in agents],
        )
        for statement in (_AGENT_END_OPEN, _AGENT_LOG, _AGENT_STATE):
            await conn.execute(statement, *args)
    if legs:
        await conn.execute(
            _LEGS,
            [o.attempt_id for o in legs],
            [o.seq for o in legs],
            [o.agent_id for o in legs],
            [o.number for o in legs],
            [o.role for o in legs],
            [o.joined_at for o in legs],
            [o.left_at for o in legs],
        )
    if events:
        await conn.execute(
            _INSERT_EVENTS,
            [o.event_id for o in events],
            [o.event_type for o in events],
            [o.subject for o in events],
            [_dumps(o.payload) for o in events],
        )


async def _apply_pauses(conn: asyncpg.Connection, spans: list[RecordingPauseSpan]) -> None:
    """Open every span first, then close: a span opened and closed in one batch gets both rows."""
    opened = {(o.recording_id, o.seq): o for o in reversed(spans)}  # the first op of a span opens it
    o_ = list(opened.values())
    await conn.execute(
        _PAUSE_OPEN,
        [o.recording_id for o in o_],
        [o.attempt_id for o in o_],
        [o.seq for o in o_],
        [o.paused_at for o in o_],
        [o.paused_by for o in o_],
        [o.paused_role for o in o_],
    )
    closed = {(o.recording_id, o.seq): o for o in spans if o.resumed_at is not None}
    if closed:
        c = list(closed.values())
        await conn.execute(
            _PAUSE_CLOSE,
            [o.recording_id for o in c],
            [o.attempt_id for o in c],
            [o.seq for o in c],
            [o.resumed_at for o in c],
            [o.resumed_by for o in c],
            [o.resumed_role for o in c],
            [o.ended_by_call for o in c],
        )


async def _apply_batch(conn: asyncpg.Connection, ops: Sequence[Op]) -> None:
    async with conn.transaction():
        await apply_ops(conn, list(ops))


async def _apply_one(conn: asyncpg.Connection, op: Op) -> None:
    await apply_ops(conn, [op])


_ROWS: Rows[Op] = Rows(write=_apply_batch, write_one=_apply_one, encode=encode_op, decode=decode_op)


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
        # Called with each queued event (type, subject, payload) as it is queued: live screens.
        self.listeners: list[Callable[[str, str, dict[str, Any]], None]] = []
        self.max_backlog = max_backlog
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.write_timeout_s = write_timeout_s
        self.backoff = backoff
        self._wb = WriteBehind(
            pool,
            _ROWS,
            name="journal",
            spool_dir=spool_dir,
            batch_size=batch_size,
            linger_s=linger_s,
            write_timeout_s=write_timeout_s,
            backoff=backoff,
            max_backlog=max_backlog,
        )

    @property
    def applied(self) -> int:
        """Operations committed (from memory or the spool)."""
        return self._wb.written + self._wb.replayed

    @property
    def dropped(self) -> int:
        """Operations refused by the database, or past `max_backlog` without a spool."""
        return self._wb.refused + self._wb.dropped

    @property
    def spilled(self) -> int:
        """Operations written to the spool."""
        return self._wb.spilled

    @property
    def failing_since(self) -> float | None:
        """Monotonic time of the first failed write in a row; None while writes work."""
        return self._wb.failing_since

    @property
    def backlog(self) -> int:
        """Operations queued or spooled and not yet committed."""
        return self._wb.backlog

    @property
    def spool_backlog(self) -> int:
        return self._wb.spool_backlog

    # ------------------------------------------------------------ queue ---
    def event(self, event_type: str, subject: str, payload: dict[str, Any]) -> uuid.UUID:
        """Queue a webhook outbox event (`subject` orders delivery, e.g. "attempt:<id>")."""
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown webhook event type {event_type!r}")
        event_id = uuid.uuid4()
        self._wb.put(OutboxEvent(event_id, event_type, subject, payload))
        for listener in self.listeners:
            try:
                listener(event_type, subject, payload)
            except Exception:
                _log.exception("journal.listener_failed", event_type=event_type)
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
        self._wb.put(
            Progress(
                attempt_id,
                "bridged" if bridged_at else "answered",
                answered_at,
                bridged_at,
                agent_id if bridged_at else None,
                answer_to_bridge_ms,
            )
        )

    def inbound_arrival(
        self,
        attempt_id: uuid.UUID,
        *,
        campaign_id: int | None,
        contact_id: int | None,
        caller_id: str | None,
        caller_number: str | None,
        created_at: datetime,
        retention_until: datetime,
        pool: str | None = None,
        node_id: str | None = None,
    ) -> None:
        """An inbound call's live row (`InboundArrival`)."""
        self._wb.put(
            InboundArrival(
                attempt_id,
                campaign_id,
                contact_id,
                caller_id,
                caller_number,
                created_at,
                retention_until,
                pool,
                node_id,
            )
        )

    def recording(self, attempt_id: uuid.UUID, recording_id: uuid.UUID) -> None:
        """Link the live attempt to the recording its bridge is being recorded to."""
        self._wb.put(RecordingLink(attempt_id, recording_id))

    def recording_pause(self, span: RecordingPauseSpan) -> None:
        """A recording's paused span opened or closed (with its audit row)."""
        self._wb.put(span)

    def disposition(self, attempt_id: uuid.UUID, code: str) -> None:
        self._wb.put(Disposition(attempt_id, code))

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
        lost: bool = False,
    ) -> None:
        """Contact bookkeeping after its attempt `attempt_no` ended (`lost`: HitCall lost
        track of the call; the attempt does not count against max_attempts)."""
        self._wb.put(
            CloseContact(contact_id, attempt_no, attempt_created_at, status, retry_at, outcome, cancelled, lost)
        )

    def agent_state(
        self,
        agent_id: int,
        *,
        state: str,
        pause_code: str | None,
        campaign_id: int | None,
        since: datetime,
        pool: str | None = None,
        node_id: str | None = None,
    ) -> None:
        """An agent's new state from `since` (agent_state_log, agents.state; agents.pool and
        agents.node_id when given); queue its ``agent.state_changed`` event right after it."""
        self._wb.put(AgentStateChange(agent_id, state, pause_code, campaign_id, since, pool, node_id))

    def leg(
        self,
        attempt_id: uuid.UUID,
        seq: int,
        *,
        agent_id: int | None,
        number: str | None,
        role: str,
        joined_at: datetime,
        left_at: datetime,
    ) -> None:
        """One ended leg of a call (who talked to the customer, from when to when)."""
        self._wb.put(CallLeg(attempt_id, seq, agent_id, number, role, joined_at, left_at))

    # ------------------------------------------------------------- life ---
    async def start(self) -> None:
        """Open the spool (what an earlier process left is written first) and start writing."""
        await self._wb.start()

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until everything queued before this call is committed (or dropped), also
        what went through the spool. TimeoutError after `timeout`."""
        await self._wb.wait_committed(timeout)

    async def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to `timeout`; at once to the spool while Postgres is
        failing), spool what is left, then stop."""
        await self._wb.close(timeout)
