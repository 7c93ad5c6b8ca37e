"""Live screens across nodes: the domain events one node publishes reach the live bus of
every other node through PostgreSQL's NOTIFY.

An agent's browser may be served by any node (behind a load balancer) while the agent's
phone is driven by another; a wallboard shows the agents of every server. Each node's
`LiveRelay` sends the events its own journal and pacer publish (a batch every
`flush_s`, as few NOTIFY payloads as fit in PostgreSQL's 8000-byte limit) and
republishes on its own bus the events of the other nodes. Like the in-process bus it is
best effort: a notification lost while a listening connection was down is not sent
again (live screens reload their view when their stream reconnects); the webhook outbox
stays the durable record. Nothing here opens a connection anywhere but to the database.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import asyncpg

from ..logs import get_logger
from .listen import Listener

log = get_logger("hitcall.cluster.live")

LIVE_CHANNEL = "hitcall_live"
MAX_PAYLOAD = 7900  # PostgreSQL refuses NOTIFY payloads of 8000 bytes and more

Connect = Callable[[], Awaitable[asyncpg.Connection]]


class Publisher(Protocol):
    def publish(self, event_type: str, subject: str, payload: dict[str, Any]) -> None: ...


def pack(node_id: str, events: list[tuple[str, str, dict[str, Any]]]) -> tuple[list[str], int]:
    """The NOTIFY payloads for `events`, in order, each under MAX_PAYLOAD bytes, and how
    many events were too large to send at all."""
    out: list[str] = []
    head = json.dumps({"node": node_id, "events": []}, separators=(",", ":"))
    budget = MAX_PAYLOAD - len(head.encode())
    batch: list[str] = []
    size = 0
    too_large = 0
    for event in events:
        item = json.dumps(list(event), separators=(",", ":"), default=str)
        n = len(item.encode()) + 1  # and its comma
        if n > budget:
            too_large += 1
            continue
        if size + n > budget:
            out.append(_payload(node_id, batch))
            batch, size = [], 0
        batch.append(item)
        size += n
    if batch:
        out.append(_payload(node_id, batch))
    return out, too_large


def _payload(node_id: str, items: list[str]) -> str:
    return '{"node":' + json.dumps(node_id) + ',"events":[' + ",".join(items) + "]}"


def unpack(payload: str, own_node: str) -> list[tuple[str, str, dict[str, Any]]]:
    """The events of another node's payload ([] for this node's own or an unreadable one)."""
    try:
        doc = json.loads(payload)
        if doc.get("node") == own_node:
            return []
        return [(str(t), str(s), p) for t, s, p in doc["events"] if isinstance(p, dict)]
    except (ValueError, TypeError, KeyError, AttributeError):
        log.warning("live_relay.unreadable", size=len(payload))
        return []


class LiveRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        connect: Connect,
        bus: Publisher,
        node_id: str,
        *,
        flush_s: float = 0.05,
        max_queue: int = 10_000,
    ) -> None:
        self.pool = pool
        self._connect = connect
        self.bus = bus
        self.node_id = node_id
        self.flush_s = flush_s
        self.max_queue = max_queue
        self._queue: list[tuple[str, str, dict[str, Any]]] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._listener = Listener(connect, {LIVE_CHANNEL: self._on_notify}, name="live_relay")
        self.listening = self._listener.listening
        self.sent = self.received = self.dropped = 0

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="live-relay-send"),
            asyncio.create_task(self._listener.run(), name="live-relay-listen"),
        ]

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        await self._listener.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ out ---
    def outgoing(self, event_type: str, subject: str, payload: dict[str, Any]) -> None:
        """An event this node published (a journal listener): sent to the others soon."""
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            return
        self._queue.append((event_type, subject, payload))
        self._wake.set()

    async def _send_loop(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.flush_s)  # gather what comes with it
            events, self._queue = self._queue, []
            if not events:
                continue
            payloads, too_large = pack(self.node_id, events)
            self.dropped += too_large
            try:
                async with self.pool.acquire() as conn:
                    for p in payloads:
                        await conn.execute("SELECT pg_notify($1, $2)", LIVE_CHANNEL, p)
                self.sent += len(events) - too_large
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self.dropped += len(events) - too_large  # best effort: the outbox keeps them
                log.debug("live_relay.send_failed", error=repr(exc), events=len(events))

    # ------------------------------------------------------------------- in ---
    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        for event_type, subject, body in unpack(str(payload), self.node_id):
            self.received += 1
            self.bus.publish(event_type, subject, body)
