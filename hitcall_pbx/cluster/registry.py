"""The node registry and pool leases in PostgreSQL (the rules are in `core.leases`).

`NodeRegistry.register` writes this process's node row, refused (`NodeLive`, naming the
host and pid) while another process runs under the same node id. A heartbeat every
``lease / 3`` renews the node row and every pool lease this run holds in one statement;
a lease that was not renewed (taken by another node meanwhile) is *lost*. Pools this
node wants but could not take (held by a live node) are tried again at every heartbeat;
a pool taken calls `on_taken` with its `PoolClaim`. When no renewal succeeded for
``lease - margin`` on this process's monotonic clock (measured from when the last
successful renewal was sent), the node *fences* itself: every pool lease is dropped
(`on_lost`) before the database can let another node take it, and `on_fenced` is told.
It keeps trying: once the database answers again it renews its node row and takes its
pools back (with a new token) if nobody took them. If another run of the same node id
registered meanwhile, this one is *displaced* for good.

`close` ends the node cleanly: its leases are released (lapsed at once, token kept, so
that the next holder's token is higher), the node row marked stopped.

The registry has one connection of its own (a busy pool never delays a heartbeat),
reconnected after a failure; every statement has a timeout.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from ..core.leases import (
    NodeView,
    PoolClaim,
    fence_at,
    fence_margin,
    heartbeat_interval,
    lease_pool,
    may_register,
    pool_lease,
    refusal,
)
from ..errors import Conflict
from ..logs import get_logger

log = get_logger("hitcall.cluster")

Connect = Callable[[], Awaitable[asyncpg.Connection]]
LostListener = Callable[[str, str], None]  # (pool, reason)
TakenListener = Callable[[PoolClaim], None]
FencedListener = Callable[[str], None]  # reason

_DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class NodeLive(Conflict):
    code = "node_live"


def _pid_alive(pid: int, mine: int) -> bool:
    """Is process `pid` of this host running (another process than this one)?"""
    if pid == mine:
        return False  # this process: the earlier run had the same pid (a container's pid 1)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists (another user's)
    return True


_REGISTER = """
INSERT INTO nodes AS n (node_id, instance, host, pid, pools, lease_until)
VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
ON CONFLICT (node_id) DO UPDATE SET
    instance = EXCLUDED.instance, host = EXCLUDED.host, pid = EXCLUDED.pid, pools = EXCLUDED.pools,
    started_at = now(), heartbeat_at = now(), lease_until = EXCLUDED.lease_until, stopped_at = NULL
WHERE n.instance = EXCLUDED.instance OR n.stopped_at IS NOT NULL OR n.lease_until <= now()
RETURNING node_id
"""
_NODE = "SELECT node_id, instance, host, pid, lease_until, stopped_at, now() AS db_now FROM nodes WHERE node_id = $1"
# Registered in place of a previous run known dead ($7: the instance that was examined).
_REPLACE = """
UPDATE nodes SET instance = $2, host = $3, pid = $4, pools = $5, started_at = now(), heartbeat_at = now(),
    lease_until = now() + make_interval(secs => $6), stopped_at = NULL
