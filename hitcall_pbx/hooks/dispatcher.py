"""Webhook delivery: outbox fan-out, signed POSTs, retries, dead letter and replay.

Delivery rules (docs/webhooks.md describes them for CRM integrators):

* New outbox rows are fanned out, in one transaction, to a `webhook_deliveries` row
  per active subscription whose event types match (``*`` = all).
* A delivery is posted only when it is the head of its (subscription, subject) chain:
  no earlier event of the same subject is still pending for that subscription and no
  earlier event of the subject is still waiting for fan-out. A dead delivery blocks
  nothing; replay sends replayed deliveries again in their original order.
* A worker claims a head with ``FOR UPDATE SKIP LOCKED`` and leases it by moving
  ``next_attempt_at`` past the request timeout; the lease doubles as the fencing token
  of the result update, so several processes (nodes) can run side by side. Leases and
  retries are timed on the database's clock (`DatabaseClock`), which all nodes share.
  A response other than 2xx, a refused connection or a timeout is retried with capped
  exponential backoff and jitter until `max_age` after the event was created (or
  replayed); a failure after that moves the delivery to ``dead``.
* Delivery is at least once: a receiver that timed out (or a worker that died
  mid-request) may see an event again; receivers de-duplicate on ``webhook-id``.
  A non-2xx answer is never counted as delivered, so it never causes a duplicate.
* Every attempt checks the target against the address policy (`hooks.targets`): an IP
  literal before connecting, a name through the resolver the connector uses, so the
  connection goes to a checked address. Redirects are not followed (a 3xx is a failed
  attempt). The error stored for the API is generic (``HTTP <status>``, ``connection
  failed``, ``timeout``, ``address not allowed``); what exactly failed is logged.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import aiohttp
import asyncpg
from aiohttp.abc import AbstractResolver

from ..core.backoff import Backoff
from ..core.netpolicy import AddressPolicy, host_address
from ..errors import ValidationFailed
from ..logs import get_logger
from ..store import audit
from .events import EVENT_TYPES
from .signing import signature_headers
from .targets import GuardedResolver, TargetRefused

DEFAULT_BACKOFF = Backoff(base=5.0, cap=3600.0)
DEFAULT_MAX_AGE = timedelta(hours=24)
USER_AGENT = "HitCall-Webhooks/1"
# The only texts stored in webhook_deliveries.last_error besides "HTTP <status>".
ERROR_REFUSED = "address not allowed"
ERROR_TIMEOUT = "timeout"
ERROR_CONNECTION = "connection failed"

_log = get_logger("hitcall.hooks")
# A pass that fails for these: PostgreSQL is away (or a connection was cut mid-statement).
DATABASE_AWAY = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.InternalClientError,
)


def utc_now() -> datetime:
    return datetime.now(UTC)


class DatabaseClock:
    """The database server's clock, read locally: this process's clock plus the offset
    measured at the last `sync` (half the round trip counted as the way there).

    The dispatcher's default clock. Claims are leased and retries scheduled on it, so
    several nodes agree on when a lease lapses whatever their own clocks say: a node
    whose clock runs ahead does not take over a delivery another node still holds."""

    def __init__(self, pool: asyncpg.Pool, local: Callable[[], datetime] = utc_now) -> None:
        self._pool = pool
        self._local = local
        self.offset = timedelta(0)

    async def sync(self) -> None:
        sent = time.monotonic()
        server = await self._pool.fetchval("SELECT clock_timestamp()")
        half_trip = timedelta(seconds=(time.monotonic() - sent) / 2)
        self.offset = server - (self._local() - half_trip)

    def __call__(self) -> datetime:
        return self._local() + self.offset


@dataclass(frozen=True)
class WebhookStats:
    """For metrics and alarms. Counts only active subscriptions."""

    backlog: int  # pending deliveries
    undispatched: int  # outbox events not yet fanned out
    dead: int
    oldest_pending_age_s: float | None  # oldest pending delivery or undispatched event


@dataclass(frozen=True)
class _Job:
    delivery_id: int
    lease: datetime
    attempts: int
    subscription_id: int
    url: str
    secret: str
    event_id: UUID
    event_type: str
    subject: str
    payload: dict[str, Any]
    created_at: datetime
    window_start: datetime


def event_body(event_id: UUID, event_type: str, created_at: datetime, subject: str, data: dict[str, Any]) -> bytes:
    """The JSON body posted for one event (identical on every attempt)."""
    doc = {
        "id": str(event_id),
        "type": event_type,
        "timestamp": created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "subject": subject,
        "data": data,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def next_retry(
    now: datetime, deadline: datetime, attempt: int, backoff: Backoff, rng: random.Random
) -> datetime | None:
    """When to retry after failed attempt number `attempt` (0-based); None = give up (dead)."""
    if now >= deadline:
        return None
    return min(now + timedelta(seconds=backoff.delay(attempt, rng)), deadline)


_FAN_OUT_LOCK = """
SELECT id FROM webhook_outbox WHERE dispatched_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
"""

_FAN_OUT_INSERT = """
INSERT INTO webhook_deliveries (outbox_id, subscription_id, next_attempt_at, created_at)
SELECT o.id, s.id, $2, $2
FROM webhook_outbox o
JOIN webhook_subscriptions s ON s.active AND (o.event_type = ANY (s.event_types) OR '*' = ANY (s.event_types))
WHERE o.id = ANY ($1::bigint[])
ORDER BY o.id, s.id
ON CONFLICT ON CONSTRAINT webhook_deliveries_key DO NOTHING
"""

_CLAIM = """
WITH head AS (
    SELECT d.id
    FROM webhook_deliveries d
    JOIN webhook_outbox o ON o.id = d.outbox_id
    JOIN webhook_subscriptions s ON s.id = d.subscription_id
    WHERE d.state = 'pending' AND d.next_attempt_at <= $1 AND s.active
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries e JOIN webhook_outbox eo ON eo.id = e.outbox_id
          WHERE e.subscription_id = d.subscription_id AND e.state = 'pending'
            AND e.outbox_id < d.outbox_id AND eo.subject = o.subject)
      AND NOT EXISTS (
          SELECT 1 FROM webhook_outbox u
          WHERE u.subject = o.subject AND u.id < o.id AND u.dispatched_at IS NULL)
    ORDER BY d.next_attempt_at, d.id
    LIMIT 1
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d SET next_attempt_at = $2
FROM head, webhook_outbox o, webhook_subscriptions s
WHERE d.id = head.id AND o.id = d.outbox_id AND s.id = d.subscription_id
RETURNING d.id, d.attempts, d.subscription_id, s.url, s.secret, o.event_id, o.event_type, o.subject,
          o.payload, o.created_at, coalesce(d.replayed_at, o.created_at) AS window_start
