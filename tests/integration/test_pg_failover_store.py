"""The store on a PostgreSQL primary with a streaming standby (tests/pg_pair.py): a
multi-host DSN reaches the read-write server, a host that does not answer costs one
connect timeout, and across a failover (kill -9 of the primary, promotion of the standby)
the CDR writer and the call journal keep every write in their spools and land each one
exactly once on the new primary; a session that reaches a standby spools, never writes."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from hitcall_pbx.core.backoff import Backoff
from hitcall_pbx.errors import Unavailable
from hitcall_pbx.records.cdr import CdrWriter
from hitcall_pbx.records.journal import CallJournal
from hitcall_pbx.store.db import TCP_USER_TIMEOUT_S, HostWalk, NoUsableHost, connect, create_pool, dsn_with_user
from tests.conftest import ROLE_PASSWORDS, SERVICE
from tests.integration.test_cdr_writer import cdr
from tests.pg_pair import PgPair, prepare_database

FAST = Backoff(base=0.05, cap=0.2)


@pytest.fixture
async def pair() -> AsyncIterator[PgPair]:
    pg = PgPair(synchronous=True)
    try:
        await asyncio.to_thread(pg.start)
        yield pg
    finally:
        await asyncio.to_thread(pg.close)


@pytest.fixture
def silent_host() -> Iterator[str]:
    """``127.0.0.1:<port>`` of a listener that never answers: the kernel completes the TCP
    handshake, nobody ever speaks (a frozen server, a host behind a dropped route)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"127.0.0.1:{s.getsockname()[1]}"


def _with_hosts(dsn: str, hosts: str) -> str:
    """The DSN naming `hosts` (``h:p,h:p``) instead of its own."""
    scheme, rest = dsn.split("://", 1)
    auth, _, tail = rest.partition("@")
    return f"{scheme}://{auth}@{hosts}/{tail.split('/', 1)[1]}"


async def _port(executor: asyncpg.Pool | asyncpg.Connection) -> int:
    return int(await executor.fetchval("SELECT inet_server_port()"))


async def test_multi_host_dsn_reaches_the_read_write_server(pair: PgPair) -> None:
    dsn = await prepare_database(pair)
    standby_first = _with_hosts(dsn, f"{pair.standby.address},{pair.primary.address}")
    pool = await create_pool(standby_first, min_size=2, max_size=2)
    try:
        assert await _port(pool) == pair.primary.port
        assert await pool.fetchval("SELECT pg_is_in_recovery()") is False
    finally:
        await pool.close()
    conn = await connect(standby_first)  # the dialer lock's / node registry's own connection
    try:
        assert await _port(conn) == pair.primary.port
    finally:
        await conn.close()
    # Only the standby: no session the service can write with, one readable line.
    with pytest.raises(Unavailable, match=rf"{pair.standby.address}: not a read-write server"):
        await create_pool(_with_hosts(dsn, pair.standby.address), min_size=1)
    # Without target_session_attrs the service still asks for a read-write server.
    bare = dsn.split("?", 1)[0]
    with pytest.raises(Unavailable, match="not a read-write server"):
        await connect(_with_hosts(bare, pair.standby.address))


async def test_a_host_that_does_not_answer_does_not_hold_up_the_others(pair: PgPair, silent_host: str) -> None:
    """A dead first host (it never answers) costs a new connection the walk's stagger (0.5 s),
    not its connect_timeout (5 s here), also under a caller's own shorter deadline (the node
    registry gives its connection a third of the lease); later connections go straight to
    the host that answered."""
    dsn = await prepare_database(pair)
    dsn = _with_hosts(dsn, f"{silent_host},{pair.primary.address}") + "&connect_timeout=5"
    started = time.monotonic()
    conn = await asyncio.wait_for(connect(dsn), 3.0)
    first_s = time.monotonic() - started
    port = await _port(conn)
    await conn.close()
    started = time.monotonic()
    pool = await create_pool(dsn, min_size=1, max_size=3)
    pool_s = time.monotonic() - started
    try:
        started = time.monotonic()
        async with pool.acquire() as a, pool.acquire() as b, pool.acquire() as c:
            ports = {await _port(x) for x in (a, b, c)}
        more_s = time.monotonic() - started
    finally:
        await pool.close()
    print(f"silent first host: connect {first_s:.2f} s, pool {pool_s:.2f} s, two more connections {more_s:.2f} s")
    assert port == pair.primary.port and ports == {pair.primary.port}
    assert 0.4 <= first_s < 1.5 and 0.4 <= pool_s < 1.5, (first_s, pool_s)
    assert more_s < 0.4, more_s
    # Nothing answers at all: an OSError naming every host, each after its own timeout.
    silent_only = _with_hosts(dsn, f"{silent_host},{silent_host}").replace("connect_timeout=5", "connect_timeout=1")
    started = time.monotonic()
    with pytest.raises(NoUsableHost, match=rf"{silent_host}: no answer in 1 s; {silent_host}: no answer in 1 s"):
        await HostWalk(silent_only).connect()
    assert time.monotonic() - started < 2.5


