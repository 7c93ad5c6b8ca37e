"""A pooled connection goes back without a reset query (a round trip and a server wake-up
saved at every release), while what a use could leave behind still goes: a transaction
left open is rolled back; a session advisory lock that cannot be released ends the
session. Real PostgreSQL."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from hitcall_pbx.store.db import create_pool, dsn_with_database, unlock_or_drop

KEY = 4242


@pytest.fixture
async def pool(db: asyncpg.Pool, pg_dsn: str) -> Any:
    p = await create_pool(dsn_with_database(pg_dsn, await db.fetchval("SELECT current_database()")), max_size=1)
    yield p
    await p.close()


async def test_a_released_connection_sends_no_reset_query(pool: asyncpg.Pool) -> None:
    queries: list[str] = []

    def log(record: Any) -> None:
        queries.append(record.query)

    async with pool.acquire() as conn:
        conn.add_query_logger(log)
        await conn.execute("SELECT 1")
    async with pool.acquire() as conn:
        await conn.execute("SELECT 2")
        conn.remove_query_logger(log)
    assert queries == ["SELECT 1", "SELECT 2"], "nothing sent between two uses"


async def test_a_transaction_left_open_is_rolled_back_on_release(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("CREATE TEMP TABLE IF NOT EXISTS left_open (n int)")
        tx = conn.transaction()
        await tx.start()
        await conn.execute("INSERT INTO left_open VALUES (1)")
    async with pool.acquire() as conn:
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT count(*) FROM left_open") == 0


async def test_an_advisory_lock_is_given_back_on_release(pool: asyncpg.Pool, db: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", KEY)
        await unlock_or_drop(conn, KEY)
    async with db.acquire() as other:
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", KEY), "free for another session"
        await other.execute("SELECT pg_advisory_unlock($1)", KEY)


class _Refusing:
    """A live session whose unlock fails (a statement timeout, a cancelled query)."""

    def __init__(self) -> None:
        self.terminated = False

    async def execute(self, query: str, *args: Any) -> str:
        raise asyncpg.QueryCanceledError("canceling statement due to statement timeout")

    def is_closed(self) -> bool:
        return self.terminated

    def terminate(self) -> None:
        self.terminated = True


async def test_a_lock_that_cannot_be_given_back_ends_its_session() -> None:
    conn = _Refusing()
    await unlock_or_drop(conn, KEY)  # type: ignore[arg-type]  # the three methods it uses
    assert conn.terminated, "the server releases the session's locks as it ends"
