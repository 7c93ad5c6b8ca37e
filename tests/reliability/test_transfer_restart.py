"""Asterisk killed (SIGKILL) during an attended transfer, the customer on hold and the agent
consulting an external number: after the restart nothing is stuck (no live call, no transfer,
no agent left reserved or on a call), the CDR is complete with its transfer columns, and
every leg of the call is closed. `hitcall cdr reconcile` afterwards finds only what the crash
explains: the call and its consultation leg were up when Asterisk died, so Asterisk never wrote
their records (missing_in_asterisk, transfer_missing_in_asterisk); HitCall holds both (closed by
the resync, above).

It restarts the shared sandbox; the session fixture keeps holding it."""

from __future__ import annotations

import asyncio
import time

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.core.transfer import Target, TargetKind, TransferKind
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.sandbox import SippAgents
from tests.live import wait_until

from .harness import crash_asterisk, reconcile_with_asterisk, report

pytestmark = pytest.mark.asterisk


async def test_asterisk_killed_during_an_attended_transfer(service_settings, sandbox, hangup_agents, asterisk_cdrs):
    phones = SippAgents(sandbox, ["agent195", "agent196"], port=5511)
    try:
        async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
            pool = app.db.pool
            cid, _ = await create_campaign(
                pool, "xfer-restart", mode="progressive", wrap_up_s=5, numbers=sim_numbers(1, 1, start=950), **ALL_DAY
            )
            other, _ = await create_campaign(pool, "xfer-restart-2", mode="progressive", **ALL_DAY)
            a = await create_agent(pool, "1195", "agent195", [cid])
            b = await create_agent(pool, "1196", "agent196", [other])
            phones.start()
            await wait_until(lambda: len(app.sessions.by_agent) == 2, timeout=15)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            await wait_until(lambda: any(c["bridged_at"] for c in app.dialer.live_calls()), timeout=15)
            call_id = app.dialer.live_calls()[0]["attempt_id"]
            xfer = app.dialer.transfers
            await xfer.start(a, TransferKind.ATTENDED, Target(TargetKind.NUMBER, number="+358401999095"))
            await wait_until(lambda: xfer.active[call_id].transfer.state.value == "consulting", timeout=10)

            killed_at = time.monotonic()
            await asyncio.to_thread(crash_asterisk, sandbox)
            phones.stop()
            await wait_until(lambda: not app.ari.connected.is_set(), timeout=5, interval=0.01)
            reconnects = app.ari.stats.reconnects
            await asyncio.to_thread(sandbox.start)
            await wait_until(
                lambda: app.ari.stats.reconnects > reconnects and app.ari.connected.is_set(), timeout=10, interval=0.01
            )
            await wait_until(lambda: call_id not in app.dialer.calls, timeout=10)
            recovered_s = time.monotonic() - killed_at
            await app.dialer.idle(timeout=10)
            await app.cdr.flush()
            await app.sessions.drain()
            stuck = {
                "calls": list(app.dialer.calls),
                "transfers": list(xfer.active),
                "targets": list(xfer.by_target),
                "agents": {s.agent_id: s.state.value for s in app.sessions.by_agent.values()},
            }
            row = await pool.fetchrow("SELECT * FROM call_attempts WHERE id = $1", call_id)
            legs = await pool.fetch("SELECT * FROM call_legs WHERE attempt_id = $1 ORDER BY seq", call_id)
            states = dict(await pool.fetch("SELECT id, state FROM agents WHERE id = ANY($1::bigint[])", [a, b]))
            reconciled = await reconcile_with_asterisk(pool, asterisk_cdrs)
        report(
            "transfer_asterisk_killed",
            injected="Asterisk killed (SIGKILL) during an attended transfer to an external number (consulting)",
            recovered_s=round(recovered_s, 3),
            stuck=stuck,
            cdr={k: row[k] for k in ("outcome", "transfer_kind", "transfer_result", "transfer_number")}
            if row
            else None,
            legs=len(legs),
            reconcile=reconciled,
        )
        assert stuck == {"calls": [], "transfers": [], "targets": [], "agents": {}}, stuck
        assert row is not None and row["state"] == "ended" and row["outcome"] == "answered_human", row
        assert (row["transfer_kind"], row["transfer_result"], row["transfer_number"]) == (
            "attended",
            "customer_gone",
            "+358401999095",
        )
        assert [(leg["agent_id"], leg["role"]) for leg in legs] == [(a, "agent"), (None, "consult")]
        assert all(leg["left_at"] >= leg["joined_at"] for leg in legs)
        assert states == {a: "logged_out", b: "logged_out"}, states
        # Asterisk's own CDRs: only the records the crash took with it are missing.
        lost = {k: v for k, v in reconciled["by_kind"].items() if v}
        assert lost == {"missing_in_asterisk": [call_id], "transfer_missing_in_asterisk": [call_id]}, reconciled
    finally:
        phones.stop()
