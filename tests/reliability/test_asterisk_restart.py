"""Asterisk restarted mid-campaign (a clean `core stop now`, which hangs the calls up
first, and a crash, SIGKILL, where no event arrives): the service reconnects (measured from the moment ARI
answers again), resyncs, closes the calls that died with Asterisk with an outcome,
logs the agents in again when their phones call back in, and finishes the campaign
without dialling any attempt twice.

It restarts the shared sandbox; the session fixture keeps holding it."""

from __future__ import annotations

import asyncio
import time

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.sandbox import SippAgents
from tests.live import OriginateCounter, wait_until

from .harness import (
    asterisk_attempt_channels,
    attempts,
    crash_asterisk,
    live_campaign,
    loss_and_duplicates,
    quick_calls,
    reconcile_with_asterisk,
    report,
    run_campaign,
    stop_asterisk,
    wait_settled,
)

pytestmark = pytest.mark.asterisk

AGENTS = ["agent181", "agent182", "agent183"]
CONTACTS = 12


@pytest.mark.parametrize("how", ["stop", "crash"])
async def test_asterisk_restart_mid_campaign(
    how, product_logging, service_settings, sandbox, hangup_agents, observer, asterisk_cdrs
):
    originates = OriginateCounter()
    sent = originates.sent
    phones = SippAgents(sandbox, AGENTS, port=5281)
    try:
        async with HitCall(service_settings, Options(dialer_tick_s=0.05), ari_factory=originates.ari_factory) as app:
            pool = app.db.pool
            cid, list_id = await live_campaign(
                pool,
                "asterisk-restart",
                agents=AGENTS,
                numbers=quick_calls(CONTACTS, 810),
                first_agent_number=1181,
                max_attempts=2,
            )
            phones.start()
            await wait_until(lambda: len(app.sessions.by_agent) == len(AGENTS), timeout=15)
            await run_campaign(pool, cid)
            await wait_until(lambda: any(c["bridged_at"] for c in app.dialer.live_calls()), timeout=15, interval=0.02)

            before = {c["attempt_id"]: c["state"] for c in app.dialer.live_calls()}
            # Up in Asterisk (its own view) when it goes away.
            up_in_asterisk = {cid for cid, n in observer.created.items() if n > observer.destroyed[cid]}
            stopped_at = time.monotonic()
            await asyncio.to_thread(crash_asterisk if how == "crash" else stop_asterisk, sandbox)
            phones.stop()  # Asterisk never sent them a BYE: the SIPp calls are dead
            await wait_until(lambda: not app.ari.connected.is_set(), timeout=5, interval=0.01)
            # The calls the service still had when Asterisk went away (with a clean stop the
            # hangup events usually came first).
            died = {c["attempt_id"]: c["state"] for c in app.dialer.live_calls()}
            reconnects = app.ari.stats.reconnects
            await asyncio.to_thread(sandbox.start)
            ari_back_at = time.monotonic()
            await wait_until(
                lambda: app.ari.stats.reconnects > reconnects and app.ari.connected.is_set(), timeout=10, interval=0.01
            )
            reconnect_s = time.monotonic() - ari_back_at
            back_db = await pool.fetchval("SELECT now()")
            asterisk_down_s = ari_back_at - stopped_at
            await observer.connected.wait()
            gone = [aid for aid in died if aid in app.dialer.calls]
            assert not app.sessions.by_agent, "the agents' calls died with Asterisk: logged out"

            # The phones call back in.
            phones = SippAgents(sandbox, AGENTS, port=5281)
            phones.start()
            relogin_at = time.monotonic()
            await wait_until(lambda: len(app.sessions.by_agent) == len(AGENTS), timeout=15)
            relogin_s = time.monotonic() - relogin_at

            await wait_settled(pool, list_id, timeout=45)
            await app.dialer.idle(timeout=10)
            await app.cdr.flush()
            rows = await attempts(pool, cid)
            left_in_asterisk = await asterisk_attempt_channels(app.ari.rest)
            reconciled = await reconcile_with_asterisk(pool, asterisk_cdrs)
        counts = loss_and_duplicates(rows, observer, sent)
        by_id = {str(r["id"]): r for r in rows}
        injected = {
            "stop": "Asterisk stopped (core stop now) and started again mid-campaign",
            "crash": "Asterisk killed (SIGKILL) and started again mid-campaign",
        }[how]
        report(
            f"asterisk_restart_{how}",
            injected=injected,
            calls_up_before=before,
            calls_open_in_service_at_disconnect=died,
            dead_call_outcomes={aid: by_id[aid]["outcome"] for aid in before | died},
            asterisk_down_s=round(asterisk_down_s, 3),
            reconnect_after_ari_ready_s=round(reconnect_s, 3),
            downtime_seen_by_client_s=app.ari.stats.last_reconnect_s,
            agents_relogin_s=round(relogin_s, 3),
            **counts,
            reconcile=reconciled,
        )

        assert reconnect_s < 2.0, reconnect_s
        assert gone == [], "every call that died with Asterisk is closed by the resync"
        assert before, "calls were up when Asterisk went away"
        for aid, state in before.items():
            assert by_id[aid]["outcome"] == "answered_human" or state != "bridged", dict(by_id[aid])
        for aid, state in died.items():
            row = by_id[aid]
            assert row["state"] == "ended" and row["outcome"], dict(row)
            # Talking to an agent: the customer was reached (not called again). Answered but not yet
            # with an agent: abandoned. Still ringing: congestion, which the campaign retries.
            expected = {"answered_human"} if state == "bridged" else {"congestion", "abandoned"}
            assert row["outcome"] in expected, (state, dict(row))
        assert counts["duplicated"] == 0 and counts["lost"] == 0 and counts["orphan_originates"] == 0, counts
        assert counts["open_attempts"] == 0 and not left_in_asterisk, counts
        assert counts["answered_lost"] == 0 and counts["bridged_lost"] == 0, counts
        # Every contact reached but those whose call Asterisk's going away cut short before an
        # agent had it (abandoned or congestion, as above: a clean stop may hang such a call up
        # before the service sees ARI go, so it need not be among the calls open at that moment).
        # A contact taken for an agent whose phone Asterisk hung up while the attempt row was
        # being written is given back undialled (cancelled, retried at once): never sent.
        undialled = {aid for aid, r in by_id.items() if r["outcome"] == "cancelled"}
        assert all(sent[aid] == 0 for aid in undialled), (undialled, sent)
        cut_short = {
            aid
            for aid, r in by_id.items()
            if r["outcome"] != "answered_human" and r["created_at"] < back_db and aid not in undialled
        }
        assert cut_short <= {aid for aid, r in by_id.items() if r["outcome"] in ("abandoned", "congestion")}
        assert counts["outcomes"].get("answered_human", 0) >= CONTACTS - len(cut_short), "dialling resumed"
        # Asterisk's own CDRs. A crash takes the records of the calls still up with it: Asterisk
        # writes a call's record when it ends, and these never ended in that process. They are
        # the only difference, and HitCall holds them right (closed by the resync, above).
        # A clean stop hangs every call up first and writes all records: no difference but one.
        # A call still ringing may be answered by the customer in the very moment Asterisk hangs
        # everything up: the dialling leg's record says ANSWERED, while the answer never reached
        # the service's side of the call (congestion, retried). Only such calls may differ.
        lost_by_asterisk = set(reconciled["by_kind"]["missing_in_asterisk"])
        others = [
            d
            for d in reconciled["differences"]
            if d["kind"] != "missing_in_asterisk"
            and not (
                how == "stop"
                and d["kind"] == "outcome"
                and (d["hitcall"]["outcome"], d["asterisk"]["disposition"]) == ("congestion", "ANSWERED")
                and d["hitcall"]["answered_at"] is None
            )
        ]
        assert others == [], reconciled
        if how == "crash":
            assert lost_by_asterisk and lost_by_asterisk <= up_in_asterisk, (lost_by_asterisk, up_in_asterisk)
        else:
            assert lost_by_asterisk == set(), reconciled
        assert reconciled["matched"] + len(lost_by_asterisk) == counts["originated"], reconciled
    finally:
        phones.stop()
