"""`hitcall cdr reconcile` of transfers' second legs on real Asterisk: a blind and an attended
transfer of customers to an external number (dialled through [hitcall-transfer], whose
record Asterisk tags with the attempt id), then HitCall's legs with the number against
Asterisk's records of those legs: present on both sides, answered, the same talk time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.core.reconcile import DifferenceKind
from hitcall_pbx.core.transfer import TransferEvent
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.records.reconcile import Request, read_csv, reconcile_day
from hitcall_pbx.sandbox import SippAgents
from tests.asterisk_cdr import AsteriskCdrs, differences

from .conftest import wait_until
from .test_transfer import ATTENDED, BLIND, customer_with, ended, no_channels_left, number

pytestmark = pytest.mark.asterisk

EXTERNAL = "+358401999051"  # answers and stays until hung up


async def test_transfers_to_a_number_reconcile_with_asterisks_transfer_records(
    service_settings, sandbox, hangup_agents, tmp_path
):
    cdrs = AsteriskCdrs(sandbox, tmp_path)
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, _ = await create_campaign(
            pool, "xfer-reconcile", mode="progressive", wrap_up_s=30, numbers=sim_numbers(1, 2, start=895), **ALL_DAY
        )
        a = await create_agent(pool, "1099", "agent99", [cid])
        with SippAgents(sandbox, ["agent99"], port=5541):
            await wait_until(lambda: a in app.sessions.by_agent, timeout=15)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            xfer = app.dialer.transfers

            # Blind: the number takes the customer; it talks 3 s and hangs up.
            blind_id = await customer_with(app, a)
            await xfer.start(a, BLIND, number(EXTERNAL))
            await wait_until(lambda: xfer.active[blind_id].transfer.state.value == "completed", timeout=10)
            target = xfer.active[blind_id].target_channel
            await asyncio.sleep(3)
            await app.ari.rest.hangup(target)
            _, blind_legs, _ = await ended(app, pool, blind_id)
            await no_channels_left(app, blind_id)

            # Attended: 2 s of consultation, then the number takes the customer for 3 s.
            app.sessions.end_wrap(a)
            attended_id = await customer_with(app, a)
            t = await xfer.start(a, ATTENDED, number(EXTERNAL))
            await wait_until(lambda: xfer.active[attended_id].transfer.state.value == "consulting", timeout=10)
            await asyncio.sleep(2)
            t = await xfer.act(a, TransferEvent.COMPLETE)
            assert t.state.value == "completed"
            await asyncio.sleep(3)
            await app.dialer.hangup(attended_id)
            _, attended_legs, _ = await ended(app, pool, attended_id)
            await no_channels_left(app, attended_id)

        assert [(leg["number"], leg["role"]) for leg in blind_legs if leg["agent_id"] is None] == [(EXTERNAL, "target")]
        assert [(leg["number"], leg["role"]) for leg in attended_legs if leg["agent_id"] is None] == [
            (EXTERNAL, "consult"),
            (EXTERNAL, "target"),
        ]

        results = await cdrs.reconcile_settled(pool)
        assert differences(results) == []
        assert sum(r.result.matched for r in results) == 2
        assert sum(r.result.transfers for r in results) == 2, [r.result.as_dict() for r in results]

        # Asterisk's side holds one answered record per transfer, tagged hitcall-transfer:<attempt id>.
        read = read_csv(cdrs.written(), UTC, cdrs.started - timedelta(minutes=5), datetime.now(UTC))
        transfer_records = [r for r in read.records if r.transfer and r.disposition == "ANSWERED" and r.offered]
        assert sorted(r.attempt_id for r in transfer_records) == sorted([blind_id, attended_id])

        # A transfer's record missing from Asterisk's side is found.
        kept = [
            line
            for line in cdrs.written().read_text().splitlines(keepends=True)
            if f"hitcall-transfer:{attended_id}" not in line
        ]
        without = tmp_path / "without-transfer.csv"
        without.write_text("".join(kept))
        found = []
        async with pool.acquire() as conn:
            for day in cdrs.days():
                result = (await reconcile_day(conn, Request(day, UTC, UTC, 2.0, without, None, "cdr"))).result
                found += [(d.kind, d.attempt_id) for d in result.differences]
        assert found == [(DifferenceKind.TRANSFER_MISSING_IN_ASTERISK, attended_id)]
