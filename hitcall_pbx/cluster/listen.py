"""A connection of its own that LISTENs on PostgreSQL channels, opened again whenever it
breaks (the database restarted, the connection was cut), for the parts of a node that
are woken by other nodes: node commands and live events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg

from ..core.backoff import Backoff
from ..logs import get_logger

log = get_logger("hitcall.cluster.listen")

Connect = Callable[[], Awaitable[asyncpg.Connection]]
Callback = Callable[[Any, int, str, object], None]  # asyncpg's listener: connection, pid, channel, payload


class Listener:
    def __init__(
        self,
        connect: Connect,
        channels: Mapping[str, Callback],
        *,
        name: str,
        keepalive_s: float = 10.0,
        on_up: Callable[[], None] | None = None,
    ) -> None:
        self._connect = connect
        self.channels = dict(channels)
        self.name = name
        self.keepalive_s = keepalive_s
        self.on_up = on_up  # called each time it listens (again): what was notified meanwhile is lost
        self.listening = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._closing = False
        self._backoff = Backoff(base=0.2, cap=5.0)

    async def run(self) -> None:
        """Listen until `close`; a broken connection is replaced after a backoff."""
        attempt = 0
        while not self._closing:
            lost = asyncio.Event()
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                for channel, callback in self.channels.items():
                    await conn.add_listener(channel, callback)
                self._conn = conn
                self.listening.set()
                attempt = 0
                if self.on_up is not None:
                    self.on_up()
                while not self._closing and not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), self.keepalive_s)
                    if not lost.is_set() and not self._closing:
                        await asyncio.wait_for(conn.execute("SELECT 1"), self.keepalive_s)
            except Exception as exc:
                if not self._closing:
                    log.warning("listen.failed", listener=self.name, error=repr(exc))
            finally:
                self.listening.clear()
                if conn is not None and conn is self._conn:
                    self._conn = None
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            if not self._closing:
                await asyncio.sleep(self._backoff.delay(attempt))
                attempt += 1

    async def close(self) -> None:
        """Stop listening; `run` returns."""
        self._closing = True
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2.0)