WHERE node_id = $1 AND instance = $7
RETURNING node_id
"""
# The node row and every lease this run holds (name, token), in one statement. A lease is
# renewed only while it has this node and token: one another node took is not.
_HEARTBEAT = """
WITH me AS (
    UPDATE nodes SET heartbeat_at = now(), lease_until = now() + make_interval(secs => $3)
    WHERE node_id = $1 AND instance = $2 AND stopped_at IS NULL
    RETURNING node_id, lease_until
), renewed AS (
    UPDATE leases l SET lease_until = me.lease_until
    FROM me, unnest($4::text[], $5::bigint[]) AS v(name, token)
    WHERE l.name = v.name AND l.node_id = me.node_id AND l.token = v.token
    RETURNING l.name
)
SELECT EXISTS (SELECT 1 FROM me) AS node_ok, ARRAY(SELECT name FROM renewed) AS renewed
"""
# Take a lease (`core.leases.may_take` / `next_token`): free, this node's own, or its
# holder's lease lapsed; only while this run's node row is live. $5: the token this run
# holds it with (NULL: none), kept only while that lease is live. $6: a pool taken over only
# from a holder that is gone (never one nobody ever held: that is its own node's to take).
_TAKE = """
WITH me AS (
    SELECT node_id FROM nodes
    WHERE node_id = $1 AND instance = $2 AND stopped_at IS NULL AND lease_until > now()
)
INSERT INTO leases AS l (name, node_id, token, lease_until, acquired_at)
SELECT $3, me.node_id, 1, now() + make_interval(secs => $4), now() FROM me
WHERE NOT $6 OR EXISTS (SELECT 1 FROM leases WHERE name = $3)
ON CONFLICT (name) DO UPDATE SET
    token = CASE WHEN l.node_id = EXCLUDED.node_id AND l.lease_until > now() AND l.token = $5
                 THEN l.token ELSE l.token + 1 END,
    acquired_at = CASE WHEN l.node_id = EXCLUDED.node_id AND l.lease_until > now() AND l.token = $5
                       THEN l.acquired_at ELSE now() END,
    node_id = EXCLUDED.node_id,
    lease_until = EXCLUDED.lease_until
