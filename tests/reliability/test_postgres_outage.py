"""Postgres stopped for 60 s mid-campaign, the service on its own embedded server:
dialling pauses (no originate without a stored attempt id), the calls in progress
finish, their CDRs are spooled and land exactly once when Postgres returns, and every
ended attempt has exactly one call.ended event."""

from __future__ import annotations

import asyncio
import time

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.sandbox import SippAgents
from hitcall_pbx.settings import load_settings
from tests.live import ARI_URL, OriginateCounter, wait_until

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

AGENTS = ["agent184", "agent185", "agent186"]
CONTACTS = 12
OUTAGE_S = 60.0


async def test_postgres_outage_mid_campaign(
    stoppable_pg, product_logging, sandbox, hangup_agents, observer, tmp_path, asterisk_cdrs
):
    originates = OriginateCounter()
    sent = originates.sent
    settings = load_settings(database_url=stoppable_pg.uri, data_dir=tmp_path, ari_url=ARI_URL, ari_app="hitcall")
    phones = SippAgents(sandbox, AGENTS, port=5284)
    try:
        async with HitCall(settings, Options(dialer_tick_s=0.05), ari_factory=originates.ari_factory) as app:
            pool = app.db.pool
            cid, list_id = await live_campaign(
                pool, "pg-outage", agents=AGENTS, numbers=quick_calls(CONTACTS, 840), first_agent_number=1184
            )
            phones.start()
            await wait_until(lambda: len(app.sessions.by_agent) == len(AGENTS), timeout=15)
            await run_campaign(pool, cid)
            await wait_until(lambda: any(c["bridged_at"] for c in app.dialer.live_calls()), timeout=15, interval=0.02)

            in_progress = {c["attempt_id"]: c["state"] for c in app.dialer.live_calls()}
            await asyncio.to_thread(stoppable_pg.stop)
            down_at = time.monotonic()
            sent_at_stop = sum(sent.values())
            # The calls in progress finish while Postgres is down.
            await wait_until(lambda: not app.dialer.calls, timeout=15, interval=0.05)
            calls_done_s = time.monotonic() - down_at
            hung_up_s = max((observer.destroyed_at.get(aid, down_at) - down_at for aid in in_progress), default=0.0)
            await app.cdr.flush()
            spooled_during_outage = app.cdr.spool_backlog
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
            dialled_while_down = sum(sent.values()) - sent_at_stop

            await asyncio.to_thread(stoppable_pg.start)
            up_at = time.monotonic()
            outage_s = up_at - down_at
            await wait_until(lambda: app.cdr.spool_backlog == 0, timeout=30, interval=0.05)
            cdrs_landed_s = time.monotonic() - up_at
            await wait_until(lambda: sum(sent.values()) > sent_at_stop, timeout=30, interval=0.05)
            dialling_resumed_s = time.monotonic() - up_at

            await wait_settled(pool, list_id, timeout=45)
            await app.dialer.idle(timeout=10)
            await app.cdr.flush()
            rows = await attempts(pool, cid)
            events = {
                r["subject"]: r["n"]
                for r in await pool.fetch(
                    "SELECT subject, count(*) AS n FROM webhook_outbox WHERE event_type = 'call.ended' GROUP BY subject"
                )
            }
            stats = app.cdr.stats
            reconciled = await reconcile_with_asterisk(pool, asterisk_cdrs)
        counts = loss_and_duplicates(rows, observer, sent)
        by_id = {str(r["id"]): r for r in rows}
        ended_events = {str(r["id"]): events.get(f"attempt:{r['id']}", 0) for r in rows if r["state"] == "ended"}
        report(
            "postgres_outage",
            injected=f"embedded Postgres stopped (pg_ctl stop -m fast) for {OUTAGE_S:.0f} s",
            outage_s=round(outage_s, 3),
            calls_in_progress_at_stop=in_progress,
            customers_hung_up_after_s=round(hung_up_s, 3),
            calls_closed_in_service_after_s=round(calls_done_s, 3),
            originates_while_down=dialled_while_down,
            cdrs_spooled=stats.spooled,
            cdrs_replayed=stats.replayed,
            spool_backlog_in_outage=spooled_during_outage,
            cdrs_landed_after_s=round(cdrs_landed_s, 3),
            dialling_resumed_after_s=round(dialling_resumed_s, 3),
            attempts_without_one_call_ended_event=sum(1 for n in ended_events.values() if n != 1),
            **counts,
            reconcile=reconciled,
        )

        assert dialled_while_down == 0, "no attempt is dialled without a stored id"
        assert counts["orphan_originates"] == 0 and counts["duplicated"] == 0 and counts["lost"] == 0, counts
        assert counts["open_attempts"] == 0, counts
        assert counts["answered_lost"] == 0 and counts["bridged_lost"] == 0, counts
        for aid, state in in_progress.items():
            assert by_id[aid]["state"] == "ended" and by_id[aid]["outcome"], dict(by_id[aid])
            if state == "bridged":
                assert by_id[aid]["outcome"] == "answered_human", dict(by_id[aid])
        assert spooled_during_outage >= len(in_progress) and stats.replayed == stats.spooled, stats
        assert stats.spool_backlog == 0 and stats.rejected == 0, stats
        assert counts["originated"] == CONTACTS, counts
        assert all(n == 1 for n in ended_events.values()), ended_events
        # The CDRs spooled through the outage say what Asterisk's own say.
        assert reconciled["differences"] == [] and reconciled["matched"] == CONTACTS, reconciled
    finally:
        phones.stop()
