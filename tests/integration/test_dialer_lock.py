"""The dialer lock on a real PostgreSQL: one holder per database, the refusal names the
holder, a broken lock connection is taken again, and a holder whose lock was taken by
another process while the database was away is fenced."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from hitcall_pbx.store.db import connect
from hitcall_pbx.store.dialer_lock import DialerLock, DialerLocked, holder_name

from ..live import wait_until


@pytest.fixture
async def dsn(empty_db_dsn: str) -> str:
    return empty_db_dsn


async def _holder_pids(conn: asyncpg.Connection, key: int) -> list[int]:
    rows = await conn.fetch(
        """SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
           AND ((classid::bigint << 32) | objid::bigint) = $1""",
        key,
    )
    return [r["pid"] for r in rows]


async def test_one_holder_and_the_refusal_names_it(dsn: str) -> None:
    first, second = DialerLock(lambda: connect(dsn)), DialerLock(lambda: connect(dsn))
    await first.acquire()
    try:
        with pytest.raises(DialerLocked) as err:
            await second.acquire()
        assert holder_name() in err.value.message and "--api-only" in err.value.message
        assert err.value.status == 409 and not second.held
    finally:
        await first.release()
    # Released: the next process gets it.
    await second.acquire()
    assert second.held
    await second.release()


async def test_a_broken_lock_connection_is_taken_again(dsn: str) -> None:
    lock = DialerLock(lambda: connect(dsn), check_s=0.1)
    await lock.acquire()
    admin = await connect(dsn)
    try:
        [pid] = await _holder_pids(admin, lock.key)
        await admin.execute("SELECT pg_terminate_backend($1)", pid)

        async def taken_again() -> list[int] | None:
            pids = await _holder_pids(admin, lock.key)
            return pids if lock.held and pids and pids != [pid] else None

        new_pids = await wait_until(taken_again, timeout=30, interval=0.05)
        assert new_pids and new_pids != [pid] and lock.lost is None
    finally:
        await lock.release()
        await admin.close()


async def test_a_holder_whose_lock_was_taken_meanwhile_is_fenced(dsn: str) -> None:
    database_back = asyncio.Event()
    database_back.set()

    async def gated() -> asyncpg.Connection:
        await database_back.wait()
        return await connect(dsn)

    lock = DialerLock(gated, check_s=0.1)
    await lock.acquire()
    database_back.clear()  # the holder cannot reconnect until the other process has the lock
    admin = await connect(dsn)
    other = await connect(dsn)
    try:
        [pid] = await _holder_pids(admin, lock.key)
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
        # Another process takes the lock before the holder notices the break.
        await wait_until(lambda: other.fetchval("SELECT pg_try_advisory_lock($1)", lock.key), timeout=5)
        database_back.set()
        reason = await wait_until(lambda: lock.lost, timeout=30, interval=0.05)
        assert "taken by" in reason and not lock.held
    finally:
        await lock.release()
        await other.close()
        await admin.close()
