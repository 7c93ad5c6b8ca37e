"""Webhooks from several nodes: each outbox event is delivered once across nodes.

Two `WebhookDispatcher`s on two pools of their own (two nodes, as two processes) deliver
to one real receiver on 127.0.0.1. A delivery is claimed with ``FOR UPDATE SKIP LOCKED``
and leased (its ``next_attempt_at`` moved past request timeout + 30 s); the lease is the
fencing token of the result update. Leases are on the database's clock, so a node whose
own clock is off neither takes over a delivery in flight nor waits too long.

The contract when a node dies mid-delivery is *at least once*: the attempt whose result
was never written is made again by another node once the claim's lease lapses, with the
same event id (the ``webhook-id`` header and the body's ``id``). A receiver that got the
first request too sees the event twice and de-duplicates on that id.
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import pytest

from hitcall_pbx.hooks import WebhookDispatcher, enqueue, generate_secret
from hitcall_pbx.hooks.dispatcher import DatabaseClock
from tests.integration.nodes import NodeDb, two_nodes
from tests.webhook_receiver import ALLOW_LOOPBACK, Receiver

REQUEST_TIMEOUT = 5.0
LEASE_S = REQUEST_TIMEOUT + 30.0  # the dispatcher's claim lease


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def nodes(pg_dsn, db) -> AsyncIterator[tuple[NodeDb, NodeDb]]:
    async with two_nodes(pg_dsn, db) as pair:
        yield pair


@pytest.fixture
async def receivers() -> AsyncIterator:
    made: list[Receiver] = []

    async def make(db, event_types: list[str]) -> Receiver:
        secret = generate_secret()
        made.append(Receiver(secret))
        await made[-1].up()
        await db.execute(
            "INSERT INTO webhook_subscriptions (url, secret, event_types) VALUES ($1, $2, $3)",
            made[-1].url,
            secret,
            event_types,
        )
        return made[-1]

    yield make
    for r in made:
        r.hold = None
        await r.down()


def dispatcher(node: NodeDb, **kw) -> WebhookDispatcher:
    """The node's dispatcher; its requests carry X-Sender: <node> so the receiver tells them apart."""
    assert node.pool is not None
    session = functools.partial(aiohttp.ClientSession, headers={"X-Sender": node.name})
    return WebhookDispatcher(node.pool, session, request_timeout=REQUEST_TIMEOUT, address_policy=ALLOW_LOOPBACK, **kw)


async def emit(db, event_type: str, subject: str, seq: int) -> str:
    async with db.acquire() as conn, conn.transaction():
        return str(await enqueue(conn, event_type, subject, {"seq": seq}))


