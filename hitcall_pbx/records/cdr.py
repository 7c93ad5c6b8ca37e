"""Call detail records: the final ``call_attempts`` row of every attempt, written in batches.

The dialer inserts the attempt into ``live_attempts`` before originate; when the call
ends it hands a `CdrRecord` to `CdrWriter.submit`, which returns at once. A
`WriteBehind` (`records.writebehind`) writes batches keyed by the attempt id: one COPY
into ``call_attempts`` and, in the same transaction, the deletion of the attempts' live
rows (`write_cdrs`); a batch that meets an attempt already written (a replay) goes through a temp-table stage and one
``INSERT ... SELECT ... ON CONFLICT (id) DO UPDATE`` instead. When Postgres is
unreachable the batches go to a durable spool (`Spool`) and are replayed in submit order
when it returns; while anything is spooled, new batches queue behind it in the spool, so
a later record of an attempt is never overtaken by an older one.

Inbound calls (``direction = 'inbound'``, a caller on the return-call line) have a live
row too, written through the call journal when the caller reaches the menu or the
router (restart recovery adopts or closes it). The inbound router (`dialer.inbound`)
submits their one CDR when they end, with an id derived from the Asterisk channel id
(`inbound_cdr_id`), so that a replay updates the same row. A return call that ends in
the FastAGI menu (``agi.scripts``: opted out, or hung up without asking for an agent)
gets its CDR from the menu instead, inserted directly with the same id rule (``ON
CONFLICT (id) DO NOTHING``), its live row deleted in the same transaction.

Precedence when the row already exists (a replay therefore changes nothing):

* ``campaign_id``, ``contact_id``, ``created_at``, ``retention_until`` keep the stored
  values: they are stamped when the attempt is created (a deadline is changed only by
  the explicit, audited recompute), and a contact deleted meanwhile stays NULL.
* ``disposition`` and ``recording_id``: the stored value wins; the record fills them
  only while they are NULL. Wrap-up corrections and the recordings registry update
  the row directly, and a late replay never undoes them.
* Every other column is a call fact from the call model: the record wins, but a NULL
  in the record never erases a stored value.
* An anonymised row (``anonymised_at`` set) is never rewritten.

Rows naming an unknown campaign (the writer checks: ``call_attempts`` has no foreign
keys) and rows the database refuses as invalid (a data or constraint error, isolated
row by row) are set aside; the rest of the batch is written and the refused
rows are kept in the spool's ``rejected-<day>.jsonl`` files (for the CDR minimum
retention, see `Spool`) and counted in `CdrWriterStats.rejected`.
Any other error counts as Postgres being unavailable: nothing is dropped.
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg

from ..core.backoff import Backoff
from ..core.outcomes import AMD_HANGUP, AMD_HUMAN, AMD_MACHINE, AMD_NOTSURE, CallDirection, CallMode, Outcome
from ..errors import Unavailable, ValidationFailed
from ..logs import get_logger
from .writebehind import Rows, WriteBehind

_log = get_logger("hitcall.records.cdr")

# Column -> value kind, in call_attempts column order.
_KINDS: dict[str, str] = {
    "id": "uuid",
    "campaign_id": "int",
    "contact_id": "int",
    "attempt_no": "int",
    "dialled_number": "text",
    "caller_id": "text",
    "agent_id": "int",
    "mode": "text",
    "state": "text",
    "created_at": "ts",
    "originated_at": "ts",
    "ringing_at": "ts",
    "answered_at": "ts",
    "bridged_at": "ts",
    "ended_at": "ts",
    "ring_s": "dec",
    "talk_s": "dec",
    "answer_to_bridge_ms": "int",
    "outcome": "text",
    "hangup_cause": "int",
    "hangup_cause_txt": "text",
    "amd_status": "text",
    "amd_cause": "text",
    "abandoned": "bool",
    "disposition": "text",
    "skip_reason": "text",
    "recording_id": "uuid",
    "retention_until": "ts",
    "direction": "text",
    "caller_number": "text",
    "transfer_kind": "text",
    "transfer_target": "text",
    "transfer_agent_id": "int",
    "transfer_campaign_id": "int",
    "transfer_number": "text",
    "transfer_result": "text",
    "transfer_cause": "text",
    "voicemail_dropped": "bool",
    "pool": "text",
    "node_id": "text",
}
COLUMNS: tuple[str, ...] = tuple(_KINDS)
_REQUIRED = frozenset(
    {
        "id",
        "state",
        "created_at",
        "ended_at",
        "outcome",
        "abandoned",
        "retention_until",
        "direction",
        "voicemail_dropped",
    }
)
# Required on outbound rows only (call_attempts_outbound_check); an inbound row has no
# attempt number or mode, and may match no campaign or dialled line.
_OUTBOUND_REQUIRED = ("campaign_id", "attempt_no", "mode", "caller_id")
# The call's last transfer (migration 0012); NULL when it was never transferred.
_TRANSFER_COLUMNS = (
    "transfer_kind",
    "transfer_target",
    "transfer_agent_id",
    "transfer_campaign_id",
    "transfer_number",
    "transfer_result",
    "transfer_cause",
)
# Columns a record built from a dict may leave out (the dialer's rows predate them).
_ROW_DEFAULTS: dict[str, Any] = {
    "direction": CallDirection.OUTBOUND.value,
    "caller_number": None,
    **dict.fromkeys(_TRANSFER_COLUMNS),
    "voicemail_dropped": False,
    "pool": None,
    "node_id": None,
}

# Outcomes only an inbound call can have.
_INBOUND_ONLY = frozenset({Outcome.NO_AGENT, Outcome.SELF_SERVICE, Outcome.UNTRACKED})
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_DISPOSITION = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # a pool name or node id (core.leases)
_MILLIS = Decimal("0.001")
_BIGINT = 2**63 - 1


def _one_of(values: frozenset[str]) -> tuple[Callable[[Any], bool], str]:
    return values.__contains__, "must be one of " + ", ".join(sorted(values))


def _between(low: int, high: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: low <= v <= high), f"must be between {low} and {high}"


# Per-column rules, the same as the CHECK constraints of call_attempts.
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "campaign_id": _between(1, _BIGINT),
    "contact_id": _between(1, _BIGINT),
    "agent_id": _between(1, _BIGINT),
    "attempt_no": _between(1, 32767),
    "answer_to_bridge_ms": _between(0, 2**31 - 1),
    "hangup_cause": _between(0, 127),
    "dialled_number": (lambda v: bool(_E164.match(v)), "must be an E.164 number like +358401234567"),
    "caller_id": (lambda v: bool(_E164.match(v)), "must be an E.164 number like +358401234567"),
    "caller_number": (lambda v: bool(_E164.match(v)), "must be an E.164 number like +358401234567"),
    "direction": _one_of(frozenset(d.value for d in CallDirection)),
    "mode": _one_of(frozenset(m.value for m in CallMode)),
    "state": _one_of(frozenset({"ended"})),
    "outcome": _one_of(frozenset(o.value for o in Outcome)),
    "amd_status": _one_of(frozenset({AMD_HUMAN, AMD_MACHINE, AMD_NOTSURE, AMD_HANGUP})),
    "disposition": (lambda v: bool(_DISPOSITION.match(v)), "must be 1-64 of A-Z a-z 0-9 _ . -"),
    "transfer_kind": _one_of(frozenset({"blind", "attended"})),
    "transfer_target": _one_of(frozenset({"agent", "campaign", "number"})),
    "transfer_agent_id": _between(1, _BIGINT),
    "transfer_campaign_id": _between(1, _BIGINT),
    "transfer_number": (lambda v: bool(_E164.match(v)), "must be an E.164 number like +358401234567"),
    "transfer_result": _one_of(frozenset({"completed", "conference", "cancelled", "failed", "customer_gone"})),
    "pool": (lambda v: bool(_NAME.match(v)), "must be 1-64 of A-Z a-z 0-9 _ . -"),
    "node_id": (lambda v: bool(_NAME.match(v)), "must be 1-64 of A-Z a-z 0-9 _ . -"),
    "ring_s": (lambda v: 0 <= v < 10**7, "must be >= 0 and < 10000000 seconds"),
    "talk_s": (lambda v: 0 <= v < 10**7, "must be >= 0 and < 10000000 seconds"),
}


def _invalid(name: str, message: str, value: Any = None) -> ValidationFailed:
    return ValidationFailed(f"CDR {name} {message}", details={"field": name, "value": repr(value)})


def _clean(name: str, kind: str, value: Any) -> Any:
    """The value in its canonical type, or ValidationFailed naming the column."""
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _invalid(name, "must be an integer", value)
    if kind == "text":
        if isinstance(value, str) and "\x00" not in value:
            return value
        raise _invalid(name, "must be text without NUL characters", value)
    if kind == "ts":
        if isinstance(value, datetime) and value.utcoffset() is not None:
            return value.astimezone(UTC)
        raise _invalid(name, "must be a timezone-aware datetime", value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise _invalid(name, "must be true or false", value)
    if kind == "uuid":
        if isinstance(value, UUID):
            return value
        try:
            return UUID(value)
        except (TypeError, ValueError, AttributeError):
            raise _invalid(name, "must be a UUID", value) from None
    # dec: seconds, stored as numeric(10,3)
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        try:
            dec = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
            if dec.is_finite():
                return dec.quantize(_MILLIS)
        except InvalidOperation:
            pass
    raise _invalid(name, "must be a finite number of seconds", value)


@dataclass(frozen=True, slots=True, kw_only=True)
class CdrRecord:
    """The final state of one call: every ``call_attempts`` column the dialer (outbound)
    or the inbound router (inbound) fills.

    Validated on construction with the table's own rules (ValidationFailed names the
    column): an outbound record needs campaign_id, attempt_no, mode and caller_id and has
    no caller_number; an inbound one has no dialled_number, attempt_no or mode (see
    migration 0008 for what each number column holds in each direction). Datetimes are
    normalised to UTC, ``ring_s``/``talk_s`` to Decimal with millisecond precision
    (floats are taken by their shortest repr), so a record equals the one read back from
    the database or from its JSON form.
    """

    id: UUID
    campaign_id: int | None = None
    contact_id: int | None = None
    attempt_no: int | None = 1
    dialled_number: str | None = None
    caller_id: str | None = None
    agent_id: int | None = None
    mode: str | None = None
    state: str = "ended"
    created_at: datetime
    originated_at: datetime | None = None
    ringing_at: datetime | None = None
    answered_at: datetime | None = None
    bridged_at: datetime | None = None
    ended_at: datetime
    ring_s: Decimal | None = None
    talk_s: Decimal | None = None
    answer_to_bridge_ms: int | None = None
    outcome: str
    hangup_cause: int | None = None
    hangup_cause_txt: str | None = None
    amd_status: str | None = None
    amd_cause: str | None = None
    abandoned: bool = False
    disposition: str | None = None
    skip_reason: str | None = None
    recording_id: UUID | None = None
    retention_until: datetime
    direction: str = CallDirection.OUTBOUND.value
    caller_number: str | None = None
    transfer_kind: str | None = None
    transfer_target: str | None = None
    transfer_agent_id: int | None = None
    transfer_campaign_id: int | None = None
    transfer_number: str | None = None
    transfer_result: str | None = None
    transfer_cause: str | None = None
    voicemail_dropped: bool = False  # the campaign's message was left on the answering machine
    pool: str | None = None  # the Asterisk (pool) the call was on (None: the default pool)
    node_id: str | None = None  # the node that followed the call to its end

    def __post_init__(self) -> None:
        for name, kind in _KINDS.items():
            value = getattr(self, name)
            if value is None:
                if name in _REQUIRED:
                    raise _invalid(name, "is required")
                continue
            clean = _clean(name, kind, value)
            if clean is not value:
                object.__setattr__(self, name, clean)
            rule = _RULES.get(name)
            if rule is not None and not rule[0](clean):
                raise _invalid(name, rule[1], value)
        if self.direction == CallDirection.OUTBOUND:
            for name in _OUTBOUND_REQUIRED:
                if getattr(self, name) is None:
                    raise _invalid(name, "is required on an outbound call")
            if self.caller_number is not None:
                raise _invalid("caller_number", "must be empty on an outbound call", self.caller_number)
        else:
            for name in ("dialled_number", "attempt_no", "mode"):
                if getattr(self, name) is not None:
                    raise _invalid(name, "must be empty on an inbound call", getattr(self, name))
        if self.outcome in _INBOUND_ONLY and self.direction != CallDirection.INBOUND:
            raise _invalid("outcome", f"{self.outcome} is an inbound outcome", self.outcome)
        if self.outcome == Outcome.ABANDONED and not self.abandoned:
            raise _invalid("abandoned", "must be true when the outcome is abandoned", self.abandoned)
        if (self.transfer_kind is None) != (self.transfer_result is None):
            raise _invalid("transfer_result", "must be set exactly when transfer_kind is", self.transfer_result)
        if self.retention_until <= self.created_at:
            raise _invalid("retention_until", "must be after created_at", self.retention_until)

    def to_row(self) -> tuple[Any, ...]:
        """Values in `COLUMNS` order."""
        return _row(self)

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | asyncpg.Record) -> CdrRecord:
        """From a database row holding (at least) `COLUMNS`; a dict may leave out
        ``direction`` (outbound) and ``caller_number``."""
        return cls(**{name: row[name] if name in row else _ROW_DEFAULTS[name] for name in COLUMNS})

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict: UUIDs and decimals as strings, datetimes as ISO 8601 UTC."""
        out: dict[str, Any] = {}
        for name, kind in _KINDS.items():
            value = getattr(self, name)
            if value is not None and kind in ("uuid", "dec"):
                value = str(value)
            elif value is not None and kind == "ts":
                value = value.isoformat()
            out[name] = value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CdrRecord:
        """Inverse of `to_json`; ValidationFailed on unknown keys or bad values."""
        unknown = set(data) - _KINDS.keys()
        if unknown:
            name = sorted(unknown)[0]
            raise ValidationFailed(f"CDR has unknown field {name}", details={"field": name})
        values = dict(data)
        for name, value in data.items():
            kind = _KINDS[name]
            if isinstance(value, str) and kind == "ts":
                try:
                    values[name] = datetime.fromisoformat(value)
                except ValueError:
                    raise _invalid(name, "must be an ISO 8601 datetime", value) from None
            elif isinstance(value, str) and kind == "dec":
                try:
                    values[name] = Decimal(value)
                except InvalidOperation:
                    raise _invalid(name, "must be a decimal number", value) from None
        return cls(**values)


