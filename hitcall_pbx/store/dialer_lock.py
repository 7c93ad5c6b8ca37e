"""One dialing process per database: the process that dials holds a PostgreSQL
advisory lock on a connection of its own for its whole life.

A second `hitcall serve` on the same database does not get the lock and refuses to
start its dialer (it may run the API only), so restart recovery, which closes the
attempts and logs out the agents a stopped process left, never touches the rows of
a process that is still running. The lock lives as long as its connection: when the
connection breaks (PostgreSQL restarted) the holder takes the lock again as soon as
the database is back; if another process took it in between, the holder is fenced
(`on_lost`) and must stop dialling.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable

import asyncpg

from ..errors import Conflict
from ..logs import get_logger

log = get_logger("hitcall.store.dialer_lock")

# pg_advisory_lock key: the ASCII of "hitcall\0" as a signed 64-bit integer.
DIALER_LOCK_KEY = int.from_bytes(b"hitcall\0", "big", signed=True)
APPLICATION_NAME = "hitcall-dialer"

Connect = Callable[[], Awaitable[asyncpg.Connection]]


class DialerLocked(Conflict):
    code = "dialer_locked"


def holder_name() -> str:
    return f"{APPLICATION_NAME} pid={os.getpid()} host={socket.gethostname()}"


class DialerLock:
    def __init__(self, connect: Connect, *, check_s: float = 2.0, key: int = DIALER_LOCK_KEY) -> None:
        self._connect = connect
        self.check_s = check_s
        self.key = key
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self.held = False
        self.lost: str | None = None  # why this process may not dial any more

    async def acquire(self) -> None:
        """Take the lock or raise DialerLocked naming the holder."""
        conn = await self._connect()
        try:
            await conn.execute("SELECT set_config('application_name', $1, false)", holder_name())
            got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key)
            if not got:
                holder = await self._holder(conn)
                raise DialerLocked(
                    f"another HitCall process dials on this database ({holder}); stop it first, "
                    "or start this one with --api-only",
                    details={"holder": holder},
                )
        except BaseException:
            await conn.close()
            raise
        self._conn, self.held = conn, True
        self._task = asyncio.create_task(self._watch(), name="dialer-lock")
        log.info("dialer_lock.acquired", key=self.key)

    async def _holder(self, conn: asyncpg.Connection) -> str:
        name = await conn.fetchval(
            """SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
               WHERE l.locktype = 'advisory' AND l.granted
                 AND ((l.classid::bigint << 32) | l.objid::bigint) = $1""",
            self.key,
        )
        return str(name) if name else "a process holding the dialer lock"

    async def _watch(self) -> None:
        """Keep the lock: check its connection; after a break, take the lock again."""
        while self.lost is None:
            await asyncio.sleep(self.check_s)
            try:
                assert self._conn is not None
                await self._conn.fetchval("SELECT 1", timeout=self.check_s)
                continue
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, AssertionError):
                pass
            if self.held:
                log.warning("dialer_lock.connection_lost")
                self.held = False
            await self._close_conn()
            try:
                conn = await self._connect()
            except Exception as exc:  # the database is still away: try again at the next check
                log.debug("dialer_lock.reconnect_failed", error=str(exc))
                continue
            try:
                await conn.execute("SELECT set_config('application_name', $1, false)", holder_name())
                got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key)
                holder = None if got else await self._holder(conn)
            except Exception:
                await conn.close()
                continue
            if got:
                self._conn, self.held = conn, True
                log.info("dialer_lock.reacquired")
            else:
                await conn.close()
                self.lost = f"the dialer lock was taken by {holder} while the database was away"
                log.error("dialer_lock.lost", holder=holder)

    async def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except Exception:
                conn.terminate()

    async def release(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._conn is not None and self.held:
            try:
                await self._conn.fetchval("SELECT pg_advisory_unlock($1)", self.key)
            except Exception as exc:  # the lock ends with the connection anyway
                log.debug("dialer_lock.unlock_failed", error=str(exc))
        self.held = False
        await self._close_conn()
