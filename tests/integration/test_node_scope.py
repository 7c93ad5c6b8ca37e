"""Several nodes on one real PostgreSQL: every live row carries its pool and node, the
originate claim inserts nothing for a node whose pool lease moved on (fencing token), and
restart recovery and clean-up of one pool leave another pool's agents, live attempts,
preview offers and monitoring sessions exactly as they were."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from hitcall_pbx.agents.sessions import AgentSessions
from hitcall_pbx.cluster import NodeIdentity, NodeRegistry
from hitcall_pbx.core.leases import PoolClaim
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign
from hitcall_pbx.dialer.hopper import Hopper, StaleLease
from hitcall_pbx.dialer.inbound import open_inbound_calls
from hitcall_pbx.dialer.models import Campaign
from hitcall_pbx.dialer.monitor import Monitor
from hitcall_pbx.dialer.store import DialerStore
from hitcall_pbx.records.cdr import CdrRecord, inbound_cdr_id, write_cdrs
from hitcall_pbx.records.journal import CallJournal
from tests.ari_fake import FakeAri

from ..conftest import as_service

NUMBERS = [f"+3584010000{i:02d}" for i in range(1, 13)]


@pytest.fixture
async def dsn(pg_dsn: str, db: asyncpg.Pool) -> str:
    return as_service(pg_dsn, await db.fetchval("SELECT current_database()"))


@pytest.fixture
async def registries(dsn: str) -> AsyncIterator[dict[str, NodeRegistry]]:
    made: dict[str, NodeRegistry] = {}
    for node_id in ("node-a", "node-b"):
        made[node_id] = NodeRegistry(lambda: asyncpg.connect(dsn), NodeIdentity(node_id, ("main",)), lease_s=10)
    yield made
    for r in made.values():
        await r.close()


async def _campaign(db: asyncpg.Pool, name: str = "scope") -> Campaign:
    cid, _ = await create_campaign(db, name, mode="progressive", state="running", numbers=NUMBERS, **ALL_DAY)
    return Campaign.from_row(await db.fetchrow("SELECT * FROM campaigns WHERE id = $1", cid))


async def _lapse(db: asyncpg.Pool, node_id: str) -> None:
    """node_id's leases run out (as when the node died a lease ago)."""
    await db.execute("UPDATE nodes SET lease_until = now() WHERE node_id = $1", node_id)
    await db.execute("UPDATE leases SET lease_until = now() WHERE node_id = $1", node_id)


async def test_a_stale_holder_dials_nothing_and_the_new_holder_dials_with_its_pool_and_node(
    db: asyncpg.Pool, registries: dict[str, NodeRegistry]
) -> None:
    a, b = registries["node-a"], registries["node-b"]
    campaign = await _campaign(db)
    await a.register()
    stale_claim = await a.take("main")
    assert stale_claim == PoolClaim("main", "node-a", 1)
    old = Hopper(db, claim=stale_claim)
    first = await old.take(campaign, 1, datetime.now(UTC))
    assert len(first.attempts) == 1, "the holder dials"

    # node-a stops renewing (killed, or cut off while it still runs); node-b takes the pool.
    await _lapse(db, "node-a")
    await b.register()
    new_claim = await b.take("main")
    assert new_claim == PoolClaim("main", "node-b", 2)
    contacts_before = [dict(r) for r in await db.fetch("SELECT * FROM contacts ORDER BY id")]
    live_before = await db.fetchval("SELECT count(*) FROM live_attempts")

    # node-a, not knowing yet: its originate claims insert nothing, no contact is taken.
    with pytest.raises(StaleLease) as err:
        await old.take(campaign, 3, datetime.now(UTC))
    assert err.value.status == 503 and "token 1" in err.value.message
    assert await db.fetchval("SELECT count(*) FROM live_attempts") == live_before
    assert [dict(r) for r in await db.fetch("SELECT * FROM contacts ORDER BY id")] == contacts_before

    # The same for a preview offer node-a accepts: no attempt, the offer and contact as they were.
    store_a = DialerStore(db, old, claim=stale_claim)
    opened = await DialerStore(db, Hopper(db, claim=new_claim), claim=new_claim).open_offer(
        campaign, await create_agent(db, "1001", "agent1", [campaign.id]), datetime.now(UTC)
    )
    assert opened is not None
    offer_id, row, _ = opened
    with pytest.raises(StaleLease):
        await store_a.decide_offer(
            offer_id=offer_id,
            campaign=campaign,
            contact_id=row["id"],
            agent_id=1,
            accept=True,
            decision="accept",
            reason=None,
            now=datetime.now(UTC),
        )
    assert await db.fetchval("SELECT decision FROM preview_offers WHERE id = $1", offer_id) is None
    assert await db.fetchval("SELECT count(*) FROM live_attempts") == live_before

    # A lease that lapsed with nobody taking it is no licence either (node-b's lapses now).
    await _lapse(db, "node-b")
    with pytest.raises(StaleLease):
        await Hopper(db, claim=new_claim).take(campaign, 1, datetime.now(UTC))
    assert await db.fetchval("SELECT count(*) FROM live_attempts") == live_before

    # node-b renews and dials: its rows carry its pool and node.
    await b.heartbeat()
    assert b.token("main") == 2
    taken = await Hopper(db, claim=new_claim).take(campaign, 2, datetime.now(UTC))
    assert len(taken.attempts) == 2
    rows = await db.fetch(
        "SELECT pool, node_id FROM live_attempts WHERE id = ANY($1::uuid[])", [x.id for x in taken.attempts]
    )
    assert {(r["pool"], r["node_id"]) for r in rows} == {("main", "node-b")}
    assert (
        await db.fetchval("SELECT pool || '/' || node_id FROM preview_offers WHERE id = $1", offer_id) == "main/node-b"
    )


