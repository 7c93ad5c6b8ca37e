"""Small helpers for column-list INSERT / UPDATE statements over whitelisted columns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

from ...store.db import Executor

# A pool, a connection or a pool's connection proxy (what `pool.acquire()` hands out).
Conn: TypeAlias = Executor


def _check(table: str, data: Mapping[str, Any], allowed: Iterable[str]) -> list[str]:
    cols = list(data)
    unknown = set(cols) - set(allowed)
    if unknown:
        raise ValueError(f"{table}: columns not writable: {sorted(unknown)}")
    return cols


async def insert(conn: Conn, table: str, data: Mapping[str, Any], allowed: Iterable[str]) -> int:
    cols = _check(table, data, allowed)
    if not cols:
        return await conn.fetchval(f"INSERT INTO {table} DEFAULT VALUES RETURNING id")
    marks = ", ".join(f"${i + 1}" for i in range(len(cols)))
    return await conn.fetchval(
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks}) RETURNING id", *(data[c] for c in cols)
    )


async def update(conn: Conn, table: str, row_id: int, data: Mapping[str, Any], allowed: Iterable[str]) -> bool:
    """Update one row by id; False when it does not exist."""
    cols = _check(table, data, allowed)
    if not cols:
        return bool(await conn.fetchval(f"SELECT true FROM {table} WHERE id = $1", row_id))
    sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(cols))
    status = await conn.execute(f"UPDATE {table} SET {sets} WHERE id = $1", row_id, *(data[c] for c in cols))
    return status.endswith(" 1")


async def delete(conn: Conn, table: str, row_id: int) -> bool:
    status = await conn.execute(f"DELETE FROM {table} WHERE id = $1", row_id)
    return status.endswith(" 1")