"""

_DELIVERED = """
UPDATE webhook_deliveries
SET state = 'delivered', delivered_at = $3, attempts = attempts + 1, last_status = $4, last_error = NULL
WHERE id = $1 AND state = 'pending' AND next_attempt_at = $2
"""

_FAILED = """
UPDATE webhook_deliveries
SET attempts = attempts + 1, last_status = $3, last_error = $4,
    state = CASE WHEN $5::timestamptz IS NULL THEN 'dead' ELSE 'pending' END,
    next_attempt_at = coalesce($5, next_attempt_at)
WHERE id = $1 AND state = 'pending' AND next_attempt_at = $2
"""

_STATS = """
SELECT
    count(*) FILTER (WHERE d.state = 'pending') AS backlog,
    count(*) FILTER (WHERE d.state = 'dead') AS dead,
    min(coalesce(d.replayed_at, o.created_at)) FILTER (WHERE d.state = 'pending') AS oldest
FROM webhook_deliveries d
JOIN webhook_outbox o ON o.id = d.outbox_id
JOIN webhook_subscriptions s ON s.id = d.subscription_id
WHERE d.state <> 'delivered' AND s.active
"""

_UNDISPATCHED = "SELECT count(*), min(created_at) FROM webhook_outbox WHERE dispatched_at IS NULL"

_REPLAY = """
UPDATE webhook_deliveries d
SET state = 'pending', attempts = 0, next_attempt_at = $1, replayed_at = $1
FROM webhook_outbox o
WHERE o.id = d.outbox_id AND d.state = 'dead'
  AND ($2::bigint[] IS NULL OR d.id = ANY ($2))
  AND ($3::bigint IS NULL OR d.subscription_id = $3)
  AND ($4::text IS NULL OR o.event_type = $4)
  AND ($5::timestamptz IS NULL OR o.created_at >= $5)
  AND ($6::timestamptz IS NULL OR o.created_at < $6)