async def until(condition, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_two_nodes_deliver_every_event_exactly_once_in_order_sharing_the_work(db, nodes, receivers):
    crm = await receivers(db, ["*"])
    subjects = [f"call:{n}" for n in range(20)]
    ids: dict[str, list[str]] = {s: [] for s in subjects}
    for seq in range(10):
        for s in subjects:
            ids[s].append(await emit(db, "call.ended", s, seq))

    a, b = (dispatcher(n, poll_interval=0.05, concurrency=3) for n in nodes)
    await a.start()
    await b.start()
    try:
        # More events while both run, written by a third process.
        for seq in range(10, 13):
            for s in subjects:
                ids[s].append(await emit(db, "call.ended", s, seq))
        total = sum(len(v) for v in ids.values())
        await until(lambda: len(crm.accepted) >= total, timeout=60)
        await asyncio.sleep(0.5)  # anything sent twice would arrive now
    finally:
        await a.close()
        await b.close()

    assert total == 260
    assert crm.bad_signatures == 0 and crm.duplicates == 0
    assert crm.requests == total  # one request per event: no event was posted by both nodes
    assert Counter(e["id"] for e in crm.accepted) == Counter(i for s in subjects for i in ids[s])
    for s in subjects:
        assert crm.sequence(s) == list(range(13))  # the per-subject order holds across nodes
    assert set(crm.senders) == {"node-a", "node-b"} and min(crm.senders.values()) > 0  # both nodes delivered
    rows = await db.fetch("SELECT state, attempts FROM webhook_deliveries")
    assert len(rows) == total and {(r["state"], r["attempts"]) for r in rows} == {("delivered", 1)}


async def test_node_cancelled_mid_delivery_other_node_delivers_the_same_event_after_the_lease(db, nodes, receivers):
    clock = Clock()
    crm = await receivers(db, ["*"])
    crm.hold = asyncio.Event()  # the CRM takes its time answering
    first = await emit(db, "call.ended", "call:1", 0)
    second = await emit(db, "call.ended", "call:1", 1)
    a, b = (dispatcher(n, clock=clock) for n in nodes)
    try:
        run_a = asyncio.create_task(a.run_once())
        await until(lambda: crm.arrived == [first])
        run_a.cancel()  # node A dies with the request in flight
        with pytest.raises(asyncio.CancelledError):
            await run_a
        crm.hold.set()  # the CRM still processes what it received

        # While A's claim is leased, B neither sends the event nor the next one of its subject.
        clock.advance(LEASE_S - 1)
        assert await b.run_once() == 0
        assert crm.arrived == [first]

        clock.advance(2)  # the lease lapsed
        assert await b.run_once() == 2
    finally:
        await a.close()
        await b.close()

    assert crm.arrived == [first, first, second]  # at least once: the same event id again
    assert crm.senders == {"node-a": 1, "node-b": 2}
    assert crm.duplicates == 1 and [e["id"] for e in crm.accepted] == [first, second]
    rows = await db.fetch(
        "SELECT o.event_id::text AS id, d.state FROM webhook_deliveries d"
        " JOIN webhook_outbox o ON o.id = d.outbox_id ORDER BY o.id"
    )
    assert [(r["id"], r["state"]) for r in rows] == [(first, "delivered"), (second, "delivered")]


async def test_node_losing_postgres_mid_delivery_other_node_delivers_again_and_no_worker_is_left_behind(
    db, nodes, receivers
):
    clock = Clock()
    calls = await receivers(db, ["call.ended"])
    agents = await receivers(db, ["agent.state_changed"])
    calls.hold, agents.hold = asyncio.Event(), asyncio.Event()
    call_event = await emit(db, "call.ended", "call:1", 0)
    agent_event = await emit(db, "agent.state_changed", "agent:1", 0)
    node_a, _ = nodes
    a, b = (dispatcher(n, clock=clock, concurrency=2) for n in nodes)
    try:
        run_a = asyncio.create_task(a.run_once())
        await until(lambda: calls.arrived == [call_event] and agents.arrived == [agent_event])
        assert await node_a.cut() >= 1  # node A loses PostgreSQL with both requests in flight

        calls.hold.set()  # one answer comes: A cannot record it
        await until(lambda: calls.accepted)
        await asyncio.sleep(0.3)
        # The failed worker does not end the pass while the other still works: nothing of
        # A keeps running after its pass returns (or after close).
        assert not run_a.done()
        agents.hold.set()
        # the pass reports that A could not record its results (asyncpg's error for a
        # connection cut mid-statement depends on where the cut lands)
        with pytest.raises((OSError, asyncpg.InterfaceError, asyncpg.PostgresError, asyncpg.InternalClientError)):
            await run_a
        assert not [
            t for t in asyncio.all_tasks() if not t.done() and "WebhookDispatcher._worker" in repr(t.get_coro())
        ]

        clock.advance(LEASE_S + 1)
        assert await b.run_once() == 2
    finally:
        await a.close()
        await b.close()

    for crm, event in ((calls, call_event), (agents, agent_event)):
        assert crm.arrived == [event, event] and crm.duplicates == 1  # the same id, for de-duplication
        assert crm.senders == {"node-a": 1, "node-b": 1}
        assert [e["id"] for e in crm.accepted] == [event]
    assert {r["state"] for r in await db.fetch("SELECT state FROM webhook_deliveries")} == {"delivered"}


async def test_node_whose_clock_runs_ahead_does_not_take_over_a_delivery_in_flight(db, nodes, receivers):
    crm = await receivers(db, ["*"])
    crm.hold = asyncio.Event()
    event = await emit(db, "call.ended", "call:1", 0)
    node_a, node_b = nodes
    assert node_a.pool is not None
    ahead = DatabaseClock(node_a.pool, local=lambda: datetime.now(UTC) + timedelta(seconds=LEASE_S + 60))
    a, b = dispatcher(node_a, clock=ahead), dispatcher(node_b)  # B: the default, the database's clock
    try:
        run_b = asyncio.create_task(b.run_once())
        await until(lambda: crm.arrived == [event])
        # On A's own clock B's lease is long over; on the database's it is not.
        assert await a.run_once() == 0
        assert abs((ahead() - datetime.now(UTC)).total_seconds()) < 5
        crm.hold.set()
        assert await run_b == 1
    finally:
        await a.close()
        await b.close()
    assert crm.arrived == [event] and crm.senders == {"node-b": 1} and crm.duplicates == 0
