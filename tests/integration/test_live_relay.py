"""Live screens across nodes on real PostgreSQL: what one node's journal publishes reaches
the live bus of the other nodes (LISTEN/NOTIFY), in order, split over as many
notifications as PostgreSQL's payload limit needs, never back to its own bus."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from hitcall_pbx.cluster.live import MAX_PAYLOAD, LiveRelay, pack, unpack
from hitcall_pbx.livebus import LiveBus
from hitcall_pbx.store.db import connect
from tests.conftest import as_service


@pytest.fixture
async def relays(db: asyncpg.Pool, pg_dsn: str) -> AsyncIterator[tuple[LiveRelay, LiveBus, LiveRelay, LiveBus]]:
    dsn = as_service(pg_dsn, await db.fetchval("SELECT current_database()"))
    bus_a, bus_b = LiveBus(), LiveBus()
    a = LiveRelay(db, lambda: connect(dsn), bus_a, "node-a")
    b = LiveRelay(db, lambda: connect(dsn), bus_b, "node-b")
    await a.start()
    await b.start()
    await asyncio.wait_for(asyncio.gather(a.listening.wait(), b.listening.wait()), 10)
    try:
        yield a, bus_a, b, bus_b
    finally:
        await a.close()
        await b.close()


async def _drain(sub, n: int, timeout: float = 5.0) -> list:
    out = []
    while len(out) < n:
        event = await sub.get(timeout)
        if event is None:
            break
        out.append(event)
    return out


async def test_an_event_of_one_node_reaches_the_others_bus_and_not_its_own(relays) -> None:
    a, bus_a, b, bus_b = relays
    with bus_a.subscribe() as on_a, bus_b.subscribe() as on_b:
        a.outgoing("agent.state_changed", "agent:7", {"agent_id": 7, "state": "paused", "pause_code": "break"})
        [event] = await _drain(on_b, 1)
        assert (event.type, event.subject, event.payload["state"]) == ("agent.state_changed", "agent:7", "paused")
        assert await on_a.get(0.3) is None, "a node's own events are on its bus already"
        b.outgoing("call.bridged", "attempt:x", {"agent_id": 9, "campaign_id": 3})
        [back] = await _drain(on_a, 1)
        assert back.type == "call.bridged" and back.payload == {"agent_id": 9, "campaign_id": 3}
    assert a.sent == 1 and b.received == 1 and a.received == 1


async def test_a_burst_arrives_complete_and_in_order_over_several_notifications(relays) -> None:
    a, _, _, bus_b = relays
    with bus_b.subscribe() as on_b:
        for n in range(400):
            a.outgoing("call.ended", f"attempt:{n}", {"seq": n, "campaign_id": 1, "note": "x" * 120})
        got = await _drain(on_b, 400, timeout=10)
    assert [e.payload["seq"] for e in got] == list(range(400))
    assert a.dropped == 0


def test_pack_keeps_every_payload_under_the_limit_and_skips_what_cannot_fit() -> None:
    events = [("call.ended", f"attempt:{n}", {"seq": n, "pad": "y" * (n % 700)}) for n in range(300)]
    events.insert(10, ("call.ended", "attempt:huge", {"pad": "z" * 9000}))
    payloads, too_large = pack("node-a", events)
    assert too_large == 1 and len(payloads) > 1
    assert all(len(p.encode()) < MAX_PAYLOAD for p in payloads)
    seqs = [e[2]["seq"] for p in payloads for e in unpack(p, "node-b")]
    assert seqs == list(range(300))
    assert unpack(payloads[0], "node-a") == [], "a node ignores its own payloads"
    assert unpack("not json", "node-b") == [] and unpack(json.dumps({"node": "x"}), "node-b") == []
