"""The node registry and pool leases on a real PostgreSQL: one process per node id while it
is live (the refusal names host and pid), pool leases taken only from a lapsed holder and
with the next fencing token, renewals keep the token, a node cut off from the database
fences itself before its lease can lapse, and `hitcall nodes` shows it all."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from hitcall_pbx.cluster import NodeIdentity, NodeLive, NodeRegistry
from hitcall_pbx.core.leases import PoolClaim

from ..conftest import as_service
from ..live import wait_until

LEASE_S = 3.0


class Node:
    """One node's registry on its own connections, which the test can cut off and restore."""

    def __init__(self, dsn: str, node_id: str, pools: tuple[str, ...] = ("main",), **identity: object) -> None:
        self.dsn = dsn
        self.cut_off = False
        self.lost: list[tuple[str, str]] = []
        self.fenced: list[tuple[float, str]] = []
        self.taken: list[PoolClaim] = []
        self.registry = NodeRegistry(self._connect, NodeIdentity(node_id, pools, **identity), lease_s=LEASE_S)  # type: ignore[arg-type]
        self.registry.on_lost(lambda pool, why: self.lost.append((pool, why)))
        self.registry.on_fenced(lambda why: self.fenced.append((time.monotonic(), why)))
        self.registry.on_taken(self.taken.append)

    async def _connect(self) -> asyncpg.Connection:
        if self.cut_off:
            raise ConnectionRefusedError("cut off from PostgreSQL")
        return await asyncpg.connect(self.dsn)

    async def cut(self, admin: asyncpg.Connection) -> None:
        """The node loses PostgreSQL: its connection is killed, it cannot connect again."""
        self.cut_off = True
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            f"hitcall-node {self.registry.node_id}",
        )

    async def crash(self) -> None:
        """kill -9: nothing is released, nothing renewed any more."""
        r = self.registry
        if r._task is not None:
            r._task.cancel()
        if r._fence_timer is not None:
            r._fence_timer.cancel()
        await r._drop_conn()


@pytest.fixture
async def dsn(pg_dsn: str, db: asyncpg.Pool) -> str:
    return as_service(pg_dsn, await db.fetchval("SELECT current_database()"))


@pytest.fixture
async def admin(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg_dsn)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def nodes(dsn: str) -> AsyncIterator[Callable[..., Node]]:
    made: list[Node] = []

    def make(node_id: str, pools: tuple[str, ...] = ("main",), **identity: object) -> Node:
        node = Node(dsn, node_id, pools, **identity)
        made.append(node)
        return node

    yield make
    for node in made:
        await node.crash()


async def test_the_same_node_id_is_refused_while_live_and_the_refusal_names_host_and_pid(
    db: asyncpg.Pool, nodes: Callable[..., Node]
) -> None:
    first = nodes("n1", host="box-a", pid=1111)
    await first.registry.register()
    second = nodes("n1", host="box-b", pid=2222)
    with pytest.raises(NodeLive) as err:
        await second.registry.register()
    line = err.value.message
    assert "node n1 is live under another process (host box-a, pid 1111" in line, line
    assert err.value.status == 409 and "\n" not in line
    row = await db.fetchrow("SELECT host, pid, stopped_at FROM nodes WHERE node_id = 'n1'")
    assert (row["host"], row["pid"], row["stopped_at"]) == ("box-a", 1111, None), "the live node's row is untouched"

    # A clean stop: the next run registers at once.
    await first.registry.close()
    assert await db.fetchval("SELECT stopped_at IS NOT NULL AND lease_until <= now() FROM nodes") is True
    await second.registry.register()
    assert await db.fetchval("SELECT pid FROM nodes WHERE node_id = 'n1'") == 2222

    # A crash: refused until the lease lapses, then registered.
    await second.crash()
    third = nodes("n1", host="box-c", pid=3333)
    with pytest.raises(NodeLive, match="pid 2222"):
        await third.registry.register()
    await asyncio.sleep(LEASE_S)
    await third.registry.register()
    assert await db.fetchval("SELECT host FROM nodes WHERE node_id = 'n1'") == "box-c"


