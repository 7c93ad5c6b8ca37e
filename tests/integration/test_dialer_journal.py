"""The dialer's call journal on real Postgres: one transaction per batch, order kept,
callbacks first in the hopper, nothing lost or applied twice across a Postgres stop,
a COMMIT with an unknown outcome, a process that stops while Postgres is down (its
durable spool is replayed by the next one), a queue past its bound, or a replay."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from hitcall_pbx.agents.sessions import AgentSessions
from hitcall_pbx.core.backoff import Backoff
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.dialer.hopper import Hopper
from hitcall_pbx.dialer.models import Attempt, Campaign
from hitcall_pbx.records.journal import CallJournal, apply_ops, decode_op, encode_op
from hitcall_pbx.store.db import create_pool, dsn_with_database
from hitcall_pbx.store.embedded import EmbeddedPostgres
from tests.ari_fake import FakeAri

FAST = Backoff(base=0.05, cap=0.2)


async def _attempts(pool: asyncpg.Pool, n: int, **fields) -> tuple[Campaign, list[Attempt]]:
    cid, _ = await create_campaign(
        pool, f"journal-{uuid.uuid4().hex[:6]}", state="running", numbers=sim_numbers(1, n), **ALL_DAY, **fields
    )
    campaign = Campaign.from_row(await pool.fetchrow("SELECT * FROM campaigns WHERE id = $1", cid))
    result = await Hopper(pool).take(campaign, n, datetime.now(UTC))
    assert len(result.attempts) == n
    return campaign, result.attempts


def _call(journal: CallJournal, a: Attempt, agent_id: int | None = None, outcome: str = "answered_human") -> None:
    """What the dialer queues for one answered, bridged, ended call."""
    t0 = datetime.now(UTC)
    subject = f"attempt:{a.id}"
    journal.event("call.answered", subject, {"attempt_id": str(a.id), "step": 1})
    journal.progress(a.id, answered_at=t0, bridged_at=None, agent_id=None, answer_to_bridge_ms=None)
    journal.event("call.bridged", subject, {"attempt_id": str(a.id), "step": 2})
    journal.progress(
        a.id, answered_at=t0, bridged_at=t0 + timedelta(milliseconds=9), agent_id=agent_id, answer_to_bridge_ms=9
    )
    journal.close_contact(
        a.contact_id,
        attempt_no=a.attempt_no,
        attempt_created_at=a.created_at,
        status="done",
        retry_at=None,
        outcome=outcome,
        cancelled=False,
    )
    journal.event("call.ended", subject, {"attempt_id": str(a.id), "step": 3})


async def _check_calls(pool: asyncpg.Pool, attempts: list[Attempt], agent_id: int | None) -> None:
    rows = {r["id"]: r for r in await pool.fetch("SELECT * FROM live_attempts")}
    for a in attempts:
        r = rows[a.id]
        assert (r["state"], r["answer_to_bridge_ms"], r["agent_id"]) == ("bridged", 9, agent_id)
    contacts = await pool.fetch(
        "SELECT status, last_outcome FROM contacts WHERE id = ANY($1::bigint[])", [a.contact_id for a in attempts]
    )
    assert {(c["status"], c["last_outcome"]) for c in contacts} == {("done", "answered_human")}
    events = await pool.fetch(
        "SELECT subject, event_type, payload FROM webhook_outbox WHERE event_type <> 'call.originated' ORDER BY id"
    )
    assert len(events) == 3 * len(attempts), "every event once"
    for a in attempts:
        mine = [e["payload"]["step"] for e in events if e["subject"] == f"attempt:{a.id}"]
        assert mine == [1, 2, 3], "outbox order per attempt is the call's order"


async def test_ops_land_in_one_transaction_per_batch_in_order(db: asyncpg.Pool) -> None:
    _, attempts = await _attempts(db, 30)
    agent = await create_agent(db, "2001", "agent-j1", [])
    journal = CallJournal(db, linger_s=0.05)
    commits = 0
    original = journal._wb._write

    async def counting(batch):
        nonlocal commits
        commits += 1
        return await original(batch)

    journal._wb._write = counting  # type: ignore[method-assign]  # wrapped to count the commits
    await journal.start()
    for a in attempts:
        _call(journal, a, agent)
    journal.disposition(attempts[0].id, "sale")
    assert journal.backlog == 30 * 6 + 1  # queued synchronously, nothing awaited
    await journal.flush(5)
    assert commits == 1 and journal.backlog == 0 and journal.applied == 181
    await _check_calls(db, attempts, agent)
    assert await db.fetchval("SELECT disposition FROM live_attempts WHERE id = $1", attempts[0].id) == "sale"
    await journal.close()


async def test_replaying_a_batch_changes_nothing(db: asyncpg.Pool) -> None:
    campaign, attempts = await _attempts(db, 2)
    journal = CallJournal(db)  # not started: its queue is read directly
    for a in attempts:
        _call(journal, a)
    ops = journal._wb.queued()
    async with db.acquire() as conn:
        for _ in range(2):
            async with conn.transaction():
                await apply_ops(conn, ops)
    await _check_calls(db, attempts, None)

    # A later attempt of the contact exists: a late replay of the earlier close does not touch it.
    first = attempts[0]
    await db.execute("UPDATE contacts SET status = 'retry' WHERE id = $1", first.contact_id)
    await db.execute(
        """WITH g AS (DELETE FROM live_attempts WHERE id = $1
                      RETURNING id, campaign_id, caller_id, mode, created_at, retention_until)
           INSERT INTO call_attempts (id, campaign_id, caller_id, mode, created_at, retention_until, ended_at, outcome)
           SELECT id, campaign_id, caller_id, mode, created_at, retention_until, now(), 'busy' FROM g""",
        first.id,
    )
    again = await Hopper(db).take(campaign, 1, datetime.now(UTC))
    assert again.attempts[0].contact_id == first.contact_id and again.attempts[0].attempt_no == 2
    async with db.acquire() as conn, conn.transaction():
        await apply_ops(conn, ops)
    assert await db.fetchval("SELECT status FROM contacts WHERE id = $1", first.contact_id) == "in_progress"


async def test_commit_outcome_unknown_is_retried_without_duplicates(db: asyncpg.Pool) -> None:
    """The connection dies right after COMMIT reached the server: the batch is applied again."""
    _, attempts = await _attempts(db, 5)
    journal = CallJournal(db, backoff=FAST)
    original = journal._wb._write
    lost = []

    async def commit_then_die(batch):
        result = await original(batch)
        if not lost:
            lost.append(len(batch))
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        return result

    journal._wb._write = commit_then_die  # type: ignore[method-assign]  # wrapped: the connection dies after a commit
    await journal.start()
    for a in attempts:
        _call(journal, a)
    await journal.flush(5)
    await journal.close()
    assert lost == [30] and journal.applied == 30
    await _check_calls(db, attempts, None)


async def test_database_refusal_drops_only_the_bad_operation(db: asyncpg.Pool) -> None:
    _, attempts = await _attempts(db, 2)
    journal = CallJournal(db)
    await journal.start()
    journal.disposition(attempts[0].id, "not a valid code!")
    for a in attempts:
        _call(journal, a)
    await journal.flush(5)
    await journal.close()
    assert journal.dropped == 1 and journal.applied == 12
    await _check_calls(db, attempts, None)


async def test_due_callbacks_come_first_and_one_for_an_agent_waits_for_that_agent(db: asyncpg.Pool) -> None:
    cid, list_id = await create_campaign(db, "callbacks", state="running", numbers=sim_numbers(1, 6), **ALL_DAY)
    a1 = await create_agent(db, "2101", "agent-c1", [cid])
    a2 = await create_agent(db, "2102", "agent-c2", [cid])
    ids = [r["id"] for r in await db.fetch("SELECT id FROM contacts WHERE list_id = $1 ORDER BY id", list_id)]
    now = datetime.now(UTC)
    await db.execute(
        "UPDATE contacts SET status = 'callback', callback_at = $2 WHERE id = $1", ids[5], now - timedelta(minutes=1)
    )
    await db.execute(
        "UPDATE contacts SET status = 'callback', callback_at = $2, callback_agent_id = $3 WHERE id = $1",
        ids[4],
        now - timedelta(minutes=2),
        a2,
    )
    await db.execute(
        "UPDATE contacts SET status = 'callback', callback_at = $2 WHERE id = $1", ids[3], now + timedelta(hours=1)
    )  # not due yet
    campaign = Campaign.from_row(await db.fetchrow("SELECT * FROM campaigns WHERE id = $1", cid))
    hopper = Hopper(db)

    taken = (await hopper.take(campaign, 2, now, ready_agents=[a1])).attempts
    assert [(t.contact_id, t.agent_id) for t in taken] == [(ids[5], None), (ids[0], None)]
    taken = (await hopper.take(campaign, 2, now, ready_agents=[a1, a2])).attempts
    assert [(t.contact_id, t.agent_id) for t in taken] == [(ids[4], a2), (ids[1], None)]

    # The callback dialled is done with; one cancelled before dialling stays a callback.
    journal = CallJournal(db)
    await journal.start()
    a, b = taken
    journal.close_contact(
        a.contact_id,
        attempt_no=a.attempt_no,
        attempt_created_at=a.created_at,
        status="retry",
        retry_at=None,
        outcome="cancelled",
        cancelled=True,
    )
    first = (await hopper.take(campaign, 1, now, ready_agents=[a1])).attempts  # contacts still in progress
    assert [t.contact_id for t in first] == [ids[2]]
    await journal.flush(5)
    await journal.close()
    row = await db.fetchrow("SELECT status, callback_agent_id FROM contacts WHERE id = $1", ids[4])
    assert (row["status"], row["callback_agent_id"]) == ("callback", a2)
    done = await db.fetchrow("SELECT * FROM contacts WHERE id = $1", ids[5])
    assert done["status"] == "in_progress" and done["callback_at"] is not None


async def test_a_callback_for_an_agent_who_cannot_take_it_here_goes_to_any_agent(db: asyncpg.Pool) -> None:
    cid, list_id = await create_campaign(
        db, "callbacks-elsewhere", state="running", numbers=sim_numbers(1, 3), **ALL_DAY
    )
    here = await create_agent(db, "2111", "agent-here", [cid])
    elsewhere = await create_agent(db, "2112", "agent-elsewhere", [])  # not assigned to this campaign
    gone = await create_agent(db, "2113", "agent-gone", [cid])
    await db.execute("UPDATE agents SET disabled = true WHERE id = $1", gone)
    ids = [r["id"] for r in await db.fetch("SELECT id FROM contacts WHERE list_id = $1 ORDER BY id", list_id)]
    now = datetime.now(UTC)
    for contact, agent, minutes in ((ids[0], elsewhere, 3), (ids[1], gone, 2), (ids[2], here, 1)):
        await db.execute(
            "UPDATE contacts SET status = 'callback', callback_at = $2, callback_agent_id = $3 WHERE id = $1",
            contact,
            now - timedelta(minutes=minutes),
            agent,
        )
    campaign = Campaign.from_row(await db.fetchrow("SELECT * FROM campaigns WHERE id = $1", cid))
    taken = (await Hopper(db).take(campaign, 3, now, ready_agents=[])).attempts
    # The first two are dialled for whoever is free; the third still waits for its agent.
    assert [(t.contact_id, t.agent_id) for t in taken] == [(ids[0], None), (ids[1], None)]


async def test_postgres_stopped_then_back_nothing_lost_nothing_twice(stoppable_pg: EmbeddedPostgres) -> None:
    pool = await create_pool(stoppable_pg.uri, min_size=1, max_size=3)
    try:
        _, attempts = await _attempts(pool, 40)
        journal = CallJournal(pool, backoff=FAST, write_timeout_s=2)
        await journal.start()
        for a in attempts[:10]:
            _call(journal, a)
        await journal.flush(5)

        await asyncio.to_thread(stoppable_pg.stop)
        for a in attempts[10:]:
            _call(journal, a)
        deadline = time.monotonic() + 10
        while journal.failing_since is None:
            assert time.monotonic() < deadline, "the journal noticed Postgres is down"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # retries fail while the server is down; the queue is kept
        assert journal.backlog == 30 * 6 and journal.dropped == 0

        await asyncio.to_thread(stoppable_pg.start)
        await journal.flush(20)
        assert journal.backlog == 0 and journal.failing_since is None
        await journal.close()
        await _check_calls(pool, attempts, None)
    finally:
        pool.terminate()


async def _wait_failing(journal: CallJournal) -> None:
    deadline = time.monotonic() + 10
    while journal.failing_since is None:
        assert time.monotonic() < deadline, "the journal noticed Postgres is down"
        await asyncio.sleep(0.05)


async def _wait_empty(journal: CallJournal, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while journal.backlog:
        assert time.monotonic() < deadline, f"journal backlog {journal.backlog} written"
        await asyncio.sleep(0.05)


async def test_stopped_while_postgres_is_down_the_next_journal_replays_the_spool(
    stoppable_pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "journal"
    pool = await create_pool(stoppable_pg.uri, min_size=1, max_size=3)
    try:
        _, attempts = await _attempts(pool, 20)
        agent = await create_agent(pool, "2301", "agent-j3", [])
        journal = CallJournal(pool, spool_dir=spool_dir, backoff=FAST, write_timeout_s=2)
        await journal.start()
        for a in attempts[:5]:
            _call(journal, a, agent)
        await journal.flush(5)
        assert not any(spool_dir.glob("*.jsonl")), "the happy path does not touch the disk"

        await asyncio.to_thread(stoppable_pg.stop)
        for a in attempts[5:12]:
            _call(journal, a, agent)
        await _wait_failing(journal)
        deadline = time.monotonic() + 10
        while journal.spool_backlog < 7 * 6:
            assert time.monotonic() < deadline, "the failed batch went to the spool"
            await asyncio.sleep(0.05)
        for a in attempts[12:]:  # queued after the spill; spooled at close
            _call(journal, a, agent)
        started = time.monotonic()
        await journal.close()
        assert time.monotonic() - started < 2, "no waiting for a Postgres that is down"
        assert journal.dropped == 0 and journal.spool_backlog == 15 * 6

        await asyncio.to_thread(stoppable_pg.start)
        again = CallJournal(pool, spool_dir=spool_dir, backoff=FAST, write_timeout_s=2)
        await again.start()
        await _wait_empty(again)
        await again.close()
        assert again.applied == 15 * 6 and again.dropped == 0
        assert not any(spool_dir.glob("*.jsonl"))
        await _check_calls(pool, attempts, agent)
    finally:
        pool.terminate()


async def test_past_max_backlog_the_queue_goes_to_the_spool_not_away(
    stoppable_pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    pool = await create_pool(stoppable_pg.uri, min_size=1, max_size=3)
    try:
        _, attempts = await _attempts(pool, 10)
        await asyncio.to_thread(stoppable_pg.stop)
        # Retries 2 s apart: the queue past max_backlog goes to the spool between them.
        journal = CallJournal(
            pool, spool_dir=tmp_path / "journal", max_backlog=12, backoff=Backoff(base=2, cap=2), write_timeout_s=2
        )
        await journal.start()
        _call(journal, attempts[0])
        await _wait_failing(journal)
        deadline = time.monotonic() + 5
        while journal.spool_backlog < 6:
            assert time.monotonic() < deadline, "the failed batch is spooled"
            await asyncio.sleep(0.02)
        for a in attempts[1:]:
            _call(journal, a)
        assert journal.backlog == 60 and journal.dropped == 0
        await asyncio.sleep(0.3)
        assert journal.spool_backlog == 60 and journal.failing_since is not None
        await asyncio.to_thread(stoppable_pg.start)
        await journal.flush(20)
        assert journal.backlog == 0 and journal.applied == 60 and journal.dropped == 0
        await journal.close()
        await _check_calls(pool, attempts, None)
    finally:
        pool.terminate()


async def test_spooled_operations_round_trip_and_agent_states_replay_safely(db: asyncpg.Pool) -> None:
    _, attempts = await _attempts(db, 1)
    agent = await create_agent(db, "2401", "agent-j4", [])
    journal = CallJournal(db)  # not started: its queue is read directly
    _call(journal, attempts[0])
    t0 = datetime.now(UTC)
    states = [
        ("ready", None, t0),
        ("paused", "lunch", t0 + timedelta(seconds=1)),
        ("ready", None, t0 + timedelta(seconds=2)),
        ("logged_out", None, t0 + timedelta(seconds=3)),
    ]
    for state, code, since in states:
        journal.agent_state(agent, state=state, pause_code=code, campaign_id=None, since=since)
        journal.event("agent.state_changed", f"agent:{agent}", {"agent_id": agent, "state": state})
    ops = journal._wb.queued()
    assert [decode_op(encode_op(op)) for op in ops] == ops

    first, rest = ops[:7], ops[7:]  # the call, then the agent's states
    async with db.acquire() as conn:
        for batch in (first, rest, rest, rest[:2]):  # replays, also of an older part
            async with conn.transaction():
                await apply_ops(conn, batch)
    log = await db.fetch(
        "SELECT state, pause_code, started_at, ended_at FROM agent_state_log WHERE agent_id = $1 ORDER BY started_at",
        agent,
    )
    assert [(r["state"], r["pause_code"], r["started_at"], r["ended_at"]) for r in log] == [
        ("ready", None, t0, t0 + timedelta(seconds=1)),
        ("paused", "lunch", t0 + timedelta(seconds=1), t0 + timedelta(seconds=2)),
        ("ready", None, t0 + timedelta(seconds=2), t0 + timedelta(seconds=3)),
    ]
    row = await db.fetchrow("SELECT state, state_since FROM agents WHERE id = $1", agent)
    assert (row["state"], row["state_since"]) == ("logged_out", t0 + timedelta(seconds=3)), "never moved back"
    events = await db.fetch("SELECT payload FROM webhook_outbox WHERE subject = $1 ORDER BY id", f"agent:{agent}")
    assert [e["payload"]["state"] for e in events] == ["ready", "paused", "ready", "logged_out"]


async def test_agent_states_survive_a_postgres_stop_through_the_journal(
    stoppable_pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    pool = await create_pool(stoppable_pg.uri, min_size=1, max_size=2)
    journal = CallJournal(pool, spool_dir=tmp_path / "journal", backoff=FAST, write_timeout_s=2)
    ari = FakeAri()
    sessions = AgentSessions(ari, pool, journal=journal)
    try:
        agent = await create_agent(pool, "2501", "agent-j5", [])
        await journal.start()
        await sessions.adopt("chan-j5", agent)
        await sessions.drain()

        await asyncio.to_thread(stoppable_pg.stop)
        sessions.pause(agent, "lunch")
        await _wait_failing(journal)
        sessions.unpause(agent)
        sessions.pause(agent, "meeting")
        await journal.close()  # the process stops while Postgres is down: all in the spool
        assert journal.spool_backlog == 6 and journal.dropped == 0

        await asyncio.to_thread(stoppable_pg.start)
        again = CallJournal(pool, spool_dir=tmp_path / "journal", backoff=FAST, write_timeout_s=2)
        await again.start()
        await _wait_empty(again)
        await again.close()
        log = await pool.fetch(
            "SELECT state, pause_code, ended_at IS NULL AS open FROM agent_state_log "
            "WHERE agent_id = $1 ORDER BY started_at",
            agent,
        )
        assert [(r["state"], r["pause_code"], r["open"]) for r in log] == [
            ("ready", None, False),
            ("paused", "lunch", False),
            ("ready", None, False),
            ("paused", "meeting", True),
        ]
        assert await pool.fetchval("SELECT pause_code FROM agents WHERE id = $1", agent) == "meeting"
        events = await pool.fetch(
            "SELECT payload FROM webhook_outbox WHERE event_type = 'agent.state_changed' ORDER BY id"
        )
        assert [(e["payload"]["state"], e["payload"]["previous"]) for e in events] == [
            ("ready", None),
            ("paused", "ready"),
            ("ready", "paused"),
            ("paused", "ready"),
        ]
        assert ari.rest.requests == [], "an adopted agent's pauses need no phone call"
    finally:
        await sessions.close()
        pool.terminate()


async def test_a_write_cut_off_mid_transaction_never_reuses_its_connection(db: asyncpg.Pool, pg_dsn: str) -> None:
    """Postgres holds the write (a lock) past the timeout: the connection is dropped, the
    next write on a one-connection pool works, and nothing is applied twice."""
    pool = await create_pool(
        dsn_with_database(pg_dsn, await db.fetchval("SELECT current_database()")), min_size=1, max_size=1
    )
    try:
        _, attempts = await _attempts(pool, 2)
        before = await pool.fetchval("SELECT pg_backend_pid()")
        journal = CallJournal(pool, backoff=FAST, write_timeout_s=0.5)
        await journal.start()
        async with db.acquire() as blocker, blocker.transaction():
            await blocker.execute("SELECT 1 FROM contacts WHERE id = $1 FOR UPDATE", attempts[0].contact_id)
            _call(journal, attempts[0])
            await _wait_failing(journal)
        _call(journal, attempts[1])
        await journal.flush(10)
        assert journal.failing_since is None and journal.applied == 12
        assert await pool.fetchval("SELECT pg_backend_pid()") != before, "the cut-off connection was dropped"
        await journal.close()
        await _check_calls(pool, attempts, None)
    finally:
        await pool.close()
