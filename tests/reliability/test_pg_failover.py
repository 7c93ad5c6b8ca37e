"""PostgreSQL failover under a running service: HitCall dials on the sandboxed Asterisk
(two SIPp agents) against a primary with a synchronous streaming standby
(tests/pg_pair.py), through a multi-host DATABASE_URL with target_session_attrs=read-write.
With two calls bridged the primary is killed (SIGKILL to every process of it); the calls
go on in Asterisk; one ends while there is no primary (its CDR and journal rows go to the
spools), then the standby is promoted and the other ends on the new primary. Every
attempt's CDR, journal rows and webhook events are on the new primary exactly once,
nothing is dialled while there is no primary, and the service dials the next contacts
once it has reconnected. Run with the promotion within the node lease and beyond it (the
node then fences itself, takes its pool back with the next fencing token and adopts the
call still in progress). The figures (reconnect time, dialling resumed, spools drained)
are printed."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.sandbox import SippAgents
from hitcall_pbx.settings import load_settings
from tests.conftest import OWNER, ROLE_PASSWORDS, SERVICE
from tests.live import ARI_URL, OriginateCounter, wait_until
from tests.pg_pair import PgPair, prepare_database

from .harness import (
    attempts,
    live_campaign,
    loss_and_duplicates,
    quick_calls,
    report,
    run_campaign,
    talkers,
    wait_settled,
)

pytestmark = pytest.mark.asterisk

AGENTS = ["agent177", "agent178"]
SHORT_TALK_S = 3  # ends while there is no primary


@pytest.fixture
async def pg_pair():
    pair = PgPair(synchronous=True)
    try:
        await asyncio.to_thread(pair.start)
        yield pair
    finally:
        await asyncio.to_thread(pair.close)


async def _service_sessions_since(conn: asyncpg.Connection, since) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND backend_start >= $2 AND query <> ''",
            SERVICE,
            since,
        )
    )


def _calls(app: HitCall) -> dict[str, object]:
    """The calls the pool's stack follows now (none while the node is fenced: no stack)."""
    return dict(app.dialer.calls) if app.dialer is not None else {}


