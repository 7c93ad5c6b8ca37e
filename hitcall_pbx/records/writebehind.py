"""Write-behind to PostgreSQL with a durable spool: the machine behind the CDR writer and the call journal.

A user (`CdrWriter`, `CallJournal`) says how its items are written and spooled (`Rows`)
and hands items to `put` on its event path: synchronous, it never waits for Postgres and
never raises on database trouble. One background task writes them:

* Batching: a write starts when `batch_size` items wait, `linger_s` after the first of
  them was put, or at once when someone waits (`wait_durable`, `wait_committed`, `close`).
  A round takes up to `max_batch_size` x `concurrency` items, in at most `concurrency`
  parts of at least `batch_size` split by `Rows.key` (the items of one key stay in one
  part, in order), each part one transaction on its own pool connection.
* Refused rows: `Rows.screen` may set items aside before writing; a part the database
  refuses as invalid (`is_data_error`) is written again item by item, a savepoint each.
  The items refused are set aside, the rest is written: kept in the spool's rejected
  files (`keep_refused`) or dropped with an error log, and counted in `refused`.
* Postgres unavailable (any other error, or a write past `write_timeout_s`): the
  connection is terminated (never reused), the failure logged, and the items not
  written go to the spool with everything queued after them. While the spool holds
  anything it holds the oldest items: what is put meanwhile follows them there (each
  linger), and the spool is replayed, oldest segment first and after `backoff` delays,
  before anything is written from memory again. A segment is removed once all of it is
  committed; one cut short is replayed again whole, so the users' writes are idempotent
  (writing an item again changes nothing): each item takes effect once, in put order. A
  new writer on the same directory replays what an earlier process left. Past
  `max_backlog` items in memory the queue goes to the spool at once. The happy path
  never touches the disk.
* Without a spool the items wait in memory and are retried after `backoff` delays;
  items put while `max_backlog` wait are dropped.
* `close` waits (up to a timeout, not while Postgres is failing) for what is queued,
  then spools what is left.

Log events, ``<name>.<event>``: ``unavailable`` (a write failed), ``recovered``,
``spilled``, ``spool_failed``, ``replayed``, ``refused``, ``reject_file_failed``,
``full`` (dropped, no spool), ``closed_with_backlog``.

Spool I/O runs in a thread, one call at a time; a call cut short by `close` still
completes, and `close` waits for it.

About 530 lines: batching, refusal isolation, spill and replay share one writer task and
its ordering guarantee (nothing written from memory while the spool holds older items);
split across modules, that guarantee would have to be kept by several of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import asyncpg

from ..core.backoff import Backoff
from ..errors import Unavailable
from ..logs import get_logger
from .spool import Spool

_log = get_logger("hitcall.records.writebehind")

T = TypeVar("T")
R = TypeVar("R")


def is_data_error(exc: BaseException) -> bool:
    """The database (or the driver's encoder) refused the data itself: retrying cannot help."""
    return isinstance(exc, (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)) or (
        isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError)
    )


def describe(exc: BaseException) -> str:
    """The error's type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@dataclass(frozen=True)
class Rows(Generic[T]):
    """How a user's items are written to Postgres and kept in the spool."""

    write: Callable[[asyncpg.Connection, Sequence[T]], Awaitable[None]]
    """Commit the items, all or nothing (in a transaction of its own)."""
    write_one: Callable[[asyncpg.Connection, T], Awaitable[None]]
    """Write one item in the caller's transaction (a savepoint): how refused items are isolated."""
    encode: Callable[[T], dict[str, Any]]
    """The item as a JSON object (a spool line)."""
    decode: Callable[[dict[str, Any]], T]
    """Inverse of `encode`; raises on a line that is not an item."""
    screen: Callable[[asyncpg.Connection, Sequence[T]], Awaitable[tuple[list[tuple[T, str]], list[T]]]] | None = None
    """(refused with why, rest): items to set aside before writing, on the write's connection."""
    key: Callable[[T], int] | None = None
    """Splits a round into concurrent parts (the items of one key stay in one part); None: one part."""