_row = operator.attrgetter(*COLUMNS)

# The id of an inbound CDR is computed from the Asterisk channel id by a rule the dialplan
# can apply too (SHA1() of func_sha1 and substrings), so that [hitcall-inbound] tags
# Asterisk's own CDR of the call with the same id (`hitcall cdr reconcile`): the SHA1 of
# ``hitcall-inbound:<channel id>`` in hex, laid out as a UUID of version 5, variant 8.
INBOUND_ID_PREFIX = "hitcall-inbound:"


def inbound_cdr_id(channel_id: str) -> UUID:
    """The CDR id of the inbound call on Asterisk channel `channel_id` (its ``UNIQUEID``):
    the same for every record of that call (a replay after a crash never writes a second
    row), and the id the dialplan tags Asterisk's CDR with."""
    h = hashlib.sha1(f"{INBOUND_ID_PREFIX}{channel_id}".encode()).hexdigest()  # noqa: S324 - an id, not security
    return UUID(f"{h[0:8]}-{h[8:12]}-5{h[13:16]}-8{h[17:20]}-{h[20:32]}")


# -- SQL -------------------------------------------------------------------------------
_COLS = ", ".join(COLUMNS)
_KEPT = frozenset({"id", "campaign_id", "contact_id", "created_at", "retention_until"})
_STORED_WINS = frozenset({"disposition", "recording_id"})
_ON_CONFLICT = (
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(
        f"{c} = COALESCE(call_attempts.{c}, EXCLUDED.{c})"
        if c in _STORED_WINS
        else f"{c} = COALESCE(EXCLUDED.{c}, call_attempts.{c})"
        for c in COLUMNS
        if c not in _KEPT
    )
    + " WHERE call_attempts.anonymised_at IS NULL"
)
_STAGE = "hitcall_cdr_stage"
_CREATE_STAGE = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ON COMMIT DELETE ROWS AS SELECT {_COLS} FROM call_attempts WITH NO DATA"
)
_UPSERT_STAGE = f"INSERT INTO call_attempts ({_COLS}) SELECT {_COLS} FROM {_STAGE} {_ON_CONFLICT}"
_UPSERT_ONE = (
    f"INSERT INTO call_attempts ({_COLS}) VALUES"
    f" ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))}) {_ON_CONFLICT}"
)


