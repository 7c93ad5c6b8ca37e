"""asyncpg pool and the `Database` lifecycle (external Postgres or embedded).

json and jsonb columns are decoded to Python objects and encoded from them: pass a
dict/list to a jsonb parameter, not a pre-serialised string (a str would be stored
as a JSON string).
"""

from __future__ import annotations

import asyncio
import json
import socket
from types import TracebackType
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ..core.dsn import dsn_host, dsn_hosts
from ..errors import Unavailable
from ..logs import get_logger
from ..settings import Settings
from .embedded import EMBEDDED_OWNER, EMBEDDED_SERVICE, EmbeddedPostgres

_log = get_logger("hitcall.store.db")

# A connection to run statements on: one from `connect`, or one acquired from a pool (asyncpg hands
# out a proxy there, which is not an `asyncpg.Connection` to the type checker).
Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy
# Where a statement can run: a pool (each call acquires a connection) or one connection.
Executor: TypeAlias = asyncpg.Pool | Connection

_CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)
# A host that gave no session, or none of the kind asked for: the walk tries the next one.
_HOST_ERRORS: tuple[type[BaseException], ...] = (*_CONNECT_ERRORS, asyncpg.TargetServerAttributeNotMatched)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


# A server whose host vanished (power loss, a partition) never resets its connections: without
# these, a statement sent on one waits until the kernel gives up (about 15 minutes), and an idle
# pooled connection to it looks alive forever. Data unacknowledged this long drops the connection
# (a slow query is not affected: the server's kernel acknowledges the statement at once), and an
# idle connection is probed after KEEPALIVE_IDLE_S, then every KEEPALIVE_INTERVAL_S.
TCP_USER_TIMEOUT_S = 15
KEEPALIVE_IDLE_S = 10
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 3


def _tcp_dead_peer_detection(conn: asyncpg.Connection) -> None:
    transport = getattr(conn, "_transport", None)  # asyncpg has no public way to its socket
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # a Unix socket: the server is on this host
    options = [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPIDLE", None), KEEPALIVE_IDLE_S),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPINTVL", None), KEEPALIVE_INTERVAL_S),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", None), KEEPALIVE_COUNT),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", None), TCP_USER_TIMEOUT_S * 1000),
    ]
    for level, option, value in options:
        if option is not None:  # Linux has them all; elsewhere what the platform has
            sock.setsockopt(level, option, value)


async def _init_connection(conn: asyncpg.Connection) -> None:
    _tcp_dead_peer_detection(conn)
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, encoder=_dumps, decoder=json.loads, schema="pg_catalog", format="text")


class NoUsableHost(ConnectionError):
    """No host of the DSN gave a session the service can use (each host's reason in the
    message): all refused or timed out, or none is a read-write primary (a standby, or a
    failover in progress). An OSError, so that every caller takes it for "database away"."""