WHERE l.node_id = EXCLUDED.node_id OR l.lease_until <= now()
RETURNING token
"""
# Released: lapsed at once; the row and its token stay, so the next holder's token is higher.
_RELEASE = """
UPDATE leases SET lease_until = least(lease_until, now())
FROM unnest($2::text[], $3::bigint[]) AS v(name, token)
WHERE leases.name = v.name AND leases.node_id = $1 AND leases.token = v.token
"""
_STOP = """
UPDATE nodes SET stopped_at = now(), lease_until = least(lease_until, now())
WHERE node_id = $1 AND instance = $2
"""
_HOLDER = "SELECT node_id, token, lease_until, now() AS db_now FROM leases WHERE name = $1"


@dataclass
class NodeIdentity:
    node_id: str
    pools: tuple[str, ...]  # the pools it may drive, home first
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    instance: uuid.UUID = field(default_factory=uuid.uuid4)


class NodeRegistry:
    """This node's row and the pool leases it holds; see the module's description."""

    def __init__(
        self,
        connect: Connect,
        identity: NodeIdentity,
        *,
        lease_s: float = 10.0,
        margin_s: float | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._connect = connect
        self.identity = identity
        self.lease_s = lease_s
        self.margin_s = fence_margin(lease_s) if margin_s is None else margin_s
        self.interval_s = heartbeat_interval(lease_s)
        self._clock = clock
        self.held: dict[str, int] = {}  # pool -> token
        self.wanted: list[str] = []  # pools to take whenever they are free
        self._takeover: set[str] = set()  # of those, the ones taken only from a gone holder
        self.fenced: str | None = None  # why this node holds nothing right now (None: not fenced)
        self.displaced: str | None = None  # another run took this node id: for good
        self.registered = False
        self.last_renewed: float | None = None  # monotonic time the last good renewal was sent
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._fence_timer: asyncio.TimerHandle | None = None
        self._lost: list[LostListener] = []
        self._taken: list[TakenListener] = []
        self._fenced_listeners: list[FencedListener] = []

    @property
    def node_id(self) -> str:
        return self.identity.node_id

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    # ---------------------------------------------------------- listeners ---
    def on_lost(self, fn: LostListener) -> None:
        """Called (pool, reason) when a pool lease this node held is lost: taken by another
        node, not renewed in time (fenced), or the node displaced."""
        self._lost.append(fn)

    def on_taken(self, fn: TakenListener) -> None:
        """Called with the claim when the heartbeat takes a wanted pool."""
        self._taken.append(fn)

    def on_fenced(self, fn: FencedListener) -> None:
        """Called with the reason when the node fences itself (or is displaced)."""
        self._fenced_listeners.append(fn)

    # --------------------------------------------------------------- views ---
    def token(self, pool: str) -> int | None:
        return self.held.get(pool)

    def claim(self, pool: str) -> PoolClaim | None:
        token = self.held.get(pool)
        return None if token is None else PoolClaim(pool, self.node_id, token)

    # ---------------------------------------------------------- database ---
    async def _db(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncio.wait_for(self._connect(), self.interval_s)
            await self._conn.execute(
                "SELECT set_config('application_name', $1, false)", f"hitcall-node {self.node_id}"[:63]
            )
        return self._conn

    async def _drop_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    # ---------------------------------------------------------------- life ---
    async def register(self) -> None:
        """Write this node's row (and start the heartbeat), or raise `NodeLive` naming the
        process that runs under this node id."""
        i = self.identity
        async with self._lock:
            conn = await self._db()
            sent = self._now()
            got = await conn.fetchval(
                _REGISTER, i.node_id, i.instance, i.host, i.pid, list(i.pools), self.lease_s, timeout=self.interval_s
            )
            if got is None:
                row = await conn.fetchrow(_NODE, i.node_id)
                assert row is not None  # the conflict found it
                view = NodeView(
                    row["node_id"], str(row["instance"]), row["host"], row["pid"], row["lease_until"], row["stopped_at"]
                )
                now: datetime = row["db_now"]
                dead = view.host == i.host and not _pid_alive(view.pid, i.pid)
                if not may_register(view, str(i.instance), now, previous_dead=dead):
                    await self._drop_conn()
                    raise NodeLive(
                        refusal(view, now), details={"node_id": i.node_id, "host": view.host, "pid": view.pid}
                    )
                got = await conn.fetchval(
                    _REPLACE,
                    i.node_id,
                    i.instance,
                    i.host,
                    i.pid,
                    list(i.pools),
                    self.lease_s,
                    row["instance"],
                    timeout=self.interval_s,
                )
                if got is None:
                    raise NodeLive(f"node {i.node_id} could not register; try again", details={"node_id": i.node_id})
                log.warning("node.replaced_dead_run", node_id=i.node_id, host=view.host, pid=view.pid)
        self.registered = True
        self._renewed(sent)
        log.info(
            "node.registered", node_id=i.node_id, host=i.host, pid=i.pid, pools=list(i.pools), lease_s=self.lease_s
        )
        self._task = asyncio.create_task(self._heartbeat_loop(), name="node-heartbeat")

    async def close(self) -> None:
        """A clean stop: the heartbeat ends, the leases are released, the node row stopped."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._fence_timer is not None:
            self._fence_timer.cancel()
            self._fence_timer = None
        held, self.held = dict(self.held), {}
        await self._drop_conn()  # a heartbeat cancelled mid-statement may have left it unusable
        if self.registered and self.displaced is None:
            try:
                async with self._lock:
                    conn = await self._db()
                    names = [pool_lease(p) for p in held]
                    await conn.execute(_RELEASE, self.node_id, names, list(held.values()), timeout=5)
                    await conn.execute(_STOP, self.node_id, self.identity.instance, timeout=5)
                log.info("node.stopped", node_id=self.node_id, released=sorted(held))
            except _DB_ERRORS as exc:  # the leases lapse on their own
                log.warning("node.stop_unwritten", node_id=self.node_id, error=str(exc))
        self.registered = False
        await self._drop_conn()

    # ---------------------------------------------------------------- pools ---
    def want(self, pool: str, *, takeover: bool = False) -> None:
        """Take `pool` whenever it is free (tried at every heartbeat); `takeover`: only from
        a holder that is gone (a pool nobody ever held is left to its own node)."""
        if pool not in self.wanted:
            self.wanted.append(pool)
        if takeover:
            self._takeover.add(pool)

    async def take(self, pool: str, *, takeover: bool = False) -> PoolClaim | None:
        """Take (or keep) the pool's lease: its claim, or None while another live node holds
        it (or this node is fenced and its row not live; `takeover`: or nobody ever held it)."""
        if self.displaced is not None:
            return None
        async with self._lock:
            conn = await self._db()
            token = await conn.fetchval(
                _TAKE,
                self.node_id,
                self.identity.instance,
                pool_lease(pool),
                self.lease_s,
                self.held.get(pool),
                takeover,
                timeout=self.interval_s,
            )
        if token is None:
            return None
        before = self.held.get(pool)
        self.held[pool] = token
        if before != token:
            log.info("node.pool_taken", node_id=self.node_id, pool=pool, token=token)
        return PoolClaim(pool, self.node_id, token)

    async def release(self, pool: str) -> None:
        """Give the pool's lease up (lapsed at once: another node may take it)."""
        token = self.held.pop(pool, None)
        if token is None:
            return
        async with self._lock:
            conn = await self._db()
            await conn.execute(_RELEASE, self.node_id, [pool_lease(pool)], [token], timeout=self.interval_s)
        log.info("node.pool_released", node_id=self.node_id, pool=pool, token=token)

    async def holder(self, pool: str) -> tuple[str, int, float] | None:
        """Who holds the pool's lease: (node id, token, seconds left), or None when nobody."""
        async with self._lock:
            conn = await self._db()
            row = await conn.fetchrow(_HOLDER, pool_lease(pool), timeout=self.interval_s)
        if row is None or row["lease_until"] <= row["db_now"]:
            return None
        return row["node_id"], row["token"], (row["lease_until"] - row["db_now"]).total_seconds()

    # ------------------------------------------------------------ heartbeat ---
    async def heartbeat(self) -> None:
        """Renew the node row and the held leases (one statement); a lease not renewed is
        lost. Then try the wanted pools not held."""
        if self.displaced is not None:
            return
        sent_held = dict(self.held)
        names = [pool_lease(p) for p in sent_held]
        tokens = list(sent_held.values())
        async with self._lock:
            conn = await self._db()
            sent = self._now()
            row = await conn.fetchrow(
                _HEARTBEAT,
                self.node_id,
                self.identity.instance,
                self.lease_s,
                names,
                tokens,
                timeout=self.interval_s,
            )
        assert row is not None
        if not row["node_ok"]:
            self._displace(f"node {self.node_id} was registered by another process")
            return
        self._renewed(sent)
        renewed = {lease_pool(n) for n in row["renewed"]}
        for pool, token in sent_held.items():
            if pool not in renewed and self.held.get(pool) == token:
                self._lose(pool, "the pool's lease was taken by another node")
        if self.fenced is not None:
            log.warning("node.unfenced", node_id=self.node_id, was=self.fenced)
            self.fenced = None
        for pool in self.wanted:
            if pool not in self.held:
                claim = await self.take(pool, takeover=pool in self._takeover)
                if claim is not None:
                    for fn in self._taken:
                        self._call(fn, claim)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.heartbeat()
            except _DB_ERRORS as exc:
                log.warning("node.heartbeat_failed", node_id=self.node_id, error=str(exc) or type(exc).__name__)
                await self._drop_conn()
            except Exception:
                log.exception("node.heartbeat_error", node_id=self.node_id)
                await self._drop_conn()
            if self.displaced is not None:
                return

    def _renewed(self, sent: float) -> None:
        """A renewal sent at `sent` succeeded: the fence deadline moves on."""
        self.last_renewed = sent
        if self._fence_timer is not None:
            self._fence_timer.cancel()
        deadline = fence_at(sent, self.lease_s, self.margin_s)
        loop = asyncio.get_running_loop()
        self._fence_timer = loop.call_later(max(0.0, deadline - self._now()), self._fence_due)

    def _fence_due(self) -> None:
        self._fence_timer = None
        self.fence(f"no lease renewal for {self.lease_s - self.margin_s:.1f} s (the database is unreachable?)")

    def fence(self, reason: str) -> None:
        """Stop everything this node does under its leases: each pool is lost, listeners told."""
        if self.fenced is None:
            log.error("node.fenced", node_id=self.node_id, reason=reason, pools=sorted(self.held))
        self.fenced = reason
        for pool in list(self.held):
            self._lose(pool, f"fenced: {reason}")
        for fn in self._fenced_listeners:
            self._call(fn, reason)

    def _displace(self, reason: str) -> None:
        self.displaced = reason
        if self._fence_timer is not None:
            self._fence_timer.cancel()
            self._fence_timer = None
        self.fence(reason)

    def _lose(self, pool: str, reason: str) -> None:
        if self.held.pop(pool, None) is None:
            return
        log.error("node.pool_lost", node_id=self.node_id, pool=pool, reason=reason)
        for fn in self._lost:
            self._call(fn, pool, reason)

    @staticmethod
    def _call(fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("node.listener_failed", listener=getattr(fn, "__qualname__", str(fn)))