async def test_a_lapsed_holders_pool_lease_is_taken_with_the_next_token(
    db: asyncpg.Pool, nodes: Callable[..., Node]
) -> None:
    a, b = nodes("node-a"), nodes("node-b")
    await a.registry.register()
    await b.registry.register()
    claim = await a.registry.take("main")
    assert claim == PoolClaim("main", "node-a", 1)
    assert await b.registry.take("main") is None, "a live holder keeps its pool"

    # Renewals (heartbeats, a second take by the holder) keep the token.
    await a.registry.heartbeat()
    assert await a.registry.take("main") == claim and a.registry.token("main") == 1
    until_before = await db.fetchval("SELECT lease_until FROM leases WHERE name = 'pool:main'")
    await asyncio.sleep(0.2)
    await a.registry.heartbeat()
    assert await db.fetchval("SELECT lease_until FROM leases WHERE name = 'pool:main'") > until_before

    # node-a dies: node-b takes the pool once the lease lapsed, with token 2.
    await a.crash()
    died = time.monotonic()
    b.registry.want("main")
    await wait_until(lambda: b.taken, timeout=LEASE_S * 3, interval=0.05)
    took_s = time.monotonic() - died
    assert b.taken == [PoolClaim("main", "node-b", 2)] and b.registry.token("main") == 2
    assert LEASE_S * 0.9 <= took_s <= LEASE_S + b.registry.interval_s + 1.0, took_s
    row = await db.fetchrow("SELECT node_id, token FROM leases WHERE name = 'pool:main'")
    assert (row["node_id"], row["token"]) == ("node-b", 2)

    # The old holder's next heartbeat finds the lease gone: lost, never renewed under token 1.
    await a.registry.heartbeat()
    assert a.lost and a.lost[0][0] == "main" and "taken by another node" in a.lost[0][1]
    assert a.registry.token("main") is None and a.registry.claim("main") is None
    assert await db.fetchval("SELECT node_id FROM leases WHERE name = 'pool:main'") == "node-b"


async def test_a_released_lease_is_free_at_once_and_the_next_holder_gets_a_higher_token(
    db: asyncpg.Pool, nodes: Callable[..., Node]
) -> None:
    a, b = nodes("node-a"), nodes("node-b")
    await a.registry.register()
    await b.registry.register()
    assert (await a.registry.take("main")).token == 1  # type: ignore[union-attr]
    await a.registry.release("main")
    assert (await b.registry.take("main")).token == 2  # type: ignore[union-attr]
    await b.registry.close()  # a clean stop releases its leases
    assert (await a.registry.take("main")).token == 3  # type: ignore[union-attr]
    assert await db.fetchval("SELECT stopped_at IS NOT NULL FROM nodes WHERE node_id = 'node-b'")


async def test_a_node_cut_off_from_the_database_fences_itself_before_its_lease_lapses(
    db: asyncpg.Pool, admin: asyncpg.Connection, nodes: Callable[..., Node]
) -> None:
    a, b = nodes("node-a"), nodes("node-b")
    await a.registry.register()
    a.registry.want("main")
    await a.registry.take("main")
    await b.registry.register()
    b.registry.want("main")
    await a.registry.heartbeat()
    renewed = a.registry.last_renewed
    assert renewed is not None
    lease_until = await db.fetchval("SELECT lease_until FROM leases WHERE name = 'pool:main'")

    await a.cut(admin)
    await wait_until(lambda: a.fenced, timeout=LEASE_S * 2, interval=0.02)
    fenced_at, why = a.fenced[0]
    # fenced on its own clock at lease - margin after the last renewal it sent ...
    loop_now, mono_now = asyncio.get_running_loop().time(), time.monotonic()
    expected = renewed + LEASE_S - a.registry.margin_s
    assert abs((fenced_at - mono_now) - (expected - loop_now)) < 0.5, (fenced_at - mono_now, expected - loop_now)
    assert "no lease renewal" in why and a.lost and a.lost[0][0] == "main"
    assert a.registry.claim("main") is None
    # ... while the database still counted its lease: nobody could have taken the pool yet.
    assert await db.fetchval("SELECT $1::timestamptz > now()", lease_until)
    assert await db.fetchval("SELECT node_id FROM leases WHERE name = 'pool:main'") == "node-a"

    # node-b takes the pool once the lease lapsed (token 2).
    await wait_until(lambda: b.taken, timeout=LEASE_S * 3, interval=0.05)
    assert b.taken[0].token == 2

    # node-a back on the database: live again, but the pool stays node-b's.
    a.cut_off = False
    await wait_until(lambda: a.registry.fenced is None, timeout=LEASE_S * 3, interval=0.05)
    await asyncio.sleep(a.registry.interval_s * 1.5)
    assert a.registry.claim("main") is None and not a.taken
    assert await db.fetchval("SELECT node_id FROM leases WHERE name = 'pool:main'") == "node-b"
    assert await db.fetchval("SELECT lease_until > now() FROM nodes WHERE node_id = 'node-a'")


