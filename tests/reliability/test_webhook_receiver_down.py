"""Fault 5: the CRM's webhook receiver is down for 10 minutes during a live campaign.

The service runs in-process on the sandboxed Asterisk with SIPp agents and simulated
customers. Its webhook dispatcher is the product's `WebhookDispatcher` on the service's
pool, with one change: its clock (retry schedule, leases, max-age deadline) runs
FACTOR times faster than real time, so the 10 minutes of outage take 600 / FACTOR real
seconds and the capped exponential backoff runs its real schedule. The receiver first
refuses connections (5 virtual minutes), then answers 503 (5 virtual minutes), then
recovers. A receiver verifies every delivery with the `standardwebhooks` library and
de-duplicates on webhook-id, as a CRM would.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.hooks import WebhookDispatcher, generate_secret
from hitcall_pbx.sandbox import SippAgents
from tests.live import OriginateCounter
from tests.webhook_receiver import ALLOW_LOOPBACK, Receiver

from .harness import (
    attempts,
    live_campaign,
    loss_and_duplicates,
    quick_calls,
    reconcile_with_asterisk,
    report,
    run_campaign,
    wait_settled,
)

pytestmark = pytest.mark.asterisk

FACTOR = 100.0  # virtual seconds per real second
REFUSED_S = 300.0  # virtual: connection refused
FAILING_S = 300.0  # virtual: then HTTP 503
AGENTS = ["agent151", "agent152"]


class ScaledClock:
    """UTC time that runs `factor` times faster than the real clock from its creation."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self._real0 = time.monotonic()
        self.start = datetime.now(UTC)

    def elapsed(self) -> float:
        return (time.monotonic() - self._real0) * self.factor

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed())


async def _until_virtual(clock: ScaledClock, seconds: float) -> None:
    while clock.elapsed() < seconds:
        await asyncio.sleep(0.02)


async def _drained(pool, up_to_outbox_id: int | None, timeout: float) -> None:
    """Wait until every event (up to an outbox id) is fanned out and delivered."""
    deadline = time.monotonic() + timeout
    while True:
        left = await pool.fetchval(
            """SELECT (SELECT count(*) FROM webhook_outbox
                     WHERE dispatched_at IS NULL AND ($1::bigint IS NULL OR id <= $1))
                  + (SELECT count(*) FROM webhook_deliveries
                     WHERE state <> 'delivered' AND ($1::bigint IS NULL OR outbox_id <= $1))""",
            up_to_outbox_id,
        )
        if left == 0:
            return
        assert time.monotonic() < deadline, f"{left} events not delivered within {timeout} s"
        await asyncio.sleep(0.05)