Action = Callable[[], Awaitable[None]]


class WriteBehind(Generic[T]):
    """Queue, batches, refused rows, spool and replay; see the module docstring."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        rows: Rows[T],
        *,
        name: str,
        spool_dir: Path | str | None,
        batch_size: int,
        linger_s: float,
        write_timeout_s: float,
        backoff: Backoff,
        max_batch_size: int | None = None,
        concurrency: int = 1,
        max_backlog: int | None = None,
        keep_refused: bool = False,
    ) -> None:
        max_batch_size = batch_size if max_batch_size is None else max_batch_size
        if min(batch_size, concurrency) < 1 or max_batch_size < batch_size:
            raise ValueError("need batch_size >= 1, concurrency >= 1, max_batch_size >= batch_size")
        if linger_s < 0 or write_timeout_s <= 0:
            raise ValueError("need linger_s >= 0 and write_timeout_s > 0")
        if max_backlog is not None and max_backlog < 1:
            raise ValueError("max_backlog must be >= 1")
        self.name = name
        self._pool = pool
        self._rows = rows
        self._spool = Spool(spool_dir) if spool_dir is not None else None
        self._batch_size = batch_size
        self._max_batch_size = max_batch_size
        self._concurrency = concurrency
        self._linger_s = linger_s
        self._write_timeout_s = write_timeout_s
        self._backoff = backoff
        self._max_backlog = max_backlog
        self._keep_refused = keep_refused

        self.written = 0
        """Items committed straight from memory."""
        self.replayed = 0
        """Items committed from the spool (also ones an earlier process left)."""
        self.spilled = 0
        """Items appended to the spool."""
        self.refused = 0
        """Items set aside: refused by `Rows.screen` or the database, or spool lines that are no item."""
        self.dropped = 0
        """Items not taken by `put` (no spool, `max_backlog` waiting)."""
        self.failures = 0
        """Failed writes in a row."""
        self.failing_since: float | None = None
        """Monotonic time of the first failed write in a row; None while writes work."""
        self.last_error: str | None = None

        self._queue: deque[T] = deque()
        self._first_at = 0.0  # when the oldest item in memory was put
        self._put = 0
        self._durable = 0  # of the items put: committed, set aside or spooled
        self._committed = 0  # of the items put: committed or set aside, also from the spool
        self._mine: dict[Path, int] = {}  # segment -> items of ours it holds
        self._retry_at = 0.0  # no Postgres write before (monotonic)
        self._spool_retry_at = 0.0  # no spool append before
        self._waiters = 0
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._spool_io: asyncio.Future[Any] | None = None

    # -- state -----------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._task is not None

    @property
    def spool_backlog(self) -> int:
        """Items in the spool waiting for Postgres."""
        return self._spool.backlog if self._spool is not None else 0

    @property
    def backlog(self) -> int:
        """Items in memory or in the spool, not yet committed."""
        return len(self._queue) + self.spool_backlog

    @property
    def pending(self) -> int:
        """Items put and not yet durable (only in memory)."""
        return self._put - self._durable

    def queued(self) -> list[T]:
        """The items waiting in memory, oldest first."""
        return list(self._queue)

    # -- put, wait, life -------------------------------------------------------------
    def put(self, item: T) -> bool:
        """Queue an item; returns at once. False: dropped (no spool and `max_backlog` waiting)."""
        n = len(self._queue)
        if self._spool is None and self._max_backlog is not None and n >= self._max_backlog:
            self.dropped += 1
            _log.error(f"{self.name}.full", backlog=n, dropped=self.dropped, item=self._rows.encode(item))
            return False
        if not n:
            self._first_at = time.monotonic()
        self._queue.append(item)
        self._put += 1
        if not n or n + 1 >= self._batch_size or self._over_backlog():
            self._wake.set()
        return True

    async def start(self) -> None:
        """Open the spool (what an earlier process left is written first) and start writing."""
        if self._task is not None:
            return
        if self._spool is not None:
            await asyncio.to_thread(self._spool.open)
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-writer")

    async def wait_durable(self, timeout: float | None = None) -> None:
        """Wait until every item put so far is committed, set aside or in the spool.
        TimeoutError after `timeout`; Unavailable when the writer is not running."""
        target = self._put
        await self._wait(lambda: self._durable >= target, timeout)

    async def wait_committed(self, timeout: float | None = None) -> None:
        """Wait until every item put so far is committed or set aside, from the spool too.
        TimeoutError after `timeout`; Unavailable when the writer is not running."""
        target = self._put
        await self._wait(lambda: self._committed >= target, timeout)

    async def close(self, timeout: float | None = None) -> None:
        """Wait up to `timeout` for what is queued (not while Postgres is failing and a
        spool takes it), stop, spool what is left and release the spool."""
        task = self._task
        if task is None:
            return
        try:
            if self._spool is None or self.failing_since is None:
                await self.wait_durable(timeout)
        except TimeoutError:
            _log.error(f"{self.name}.closed_with_backlog", backlog=self.backlog, spooled=self._spool is not None)
        finally:
            self._task = None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if self._spool_io is not None:
                await asyncio.wait([self._spool_io])
            if self._spool is not None:
                await self._spill()  # a write cut short may have committed too: replaying it changes nothing
                await asyncio.to_thread(self._spool.close)
            elif self._queue:
                _log.error(f"{self.name}.closed_with_backlog", backlog=len(self._queue), spooled=False)
            await self._notify()

    async def _wait(self, reached: Callable[[], bool], timeout: float | None) -> None:
        if reached():
            return
        task = self._task
        if task is None or task.done():
            raise Unavailable(f"the {self.name} writer is not running", code=f"{self.name}_writer_closed")
        self._waiters += 1
        self._wake.set()
        try:
            async with self._progress:
                await asyncio.wait_for(self._progress.wait_for(lambda: reached() or task.done()), timeout)
        finally:
            self._waiters -= 1
        if not reached():
            raise Unavailable(
                f"the {self.name} writer stopped with {self.pending} items not written",
                code=f"{self.name}_writer_failed",
                details={"last_error": self.last_error},
            )

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    # -- the writer ------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            action, wait_s = self._plan(time.monotonic())
            if action is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._wake.wait()
                continue
            try:
                await action()
            except Exception as exc:  # an unreadable spool, a bug: keep going after a delay, loudly
                self._failed(exc, rows=len(self._queue))
                self._spool_retry_at = self._retry_at
            await self._notify()

    def _plan(self, now: float) -> tuple[Action | None, float | None]:
        """What to do now, or else how long to sleep (None: until woken)."""
        waits: list[float] = []
        spooled = self.spool_backlog > 0
        if spooled:
            if now >= self._retry_at:
                return self._replay, None
            waits.append(self._retry_at - now)
        if self._queue:
            hurry = self._waiters or len(self._queue) >= self._batch_size or self._over_backlog()
            ready_at = now if hurry else self._first_at + self._linger_s
            if spooled or self._over_backlog():  # the spool holds older items: these follow them
                action, at = self._spill, max(ready_at, self._spool_retry_at)
            else:
                action, at = self._write_queue, max(ready_at, self._retry_at)
            if at <= now:
                return action, None
            waits.append(at - now)
        return None, min(waits) if waits else None

    def _over_backlog(self) -> bool:
        return self._spool is not None and self._max_backlog is not None and len(self._queue) > self._max_backlog

    async def _write_queue(self) -> None:
        """Write the oldest items in memory; what Postgres did not take goes to the spool."""
        take = min(len(self._queue), self._max_batch_size * self._concurrency)
        items = list(islice(self._queue, take))
        failed, refused = await self._write_parts(items)
        for _ in range(take):
            self._queue.popleft()
        self._queue.extendleft(reversed(failed))
        done = take - len(failed)
        self.written += done - refused
        self._durable += done
        self._committed += done
        if failed and self._spool is not None:
            await self._spill()

    async def _replay(self) -> None:
        """Write the spool's oldest segment; remove it once all of it is committed."""
        assert self._spool is not None
        segment = (await self._io(self._spool.segments))[0]
        read = await self._io(self._spool.read, segment)
        items: list[T] = []
        bad: list[tuple[dict[str, Any], str]] = []
        for line in read.items:
            try:
                items.append(self._rows.decode(line))
            except Exception as exc:  # whatever the codec says: the line is no item
                bad.append((line, f"{type(exc).__name__}: {exc}"))
        refused = 0
        step = self._max_batch_size * self._concurrency
        for start in range(0, len(items), step):
            failed, n = await self._write_parts(items[start : start + step])
            if failed:
                return  # the whole segment again, after a delay
            refused += n
        if bad:
            await self._set_aside(bad)
        removal = self._start_io(self._spool.remove, segment)
        try:
            await asyncio.shield(removal)
        except asyncio.CancelledError:
            await asyncio.wait([removal])  # cut short by close: the removal completes all the same
            if not removal.cancelled() and removal.exception() is None:
                self._replayed(segment, len(items) - refused, refused + len(bad))
            raise
        self._replayed(segment, len(items) - refused, refused + len(bad))

    def _replayed(self, segment: Path, committed: int, refused: int) -> None:
        self.replayed += committed
        self._committed += self._mine.pop(segment, 0)
        _log.info(
            f"{self.name}.replayed",
            segment=segment.name,
            rows=committed + refused,
            refused=refused,
            spool_backlog=self.spool_backlog,
        )

    async def _spill(self) -> None:
        """Move the whole queue to the end of the spool."""
        assert self._spool is not None
        items = list(self._queue)
        if not items:
            return
        write = self._start_io(self._spool.append, [self._rows.encode(item) for item in items])
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            await asyncio.wait([write])  # cut short by close: the append completes all the same
            self._spilled(write, len(items))
            raise
        except OSError as exc:
            self._spool_retry_at = time.monotonic() + self._backoff.cap
            self.last_error = f"spool: {describe(exc)}"
            _log.error(f"{self.name}.spool_failed", error=self.last_error, backlog=len(self._queue))
            return
        self._spilled(write, len(items))

    def _spilled(self, write: asyncio.Future[Any], n: int) -> None:
        if write.cancelled() or write.exception() is not None:
            return
        segment: Path = write.result()
        for _ in range(n):
            self._queue.popleft()
        self._mine[segment] = self._mine.get(segment, 0) + n
        self.spilled += n
        self._durable += n
        _log.warning(f"{self.name}.spilled", rows=n, spool_backlog=self.spool_backlog, error=self.last_error)

    # -- Postgres --------------------------------------------------------------------
    async def _write_parts(self, items: list[T]) -> tuple[list[T], int]:
        """Write the items in up to `concurrency` parts at once; return the items Postgres
        did not take (in their order) and how many were set aside."""
        key = self._rows.key
        n = 1 if key is None else min(self._concurrency, -(-len(items) // self._batch_size))
        if n == 1 or key is None:
            parts = {0: items}
        else:
            split: list[list[T]] = [[] for _ in range(n)]
            for item in items:
                split[key(item) % n].append(item)
            parts = {k: part for k, part in enumerate(split) if part}
        results = await asyncio.gather(*map(self._write, parts.values()), return_exceptions=True)
        refused: list[tuple[T, str]] = []
        failed: dict[int, Exception] = {}
        for k, result in zip(parts, results):
            if isinstance(result, Exception):
                failed[k] = result
            elif isinstance(result, BaseException):
                raise result
            else:
                refused += result
        if refused:
            await self._set_aside([(self._rows.encode(item), why) for item, why in refused])
        if not failed:
            self._recovered()
            return [], len(refused)
        self._failed(next(iter(failed.values())), rows=sum(len(parts[k]) for k in failed))
        if len(failed) == len(parts):
            return items, len(refused)
        assert key is not None
        return [item for item in items if key(item) % n in failed], len(refused)

    async def _write(self, items: Sequence[T]) -> list[tuple[T, str]]:
        """Commit the items on one connection; return the items refused, with why. Raises
        when Postgres did not take them: the connection is then terminated, never reused."""
        async with asyncio.timeout(self._write_timeout_s):
            proxy = await self._pool.acquire()
            try:
                return await self._commit(cast(asyncpg.Connection, proxy), items)  # the proxy passes every call on
            except BaseException:
                proxy.terminate()
                raise
            finally:
                await self._pool.release(proxy)

    async def _commit(self, conn: asyncpg.Connection, items: Sequence[T]) -> list[tuple[T, str]]:
        refused: list[tuple[T, str]] = []
        if self._rows.screen is not None:
            refused, items = await self._rows.screen(conn, items)
        if not items:
            return refused
        try:
            await self._rows.write(conn, items)
            return refused
        except Exception as exc:
            if not is_data_error(exc):
                raise
        # Isolate the items the database refuses (a savepoint each); write the others.
        async with conn.transaction():
            for item in items:
                try:
                    async with conn.transaction():
                        await self._rows.write_one(conn, item)
                except Exception as exc:
                    if not is_data_error(exc):
                        raise
                    refused.append((item, f"{type(exc).__name__}: {exc}"))
        return refused

    async def _set_aside(self, items: list[tuple[dict[str, Any], str]]) -> None:
        """Items that cannot be written (encoded, with why): kept in the spool's rejected
        files (`keep_refused`) or dropped, loudly."""
        self.refused += len(items)
        why = items[-1][1]
        self.last_error = f"rejected: {why}"
        if not (self._keep_refused and self._spool is not None):
            _log.error(f"{self.name}.refused", rows=len(items), error=why, kept=False, items=items)
            return
        _log.error(f"{self.name}.refused", rows=len(items), error=why, kept=True)
        try:
            await self._io(self._spool.reject, [{"error": w, "record": item} for item, w in items])
        except OSError as exc:
            ids = [item.get("id") for item, _ in items]
            _log.error(f"{self.name}.reject_file_failed", error=describe(exc), ids=ids)

    def _failed(self, exc: BaseException, rows: int) -> None:
        now = time.monotonic()
        self.failures += 1
        if self.failing_since is None:
            self.failing_since = now
        delay = self._backoff.delay(self.failures - 1)
        self._retry_at = now + delay
        self.last_error = describe(exc)
        (_log.error if self.failures == 1 else _log.warning)(
            f"{self.name}.unavailable",
            error=self.last_error,
            rows=rows,
            failures=self.failures,
            backlog=self.backlog,
            down_s=round(now - self.failing_since, 1),
            retry_in_s=round(delay, 3),
        )

    def _recovered(self) -> None:
        if self.failing_since is not None:
            _log.warning(
                f"{self.name}.recovered",
                failures=self.failures,
                backlog=self.backlog,
                down_s=round(time.monotonic() - self.failing_since, 1),
            )
        self.failures = 0
        self.failing_since = None

    # -- spool I/O -------------------------------------------------------------------
    def _start_io(self, fn: Callable[..., R], *args: Any) -> asyncio.Future[R]:
        future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        self._spool_io = future
        return future

    async def _io(self, fn: Callable[..., R], *args: Any) -> R:
        """Spool I/O in a thread; cut short by `close`, it still completes (and `close` waits)."""
        return await asyncio.shield(self._start_io(fn, *args))


__all__ = ["Rows", "WriteBehind", "describe", "is_data_error"]