def _rounds(records: Sequence[CdrRecord]) -> Sequence[Sequence[CdrRecord]]:
    """Split so that no round holds an id twice (one statement may touch a row once);
    the rounds run in order, so a later record of an attempt lands after the earlier."""
    keys = [r.id.int for r in records]
    if len(set(keys)) == len(keys):
        return [records]
    rounds: list[list[CdrRecord]] = []
    depth: dict[int, int] = {}
    for key, record in zip(keys, records):
        n = depth.get(key, 0)
        depth[key] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(record)
    return rounds


# Where an attempt is: live, or already a CDR. Code that changes an attempt wherever it is
# touches the tables in this order, one statement each: a statement sees what was
# committed when it started, so a row the CDR writer moves meanwhile is found by the
# second statement, and what the first one set on (or locked in) the live row is carried
# over by the writer (`_retire_live`).
ATTEMPT_TABLES: tuple[str, str] = ("live_attempts", "call_attempts")

# The attempts' live rows go in the same transaction. What a live row gained meanwhile is
# returned, to be carried over (`_CARRY`): a disposition given after the call ended, a
# recording id, a deadline restamped by the audited recompute, and an erasure that
# reached the attempt while it was live (the new CDR is anonymised too). Usually nothing.
_RETIRE_LIVE = """
WITH gone AS (
    DELETE FROM live_attempts WHERE id = ANY($1::uuid[])
    RETURNING id, disposition, recording_id, retention_until, anonymised_at)
SELECT g.* FROM gone g JOIN unnest($1::uuid[], $2::timestamptz[]) AS v(id, retention_until) ON v.id = g.id
WHERE g.disposition IS NOT NULL OR g.recording_id IS NOT NULL OR g.anonymised_at IS NOT NULL
      OR g.retention_until IS DISTINCT FROM v.retention_until
"""
_CARRY = """
UPDATE call_attempts c
SET disposition = coalesce(g.disposition, c.disposition),
    recording_id = coalesce(c.recording_id, g.recording_id),
    retention_until = g.retention_until,
    dialled_number = CASE WHEN g.anonymised_at IS NULL THEN c.dialled_number END,
    caller_number = CASE WHEN g.anonymised_at IS NULL THEN c.caller_number END,
    contact_id = CASE WHEN g.anonymised_at IS NULL THEN c.contact_id END,
    anonymised_at = coalesce(c.anonymised_at, g.anonymised_at)
FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::timestamptz[], $5::timestamptz[])
     AS g(id, disposition, recording_id, retention_until, anonymised_at)
WHERE c.id = g.id
"""