# ---------------------------------------------------------------- scoping ---
class _Sessions:
    """What Monitor's constructor needs of the agent sessions (its `start` reads only the database)."""

    def on_supervisor_dtmf(self, fn: Any) -> None:
        pass


async def _live(db: asyncpg.Pool, campaign: Campaign, contact: int, pool: str | None, node: str | None) -> uuid.UUID:
    attempt = uuid.uuid4()
    await db.execute(
        """INSERT INTO live_attempts (id, campaign_id, contact_id, attempt_no, dialled_number, caller_id, mode,
                                      state, created_at, retention_until, pool, node_id)
           SELECT $1, $2, c.id, 1, c.phone_e164, '+358201234567', 'progressive', 'ringing', now(),
                  now() + interval '90 days', $4, $5
           FROM contacts c WHERE c.id = $3""",
        attempt,
        campaign.id,
        contact,
        pool,
        node,
    )
    await db.execute("UPDATE contacts SET status = 'in_progress', attempts = 1 WHERE id = $1", contact)
    return attempt


async def _inbound(db: asyncpg.Pool, channel: str, pool: str | None, node: str | None) -> uuid.UUID:
    attempt = inbound_cdr_id(channel)
    await db.execute(
        """INSERT INTO live_attempts (id, direction, attempt_no, caller_id, caller_number, state, created_at,
                                      retention_until, pool, node_id)
           VALUES ($1, 'inbound', NULL, '+358201234567', '+358401234567', 'answered', now(),
                   now() + interval '90 days', $2, $3)""",
        attempt,
        pool,
        node,
    )
    return attempt


async def _offer(db: asyncpg.Pool, campaign: Campaign, agent: int, contact: int, pool: str) -> int:
    await db.execute("UPDATE contacts SET status = 'in_progress' WHERE id = $1", contact)
    return await db.fetchval(
        """INSERT INTO preview_offers (agent_id, campaign_id, contact_id, expires_at, pool, node_id)
           VALUES ($1, $2, $3, now() + interval '1 minute', $4, 'node-x') RETURNING id""",
        agent,
        campaign.id,
        contact,
        pool,
    )


async def _monitoring(db: asyncpg.Pool, campaign: Campaign, agent: int, pool: str) -> int:
    return await db.fetchval(
        """INSERT INTO monitoring_sessions (supervisor, phone_agent_id, attempt_id, campaign_id, agent_id, mode,
                                           modes, started_at, pool, node_id)
           VALUES ('sup', $1, $2, $3, $1, 'listen', '[]', now(), $4, 'node-x') RETURNING id""",
        agent,
        uuid.uuid4(),
        campaign.id,
        pool,
    )


async def _ended_attempt(db: asyncpg.Pool, campaign: Campaign, contact: int, pool: str) -> None:
    """The contact's last call ended on `pool` (its CDR written), its closing not applied yet."""
    now = datetime.now(UTC)
    number = await db.fetchval("SELECT phone_e164 FROM contacts WHERE id = $1", contact)
    record = CdrRecord(
        id=uuid.uuid4(),
        campaign_id=campaign.id,
        contact_id=contact,
        attempt_no=1,
        dialled_number=number,
        caller_id="+358201234567",
        mode="progressive",
        created_at=now - timedelta(seconds=30),
        ended_at=now,
        outcome="answered_human",
        retention_until=now + timedelta(days=90),
        pool=pool,
        node_id="node-x",
    )
    async with db.acquire() as conn:
        await write_cdrs(conn, [record])
    await db.execute("UPDATE contacts SET status = 'in_progress', attempts = 1 WHERE id = $1", contact)


