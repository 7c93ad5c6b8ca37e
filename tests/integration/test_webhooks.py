"""Webhook delivery on real Postgres to a real aiohttp receiver on 127.0.0.1.

Time is compressed with an injected clock: each pass of the dispatcher runs at the
clock's "now", and the test moves the clock past the retry delays.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from hitcall_pbx.core.backoff import Backoff
from hitcall_pbx.errors import ValidationFailed
from hitcall_pbx.hooks import WebhookDispatcher, enqueue, generate_secret
from tests.webhook_receiver import ALLOW_LOOPBACK, Receiver


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def subscribe(pool, url: str, event_types: list[str]) -> tuple[int, str]:
    secret = generate_secret()
    sid = await pool.fetchval(
        "INSERT INTO webhook_subscriptions (url, secret, event_types) VALUES ($1, $2, $3) RETURNING id",
        url,
        secret,
        event_types,
    )
    return sid, secret


async def emit(pool, event_type: str, subject: str, seq: int) -> str:
    async with pool.acquire() as conn, conn.transaction():
        return str(await enqueue(conn, event_type, subject, {"seq": seq}))


@pytest.fixture
async def receivers():
    made: list[Receiver] = []

    def make(secret: str) -> Receiver:
        made.append(Receiver(secret))
        return made[-1]

    yield make
    for r in made:
        await r.down()


def dispatcher(db, clock, **kw) -> WebhookDispatcher:
    return WebhookDispatcher(
        db, aiohttp.ClientSession, clock=clock, request_timeout=5, address_policy=ALLOW_LOOPBACK, **kw
    )


async def test_receiver_fails_then_recovers_every_event_delivered_once_in_order(db, receivers):
    clock = Clock()
    all_sid, all_secret = await subscribe(db, "http://127.0.0.1:1/placeholder", ["*"])
    calls_sid, calls_secret = await subscribe(db, "http://127.0.0.1:1/placeholder", ["call.ended"])
    everything, calls_only = receivers(all_secret), receivers(calls_secret)
    await db.execute("UPDATE webhook_subscriptions SET url = $2 WHERE id = $1", all_sid, everything.url)
    await db.execute("UPDATE webhook_subscriptions SET url = $2 WHERE id = $1", calls_sid, calls_only.url)

    subjects = ["call:a", "call:b", "agent:7"]
    ids: dict[str, list[str]] = {s: [] for s in subjects}
    for seq in range(6):
        for s in subjects:
            etype = "agent.state_changed" if s.startswith("agent") else ("call.ended" if seq % 2 else "call.answered")
            ids[s].append(await emit(db, etype, s, seq))

    stats = await dispatcher(db, clock).stats()
    assert stats.undispatched == 18 and stats.backlog == 0

    # Two dispatchers share the work, as two processes would.
    workers = [dispatcher(db, clock, backoff=Backoff(base=1, cap=8), concurrency=2) for _ in range(2)]
    everything.fail = True
    await calls_only.up()
    calls_only.fail = True
    await everything.up()
    try:
        for step in range(12):
            if step == 3:
                await everything.down()  # connection refused from now on
            if step == 6:
                await everything.up()
                everything.fail = calls_only.fail = False
            await asyncio.gather(*(w.run_once() for w in workers))
            if step == 0:
                stats = await workers[0].stats()
                # Only the head of each subject was tried; the rest wait behind it.
                assert stats.undispatched == 0 and stats.backlog == 18 + 6
                assert everything.requests == 3 and calls_only.requests == 2
            clock.advance(9)
    finally:
        for w in workers:
            await w.close()

    assert everything.bad_signatures == calls_only.bad_signatures == 0
    assert everything.duplicates == calls_only.duplicates == 0
    assert sorted(e["id"] for e in everything.accepted) == sorted(i for s in subjects for i in ids[s])
    for s in subjects:
        assert everything.sequence(s) == list(range(6))
    assert {e["type"] for e in calls_only.accepted} == {"call.ended"}
    assert calls_only.sequence("call:a") == calls_only.sequence("call:b") == [1, 3, 5]

    event = next(e for e in everything.accepted if e["id"] == ids["call:a"][0])
    assert event["type"] == "call.answered" and event["data"] == {"seq": 0}
    assert datetime.fromisoformat(event["timestamp"]) <= datetime.now(UTC)

    rows = await db.fetch("SELECT state, attempts, last_status FROM webhook_deliveries")
    assert len(rows) == 24 and {r["state"] for r in rows} == {"delivered"}
    assert max(r["attempts"] for r in rows) > 3  # the heads went through 503s and refusals
    stats = await workers[0].stats()
    assert (stats.backlog, stats.dead, stats.oldest_pending_age_s) == (0, 0, None)


async def test_receiver_down_for_a_day_dead_letter_then_replay_in_order(db, receivers):
    clock = Clock()
    sid, secret = await subscribe(db, "http://127.0.0.1:1/placeholder", ["*"])
    crm = receivers(secret)  # not listening: every attempt is refused
    await db.execute("UPDATE webhook_subscriptions SET url = $2 WHERE id = $1", sid, crm.url)
    first = [await emit(db, "call.ended", "call:x", seq) for seq in range(3)]
    other = await emit(db, "agent.state_changed", "agent:1", 0)
    created = await db.fetchval("SELECT max(created_at) FROM webhook_outbox")

    d = dispatcher(db, clock, backoff=Backoff(base=60, cap=3600), max_age=timedelta(hours=24))
    try:
        died_at = None
        for _ in range(40):
            await d.run_once()
            stats = await d.stats()
            if stats.dead and died_at is None:
                died_at = clock.now
            if stats.dead == 4:
                break
            assert stats.oldest_pending_age_s is not None
            clock.advance(3600)
        assert stats.dead == 4 and stats.backlog == 0
        assert died_at >= created + timedelta(hours=24)  # retried for the whole day first
        head = await db.fetchrow(
            "SELECT d.attempts, d.last_status, d.last_error FROM webhook_deliveries d"
            " JOIN webhook_outbox o ON o.id = d.outbox_id WHERE o.event_id = $1::uuid",
            first[0],
        )
        assert head["attempts"] >= 24 and head["last_status"] is None and head["last_error"] == "connection failed"

        # A dead event blocks nothing: a new event for the same subject goes out at once.
        await crm.up()
        later = await emit(db, "call.ended", "call:x", 3)
        await d.run_once()
        assert [e["id"] for e in crm.accepted] == [later]

        with pytest.raises(ValidationFailed) as err:
            await d.replay(actor="alice", actor_role="admin")
        assert err.value.details == {"field": "delivery_ids"}

        replayed = await d.replay(actor="alice", actor_role="admin", subscription_id=sid, source_ip="10.0.0.9")
        assert len(replayed) == 4
        assert (await d.stats()).backlog == 4
        await d.run_once()
    finally:
        await d.close()

    assert crm.sequence("call:x") == [3, 0, 1, 2]  # replayed in their original order
    assert [e["id"] for e in crm.accepted if e["subject"] == "call:x"][1:] == first
    assert [e["id"] for e in crm.accepted if e["subject"] == "agent:1"] == [other]
    assert crm.duplicates == crm.bad_signatures == 0
    assert await db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'") == 5
    assert await db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE replayed_at IS NOT NULL") == 4
    audit = await db.fetchrow("SELECT * FROM audit_log WHERE action = 'webhook.replay'")
    assert audit["actor"] == "alice" and audit["actor_role"] == "admin" and str(audit["source_ip"]) == "10.0.0.9"
    assert audit["details"]["replayed"] == replayed
    assert audit["details"]["filters"] == {"subscription_id": sid}


async def test_replay_by_ids_leaves_other_dead_deliveries_dead(db):
    clock = Clock()
    await subscribe(db, "http://127.0.0.1:1/placeholder", ["*"])
    for n in range(3):
        await emit(db, "call.ended", f"call:{n}", 0)
    d = dispatcher(db, clock)
    await d.fan_out()
    await db.execute("UPDATE webhook_deliveries SET state = 'dead'")
    rows = await db.fetch(
        "SELECT d.id FROM webhook_deliveries d JOIN webhook_outbox o ON o.id = d.outbox_id ORDER BY o.id"
    )
    chosen = rows[1]["id"]
    assert await d.replay(actor="bob", delivery_ids=[chosen, 999999]) == [chosen]
    states = await db.fetch("SELECT id, state FROM webhook_deliveries ORDER BY id")
    assert {r["id"]: r["state"] for r in states} == {rows[0]["id"]: "dead", chosen: "pending", rows[2]["id"]: "dead"}
    with pytest.raises(ValidationFailed) as err:
        await d.replay(actor="bob", event_type="call.nothing")
    assert err.value.details == {"field": "event_type"}


async def test_event_exists_only_if_its_transaction_commits(db):
    async with db.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await conn.execute("INSERT INTO contact_lists (name) VALUES ('rolled back')")
                await enqueue(conn, "campaign.state_changed", "campaign:1", {"state": "running"})
                raise RuntimeError("the change failed after the event was written")
        assert await conn.fetchval("SELECT count(*) FROM webhook_outbox") == 0
        assert await conn.fetchval("SELECT count(*) FROM contact_lists") == 0

        async with conn.transaction():
            await conn.execute("INSERT INTO contact_lists (name) VALUES ('committed')")
            event_id = await enqueue(conn, "campaign.state_changed", "campaign:1", {"state": "running"})
    row = await db.fetchrow("SELECT event_type, subject, payload FROM webhook_outbox WHERE event_id = $1", event_id)
    assert dict(row) == {
        "event_type": "campaign.state_changed",
        "subject": "campaign:1",
        "payload": {"state": "running"},
    }
    assert await db.fetchval("SELECT count(*) FROM contact_lists") == 1


async def test_signed_body_is_the_documented_envelope(db, receivers):
    clock = Clock()
    sid, secret = await subscribe(db, "http://127.0.0.1:1/placeholder", ["contact.opted_out"])
    crm = receivers(secret)
    await db.execute("UPDATE webhook_subscriptions SET url = $2 WHERE id = $1", sid, crm.url)
    await crm.up()
    event_id = await emit(db, "contact.opted_out", "contact:5", 1)
    await emit(db, "call.ended", "call:1", 1)  # not subscribed
    d = dispatcher(db, clock)
    try:
        assert await d.run_once() == 1
    finally:
        await d.close()
    [event] = crm.accepted
    assert set(event) == {"id", "type", "timestamp", "subject", "data"}
    assert (event["id"], event["type"], event["subject"], event["data"]) == (
        event_id,
        "contact.opted_out",
        "contact:5",
        {"seq": 1},
    )
    assert json.loads(json.dumps(event)) == event


async def test_background_loop_delivers_new_events_until_closed(db, receivers):
    sid, secret = await subscribe(db, "http://127.0.0.1:1/placeholder", ["*"])
    crm = receivers(secret)
    await db.execute("UPDATE webhook_subscriptions SET url = $2 WHERE id = $1", sid, crm.url)
    await crm.up()
    d = WebhookDispatcher(db, aiohttp.ClientSession, poll_interval=0.05, address_policy=ALLOW_LOOPBACK)
    await d.start()
    try:
        event_id = await emit(db, "agent.state_changed", "agent:3", 1)
        for _ in range(100):
            if crm.accepted:
                break
            await asyncio.sleep(0.05)
    finally:
        await d.close()
    assert [e["id"] for e in crm.accepted] == [event_id]
    await emit(db, "agent.state_changed", "agent:3", 2)
    await asyncio.sleep(0.2)
    assert len(crm.accepted) == 1  # closed: nothing more is sent
    assert (await d.stats()).undispatched == 1