async def _campaign(pool: asyncpg.Pool) -> int:
    sql = "INSERT INTO campaigns (name, mode) VALUES ('failover', 'progressive') RETURNING id"
    return int(await pool.fetchval(sql))


async def _wait(predicate, timeout: float) -> float:
    """Poll until true; the seconds it took."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "timed out"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_writers_keep_every_write_across_a_failover(pair: PgPair, tmp_path: Path) -> None:
    dsn = await prepare_database(pair)
    pool = await create_pool(dsn, min_size=2, max_size=6, connect_timeout=2)
    cdrs = CdrWriter(pool, tmp_path / "cdr", batch_size=20, write_timeout=3, backoff=FAST)
    journal = CallJournal(pool, spool_dir=tmp_path / "journal", write_timeout_s=3, backoff=FAST)
    await cdrs.start()
    await journal.start()
    try:
        campaign = await _campaign(pool)
        before = [cdr(campaign, n) for n in range(30)]
        for record in before:
            cdrs.submit(record)
            journal.event("call.ended", f"attempt:{record.id}", {"attempt_id": str(record.id)})
        await cdrs.flush()
        await journal.flush(timeout=10)
        assert cdrs.stats.written == 30 and cdrs.spool_backlog == 0

        killed_at = await asyncio.to_thread(pair.kill_primary)
        during = [cdr(campaign, n) for n in range(30, 130)]
        for record in during:
            cdrs.submit(record)
            journal.event("call.ended", f"attempt:{record.id}", {"attempt_id": str(record.id)})
        # Nothing hangs on the dead host: both writers have everything in their spools at once.
        await asyncio.wait_for(cdrs.flush(), 10)
        await _wait(lambda: journal.spool_backlog == 100, 10)
        spooled_s = time.monotonic() - killed_at
        assert cdrs.spool_backlog == 100 and cdrs.stats.rejected == 0
        await asyncio.sleep(1.0)  # the replays fail meanwhile: the standby is read-only, the primary gone
        assert cdrs.spool_backlog == 100 and journal.spool_backlog == 100
        assert await asyncio.to_thread(pair.in_recovery, pair.standby)

        promoted_at = await asyncio.to_thread(pair.promote)
        await _wait(lambda: cdrs.spool_backlog == 0 and journal.spool_backlog == 0, 30)
        landed_s = time.monotonic() - promoted_at
        await journal.flush(timeout=10)
        print(
            f"failover: writes spooled {spooled_s:.2f} s after the kill; "
            f"CDRs and journal on the new primary {landed_s:.2f} s after the promotion"
        )
        assert await _port(pool) == pair.standby.port
        ids = [r.id for r in before + during]
        counts = dict(
            await pool.fetch("SELECT id, count(*) FROM call_attempts WHERE id = ANY($1::uuid[]) GROUP BY id", ids)
        )
        assert len(counts) == 130 and set(counts.values()) == {1}
        events = dict(
            await pool.fetch(
                "SELECT subject, count(*) FROM webhook_outbox WHERE event_type = 'call.ended' GROUP BY subject"
            )
        )
        assert events == {f"attempt:{i}": 1 for i in ids}
        assert cdrs.stats.replayed == 100 and cdrs.stats.rejected == 0 and journal.dropped == 0
        assert landed_s < 10, landed_s
    finally:
        await journal.close(timeout=5)
        await cdrs.close()
        pool.terminate()


async def test_a_session_on_a_standby_spools_and_writes_after_promotion(pair: PgPair, tmp_path: Path) -> None:
    """A virtual IP or proxy that still sends the service to a standby: target_session_attrs
    =any lets the session through; every write fails read-only and is spooled, none lost."""
    dsn = await prepare_database(pair)
    campaign_pool = await create_pool(dsn, min_size=1, max_size=1)
    campaign = await _campaign(campaign_pool)
    await campaign_pool.close()
    on_standby = dsn_with_user(
        f"postgresql://x@{pair.standby.address}/hitcall?target_session_attrs=any", SERVICE, ROLE_PASSWORDS[SERVICE]
    )
    pool = await create_pool(on_standby, min_size=1, max_size=2)
    cdrs = CdrWriter(pool, tmp_path / "cdr", batch_size=10, write_timeout=3, backoff=FAST)
    await cdrs.start()
    try:
        assert await pool.fetchval("SELECT pg_is_in_recovery()") is True
        records = [cdr(campaign, n) for n in range(10)]
        for record in records:
            cdrs.submit(record)
        await asyncio.wait_for(cdrs.flush(), 10)
        assert cdrs.spool_backlog == 10 and cdrs.stats.rejected == 0
        assert "ReadOnlySQLTransaction" in (cdrs.stats.last_error or ""), cdrs.stats.last_error

        await asyncio.to_thread(pair.kill_primary)
        await asyncio.to_thread(pair.promote)
        await _wait(lambda: cdrs.spool_backlog == 0, 30)
        n = await pool.fetchval(
            "SELECT count(*) FROM call_attempts WHERE id = ANY($1::uuid[])", [r.id for r in records]
        )
        assert n == 10 and cdrs.stats.replayed == 10
    finally:
        await cdrs.close()
        pool.terminate()


@pytest.fixture
async def pair_apart() -> AsyncIterator[PgPair]:
    """The primary on a host of its own (a network namespace), which can vanish."""
    pg = PgPair(synchronous=True, primary_netns=True)
    try:
        await asyncio.to_thread(pg.start)
        yield pg
    finally:
        await asyncio.to_thread(pg.close)


async def test_a_vanished_primary_does_not_hang_the_store(pair_apart: PgPair, tmp_path: Path) -> None:
    """The primary's host vanishes (every packet to it dropped: nothing refused, nothing reset,
    as when a machine loses power) and the standby is promoted. A statement already sent on a
    pooled connection to the vanished host fails within the TCP user timeout instead of the
    kernel's quarter of an hour; the pool's idle connections to it are found dead by their
    keepalives; new connections pass the dead host by; the writers spool and land everything
    on the new primary once."""
    pair = pair_apart
    assert pair.netns is not None
    dsn = await prepare_database(pair)
    pool = await create_pool(dsn, min_size=3, max_size=3)
    cdrs = CdrWriter(pool, tmp_path / "cdr", batch_size=10, write_timeout=3, backoff=FAST)
    await cdrs.start()
    try:
        campaign = await _campaign(pool)
        async with pool.acquire() as a, pool.acquire() as b, pool.acquire() as c:
            assert {await _port(x) for x in (a, b, c)} == {pair.primary.port}

        vanished_at = await asyncio.to_thread(pair.netns.vanish)
        records = [cdr(campaign, n) for n in range(20)]
        for record in records:
            cdrs.submit(record)
        await asyncio.to_thread(pair.promote)
        # A statement on a connection to the vanished host: an error, not a quarter-hour wait.
        started = time.monotonic()
        with pytest.raises((OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError)):
            await asyncio.wait_for(pool.fetchval("SELECT 1"), TCP_USER_TIMEOUT_S + 20)
        statement_failed_s = time.monotonic() - started
        # Soon every statement reaches the new primary (dead idle connections are dropped).
        port = None
        while port != pair.standby.port:
            assert time.monotonic() - vanished_at < 60, "the pool still waits on the vanished host"
            try:
                port = await asyncio.wait_for(_port(pool), TCP_USER_TIMEOUT_S + 20)
            except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError):
                continue
        on_new_primary_s = time.monotonic() - vanished_at
        await _wait(lambda: cdrs.spool_backlog == 0 and cdrs.stats.pending == 0, 60)
        landed_s = time.monotonic() - vanished_at
        print(
            f"vanished primary: a statement on its connection failed after {statement_failed_s:.1f} s;"
            f" the pool on the new primary {on_new_primary_s:.1f} s and the CDRs landed {landed_s:.1f} s"
            " after the host vanished"
        )
        assert statement_failed_s <= TCP_USER_TIMEOUT_S + 3, statement_failed_s
        n = await pool.fetchval(
            "SELECT count(*) FROM call_attempts WHERE id = ANY($1::uuid[])", [r.id for r in records]
        )
        assert n == 20 and cdrs.stats.rejected == 0
    finally:
        await cdrs.close()
        pool.terminate()