async def test_hitcall_nodes_lists_nodes_and_leases(
    db: asyncpg.Pool, dsn: str, nodes: Callable[..., Node], tmp_path
) -> None:
    a, gone = nodes("node-a", ("main", "ast2"), host="box-a", pid=4321), nodes("node-z", host="box-z", pid=99)
    await a.registry.register()
    await a.registry.take("main")
    await gone.registry.register()
    await gone.registry.take("ast9")
    await gone.crash()
    await db.execute("UPDATE nodes SET lease_until = now() WHERE node_id = 'node-z'")
    await db.execute("UPDATE leases SET lease_until = now() WHERE node_id = 'node-z'")

    env = {k: v for k, v in os.environ.items() if not k.startswith("HITCALL_") and k != "DATABASE_URL"}
    env.update({"DATABASE_URL": dsn, "HITCALL_DATA_DIR": str(tmp_path), "HITCALL_LOG_LEVEL": "WARNING"})

    def hitcall(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hitcall_pbx.cli", "nodes", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    out = await asyncio.to_thread(hitcall)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    node_a = next(line.split() for line in lines if line.startswith("node-a "))
    assert node_a[:6] == ["node-a", "live", "box-a", "4321", "main,ast2", "main"], node_a
    assert 0 < float(node_a[6]) <= LEASE_S
    node_z = next(line.split() for line in lines if line.startswith("node-z "))
    assert node_z[:5] == ["node-z", "gone", "box-z", "99", "main"] and node_z[5] == "-"
    lease_main = next(line.split() for line in lines if line.startswith("pool:main "))
    assert lease_main[:4] == ["pool:main", "node-a", "1", "live"]
    lease_ast9 = next(line.split() for line in lines if line.startswith("pool:ast9 "))
    assert lease_ast9[:4] == ["pool:ast9", "node-z", "1", "lapsed"]

    as_json = await asyncio.to_thread(hitcall, "--json", "--node", "node-a")
    assert as_json.returncode == 0, as_json.stderr
    view = json.loads(as_json.stdout)
    assert [n["node_id"] for n in view["nodes"]] == ["node-a"] and view["nodes"][0]["holds"] == ["main"]
    assert [(lease["name"], lease["token"]) for lease in view["leases"]] == [("pool:main", 1)]

    for bad, says in ((("--node", "bad id"), "is not a node id"), (("--node", "nobody"), "no node nobody")):
        proc = await asyncio.to_thread(hitcall, *bad)
        assert proc.returncode == 1, proc
        err = proc.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("hitcall nodes: ") and says in err[0], proc.stderr


async def test_a_run_killed_on_this_host_is_replaced_at_once_and_its_pools_taken_with_the_next_token(
    db: asyncpg.Pool, nodes: Callable[..., Node]
) -> None:
    proc = subprocess.Popen(["true"])  # a pid of this host that no longer runs
    proc.wait()
    killed = nodes("n1", pid=proc.pid)  # this host, as `hitcall serve` killed with SIGKILL
    await killed.registry.register()
    assert (await killed.registry.take("main")).token == 1  # type: ignore[union-attr]
    await killed.crash()

    restarted = nodes("n1")  # this host, this (live) pid
    await restarted.registry.register()  # no wait for the lease
    assert await db.fetchval("SELECT pid FROM nodes WHERE node_id = 'n1'") == os.getpid()
    assert (await restarted.registry.take("main")).token == 2  # type: ignore[union-attr]
    # The killed run, were it still running, is displaced: its heartbeat fences it.
    await killed.registry.heartbeat()
    assert killed.registry.displaced and killed.fenced

    # A live process on this host under the same node id is refused like any other.
    other = nodes("n1", pid=1)
    with pytest.raises(NodeLive, match=f"pid {os.getpid()}"):
        await other.registry.register()
    assert other.registry.registered is False


async def test_a_takeover_pool_is_taken_only_from_a_holder_that_is_gone(
    db: asyncpg.Pool, nodes: Callable[..., Node]
) -> None:
    a, b = nodes("node-a", ("ast2",)), nodes("node-b", ("main", "ast2"))
    await b.registry.register()
    assert await b.registry.take("ast2", takeover=True) is None, "nobody ever held ast2: its own node takes it"
    await a.registry.register()
    assert (await a.registry.take("ast2")).token == 1  # type: ignore[union-attr]
    assert await b.registry.take("ast2", takeover=True) is None, "its node is live"
    await a.crash()
    await db.execute("UPDATE leases SET lease_until = now() WHERE node_id = 'node-a'")
    assert (await b.registry.take("ast2", takeover=True)).token == 2  # type: ignore[union-attr]