async def _snapshot(db: asyncpg.Pool, pool: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of `pool` in the tables recovery touches (and the contacts its rows hold)."""
    return {
        "agents": [dict(r) for r in await db.fetch("SELECT * FROM agents WHERE pool = $1 ORDER BY id", pool)],
        "state_log": [
            dict(r)
            for r in await db.fetch(
                "SELECT l.* FROM agent_state_log l JOIN agents a ON a.id = l.agent_id WHERE a.pool = $1 ORDER BY l.id",
                pool,
            )
        ],
        "live": [dict(r) for r in await db.fetch("SELECT * FROM live_attempts WHERE pool = $1 ORDER BY id", pool)],
        "offers": [dict(r) for r in await db.fetch("SELECT * FROM preview_offers WHERE pool = $1 ORDER BY id", pool)],
        "monitoring": [
            dict(r) for r in await db.fetch("SELECT * FROM monitoring_sessions WHERE pool = $1 ORDER BY id", pool)
        ],
        "contacts": [
            dict(r)
            for r in await db.fetch(
                """SELECT * FROM contacts WHERE id IN (
                       SELECT contact_id FROM live_attempts WHERE pool = $1
                       UNION SELECT contact_id FROM preview_offers WHERE pool = $1
                       UNION SELECT contact_id FROM call_attempts WHERE pool = $1) ORDER BY id""",
                pool,
            )
        ],
    }


async def test_recovery_of_one_pool_leaves_another_pools_rows_untouched(db: asyncpg.Pool) -> None:
    campaign = await _campaign(db)
    contacts = [r["id"] for r in await db.fetch("SELECT id FROM contacts ORDER BY id")]
    agents = {}
    for pool, n in (("ast1", 1), ("ast2", 2), (None, 3)):
        agent = await create_agent(db, f"100{n}", f"agent{n}", [campaign.id])
        await db.execute(
            "UPDATE agents SET state = 'ready', state_since = now(), pool = $2, node_id = $3 WHERE id = $1",
            agent,
            pool,
            None if pool is None else f"node-{pool}",
        )
        await db.execute("INSERT INTO agent_state_log (agent_id, state, started_at) VALUES ($1, 'ready', now())", agent)
        agents[pool] = agent
    live = {
        "ast1": await _live(db, campaign, contacts[0], "ast1", "node-ast1"),
        "ast2": await _live(db, campaign, contacts[1], "ast2", "node-ast2"),
        None: await _live(db, campaign, contacts[2], None, None),
    }
    inbound = {
        "ast1": await _inbound(db, "ch-1", "ast1", "node-ast1"),
        "ast2": await _inbound(db, "ch-2", "ast2", "node-ast2"),
    }
    offers = {
        "ast1": await _offer(db, campaign, agents["ast1"], contacts[3], "ast1"),
        "ast2": await _offer(db, campaign, agents["ast2"], contacts[4], "ast2"),
    }
    monitoring = {
        "ast1": await _monitoring(db, campaign, agents["ast1"], "ast1"),
        "ast2": await _monitoring(db, campaign, agents["ast2"], "ast2"),
    }
    await _ended_attempt(db, campaign, contacts[5], "ast1")
    await _ended_attempt(db, campaign, contacts[6], "ast2")
    ast2_before = await _snapshot(db, "ast2")
    default_agent_before = dict(await db.fetchrow("SELECT * FROM agents WHERE id = $1", agents[None]))

    # node-c took pool ast1 (its holder is gone): restart recovery and clean-up of that pool.
    claim = PoolClaim("ast1", "node-c", 7)
    store = DialerStore(db, Hopper(db, claim=claim), claim=claim)
    recovered = await store.open_attempts()
    assert [r["id"] for r in recovered] == [live["ast1"]]
    assert (recovered[0]["pool"], recovered[0]["node_id"]) == ("ast1", "node-c"), "taken over by node-c"
    await store.reset_after_restart()
    calls = await open_inbound_calls(db, "ast1", "node-c", take_over=True)
    assert [r["id"] for r in calls] == [inbound["ast1"]] and calls[0]["node_id"] == "node-c"
    monitor = Monitor(FakeAri(), db, _Sessions(), None, claim=claim)  # type: ignore[arg-type]
    await monitor.start()

    # Pool ast1's rows: cleaned up.
    a1 = await db.fetchrow("SELECT state FROM agents WHERE id = $1", agents["ast1"])
    assert a1["state"] == "logged_out"
    assert await db.fetchval("SELECT ended_at IS NOT NULL FROM agent_state_log WHERE agent_id = $1", agents["ast1"])
    assert await db.fetchval("SELECT decision FROM preview_offers WHERE id = $1", offers["ast1"]) == "timeout"
    assert await db.fetchval("SELECT status FROM contacts WHERE id = $1", contacts[3]) == "new"
    assert await db.fetchval("SELECT status FROM contacts WHERE id = $1", contacts[5]) == "retry"
    assert (
        await db.fetchval("SELECT end_reason FROM monitoring_sessions WHERE id = $1", monitoring["ast1"])
        == "service_restart"
    )
    # Pool ast2's rows, and the agent and attempt of the default pool: exactly as they were.
    assert await _snapshot(db, "ast2") == ast2_before
    assert dict(await db.fetchrow("SELECT * FROM agents WHERE id = $1", agents[None])) == default_agent_before
    assert await db.fetchval("SELECT node_id FROM live_attempts WHERE id = $1", live[None]) is None
    assert ast2_before["agents"][0]["state"] == "ready" and ast2_before["offers"][0]["decision"] is None
    assert ast2_before["monitoring"][0]["ended_at"] is None and len(ast2_before["live"]) == 2
    assert {c["status"] for c in ast2_before["contacts"]} == {"in_progress"}

    # The default pool's recovery takes rows without a pool (written before several nodes).
    main = PoolClaim("main", "node-d", 1)
    main_store = DialerStore(db, Hopper(db, claim=main), claim=main)
    assert [r["id"] for r in await main_store.open_attempts()] == [live[None]]
    await main_store.reset_after_restart()
    assert await db.fetchval("SELECT state FROM agents WHERE id = $1", agents[None]) == "logged_out"
    assert await _snapshot(db, "ast2") == ast2_before


async def test_agent_state_changes_write_the_agents_pool_and_node(db: asyncpg.Pool) -> None:
    campaign = await _campaign(db)
    agent = await create_agent(db, "1001", "agent1", [campaign.id])
    journal = CallJournal(db)
    await journal.start()
    try:
        sessions = AgentSessions(FakeAri(), db, journal=journal, claim=PoolClaim("ast2", "node-b", 3))
        session = await sessions.adopt("phone-1", agent)
        assert session is not None
        await journal.flush(5)
        row = await db.fetchrow("SELECT state, pool, node_id FROM agents WHERE id = $1", agent)
        assert (row["state"], row["pool"], row["node_id"]) == ("ready", "ast2", "node-b")
        await sessions.logout("phone-1")
        await journal.flush(5)
        row = await db.fetchrow("SELECT state, pool, node_id FROM agents WHERE id = $1", agent)
        assert (row["state"], row["pool"], row["node_id"]) == ("logged_out", "ast2", "node-b")
    finally:
        await journal.close()


async def test_the_return_call_menus_live_row_carries_the_menus_home_pool_and_node(db: asyncpg.Pool) -> None:
    from hitcall_pbx.agi import AgiServer, default_handlers

    from .test_agi_menu_cdr import SECRET, press, run_call

    journal = CallJournal(db)
    await journal.start()
    server = AgiServer(db, "127.0.0.1", 0, default_handlers(journal=journal, home=("ast2", "node-b")), secret=SECRET)
    await server.start()
    try:
        await run_call(server.port, "1700000000.77", press("2"))  # asks for an agent: handed to the router
        await journal.flush(5)
    finally:
        await server.close()
        await journal.close()
    row = await db.fetchrow(
        "SELECT direction, pool, node_id FROM live_attempts WHERE id = $1", inbound_cdr_id("1700000000.77")
    )
    assert row is not None and (row["direction"], row["pool"], row["node_id"]) == ("inbound", "ast2", "node-b")
    # Not the default pool's: its recovery leaves the row alone; ast2's takes it.
    assert await open_inbound_calls(db, "main", "node-a", take_over=True) == []
    assert [r["pool"] for r in await open_inbound_calls(db, "ast2", "node-c", take_over=True)] == ["ast2"]