class HostWalk:
    """Opens connections to a DSN that names one or several hosts.

    asyncpg walks a host list itself, but under one timeout for the whole walk: a host that
    does not answer (a dead machine, a frozen server) eats it all and the next host is never
    tried. Here each host gets its own `timeout` (the DSN's ``connect_timeout`` when it has
    one, libpq's meaning), the host that gave the last usable session is tried first, and a
    host that has not answered within `stagger_s` does not hold the others up: the next one
    is tried meanwhile (a refused or unsuitable host passes the turn at once). The first
    usable session wins; any other one opened meanwhile is closed. So a dead host costs a
    new connection `stagger_s`, not its whole timeout, also to a caller that gives the
    connection less time than that (the node registry's heartbeat).

    A session must be read-write unless the DSN says otherwise (``target_session_attrs``):
    the service writes, and a connection that reached a standby (a virtual IP or a proxy that
    has not moved yet) would only fail every write. None usable: `NoUsableHost`.
    """

    def __init__(self, dsn: str, *, timeout: float = 10.0, stagger_s: float = 0.5) -> None:
        parts = urlsplit(dsn)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        given = [v for k, v in query if k == "connect_timeout"]
        self.timeout = float(given[-1]) if given else timeout
        self.stagger_s = min(stagger_s, self.timeout)
        # asyncpg would send a parameter it does not know to the server as a setting
        query = [(k, v) for k, v in query if k != "connect_timeout"]
        attrs = [v for k, v in query if k == "target_session_attrs"]
        self.target_session_attrs = attrs[-1] if attrs else "read-write"
        query = [(k, v) for k, v in query if k != "target_session_attrs"]
        self.dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
        self.hosts = dsn_hosts(dsn)
        self._first = 0

    async def connect(self, dsn: str | None = None, **kwargs: Any) -> asyncpg.Connection:
        """A connection (asyncpg's `connect` arguments, but `dsn` and `timeout`, which are
        this walk's: an asyncpg pool's ``connect=`` callback)."""
        kwargs.pop("timeout", None)
        kwargs.setdefault("target_session_attrs", self.target_session_attrs)
        if len(self.hosts) <= 1:
            try:
                return await asyncpg.connect(self.dsn, timeout=self.timeout, **kwargs)
            except asyncpg.TargetServerAttributeNotMatched as exc:
                raise NoUsableHost(f"{dsn_host(self.dsn)}: not a {kwargs['target_session_attrs']} server") from exc
        return await self._walk(kwargs)

    async def _walk(self, kwargs: dict[str, Any]) -> asyncpg.Connection:
        n = len(self.hosts)
        waiting = [(self._first + k) % n for k in range(n)]
        trying: dict[asyncio.Task[asyncpg.Connection], int] = {}
        reasons: dict[int, str] = {}
        try:
            while waiting or trying:
                if waiting:
                    i = waiting.pop(0)
                    host, port = self.hosts[i]
                    attempt = asyncpg.connect(self.dsn, host=host, port=port, timeout=self.timeout, **kwargs)
                    trying[asyncio.ensure_future(attempt)] = i
                done, _ = await asyncio.wait(
                    trying, timeout=self.stagger_s if waiting else None, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    i = trying.pop(task)
                    exc = task.exception()
                    if exc is None:
                        self._first = i
                        return task.result()  # any other task done with it is closed below
                    if not isinstance(exc, _HOST_ERRORS):
                        raise exc
                    reasons[i] = _reason(exc, self.timeout, kwargs["target_session_attrs"])
        finally:
            await _discard(trying)
        raise NoUsableHost("; ".join(f"{self._where(i)}: {reasons[i]}" for i in sorted(reasons)))

    def _where(self, i: int) -> str:
        host, port = self.hosts[i]
        return host if port is None else f"{host}:{port}"


async def _discard(tasks: dict[asyncio.Task[asyncpg.Connection], int]) -> None:
    """Cancel connection attempts that lost; close any that got a session all the same."""
    for task in tasks:
        task.cancel()
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, asyncpg.Connection):
            result.terminate()


def _reason(exc: BaseException, timeout: float, attrs: str) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer in {timeout:g} s"
    if isinstance(exc, asyncpg.TargetServerAttributeNotMatched):
        return f"not a {attrs} server"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def dsn_with_database(dsn: str, database: str) -> str:
    """The same server DSN pointing at another database."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def dsn_with_user(dsn: str, user: str, password: str) -> str:
    """The same DSN logging in as another role."""
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _unavailable(dsn: str, exc: BaseException) -> Unavailable:
    host = dsn_host(dsn)
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, asyncio.TimeoutError):
        reason = "connection timed out"
    database = urlsplit(dsn).path.lstrip("/") or None
    return Unavailable(
        f"cannot connect to PostgreSQL at {host}: {reason}",
        details={"host": host, "database": database},
        code="database_unavailable",
    )


async def keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset: nothing sent. asyncpg itself still rolls back a transaction left
    open and drops listeners. The service leaves no other session state on a pooled
    connection: settings only with SET LOCAL, cursors only inside transactions, LISTEN on
    connections of its own, and a session advisory lock is given back by `unlock_or_drop`.
    asyncpg's default reset query would cost a round trip (and a server wake-up) at every
    release, about four per call."""


async def unlock_or_drop(conn: Connection, key: int) -> None:
    """Release a session advisory lock; if that fails on a session that is still open, the
    session is ended (the server releases its locks), so no pooled connection keeps one."""
    try:
        await conn.execute("SELECT pg_advisory_unlock($1)", key)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        _log.warning("db.advisory_unlock_failed", key=key, error=str(exc) or type(exc).__name__)
        if not conn.is_closed():
            conn.terminate()


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    connect_timeout: float = 10.0,
    **kwargs: Any,
) -> asyncpg.Pool:
    """An asyncpg pool with json/jsonb decoded to Python objects.

    A server that cannot be reached (refused, unknown host, bad credentials, missing
    database, timeout) raises `Unavailable` with a one-line message naming the host.
    A connection goes back to the pool without a reset query (`keep_session`).
    """
    walk = HostWalk(dsn, timeout=connect_timeout)
    kwargs.setdefault("reset", keep_session)
    try:
        pool = await asyncpg.create_pool(
            walk.dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            connect=walk.connect,
            **kwargs,
        )
    except _CONNECT_ERRORS as exc:
        raise _unavailable(dsn, exc) from exc
    assert pool is not None
    return pool


