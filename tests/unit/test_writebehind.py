"""WriteBehind, the machine behind the CDR writer and the call journal, against a fake
Postgres: batching, refused-row isolation, spill to the spool while Postgres is down and
the ordered, exactly-once replay after it returns (also by the next process)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from hitcall_pbx.core.backoff import Backoff
from hitcall_pbx.records.writebehind import Rows, WriteBehind, is_data_error

FAST = Backoff(base=0.02, cap=0.05)


@dataclass(frozen=True)
class Item:
    key: int
    value: str = "v"
    bad: bool = False


class FakeDb:
    """Rows by key (writing one again changes nothing), transactions with savepoints."""

    def __init__(self) -> None:
        self.rows: dict[int, str] = {}
        self.log: list[int] = []  # keys in commit order
        self.commits: list[list[int]] = []  # the keys of each committed transaction
        self.down = False  # acquire works, every statement fails (a server that went away)
        self.refuse_connect = False
        self.hang = False
        self.fail_after: int | None = None  # statements that still work, then down
        self.terminated = 0
        self.open_parts = 0
        self.max_parts = 0


class FakeTx:
    def __init__(self, conn: FakeConn) -> None:
        self.conn = conn

    async def __aenter__(self) -> None:
        self.conn.stack.append([])

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> bool:
        done = self.conn.stack.pop()
        if exc_type is None:
            if self.conn.stack:
                self.conn.stack[-1].extend(done)
            else:
                db = self.conn.db
                for item in done:
                    db.rows[item.key] = item.value
                    db.log.append(item.key)
                db.commits.append([item.key for item in done])
        return False


class FakeConn:
    def __init__(self, db: FakeDb) -> None:
        self.db = db
        self.stack: list[list[Item]] = []

    def transaction(self) -> FakeTx:
        return FakeTx(self)

    def terminate(self) -> None:
        self.db.terminated += 1

    async def store(self, item: Item) -> None:
        db = self.db
        await asyncio.sleep(0)
        if db.hang:
            await asyncio.sleep(60)
        if db.fail_after is not None:
            if db.fail_after == 0:
                db.down = True
            db.fail_after -= 1
        if db.down:
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        if item.bad:
            raise asyncpg.CheckViolationError('new row violates check constraint "value"')
        self.stack[-1].append(item)


class FakePool:
    def __init__(self, db: FakeDb) -> None:
        self.db = db

    async def acquire(self) -> FakeConn:
        if self.db.refuse_connect:
            raise ConnectionRefusedError(111, "Connect call failed")
        self.db.open_parts += 1
        self.db.max_parts = max(self.db.max_parts, self.db.open_parts)
        return FakeConn(self.db)

    async def release(self, conn: FakeConn) -> None:
        self.db.open_parts -= 1


async def _write(conn: Any, items: Sequence[Item]) -> None:
    async with conn.transaction():
        for item in items:
            await conn.store(item)


async def _write_one(conn: Any, item: Item) -> None:
    await conn.store(item)


def _encode(item: Item) -> dict[str, Any]:
    return asdict(item)


def _decode(line: dict[str, Any]) -> Item:
    return Item(**line)


ROWS = Rows(write=_write, write_one=_write_one, encode=_encode, decode=_decode, key=lambda i: i.key)


def writer(db: FakeDb, spool_dir: Path | None = None, **options: Any) -> WriteBehind[Item]:
    settings: dict[str, Any] = dict(batch_size=10, linger_s=0.02, write_timeout_s=5.0, backoff=FAST)
    settings.update(options)
    rows = settings.pop("rows", ROWS)
    return WriteBehind(FakePool(db), rows, name="test", spool_dir=spool_dir, **settings)  # type: ignore[arg-type]  # a fake pool


def _spooled(spool_dir: Path) -> list[int]:
    return [json.loads(line)["key"] for p in sorted(spool_dir.glob("0*.jsonl")) for line in p.read_text().splitlines()]


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


# -- batching ------------------------------------------------------------------------------
async def test_a_write_starts_at_batch_size_or_one_linger_after_the_first_item() -> None:
    db = FakeDb()
    wb = writer(db, linger_s=1.0)
    await wb.start()
    started = time.monotonic()
    for n in range(25):
        assert wb.put(Item(n))
    assert wb.pending == 25 and wb.backlog == 25  # queued synchronously, nothing awaited
    await _until(lambda: len(db.log) == 20)
    assert time.monotonic() - started < 1.0
    assert db.commits == [list(range(10)), list(range(10, 20))], "full batches at once, the rest lingers"
    await _until(lambda: len(db.log) == 25)
    assert db.commits[2] == list(range(20, 25)) and wb.written == 25 and wb.pending == 0
    await wb.close()


async def test_someone_waiting_does_not_wait_for_the_linger() -> None:
    db = FakeDb()
    wb = writer(db, linger_s=30)
    await wb.start()
    wb.put(Item(1))
    await asyncio.sleep(0.05)
    assert db.log == []
    await asyncio.wait_for(wb.wait_committed(), 2)
    assert db.log == [1]
    await wb.close()


async def test_a_round_is_split_into_concurrent_parts_by_key_each_in_order() -> None:
    db = FakeDb()
    wb = writer(db, batch_size=4, max_batch_size=8, concurrency=2)
    keys = [1, 2, 3, 4, 1, 2, 3, 4, 5, 6]
    items = [Item(k, f"v{n}") for n, k in enumerate(keys)]
    await wb.start()
    for item in items:
        wb.put(item)
    await wb.wait_committed(5)
    assert db.max_parts == 2
    first, second = db.commits[:2]
    assert sorted(first + second) == sorted(keys[:10]) and {k % 2 for k in first} != {k % 2 for k in second}
    assert all(len({k % 2 for k in commit}) == 1 for commit in db.commits)
    assert db.rows == {1: "v4", 2: "v5", 3: "v6", 4: "v7", 5: "v8", 6: "v9"}, "the later item of a key wins"
    await wb.close()


# -- refused rows --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("exc", "refused"),
    [
        (asyncpg.CheckViolationError("check"), True),
        (asyncpg.UniqueViolationError("unique"), True),
        (asyncpg.NumericValueOutOfRangeError("out of range"), True),  # a DataError
        (asyncpg.exceptions._base.DataError("invalid input for query argument $1"), True),  # the encoder's
        (asyncpg.ConnectionDoesNotExistError("closed"), False),
        (asyncpg.CannotConnectNowError("starting up"), False),
        (asyncpg.InterfaceError("cannot perform operation: another operation is in progress"), False),
        (TimeoutError(), False),
        (OSError("network unreachable"), False),
    ],
)
def test_only_a_refusal_of_the_data_itself_counts_as_a_data_error(exc: BaseException, refused: bool) -> None:
    assert is_data_error(exc) is refused


async def test_refused_items_are_isolated_and_dropped_loudly_the_rest_written() -> None:
    db = FakeDb()
    wb = writer(db)
    await wb.start()
    with capture_logs() as logs:
        for item in (Item(1), Item(2, bad=True), Item(3), Item(4, bad=True), Item(5)):
            wb.put(item)
        await wb.wait_committed(5)
    assert db.rows == {1: "v", 3: "v", 5: "v"} and db.commits == [[1, 3, 5]], "one transaction, savepoints"
    assert (wb.written, wb.refused) == (3, 2) and wb.failing_since is None
    (refused,) = [e for e in logs if e["event"] == "test.refused"]
    assert refused["rows"] == 2 and refused["kept"] is False and "CheckViolation" in refused["error"]
    assert [i["key"] for i, _ in refused["items"]] == [2, 4]
    assert wb.last_error is not None and wb.last_error.startswith("rejected: CheckViolationError")
    await wb.close()


async def test_refused_items_are_kept_in_the_rejected_file_when_asked(tmp_path: Path) -> None:
    db = FakeDb()

    async def screen(conn: Any, items: Sequence[Item]) -> tuple[list[tuple[Item, str]], list[Item]]:
        return [(i, "no such campaign") for i in items if i.key < 0], [i for i in items if i.key >= 0]

    rows = Rows(write=_write, write_one=_write_one, encode=_encode, decode=_decode, screen=screen)
    wb = writer(db, tmp_path, rows=rows, keep_refused=True)
    await wb.start()
    for item in (Item(-1), Item(1), Item(2, bad=True), Item(3)):
        wb.put(item)
    await wb.wait_committed(5)
    await wb.close()
    assert db.rows == {1: "v", 3: "v"} and wb.refused == 2
    (rejected,) = tmp_path.glob("rejected-*.jsonl")
    kept = [json.loads(line) for line in rejected.read_text().splitlines()]
    assert [(k["record"]["key"], k["error"].split(":")[0]) for k in kept] == [
        (-1, "no such campaign"),
        (2, "CheckViolationError"),
    ]


# -- Postgres unavailable: spool, ordered exactly-once replay --------------------------------
async def test_down_spills_in_order_then_replays_each_item_once_before_anything_new(tmp_path: Path) -> None:
    db = FakeDb()
    wb = writer(db, tmp_path, backoff=Backoff(base=0.3, cap=0.3))
    await wb.start()
    wb.put(Item(0))
    await wb.wait_committed(5)

    db.down = True
    with capture_logs() as logs:
        for n in range(1, 6):
            wb.put(Item(n))
        await wb.wait_durable(5)  # in the spool: durable, not committed
        assert wb.failing_since is not None and db.terminated == 1, "the failed connection is never reused"
        assert (wb.spilled, wb.spool_backlog, wb.pending) == (5, 5, 0)
        for n in range(6, 9):  # put while the spool holds older items: they follow them there
            wb.put(Item(n))
        await _until(lambda: wb.spool_backlog == 8)
        assert _spooled(tmp_path) == list(range(1, 9))
        with pytest.raises(TimeoutError):
            await wb.wait_committed(0.1)

        db.down = False
        wb.put(Item(9))  # put after Postgres is back, before the spool is replayed: it follows the spool
        await wb.wait_committed(5)
    assert db.log == list(range(10)), "every item once, in put order"
    assert (wb.written, wb.replayed, wb.spool_backlog) == (1, 9, 0) and wb.failing_since is None
    wb.put(Item(10))
    await wb.wait_committed(5)
    assert db.log[-1] == 10 and wb.written == 2 and wb.spilled == 9, "the happy path is back to memory"
    assert _spooled(tmp_path) == []
    events = [e["event"] for e in logs]
    assert {"test.unavailable", "test.spilled", "test.replayed", "test.recovered"} <= set(events)
    assert all(e.startswith("test.") for e in events)
    await wb.close()


async def test_a_replay_cut_short_is_replayed_whole_and_takes_effect_once(tmp_path: Path) -> None:
    db = FakeDb()
    wb = writer(db, tmp_path, batch_size=3)
    db.refuse_connect = True
    await wb.start()
    for n in range(9):
        wb.put(Item(n, f"v{n}"))
    await wb.wait_durable(5)
    assert wb.spool_backlog == 9
    db.refuse_connect = False
    db.fail_after = 4  # the first batch of the replay commits, the second dies half way
    await _until(lambda: db.fail_after is not None and db.fail_after < 0)
    assert db.log == [0, 1, 2] and wb.spool_backlog == 9, "the segment stays until all of it is committed"
    db.down, db.fail_after = False, None
    await wb.wait_committed(5)
    assert db.log == [0, 1, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert db.rows == {n: f"v{n}" for n in range(9)} and wb.replayed == 9
    await wb.close()


async def test_without_a_spool_items_wait_in_memory_and_past_max_backlog_are_dropped() -> None:
    db = FakeDb()
    db.refuse_connect = True
    wb = writer(db, max_backlog=4)
    await wb.start()
    with capture_logs() as logs:
        results = [wb.put(Item(n)) for n in range(6)]
    assert results == [True] * 4 + [False] * 2 and wb.dropped == 2
    assert [e["item"]["key"] for e in logs if e["event"] == "test.full"] == [4, 5]
    await _until(lambda: wb.failures >= 2)
    assert wb.backlog == 4 and "ConnectionRefused" in (wb.last_error or "")
    db.refuse_connect = False
    await wb.wait_committed(5)
    assert db.log == [0, 1, 2, 3] and wb.failing_since is None
    await wb.close()


async def test_past_max_backlog_the_queue_goes_to_the_spool(tmp_path: Path) -> None:
    db = FakeDb()
    wb = writer(db, tmp_path, batch_size=100, linger_s=30, max_backlog=3)
    await wb.start()
    for n in range(4):
        wb.put(Item(n))
    await wb.wait_committed(5)
    assert (wb.spilled, wb.replayed, wb.written) == (4, 4, 0) and db.log == [0, 1, 2, 3]
    await wb.close()


async def test_a_write_past_its_timeout_is_cut_off_and_retried(tmp_path: Path) -> None:
    db = FakeDb()
    wb = writer(db, tmp_path, write_timeout_s=0.1)
    db.hang = True
    await wb.start()
    wb.put(Item(1))
    await _until(lambda: wb.failing_since is not None)
    assert db.terminated == 1 and "TimeoutError" in (wb.last_error or "")
    db.hang = False
    await wb.wait_committed(5)
    assert db.log == [1]
    await wb.close()


async def test_closed_while_down_spools_at_once_and_the_next_writer_replays(tmp_path: Path) -> None:
    db = FakeDb()
    db.refuse_connect = True
    first = writer(db, tmp_path, write_timeout_s=30)
    await first.start()
    first.put(Item(1))
    await _until(lambda: first.failing_since is not None)
    first.put(Item(2))
    first.put(Item(3))
    started = time.monotonic()
    await first.close(timeout=10)
    assert time.monotonic() - started < 1, "no waiting for a Postgres that is down"
    assert _spooled(tmp_path) == [1, 2, 3] and first.pending == 0

    db.refuse_connect = False
    again = writer(db, tmp_path)
    await again.start()
    again.put(Item(4))
    await again.wait_committed(5)
    assert db.log == [1, 2, 3, 4] and (again.replayed, again.written) == (3, 1)
    await again.close()


async def test_a_spool_line_that_is_no_item_is_set_aside_and_the_rest_replayed(tmp_path: Path) -> None:
    lines = [{"key": 1, "value": "a", "bad": False}, {"surprise": True}, {"key": 2, "value": "b", "bad": False}]
    tmp_path.joinpath("000000000003.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    db = FakeDb()
    wb = writer(db, tmp_path, keep_refused=True)
    await wb.start()
    await _until(lambda: wb.spool_backlog == 0)
    await wb.close()
    assert db.log == [1, 2] and (wb.replayed, wb.refused) == (2, 1)
    (rejected,) = tmp_path.glob("rejected-*.jsonl")
    (kept,) = [json.loads(line) for line in rejected.read_text().splitlines()]
    assert kept["record"] == {"surprise": True} and kept["error"].startswith("TypeError")


async def test_waiting_on_a_writer_that_is_not_running_fails_fast() -> None:
    wb = writer(FakeDb())
    await wb.wait_committed(0.1)  # nothing put: nothing to wait for
    wb.put(Item(1))
    with pytest.raises(Exception, match="not running"):
        await wb.wait_durable(1)