async def test_webhook_receiver_down_ten_minutes(service_settings, sandbox, hangup_agents, observer, asterisk_cdrs):
    originates = OriginateCounter()
    originated = originates.sent
    options = Options(dialer_tick_s=0.05, webhooks=False, alarm_interval_s=None)
    secret = generate_secret()
    receiver = Receiver(secret)
    phones = SippAgents(sandbox, AGENTS, port=5151)
    async with HitCall(service_settings, options, ari_factory=originates.ari_factory) as app:
        pool = app.db.pool
        await pool.execute(
            "INSERT INTO webhook_subscriptions (url, secret, event_types) VALUES ($1, $2, '{*}')", receiver.url, secret
        )
        cid, list_id = await live_campaign(
            pool, "webhooks-down", agents=AGENTS, numbers=quick_calls(8, start=1500), first_agent_number=1151
        )
        clock = ScaledClock(FACTOR)
        # The service's dispatcher, on compressed time. Its lease (request timeout + 30 s of
        # virtual time) must outlast a real loopback POST: 150 virtual s = 1.5 real s.
        dispatcher = WebhookDispatcher(
            pool,
            aiohttp.ClientSession,
            clock=clock,
            request_timeout=120.0,
            poll_interval=0.05,
            rng=random.Random(5),
            address_policy=ALLOW_LOOPBACK,  # the receiver is on 127.0.0.1
        )
        await dispatcher.start()
        try:
            phones.start()
            await run_campaign(pool, cid)
            await _until_virtual(clock, REFUSED_S)
            receiver.fail = True
            await receiver.up()  # up, but every request fails with 503
            await _until_virtual(clock, REFUSED_S + FAILING_S)
            events_in_outage = await pool.fetchval("SELECT count(*) FROM webhook_outbox")
            delivered_in_outage = await pool.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'"
            )
            backlog_until = await pool.fetchval("SELECT max(id) FROM webhook_outbox")
            receiver.fail = False
            recovered_at, recovered_virtual = time.monotonic(), clock.elapsed()
            # Recovered: the backlog built up in the outage is delivered.
            await _drained(pool, backlog_until, timeout=20)
            recover_real_s = time.monotonic() - recovered_at
            recover_virtual_s = clock.elapsed() - recovered_virtual

            await wait_settled(pool, list_id, timeout=30)
            await app.dialer.idle(timeout=10)
            await app.cdr.flush()
            await _drained(pool, None, timeout=20)
        finally:
            await dispatcher.close()
            await receiver.down()
            phones.stop()

        outbox = await pool.fetch("SELECT o.event_id::text AS event, o.subject FROM webhook_outbox o ORDER BY o.id")
        deliveries = await pool.fetch("SELECT state, attempts FROM webhook_deliveries")
        rows = await attempts(pool, cid)
        calls = loss_and_duplicates(rows, observer, originated)
        reconciled = await reconcile_with_asterisk(pool, asterisk_cdrs)

    accepted_ids = [e["id"] for e in receiver.accepted]
    expected: dict[str, list[str]] = defaultdict(list)
    for row in outbox:
        expected[row["subject"]].append(row["event"])
    received: dict[str, list[str]] = defaultdict(list)
    for event in receiver.accepted:
        received[event["subject"]].append(event["id"])
    lost = len({r["event"] for r in outbox} - set(accepted_ids))
    out_of_order = sorted(s for s in expected if received[s] != expected[s])
    line = report(
        "webhook_receiver_down",
        injected=f"webhook receiver refused connections for {REFUSED_S:.0f} s then answered 503 for "
        f"{FAILING_S:.0f} s (virtual), during a live progressive campaign",
        time_compression=FACTOR,
        outage_real_s=round((REFUSED_S + FAILING_S) / FACTOR, 2),
        events=len(outbox),
        events_during_outage=events_in_outage,
        delivered_during_outage=delivered_in_outage,
        subjects=len(expected),
        max_attempts_per_delivery=max(d["attempts"] for d in deliveries),
        failed_attempts_answered_503=sum(receiver.unacknowledged.values()),
        recover_real_s=round(recover_real_s, 2),
        recover_virtual_s=round(recover_virtual_s, 1),
        lost=lost,
        duplicated=receiver.duplicates,
        out_of_order_subjects=len(out_of_order),
        bad_signatures=receiver.bad_signatures,
        dead=sum(1 for d in deliveries if d["state"] == "dead"),
        calls=calls,
        reconcile=reconciled,
    )

    assert events_in_outage > 0 and delivered_in_outage == 0, line
    assert line["max_attempts_per_delivery"] >= 6, "the backoff schedule ran through the outage"
    assert line["failed_attempts_answered_503"] > 0
    assert lost == 0 and len(accepted_ids) == len(outbox), line
    assert receiver.duplicates == 0 and len(set(accepted_ids)) == len(accepted_ids)
    assert out_of_order == [], {s: (expected[s], received[s]) for s in out_of_order}
    assert receiver.bad_signatures == 0
    assert all(d["state"] == "delivered" for d in deliveries)
    assert calls["duplicated"] == 0 and calls["lost"] == 0 and calls["open_attempts"] == 0, calls
    assert calls["answered_lost"] == 0 and calls["bridged_lost"] == 0, calls
    assert Counter(e["type"] for e in receiver.accepted)["call.ended"] == calls["attempts"] == 8
    assert reconciled["differences"] == [] and reconciled["matched"] == 8, reconciled