async def connect(dsn: str, *, connect_timeout: float = 10.0) -> asyncpg.Connection:
    """One connection with the same codecs and error mapping as `create_pool`."""
    try:
        conn = await HostWalk(dsn, timeout=connect_timeout).connect()
    except _CONNECT_ERRORS as exc:
        raise _unavailable(dsn, exc) from exc
    try:
        await _init_connection(conn)
    except BaseException:
        conn.terminate()
        raise
    return conn


class Database:
    """The service's Postgres: ``settings.database_url`` or an embedded server in the data dir.

    ``async with Database(settings) as db: db.pool, db.dsn``. On exit the pool is closed
    and an embedded server is released (stopped when no other process uses it).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        min_size: int = 1,
        max_size: int = 10,
        close_timeout: float = 10.0,
    ) -> None:
        self._settings = settings
        self._min_size = min_size
        self._max_size = max_size
        self._close_timeout = close_timeout
        self._embedded: EmbeddedPostgres | None = None
        self._pool: asyncpg.Pool | None = None
        self._dsn: str | None = None
        self._owner_dsn: str | None = None  # the embedded server's schema owner

    @property
    def dsn(self) -> str:
        if self._dsn is None:
            raise Unavailable("database is not open", code="database_unavailable")
        return self._dsn

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise Unavailable("database is not open", code="database_unavailable")
        return self._pool

    @property
    def embedded(self) -> bool:
        """True when running on the embedded server in the data dir."""
        return self._embedded is not None

    async def open(self) -> Database:
        if self._pool is not None:
            return self
        if self._settings.database_url:
            dsn = self._settings.database_url
        else:
            embedded = EmbeddedPostgres(self._settings.data_dir)
            await asyncio.to_thread(embedded.start)
            self._embedded = embedded
            try:
                dsn, self._owner_dsn = await _prepare_embedded(embedded)
            except BaseException:
                await self._release_embedded()
                raise
        try:
            self._pool = await create_pool(dsn, min_size=self._min_size, max_size=self._max_size)
        except BaseException:
            await self._release_embedded()
            raise
        self._dsn = dsn
        _log.info("database_open", host=dsn_host(dsn), embedded=self.embedded)
        return self

    async def migrate(self) -> list[str]:
        """Apply pending migrations as the schema owner (HITCALL_MIGRATE_DATABASE_URL, or the
        embedded server's owner role), then grant the service's role what it needs
        (`roles.grant_service`, every time: it also covers a service role that changed).
        With DATABASE_URL alone its role migrates: it is the owner then. The names applied."""
        from . import migrations, roles  # they use this module's types

        owner_dsn = self._settings.migrate_database_url or self._owner_dsn
        if owner_dsn is None:
            return await migrations.apply(self.pool)
        conn = await connect(owner_dsn)
        try:
            applied = await migrations.apply(conn)
            service = await self.pool.fetchval("SELECT current_user")
            if service != await conn.fetchval("SELECT current_user"):
                await roles.grant_service(conn, service)
        finally:
            await conn.close()
        return applied

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        self._dsn = None
        try:
            if pool is not None:
                try:
                    await asyncio.wait_for(pool.close(), self._close_timeout)
                except TimeoutError:
                    _log.warning("database_close_timeout", timeout_s=self._close_timeout)
                    pool.terminate()
        finally:
            await self._release_embedded()

    async def _release_embedded(self) -> None:
        embedded, self._embedded = self._embedded, None
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def _prepare_embedded(embedded: EmbeddedPostgres) -> tuple[str, str]:
    """Set the embedded server's roles up as its superuser (idempotent, at every start):
    the owner and the service login roles, the owner owning schema public and everything
    in it. The service's and the owner's DSNs."""
    from . import roles  # it uses this module's types

    passwords = await asyncio.to_thread(embedded.role_passwords)
    admin = await connect(embedded.uri)
    try:
        await roles.ensure_roles(
            admin,
            owner=EMBEDDED_OWNER,
            owner_password=passwords[EMBEDDED_OWNER],
            service=EMBEDDED_SERVICE,
            service_password=passwords[EMBEDDED_SERVICE],
        )
        await roles.prepare_database(admin, owner=EMBEDDED_OWNER)
    finally:
        await admin.close()
    return embedded.service_uri, embedded.owner_uri