async def _retire_live(conn: asyncpg.Connection, records: Sequence[CdrRecord]) -> None:
    """Delete the records' live rows and carry over what they gained (in the caller's transaction)."""
    gained = await conn.fetch(_RETIRE_LIVE, [r.id for r in records], [r.retention_until for r in records])
    if gained:
        await conn.execute(
            _CARRY,
            *(
                [row[k] for row in gained]
                for k in ("id", "disposition", "recording_id", "retention_until", "anonymised_at")
            ),
        )


async def write_cdrs(conn: asyncpg.Connection, records: Sequence[CdrRecord]) -> None:
    """Write the records in one transaction (or inside the caller's), in order.

    The common case, attempts without a CDR yet, is one COPY straight into
    ``call_attempts``. When an attempt already has its row (a replay, or two records of
    one attempt in the batch) the batch goes through the upsert and its precedence
    rules instead. Then the attempts' live rows are retired (`_retire_live`)."""
    nested = conn.is_in_transaction()  # the stage is emptied at commit: maybe not yet
    async with conn.transaction():
        rounds = _rounds(records)
        copied = False
        if len(rounds) == 1:
            try:
                async with conn.transaction():
                    await conn.copy_records_to_table("call_attempts", records=map(_row, records), columns=COLUMNS)
                copied = True
            except asyncpg.UniqueViolationError:
                pass
        if not copied:
            await conn.execute(_CREATE_STAGE)
            for n, batch in enumerate(rounds):
                if n or nested:
                    await conn.execute(f"TRUNCATE {_STAGE}")
                await conn.copy_records_to_table(_STAGE, records=map(_row, batch), columns=COLUMNS)
                await conn.execute(_UPSERT_STAGE)
        await _retire_live(conn, records)