RETURNING d.id
"""


class WebhookDispatcher:
    """Delivers outbox events to webhook subscriptions. Safe to run in several processes.

    `clock` schedules retries, leases and the max-age deadline (default: the database's
    clock, `DatabaseClock`, synchronised at every pass; tests compress time with their
    own); `wall_clock` gives the ``webhook-timestamp`` header, which receivers
    compare with their own real clock. `address_policy` says which addresses targets may
    have (default: public ones only; the operator's HITCALL_WEBHOOK_ALLOW_NETS adds
    exceptions); `resolver` is the name resolver it checks (default: the system's).
    `http_session_factory` is called with the guarded ``connector=``.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        http_session_factory: Callable[..., aiohttp.ClientSession],
        *,
        clock: Callable[[], datetime] | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        max_age: timedelta = DEFAULT_MAX_AGE,
        concurrency: int = 4,
        request_timeout: float = 10.0,
        poll_interval: float = 1.0,
        batch_size: int = 500,
        rng: random.Random | None = None,
        wall_clock: Callable[[], float] = time.time,
        address_policy: AddressPolicy | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self._pool = pool
        self._policy = address_policy or AddressPolicy()
        self._resolver = resolver
        self._session_factory = http_session_factory
        self._session: aiohttp.ClientSession | None = None
        self._clock = clock if clock is not None else DatabaseClock(pool)
        self._backoff = backoff
        self._max_age = max_age
        self._concurrency = concurrency
        self._request_timeout = request_timeout
        self._lease = timedelta(seconds=request_timeout + 30.0)
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._rng = rng or random.Random()
        self._wall_clock = wall_clock
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle ---
    async def start(self) -> None:
        """Run `run_once` every `poll_interval` seconds in the background until `close`."""
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._loop(), name="webhook-dispatcher")

    async def close(self) -> None:
        """Stop the loop (an attempt in flight finishes first) and close the HTTP session."""
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            await task
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.run_once()
            except DATABASE_AWAY as exc:  # the next pass retries; no traceback every second
                _log.warning("webhook_pass_failed", error=repr(exc))
            except Exception:
                _log.exception("webhook_pass_failed")
            try:
                await asyncio.wait_for(self._stop.wait(), self._poll_interval)
            except TimeoutError:
                pass

    # ---------------------------------------------------------------- passes ---
    async def run_once(self) -> int:
        """Fan out new events, then attempt every delivery that is due; returns attempts made.

        A worker that fails (its result could not be written: the database went away)
        does not leave the others running unwatched: the pass ends when every worker
        has, then raises the first failure. The failed worker's claim lapses with its
        lease and the delivery is made again, by this process or another."""
        await self._sync_clock()
        await self.fan_out()
        results = await asyncio.gather(*(self._worker() for _ in range(self._concurrency)), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return sum(r for r in results if isinstance(r, int))

    async def _sync_clock(self) -> None:
        if isinstance(self._clock, DatabaseClock):
            await self._clock.sync()

    async def fan_out(self) -> int:
        """Create delivery rows for undispatched outbox events; returns events fanned out."""
        total = 0
        while True:
            now = self._clock()
            async with self._pool.acquire() as conn, conn.transaction():
                ids = [r["id"] for r in await conn.fetch(_FAN_OUT_LOCK, self._batch_size)]
                if ids:
                    await conn.execute(_FAN_OUT_INSERT, ids, now)
                    await conn.execute(
                        "UPDATE webhook_outbox SET dispatched_at = $2 WHERE id = ANY ($1::bigint[])", ids, now
                    )
            total += len(ids)
            if len(ids) < self._batch_size:
                return total

    async def _worker(self) -> int:
        attempts = 0
        while not self._stop.is_set() and (job := await self._claim()) is not None:
            await self._attempt(job)
            attempts += 1
        return attempts

    async def _claim(self) -> _Job | None:
        now = self._clock()
        lease = now + self._lease
        row = await self._pool.fetchrow(_CLAIM, now, lease)
        if row is None:
            return None
        return _Job(
            delivery_id=row["id"],
            lease=lease,
            attempts=row["attempts"],
            subscription_id=row["subscription_id"],
            url=row["url"],
            secret=row["secret"],
            event_id=row["event_id"],
            event_type=row["event_type"],
            subject=row["subject"],
            payload=row["payload"],
            created_at=row["created_at"],
            window_start=row["window_start"],
        )

    async def _attempt(self, job: _Job) -> None:
        status, error = await self._post(job)
        now = self._clock()
        log = _log.bind(
            delivery_id=job.delivery_id,
            subscription_id=job.subscription_id,
            event_id=str(job.event_id),
            event_type=job.event_type,
        )
        if error is None:
            await self._pool.execute(_DELIVERED, job.delivery_id, job.lease, now, status)
            log.debug("webhook_delivered", status=status, attempt=job.attempts + 1)
            return
        retry_at = next_retry(now, job.window_start + self._max_age, job.attempts, self._backoff, self._rng)
        await self._pool.execute(_FAILED, job.delivery_id, job.lease, status, error, retry_at)
        if retry_at is None:
            log.error("webhook_dead", status=status, error=error, attempts=job.attempts + 1)
        else:
            log.warning(
                "webhook_retry", status=status, error=error, attempt=job.attempts + 1, retry_at=retry_at.isoformat()
            )

    async def _post(self, job: _Job) -> tuple[int | None, str | None]:
        """POST the event; (status, None) on 2xx, else (status or None, error text)."""
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self._policy, self._resolver))
            self._session = self._session_factory(connector=connector)
        log = _log.bind(delivery_id=job.delivery_id, subscription_id=job.subscription_id)
        try:
            host = urlsplit(job.url).hostname or ""
        except ValueError:  # not a URL aiohttp could reach either
            log.warning("webhook_target_unparsable")
            return None, ERROR_CONNECTION
        literal = host_address(host)
        reason = self._policy.refusal(literal) if literal is not None else None
        if reason is not None:  # an IP literal never reaches the resolver: checked here
            log.warning("webhook_target_refused", host=host, reason=reason)
            return None, ERROR_REFUSED
        body = event_body(job.event_id, job.event_type, job.created_at, job.subject, job.payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            **signature_headers(job.secret, str(job.event_id), int(self._wall_clock()), body),
        }
        try:
            async with self._session.post(
                job.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._request_timeout),
            ) as resp:
                if 200 <= resp.status < 300:
                    return resp.status, None
                return resp.status, f"HTTP {resp.status}"  # a 3xx too: redirects are not followed
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            refused = exc if isinstance(exc, TargetRefused) else getattr(exc, "os_error", None)
            if isinstance(refused, TargetRefused):
                log.warning("webhook_target_refused", host=refused.host, address=refused.address, reason=refused.reason)
                return None, ERROR_REFUSED
            generic = ERROR_TIMEOUT if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)) else ERROR_CONNECTION
            log.info("webhook_attempt_error", host=host, error=f"{type(exc).__name__}: {exc}"[:500])
            return None, generic

    # ------------------------------------------------------- stats, replay ---
    async def stats(self) -> WebhookStats:
        await self._sync_clock()
        now = self._clock()
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(_STATS)
            outbox = await conn.fetchrow(_UNDISPATCHED)
        assert row is not None and outbox is not None  # aggregates without GROUP BY return exactly one row
        undispatched, oldest_new = outbox
        oldest = min((t for t in (row["oldest"], oldest_new) if t is not None), default=None)
        return WebhookStats(
            backlog=row["backlog"],
            undispatched=undispatched,
            dead=row["dead"],
            oldest_pending_age_s=None if oldest is None else max(0.0, (now - oldest).total_seconds()),
        )

    async def replay(
        self,
        delivery_ids: Sequence[int] | None = None,
        *,
        actor: str,
        actor_role: str | None = None,
        subscription_id: int | None = None,
        event_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        source_ip: str | None = None,
    ) -> list[int]:
        """Move dead deliveries matching all given filters back to pending, audited.

        Returns the ids replayed (deliveries that are not dead are left alone). They are
        sent again in their original per-subject order with a fresh `max_age` window.
        """
        filters: dict[str, Any] = {
            "delivery_ids": None if delivery_ids is None else sorted({int(i) for i in delivery_ids}),
            "subscription_id": subscription_id,
            "event_type": event_type,
            "since": since,
            "until": until,
        }
        if all(v is None for v in filters.values()):
            raise ValidationFailed("give delivery_ids or at least one filter", details={"field": "delivery_ids"})
        if event_type is not None and event_type not in EVENT_TYPES:
            raise ValidationFailed(f"unknown event type {event_type!r}", details={"field": "event_type"})
        for name in ("since", "until"):
            value = filters[name]
            if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
                raise ValidationFailed(f"{name} must be a timezone-aware datetime", details={"field": name})
        if since is not None and until is not None and since >= until:
            raise ValidationFailed("since must be before until", details={"field": "since"})
        await self._sync_clock()
        now = self._clock()
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_REPLAY, now, filters["delivery_ids"], subscription_id, event_type, since, until)
            replayed = sorted(r["id"] for r in rows)
            await audit.record(
                conn,
                actor=actor,
                actor_role=actor_role,
                action="webhook.replay",
                object_type="webhook_delivery",
                details={
                    "replayed": replayed,
                    "filters": {
                        k: v.isoformat() if isinstance(v, datetime) else v for k, v in filters.items() if v is not None
                    },
                },
                source_ip=source_ip,
            )
        _log.info("webhook_replay", actor=actor, count=len(replayed))
        return replayed
