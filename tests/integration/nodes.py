"""Several nodes on one test database: each `NodeDb` is one node's own connection pool, as a
separate `hitcall serve` process has, tagged with the node's name (application_name).
`cut()` is that node losing PostgreSQL: its sessions are killed and it cannot connect again
until `restore()`; the other nodes' sessions are untouched."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from tests.conftest import as_service


class NodeDb:
    def __init__(self, pg_dsn: str, database: str, name: str) -> None:
        self.name = name
        self.refused = False
        self._pg_dsn = pg_dsn
        self._dsn = as_service(pg_dsn, database)
        self.pool: asyncpg.Pool | None = None

    @classmethod
    async def open(cls, pg_dsn: str, db: asyncpg.Pool, name: str) -> NodeDb:
        """A node on the database `db` is connected to."""
        node = cls(pg_dsn, await db.fetchval("SELECT current_database()"), name)
        node.pool = await asyncpg.create_pool(
            node._dsn,
            min_size=1,
            max_size=5,
            connect=node._connect,
            init=_json_codecs,
            server_settings={"application_name": name},
        )
        return node

    async def _connect(self, *args: Any, **kwargs: Any) -> asyncpg.Connection:
        if self.refused:
            raise ConnectionRefusedError(f"{self.name} is cut off from PostgreSQL")
        return await asyncpg.connect(*args, **kwargs)

    async def cut(self) -> int:
        """Kill the node's sessions and refuse new ones; returns how many were killed."""
        self.refused = True
        admin = await asyncpg.connect(self._pg_dsn)
        try:
            return len(
                await admin.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", self.name
                )
            )
        finally:
            await admin.close()

    def restore(self) -> None:
        self.refused = False

    async def close(self) -> None:
        if self.pool is None:
            return
        if self.refused:
            self.pool.terminate()
        else:
            await self.pool.close()


async def _json_codecs(conn: asyncpg.Connection) -> None:
    """json/jsonb as Python objects, as the service's pools have them (store.db)."""
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog", format="text")


@contextlib.asynccontextmanager
async def two_nodes(pg_dsn: str, db: asyncpg.Pool) -> AsyncIterator[tuple[NodeDb, NodeDb]]:
    """node-a and node-b on the database `db` is connected to, closed afterwards."""
    a = await NodeDb.open(pg_dsn, db, "node-a")
    b = await NodeDb.open(pg_dsn, db, "node-b")
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()
