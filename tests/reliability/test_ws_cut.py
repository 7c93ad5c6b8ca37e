"""The ARI events WebSocket cut mid-campaign while Asterisk stays up (a loopback proxy
between the service and Asterisk's HTTP port resets it and refuses reconnects for a
moment): calls in progress keep their state after the resync, nothing is left stuck,
nothing is dialled twice or lost.

The cut comes while one call talks (customers who talk 12 s, so they outlast the gap)
and others still ring (quick customers), so answers and bridge entries happen in the gap; Asterisk's
own view (an observer application subscribed to everything) says what really
happened to each call."""

from __future__ import annotations

import time

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.core.states import AgentState
from hitcall_pbx.sandbox import SippAgents
from tests.live import OriginateCounter, wait_until

from .harness import (
    asterisk_attempt_channels,
    attempts,
    live_campaign,
    loss_and_duplicates,
    quick_calls,
    reconcile_with_asterisk,
    report,
    run_campaign,
    talkers,
    wait_settled,
)
from .proxy import LoopbackProxy

pytestmark = pytest.mark.asterisk

AGENTS = ["agent191", "agent192", "agent193"]
LONG, QUICK = 3, 6
HOLD_S = 1.0


async def test_ari_websocket_cut_mid_campaign(
    product_logging, service_settings, sandbox, hangup_agents, observer, asterisk_cdrs
):
    originates = OriginateCounter()
    sent = originates.sent
    proxy = await LoopbackProxy().start()
    settings = service_settings.model_copy(update={"ari_url": proxy.ari_url})
    phones = SippAgents(sandbox, AGENTS, port=5291)
    try:
        async with HitCall(settings, Options(dialer_tick_s=0.05), ari_factory=originates.ari_factory) as app:
            pool = app.db.pool
            # Dialled in this order: a talker, then two quick customers, and again, so that
            # calls ring while the first talker is still talking.
            quick = quick_calls(QUICK, 920)
            numbers = [
                n for i, talker in enumerate(talkers(LONG, 12, start=910)) for n in (talker, *quick[2 * i : 2 * i + 2])
            ]
            cid, list_id = await live_campaign(pool, "ws-cut", agents=AGENTS, first_agent_number=1191, numbers=numbers)
            phones.start()
            await wait_until(lambda: len(app.sessions.by_agent) == len(AGENTS), timeout=15)
            await run_campaign(pool, cid)
            # Cut while one call talks and another still rings.
            await wait_until(
                lambda: {"bridged", "ringing"} <= {c["state"] for c in app.dialer.live_calls()},
                timeout=15,
                interval=0.01,
            )

            in_progress = {c["attempt_id"]: c["state"] for c in app.dialer.live_calls()}
            reconnects = app.ari.stats.reconnects
            cut_at = time.monotonic()
            dropped = proxy.cut(HOLD_S)
            await wait_until(
                lambda: app.ari.stats.reconnects > reconnects and app.ari.connected.is_set(), timeout=10, interval=0.01
            )
            recover_s = time.monotonic() - cut_at
            # Right after the resync: the calls that were talking are still talking in the service.
            after = {aid: app.dialer.calls[aid].state for aid in in_progress if aid in app.dialer.calls}
            up_at_resync = set(await asterisk_attempt_channels(app.ari.rest))
            kept_bridged = [aid for aid, state in in_progress.items() if state == "bridged" and aid in after]

            await wait_settled(pool, list_id, timeout=60)
            await app.dialer.idle(timeout=10)
            await app.cdr.flush()
            rows = await attempts(pool, cid)
            counts = loss_and_duplicates(rows, observer, sent)
            reconciled = await reconcile_with_asterisk(pool, asterisk_cdrs)
            stuck = {
                "service_calls": len(app.dialer.calls),
                "asterisk_channels": len(await asterisk_attempt_channels(app.ari.rest)),
                "agents_not_ready": sum(1 for s in app.sessions.by_agent.values() if s.state is not AgentState.READY),
            }
        by_id = {str(r["id"]): r for r in rows}
        # Calls still up at the resync whose answer or bridge entry the service missed and
        # never repaired (a call that ended inside the gap cannot be judged from GET /channels).
        repaired_not = sorted(
            aid
            for aid in up_at_resync & set(by_id)
            if (aid in observer.answered and by_id[aid]["answered_at"] is None)
            or (aid in observer.bridged and (by_id[aid]["bridged_at"] is None or by_id[aid]["abandoned"]))
        )
        ended_in_gap = sorted(set(in_progress) - up_at_resync)
        report(
            "ari_websocket_cut",
            injected=f"events WebSocket reset by the proxy, reconnects refused for {HOLD_S} s",
            dropped_connections=dropped,
            in_progress_at_cut=in_progress,
            state_after_resync=after,
            recover_s=round(recover_s, 3),
            downtime_s=app.ari.stats.last_reconnect_s,
            stuck=stuck,
            up_at_resync=sorted(up_at_resync & set(by_id)),
            state_not_repaired=repaired_not,
            ended_in_gap={aid: by_id[aid]["outcome"] for aid in ended_in_gap},
            ended_in_gap_answered_in_asterisk=[aid for aid in ended_in_gap if aid in observer.answered],
            **counts,
            reconcile=reconciled,
        )

        assert dropped, "the service's events socket went through the proxy and was cut"
        assert recover_s < HOLD_S + 2.0
        assert kept_bridged, "a call was talking across the cut"
        for aid in kept_bridged:
            assert after[aid] == "bridged", (aid, in_progress, after)
            assert by_id[aid]["outcome"] == "answered_human", dict(by_id[aid])
        assert counts["duplicated"] == 0 and counts["lost"] == 0 and counts["orphan_originates"] == 0, counts
        assert counts["open_attempts"] == 0, counts
        assert repaired_not == [], "calls up after the resync keep (or get back) their true state"
        assert stuck == {"service_calls": 0, "asterisk_channels": 0, "agents_not_ready": 0}, stuck
        assert counts["originated"] == LONG + QUICK, counts
        # Asterisk's own CDRs say the same about every call, those that ended in the gap included.
        assert reconciled["differences"] == [] and reconciled["matched"] == LONG + QUICK, reconciled
    finally:
        phones.stop()
        await proxy.close()