async def _upsert_one(conn: asyncpg.Connection, record: CdrRecord) -> None:
    """One record through the upsert and its precedence rules (how refused rows are isolated)."""
    await conn.execute(_UPSERT_ONE, *_row(record))
    await _retire_live(conn, [record])


def _attempt_key(record: CdrRecord) -> int:
    return record.id.int


@dataclass(frozen=True)
class CdrWriterStats:
    written: int
    """Rows committed straight from memory."""
    spooled: int
    """Rows appended to the spool."""
    replayed: int
    """Rows committed from the spool."""
    rejected: int
    """Rows the database refused as invalid (kept in the spool's rejected files)."""
    pending: int
    """Rows submitted and not yet durable (in memory)."""
    spool_backlog: int
    """Rows in the spool waiting for Postgres."""
    last_error: str | None


class CdrWriter:
    """Batched, spooled CDR writer: a `WriteBehind` of `CdrRecord`s (see
    `records.writebehind`). Use one per process and spool directory.

    ``submit`` is synchronous and never blocks or raises on database trouble;
    ``flush`` waits until everything submitted before it is in Postgres or the spool.
    The spool directory is ``<data_dir>/spool/cdr``: see `default_spool_dir`.

    A write starts when `batch_size` records wait or `flush_interval` seconds after the
    first of them was submitted. With a backlog (a burst, a spool replay) transactions
    grow to `max_batch_size` rows and up to `concurrency` run at once, on separate pool
    connections, split by attempt id. A write taking longer than `write_timeout` counts
    as Postgres being unavailable; replays are retried after `backoff` delays.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        spool_dir: Path | str,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        concurrency: int = 2,
        max_batch_size: int = 5000,
        write_timeout: float = 30.0,
        backoff: Backoff = Backoff(base=0.2, cap=5.0),
    ) -> None:
        if flush_interval <= 0 or write_timeout <= 0:
            raise ValueError("flush_interval and write_timeout must be > 0")
        self._campaigns: set[int] = set()
        self._closing = False
        rows = Rows(
            write=write_cdrs,
            write_one=_upsert_one,
            encode=CdrRecord.to_json,
            decode=CdrRecord.from_json,
            screen=self._known_campaigns,
            key=_attempt_key,
        )
        self._wb = WriteBehind(
            pool,
            rows,
            name="cdr",
            spool_dir=spool_dir,
            batch_size=batch_size,
            linger_s=flush_interval,
            write_timeout_s=write_timeout,
            backoff=backoff,
            max_batch_size=max_batch_size,
            concurrency=concurrency,
            keep_refused=True,
        )

    # -- public ----------------------------------------------------------------------
    def submit(self, record: CdrRecord) -> None:
        """Queue the final CDR of an attempt. Returns at once."""
        if self._closing:
            raise Unavailable("the CDR writer is closed", code="cdr_writer_closed")
        if not isinstance(record, CdrRecord):
            raise ValidationFailed("a CDR must be a CdrRecord", details={"field": "record"})
        self._wb.put(record)

    async def start(self) -> None:
        """Open the spool (replaying what an earlier run left) and start writing."""
        await self._wb.start()

    async def flush(self) -> None:
        """Wait until every record submitted so far is in Postgres or in the spool."""
        if not self._wb.started:
            raise Unavailable("the CDR writer is not started", code="cdr_writer_closed")
        await self._wb.wait_durable()

    async def committed(self, timeout: float | None = None) -> None:
        """Wait until every record submitted so far is in Postgres, also what went through
        the spool. TimeoutError after `timeout`."""
        await self._wb.wait_committed(timeout)

    async def close(self) -> None:
        """Flush, stop, release the spool. Spooled rows wait there for the next start."""
        if not self._wb.started:
            self._closing = True
            return
        try:
            await self.flush()
        finally:
            self._closing = True
            await self._wb.close()

    @property
    def spool_backlog(self) -> int:
        return self._wb.spool_backlog

    @property
    def stats(self) -> CdrWriterStats:
        wb = self._wb
        return CdrWriterStats(
            written=wb.written,
            spooled=wb.spilled,
            replayed=wb.replayed,
            rejected=wb.refused,
            pending=wb.pending,
            spool_backlog=wb.spool_backlog,
            last_error=wb.last_error,
        )

    async def _known_campaigns(
        self, conn: asyncpg.Connection, records: Sequence[CdrRecord]
    ) -> tuple[list[tuple[CdrRecord, str]], list[CdrRecord]]:
        """(refused, rest): a CDR that names a campaign must name an existing one (an
        inbound CDR may name none). call_attempts has no foreign keys (see migration 0005);
        campaigns are never deleted, so the ids seen once are cached and a batch normally
        costs no query."""
        unknown = {r.campaign_id for r in records if r.campaign_id is not None} - self._campaigns
        if unknown:
            rows = await conn.fetch("SELECT id FROM campaigns WHERE id = ANY($1::bigint[])", list(unknown))
            self._campaigns.update(r["id"] for r in rows)
            unknown -= self._campaigns
        if not unknown:
            return [], list(records)
        refused = [
            (r, f"ForeignKeyViolation: campaign_id {r.campaign_id} names no campaign")
            for r in records
            if r.campaign_id in unknown
        ]
        return refused, [r for r in records if r.campaign_id not in unknown]


def default_spool_dir(data_dir: Path | str) -> Path:
    """Where the service keeps its CDR spool: ``<data_dir>/spool/cdr``."""
    return Path(data_dir) / "spool" / "cdr"


__all__ = [
    "ATTEMPT_TABLES",
    "COLUMNS",
    "INBOUND_ID_PREFIX",
    "CdrRecord",
    "CdrWriter",
    "CdrWriterStats",
    "default_spool_dir",
    "inbound_cdr_id",
    "write_cdrs",
]