# From the kill to the promotion: within the node lease (10 s), and beyond it: the node then
# fences itself (its pool's stack is closed without hanging up calls) and takes the pool back
# once there is a primary again, adopting the call still in progress.
@pytest.mark.parametrize("no_primary_s", [5.0, 14.0], ids=["within_lease", "beyond_lease"])
async def test_pg_failover_mid_call(
    no_primary_s, pg_pair: PgPair, product_logging, sandbox, hangup_agents, observer, tmp_path
):
    pair = pg_pair
    long_talk_s = int(no_primary_s) + 10  # goes on through the failover and ends on the new primary
    service_dsn = await prepare_database(pair)
    owner_dsn = pair.multi_host_dsn("hitcall", OWNER, ROLE_PASSWORDS[OWNER])
    settings = load_settings(
        database_url=service_dsn,
        migrate_database_url=owner_dsn,
        data_dir=tmp_path,
        ari_url=ARI_URL,
        ari_app="hitcall",
    )
    originates = OriginateCounter()
    sent = originates.sent
    phones = SippAgents(sandbox, AGENTS, port=5601)
    try:
        async with HitCall(settings, Options(dialer_tick_s=0.05), ari_factory=originates.ari_factory) as app:
            pool = app.db.pool
            numbers = talkers(1, long_talk_s, 1770) + talkers(1, SHORT_TALK_S, 1771) + quick_calls(3, 1772)
            cid, list_id = await live_campaign(
                pool, "pg-failover", agents=AGENTS, numbers=numbers, first_agent_number=1177
            )
            phones.start()
            await wait_until(lambda: len(app.sessions.by_agent) == len(AGENTS), timeout=15)
            await run_campaign(pool, cid)

            def bridged() -> dict[str, object]:
                return {c["attempt_id"]: c["bridged_at"] for c in app.dialer.live_calls() if c["bridged_at"]}

            await wait_until(lambda: len(bridged()) == 2, timeout=20, interval=0.02)
            in_progress = set(bridged())
            by_number = {c["number"]: c["attempt_id"] for c in app.dialer.live_calls()}
            long_call, short_call = by_number[numbers[0]], by_number[numbers[1]]
            assert await pool.fetchval("SELECT inet_server_port()") == pair.primary.port

            killed_at = await asyncio.to_thread(pair.kill_primary)
            sent_at_kill = sum(sent.values())
            # The short call ends while there is no primary; the long one goes on.
            await wait_until(lambda: short_call in observer.destroyed_at, timeout=SHORT_TALK_S + 10, interval=0.05)
            short_ended_s = time.monotonic() - killed_at
            await asyncio.sleep(max(0.0, no_primary_s - (time.monotonic() - killed_at)))
            long_call_up = long_call not in observer.destroyed_at  # in Asterisk
            dialled_while_down = sum(sent.values()) - sent_at_kill
            spooled = {"cdr": app.cdr.stats.spooled, "journal": app.journal.spilled}

            new_primary = await asyncpg.connect(pair.standby.dsn("hitcall"))
            try:
                since = await new_primary.fetchval("SELECT clock_timestamp()")
                promote_started = time.monotonic()
                promoted_at = await asyncio.to_thread(pair.promote)
                promote_s = promoted_at - promote_started
                no_primary_s = promoted_at - killed_at
                # The service's first session on the new primary that ran a statement (the walk
                # drops a session on a server still in recovery before it runs any).
                await wait_until(lambda: _service_sessions_since(new_primary, since), timeout=30, interval=0.02)
                reconnect_s = time.monotonic() - promote_started
                await wait_until(lambda: sum(sent.values()) > sent_at_kill, timeout=30, interval=0.02)
                dialling_resumed_s = time.monotonic() - promote_started
                await wait_until(lambda: app.cdr.spool_backlog == 0 and app.journal.spool_backlog == 0, timeout=30)
                spools_drained_s = time.monotonic() - promote_started
                await wait_until(
                    lambda: long_call in observer.destroyed_at and long_call not in _calls(app),
                    timeout=long_talk_s + 15,
                )
                long_ended_after_promotion_s = time.monotonic() - promote_started

                await wait_settled(pool, list_id, timeout=60)
                assert app.dialer is not None, "the node drives its pool again"
                await app.dialer.idle(timeout=10)
                await app.cdr.flush()
                await app.journal.flush(timeout=10)
                assert await pool.fetchval("SELECT inet_server_port()") == pair.standby.port

                # Everything read from the new primary itself.
                rows = await attempts(new_primary, cid)  # type: ignore[arg-type]  # a connection runs the same query
                ids = [r["id"] for r in rows]
                cdr_counts = dict(
                    await new_primary.fetch(
                        "SELECT id, count(*) FROM call_attempts WHERE id = ANY($1::uuid[]) GROUP BY id", ids
                    )
                )
                live_left = await new_primary.fetchval(
                    "SELECT count(*) FROM live_attempts WHERE id = ANY($1::uuid[])", ids
                )
                events = await new_primary.fetch(
                    """SELECT subject, event_type, count(*) AS n FROM webhook_outbox
                       WHERE subject = ANY($1::text[]) GROUP BY subject, event_type""",
                    [f"attempt:{i}" for i in ids],
                )
                legs = dict(
                    await new_primary.fetch(
                        "SELECT attempt_id, count(*) FROM call_legs WHERE attempt_id = ANY($1::uuid[]) GROUP BY 1",
                        ids,
                    )
                )
                contacts_open = await new_primary.fetchval(
                    "SELECT count(*) FROM contacts WHERE list_id = $1 AND status = 'in_progress'", list_id
                )
                in_recovery = await new_primary.fetchval("SELECT pg_is_in_recovery()")
                # The pool's fencing token: +1 when the node took its pool back after fencing itself.
                pool_token = await new_primary.fetchval("SELECT token FROM leases WHERE name = 'pool:main'")
            finally:
                await new_primary.close()
            cdr_stats, journal_dropped = app.cdr.stats, app.journal.dropped
        counts = loss_and_duplicates(rows, observer, sent)
        by_id = {str(r["id"]): r for r in rows}
        ended_events = {(s, t): n for s, t, n in events if t == "call.ended"}
        report(
            "pg_failover",
            injected="primary SIGKILLed (postmaster and every backend) with two calls bridged; standby promoted"
            f" {no_primary_s:.0f} s later",
            no_primary_s=round(no_primary_s, 3),
            promotion_took_s=round(promote_s, 3),
            short_call_ended_after_kill_s=round(short_ended_s, 3),
            # from the promotion request (pg_ctl promote) on
            service_reconnected_after_s=round(reconnect_s, 3),
            dialling_resumed_after_s=round(dialling_resumed_s, 3),
            spools_drained_after_s=round(spools_drained_s, 3),
            long_call_ended_after_s=round(long_ended_after_promotion_s, 3),
            service_reconnected_after_promotion_completed_s=round(reconnect_s - promote_s, 3),
            spooled_while_no_primary=spooled,
            originates_while_no_primary=dialled_while_down,
            pool_token_after=pool_token,
            cdrs_replayed=cdr_stats.replayed,
            **counts,
        )
        print(
            f"PG failover: no primary for {no_primary_s:.2f} s (promotion took {promote_s:.2f} s); from the"
            f" promotion request the service reconnected in {reconnect_s:.2f} s, dialled again in"
            f" {dialling_resumed_s:.2f} s, drained its spools in {spools_drained_s:.2f} s"
            f" ({reconnect_s - promote_s:.2f} s, {dialling_resumed_s - promote_s:.2f} s and"
            f" {spools_drained_s - promote_s:.2f} s after the promotion completed)"
        )

        assert in_recovery is False
        assert pool_token == (1 if no_primary_s < settings.node_lease_s else 2), pool_token
        assert long_call_up, "the call goes on while there is no primary"
        assert dialled_while_down == 0, "nothing is dialled without a stored attempt id"
        assert spooled["cdr"] >= 1 and spooled["journal"] >= 1, spooled
        for aid in in_progress:
            assert by_id[aid]["state"] == "ended" and by_id[aid]["outcome"] == "answered_human", dict(by_id[aid])
        talk = {aid: float(by_id[aid]["talk_s"]) for aid in in_progress}
        assert talk[short_call] >= SHORT_TALK_S - 1 and talk[long_call] >= long_talk_s - 1, talk
        assert counts["orphan_originates"] == 0 and counts["duplicated"] == 0 and counts["lost"] == 0, counts
        assert counts["open_attempts"] == 0 and counts["answered_lost"] == 0 and counts["bridged_lost"] == 0, counts
        assert counts["originated"] == len(numbers), counts
        # Exactly once on the new primary: one CDR, no live row, each event once, legs once.
        assert len(cdr_counts) == len(numbers) and set(cdr_counts.values()) == {1}, cdr_counts
        assert live_left == 0 and contacts_open == 0
        assert all(n == 1 for _, _, n in events), [tuple(e) for e in events if e[2] != 1]
        assert len(ended_events) == len(numbers), ended_events
        assert all(legs.get(r["id"], 0) >= 1 for r in rows if str(r["id"]) in in_progress), legs
        assert cdr_stats.rejected == 0 and cdr_stats.spool_backlog == 0 and journal_dropped == 0
        assert reconnect_s < 15, reconnect_s
    finally:
        phones.stop()
