"""Live control from any node, over real PostgreSQL: two nodes' command buses on one
database (each with its own pool and listening connection, as two `hitcall serve`
processes have), a fake control on each node (this is the layer test; the controls' own
behaviour is tested where they live), and the REST API of one node answering for an
agent or call the other node drives."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp import test_utils
from prometheus_client import CollectorRegistry

from hitcall_pbx.api import build_registry, create_app
from hitcall_pbx.api.deps import LiveCall, TransferStatus
from hitcall_pbx.auth import Actor, Role
from hitcall_pbx.cluster.commands import CommandBus, prune
from hitcall_pbx.cluster.routed import RoutedControl, RoutedMonitoring
from hitcall_pbx.core.calls import CallState
from hitcall_pbx.core.monitoring import MonitorMode
from hitcall_pbx.core.recording_pause import AlreadyPaused
from hitcall_pbx.dialer.control import ApiOnlyControl
from hitcall_pbx.errors import Conflict, HitCallError, NotFound, Unavailable
from hitcall_pbx.store.db import connect, create_pool
from tests.conftest import as_service

from .test_api_support import Api, FakeDialer, World, api, make_world  # noqa: F401  (fixture)

ACTOR = Actor("sup-anna", "supervisor", "192.0.2.7")
A, B = "node-a", "node-b"


async def _dsn(pg_dsn: str, db: asyncpg.Pool) -> str:
    return as_service(pg_dsn, await db.fetchval("SELECT current_database()"))


async def _node_row(db: asyncpg.Pool, node_id: str, *, live: bool = True) -> None:
    await db.execute(
        """INSERT INTO nodes (node_id, instance, host, pid, pools, lease_until)
           VALUES ($1, $2, 'host-' || $1, 4242, '{main}', now() + $3 * interval '1 minute')
           ON CONFLICT (node_id) DO UPDATE SET lease_until = EXCLUDED.lease_until""",
        node_id,
        uuid.uuid4(),
        1 if live else -1,
    )


@dataclasses.dataclass
class Node:
    node_id: str
    pool: asyncpg.Pool
    bus: CommandBus
    listening: list[asyncpg.Connection] = dataclasses.field(default_factory=list)  # its LISTEN connections


@pytest.fixture
async def nodes(pg_dsn: str, db: asyncpg.Pool) -> AsyncIterator[Callable[..., Awaitable[Node]]]:
    """Makes a node: a live row in `nodes`, a pool and a command bus of its own."""
    dsn = await _dsn(pg_dsn, db)
    made: list[Node] = []

    async def make(node_id: str, **kw: Any) -> Node:
        await _node_row(db, node_id)
        pool = await create_pool(dsn, min_size=1, max_size=10)
        kw.setdefault("poll_s", 0.2)
        kw.setdefault("sweep_s", 0.5)
        listening: list[asyncpg.Connection] = []

        async def listen() -> asyncpg.Connection:
            listening.append(await connect(dsn))
            return listening[-1]

        bus = CommandBus(pool, node_id, listen, **kw)
        await bus.start()
        node = Node(node_id, pool, bus, listening)
        made.append(node)
        return node

    yield make
    for node in made:
        await node.bus.close()
        await node.pool.close()


class Owner(FakeDialer):
    """The control of the node that drives the agent: records each call, can be told to fail
    or to be slow."""

    def __init__(self, node_id: str, pool: asyncpg.Pool | None = None) -> None:
        super().__init__()
        self.node_id = node_id
        self.pool = pool
        self.fail: dict[str, Exception] = {}
        self.delay_s = 0.0
        self.running = 0
        self.most_running = 0

    async def _step(self, name: str) -> None:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.running -= 1
        if name in self.fail:
            raise self.fail[name]

    async def pause_agent(self, agent_id: int, pause_code: str, *, actor: Actor) -> None:
        await self._step("pause_agent")
        await super().pause_agent(agent_id, pause_code, actor=actor)
        if self.pool is not None:  # what the node's agent sessions write
            await self.pool.execute(
                "UPDATE agents SET state = 'paused', pause_code = $2, state_since = now() WHERE id = $1",
                agent_id,
                pause_code,
            )

    async def log_out_agent(self, agent_id: int, *, actor: Actor) -> None:
        await self._step("log_out_agent")
        await super().log_out_agent(agent_id, actor=actor)

    async def accept_offer(self, agent_id: int, *, actor: Actor) -> uuid.UUID:
        await self._step("accept_offer")
        return await super().accept_offer(agent_id, actor=actor)

    async def transfer(self, agent_id: int, kind: str, target: dict[str, Any], *, actor: Actor) -> TransferStatus:
        await self._step("transfer")
        return await super().transfer(agent_id, kind, target, actor=actor)

    async def pause_recording(self, agent_id: int, *, actor: Actor) -> Any:
        await self._step("pause_recording")
        return await super().pause_recording(agent_id, actor=actor)


async def _commands(db: asyncpg.Pool) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM node_commands ORDER BY created_at")


# ------------------------------------------------------------------ the bus


async def test_a_command_reaches_its_node_runs_once_and_returns_its_result(nodes: Any, db: asyncpg.Pool) -> None:
    a, b = await nodes(A, poll_s=5.0), await nodes(B, sweep_s=5.0)  # no answer but by NOTIFY within 5 s
    owner = Owner(B)
    await b.bus.serve(owner)
    await asyncio.sleep(0.2)  # its first sweep (at serve) is over

    started = time.monotonic()
    status = await a.bus.call(
        B, "call.transfer", {"agent_id": 7, "kind": "blind", "target": {"number": "+358401234567"}}, ACTOR
    )
    took = time.monotonic() - started
    assert isinstance(status, TransferStatus)
    assert status == TransferStatus(
        attempt_id=owner.attempt_id, kind="blind", state="completed", from_agent_id=7, target="number",
        number="+358401234567",
    )  # fmt: skip
    assert owner.named("transfer") == [((7, "blind", {"number": "+358401234567"}), {"actor": ACTOR})]
    accepted = await a.bus.call(B, "preview.accept", {"agent_id": 7}, ACTOR)
    assert accepted == owner.attempt_id and isinstance(accepted, uuid.UUID)
    assert len(owner.calls) == 2  # each ran once
    assert took < 1.0, took  # both ways woken by NOTIFY, not by the sweep or the caller's polling

    rows = await _commands(db)
    assert [(r["method"], r["node_id"], r["from_node"], r["state"]) for r in rows] == [
        ("call.transfer", B, A, "done"),
        ("preview.accept", B, A, "done"),
    ]
    for r in rows:  # the number and the caller's address are gone once done; the answer once read
        assert r["args"] is None and r["result"] is None
        assert r["actor"] == {"name": "sup-anna", "role": "supervisor"}
        assert r["created_at"] <= r["taken_at"] <= r["done_at"] < r["deadline"]


async def test_an_owner_error_comes_back_as_the_same_kind_code_and_status(nodes: Any, db: asyncpg.Pool) -> None:
    a, b = await nodes(A), await nodes(B)
    owner = Owner(B)
    await b.bus.serve(owner)

    owner.fail["log_out_agent"] = Conflict(
        "the agent is on a call or has one coming; log out after it",
        details={"agent_id": 7, "state": "on_call"},
        code="agent_busy",
    )
    with pytest.raises(Conflict) as caught:
        await a.bus.call(B, "agent.log_out", {"agent_id": 7}, ACTOR)
    assert (caught.value.status, caught.value.code) == (409, "agent_busy")
    assert caught.value.message == "the agent is on a call or has one coming; log out after it"
    assert caught.value.details == {"agent_id": 7, "state": "on_call"}
    (row,) = await _commands(db)  # once read, the error keeps its kind and code only
    assert (row["state"], row["error"]) == ("failed", {"kind": "Conflict", "status": 409, "code": "agent_busy"})

    owner.fail["accept_offer"] = NotFound("the agent has no open offer", details={"agent_id": 7}, code="no_offer")
    with pytest.raises(NotFound) as missing:
        await a.bus.call(B, "preview.accept", {"agent_id": 7}, ACTOR)
    assert (missing.value.status, missing.value.code, missing.value.details) == (404, "no_offer", {"agent_id": 7})

    owner.fail["pause_recording"] = AlreadyPaused("the recording is already paused", code="recording_already_paused")
    with pytest.raises(Conflict) as paused:  # a subclass travels as its kind
        await a.bus.call(B, "recording.pause", {"agent_id": 7}, ACTOR)
    assert (paused.value.status, paused.value.code) == (409, "recording_already_paused")

    owner.fail["transfer"] = RuntimeError("a bug on the owner")
    with pytest.raises(HitCallError) as bug:
        await a.bus.call(B, "call.transfer", {"agent_id": 7, "kind": "blind", "target": {"agent_id": 8}}, ACTOR)
    assert (bug.value.status, bug.value.code) == (500, "internal_error")
    assert bug.value.details["node_id"] == B and len(bug.value.details["error_id"]) == 32
    assert "a bug" not in bug.value.message  # the owner logs it; the caller gets an error id


async def test_the_answer_waits_for_what_the_node_settles(nodes: Any) -> None:
    """A node answers once its write-behind writes are done (serve's `settle`)."""
    a, b = await nodes(A), await nodes(B)
    owner, steps = Owner(B), []

    async def settle() -> None:
        await asyncio.sleep(0.2)  # the journal writing the agent's new state
        steps.append(("settled", len(owner.calls)))

    await b.bus.serve(owner, settle=settle)
    await a.bus.call(B, "agent.pause", {"agent_id": 7, "pause_code": "lunch"}, ACTOR)
    assert steps == [("settled", 1)]  # after the pause ran, before its answer


async def test_an_agent_state_this_node_changes_itself_is_settled_before_the_answer(
    nodes: Any, db: asyncpg.Pool
) -> None:
    a = await nodes(A)
    local, steps = Owner(A), []

    async def settle() -> None:
        steps.append(len(local.calls))

    routed = RoutedControl(local, a.bus, a.pool, A, settle=settle)
    agent = await db.fetchval(
        "INSERT INTO agents (number, name, state, node_id) VALUES ('401', 'On A', 'ready', $1) RETURNING id", A
    )
    await routed.pause_agent(agent, "lunch", actor=ACTOR)
    await routed.unpause_agent(agent, actor=ACTOR)
    assert steps == [1, 2]  # after each change, before the API reads the agent's row back


async def test_a_gone_node_is_answered_503_naming_it_at_once(nodes: Any, db: asyncpg.Pool) -> None:
    a = await nodes(A, timeout_s=3.0)
    await _node_row(db, B, live=False)  # its lease lapsed
    started = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        await a.bus.call(B, "agent.pause", {"agent_id": 7, "pause_code": "lunch"}, ACTOR)
    assert time.monotonic() - started < 1.0
    assert (caught.value.status, caught.value.code) == (503, "node_unavailable")
    assert caught.value.details["node_id"] == B and caught.value.details["reason"] == "gone"
    assert B in caught.value.message
    assert await _commands(db) == []  # nothing written for a node that cannot run it

    with pytest.raises(Unavailable) as unknown:  # a node id no node ever had
        await a.bus.call("node-x", "agent.unpause", {"agent_id": 7}, ACTOR)
    assert unknown.value.code == "node_unavailable" and unknown.value.details["node_id"] == "node-x"


async def test_a_node_whose_lease_lapses_while_the_command_waits_is_answered_503(nodes: Any, db: asyncpg.Pool) -> None:
    a = await nodes(A, timeout_s=5.0)
    await nodes(B)  # live, but it never serves
    call = asyncio.ensure_future(a.bus.call(B, "agent.unpause", {"agent_id": 7}, ACTOR))
    await asyncio.sleep(0.3)
    await db.execute("UPDATE nodes SET lease_until = now() - interval '1 second' WHERE node_id = $1", B)
    started = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        await call
    assert time.monotonic() - started < 1.0  # not the whole timeout
    assert caught.value.details == {"node_id": B, "reason": "gone", "command_id": caught.value.details["command_id"]}
    assert [r["state"] for r in await _commands(db)] == ["expired"]


async def test_a_node_gone_while_it_runs_the_command_is_503_with_the_outcome_unknown(
    nodes: Any, db: asyncpg.Pool
) -> None:
    a, b = await nodes(A, timeout_s=2.0, run_grace_s=10.0), await nodes(B)
    owner = Owner(B)
    owner.delay_s = 2.0  # the node hangs in the middle of it
    await b.bus.serve(owner)
    call = asyncio.ensure_future(a.bus.call(B, "agent.pause", {"agent_id": 7, "pause_code": "x"}, ACTOR))
    await asyncio.sleep(0.5)
    assert [r["state"] for r in await _commands(db)] == ["running"]
    await db.execute("UPDATE nodes SET lease_until = now() - interval '1 second' WHERE node_id = $1", B)
    started = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        await call
    assert time.monotonic() - started < 1.0  # not the timeout and grace
    assert caught.value.code == "node_unavailable" and caught.value.details["reason"] == "outcome_unknown"
    assert "outcome is unknown" in caught.value.message


async def test_no_answer_in_time_is_503_and_the_command_never_runs_late(nodes: Any, db: asyncpg.Pool) -> None:
    a, b = await nodes(A, timeout_s=1.0), await nodes(B)  # b is live but not serving yet
    owner = Owner(B)
    started = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        await a.bus.call(B, "call.manual_dial", {"agent_id": 7, "number": "+358401234567"}, ACTOR)
    took = time.monotonic() - started
    assert 1.0 <= took < 3.0, took
    assert caught.value.code == "node_unavailable" and caught.value.details["reason"] == "no_answer"
    (row,) = await _commands(db)
    assert row["state"] == "expired" and row["taken_at"] is None
    assert row["args"] is None  # the number is not kept

    # The owner comes back: what expired is not run.
    await b.bus.serve(owner)
    await asyncio.sleep(1.0)  # two sweeps
    assert owner.calls == []
    assert [r["state"] for r in await _commands(db)] == ["expired"]


async def test_a_pending_command_past_its_deadline_is_not_run_even_if_nobody_expired_it(
    nodes: Any, db: asyncpg.Pool
) -> None:
    """The caller went away before it could expire its command: the owner still never runs it."""
    b = await nodes(B)
    await db.execute(
        """INSERT INTO node_commands (id, node_id, from_node, method, args, actor, created_at, deadline)
           VALUES ($1, $2, $3, 'agent.unpause', '{"agent_id": 7}', '{"name": "x", "role": "admin"}',
                   now() - interval '10 seconds', now() - interval '5 seconds')""",
        uuid.uuid4(),
        B,
        A,
    )
    owner = Owner(B)
    await b.bus.serve(owner)
    await asyncio.sleep(1.0)
    assert owner.calls == []
    assert [r["state"] for r in await _commands(db)] == ["pending"]
    await db.execute(
        "UPDATE node_commands SET created_at = now() - interval '3 minutes', deadline = now() - interval '2 minutes'"
    )
    await prune(db)  # expires it, clears its arguments
    (row,) = await _commands(db)
    assert row["state"] == "expired" and row["args"] is None and "source_ip" not in row["actor"]


async def test_a_command_written_before_its_node_listens_runs_when_it_starts(nodes: Any, db: asyncpg.Pool) -> None:
    a, b = await nodes(A, timeout_s=4.0), await nodes(B)
    owner = Owner(B)
    call = asyncio.ensure_future(a.bus.call(B, "agent.pause", {"agent_id": 7, "pause_code": "lunch"}, ACTOR))
    await asyncio.sleep(0.8)
    assert [r["state"] for r in await _commands(db)] == ["pending"]
    await b.bus.serve(owner)
    assert await asyncio.wait_for(call, 3.0) is None
    assert owner.named("pause_agent") == [((7, "lunch"), {"actor": ACTOR})]


async def test_a_node_whose_listening_connection_breaks_still_gets_its_commands(nodes: Any, db: asyncpg.Pool) -> None:
    a, b = await nodes(A, timeout_s=4.0), await nodes(B, sweep_s=5.0)
    owner = Owner(B)
    await b.bus.serve(owner)
    assert len(b.listening) == 1
    await db.execute("SELECT pg_terminate_backend($1)", b.listening[0].get_server_pid())
    # asked at once: the sweep finds the command even before the node listens again
    await a.bus.call(B, "agent.unpause", {"agent_id": 7}, ACTOR)
    for _ in range(50):
        if len(b.listening) == 2 and not b.listening[1].is_closed():
            break
        await asyncio.sleep(0.1)
    assert len(b.listening) == 2  # listening again on a new connection
    started = time.monotonic()
    await a.bus.call(B, "agent.unpause", {"agent_id": 8}, ACTOR)
    assert time.monotonic() - started < 2.0  # woken by NOTIFY again, not by the sweep (every 5 s)
    assert [args for args, _ in owner.named("unpause_agent")] == [(7,), (8,)]


async def test_concurrent_commands_each_run_once_in_both_directions(nodes: Any, db: asyncpg.Pool) -> None:
    a, b = await nodes(A, batch=4), await nodes(B, batch=4)
    owner_a, owner_b = Owner(A), Owner(B)
    owner_a.delay_s = owner_b.delay_s = 0.2
    await a.bus.serve(owner_a)
    await b.bus.serve(owner_b)

    def pause(bus: CommandBus, node: str, agent_id: int) -> Awaitable[Any]:
        return bus.call(node, "agent.pause", {"agent_id": agent_id, "pause_code": f"p{agent_id}"}, ACTOR)

    started = time.monotonic()
    results = await asyncio.gather(
        *(pause(a.bus, B, i) for i in range(1, 21)), *(pause(b.bus, A, i) for i in range(101, 111))
    )
    took = time.monotonic() - started
    assert results == [None] * 30
    assert sorted(args[0] for args, _ in owner_b.named("pause_agent")) == list(range(1, 21))
    assert sorted(args[0] for args, _ in owner_a.named("pause_agent")) == list(range(101, 111))
    assert owner_b.most_running > 4  # run side by side, more than one batch at a time
    assert took < 3.5, took  # 20 x 0.2 s one after the other would be 4 s
    assert await db.fetchval("SELECT count(*) FROM node_commands WHERE state = 'done'") == 30


async def test_two_processes_serving_one_node_id_run_each_command_once(nodes: Any, db: asyncpg.Pool) -> None:
    """At most once rests on the state column, not on there being one server per node."""
    a, b1, b2 = await nodes(A), await nodes(B, batch=2), await nodes(B, batch=2)
    first, second = Owner(B), Owner(B)
    first.delay_s = second.delay_s = 0.05
    await b1.bus.serve(first)
    await b2.bus.serve(second)
    await asyncio.gather(*(a.bus.call(B, "agent.unpause", {"agent_id": i}, ACTOR) for i in range(1, 41)))
    ran = [args[0] for args, _ in first.named("unpause_agent") + second.named("unpause_agent")]
    assert sorted(ran) == list(range(1, 41))


async def test_prune_keeps_a_day_and_clears_leftovers(db: asyncpg.Pool) -> None:
    old, recent, left, failed = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await db.execute(
        """INSERT INTO node_commands (id, node_id, from_node, method, args, actor, state, created_at, deadline,
                                      taken_at, done_at, result)
           VALUES ($1, 'b', 'a', 'agent.pause', NULL, '{"name": "x", "role": "admin"}', 'done',
                   now() - interval '25 hours', now() - interval '25 hours' + interval '5 seconds',
                   now() - interval '25 hours', now() - interval '25 hours', NULL),
                  ($2, 'b', 'a', 'preview.accept', NULL, '{"name": "x", "role": "admin"}', 'done',
                   now() - interval '2 hours', now() - interval '2 hours' + interval '5 seconds',
                   now() - interval '2 hours', now() - interval '2 hours', '"0b0e5b4e-7a35-4c1e-9b2a-3f4f3c0a0001"'),
                  ($3, 'b', 'a', 'call.transfer', NULL, '{"name": "x", "role": "admin"}', 'done',
                   now(), now() + interval '5 seconds', now(), now(), '{"number": "+358401234567"}')""",
        old,
        recent,
        left,
    )
    await db.execute(
        """INSERT INTO node_commands (id, node_id, from_node, method, actor, state, created_at, deadline, taken_at,
                                      done_at, error)
           VALUES ($1, 'b', 'a', 'call.manual_dial', '{"name": "x", "role": "admin"}', 'failed',
                   now() - interval '2 hours', now() - interval '2 hours' + interval '5 seconds',
                   now() - interval '2 hours', now() - interval '2 hours',
                   '{"kind": "Conflict", "status": 409, "code": "dial_refused", "message": "+358401234567 refused",
                     "details": {"number": "+358401234567"}}')""",
        failed,
    )
    assert await prune(db) == 1
    rows = {r["id"]: r for r in await _commands(db)}
    assert set(rows) == {recent, left, failed}
    assert rows[recent]["result"] is None  # a caller that went away: cleared after a minute
    assert rows[failed]["error"] == {"kind": "Conflict", "status": 409, "code": "dial_refused"}
    assert rows[left]["result"] == {"number": "+358401234567"}  # its caller may still read it


async def test_live_calls_are_this_nodes_own_and_the_others_from_their_rows(nodes: Any, db: asyncpg.Pool) -> None:
    a = await nodes(A)
    campaign = await db.fetchval(
        "INSERT INTO campaigns (name, mode, caller_id) VALUES ('Both', 'progressive', '+358201234567') RETURNING id"
    )
    mine, theirs, unowned = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for attempt, node in ((mine, A), (theirs, B), (unowned, None)):
        await db.execute(
            """INSERT INTO live_attempts (id, campaign_id, dialled_number, caller_id, mode, state, originated_at,
                                          retention_until, node_id, pool)
               VALUES ($1, $2, '+358401234567', '+358201234567', 'progressive', 'ringing', now(),
                       now() + interval '1 year', $3, 'main')""",
            attempt,
            campaign,
            node,
        )
    local = FakeDialer()
    local.live = [LiveCall(attempt_id=mine, campaign_id=campaign, state=CallState.BRIDGED, number="+358401234567")]
    routed = RoutedControl(local, a.bus, a.pool, A)
    calls = await routed.live_calls(campaign_id=campaign)
    assert [(c.attempt_id, c.state) for c in calls] == [(mine, CallState.BRIDGED), (theirs, CallState.RINGING)]
    assert calls[1].number == "+358401234567" and calls[1].campaign_id == campaign
    assert await routed.live_calls(campaign_id=campaign, agent_id=12345) == []  # filtered in the query too


async def test_an_api_only_process_asks_the_node_even_under_the_same_node_id(nodes: Any, db: asyncpg.Pool) -> None:
    b = await nodes(B)
    owner = Owner(B)
    await b.bus.serve(owner)
    beside = await nodes(B)  # `hitcall serve --api-only` on the same host: same default node id, serves nothing
    routed = RoutedControl(ApiOnlyControl(db), beside.bus, beside.pool, None)
    followed = await db.fetchval(
        "INSERT INTO agents (number, name, state, node_id, pool) VALUES ('301', 'On B', 'ready', $1, 'main')"
        " RETURNING id",
        B,
    )
    nowhere = await db.fetchval("INSERT INTO agents (number, name) VALUES ('302', 'Logged out') RETURNING id")
    await routed.pause_agent(followed, "lunch", actor=ACTOR)
    assert owner.named("pause_agent") == [((followed, "lunch"), {"actor": ACTOR})]
    with pytest.raises(Unavailable) as caught:  # no node follows it: the API-only process's own answer
        await routed.pause_agent(nowhere, "lunch", actor=ACTOR)
    assert caught.value.code == "dialer_elsewhere"

    campaign = await db.fetchval(
        "INSERT INTO campaigns (name, mode, caller_id) VALUES ('B', 'progressive', '+358201234567') RETURNING id"
    )
    attempt = await db.fetchval(
        """INSERT INTO live_attempts (id, campaign_id, dialled_number, caller_id, mode, state, retention_until,
                                      node_id, pool)
           VALUES (gen_random_uuid(), $1, '+358401234567', '+358201234567', 'progressive', 'ringing',
                   now() + interval '1 year', $2, 'main') RETURNING id""",
        campaign,
        B,
    )
    unfollowed = await db.fetchval(  # written before several nodes: the one dialing process follows it
        """INSERT INTO live_attempts (id, campaign_id, dialled_number, caller_id, mode, state, retention_until)
           VALUES (gen_random_uuid(), $1, '+358401234568', '+358201234567', 'progressive', 'bridged',
                   now() + interval '1 year') RETURNING id""",
        campaign,
    )
    # every call, from the rows: this process follows none itself
    assert [c.attempt_id for c in await routed.live_calls()] == [attempt, unfollowed]


# ------------------------------------------------------------------ the API


class StoredMonitoring:
    """The monitoring of the node that drives the call: writes its session rows, as the real one does."""

    def __init__(self, pool: asyncpg.Pool, node_id: str) -> None:
        self.pool, self.node_id = pool, node_id
        self.actors: list[tuple[str, Actor]] = []

    def active(self) -> list[dict[str, Any]]:
        return []  # the API node has no sessions of its own here: it reads the stored ones

    async def _view(self, monitor_id: int) -> dict[str, Any]:
        row = await self.pool.fetchrow("SELECT * FROM monitoring_sessions WHERE id = $1", monitor_id)
        return {
            "id": row["id"],
            "supervisor": row["supervisor"],
            "supervisor_user_id": row["supervisor_user_id"],
            "phone_agent_id": None,
            "attempt_id": str(row["attempt_id"]),
            "campaign_id": row["campaign_id"],
            "agent_id": row["agent_id"],
            "mode": row["mode"],
            "modes": [{"mode": m["mode"], "at": datetime.fromisoformat(m["at"])} for m in row["modes"]],
            "started_at": row["started_at"],
            "ended_at": row["ended_at"],
            "end_reason": row["end_reason"],
        }

    async def start_session(
        self, *, user_id: int, username: str, role: str, attempt_id: str, mode: MonitorMode, actor: Actor
    ) -> dict[str, Any]:
        self.actors.append(("start", actor))
        now = datetime.now(UTC)
        monitor_id = await self.pool.fetchval(
            """INSERT INTO monitoring_sessions (supervisor, supervisor_user_id, attempt_id, mode, modes, started_at,
                                               node_id, pool)
               VALUES ($1, $2, $3, $4, $5, $6, $7, 'main') RETURNING id""",
            username,
            user_id,
            uuid.UUID(attempt_id),
            MonitorMode(mode).value,
            [{"mode": MonitorMode(mode).value, "at": now.isoformat()}],
            now,
            self.node_id,
        )
        return await self._view(monitor_id)

    async def change(self, monitor_id: int, mode: MonitorMode, **kw: Any) -> dict[str, Any]:
        self.actors.append(("change", kw["actor"]))
        await self.pool.execute(
            "UPDATE monitoring_sessions SET mode = $2, modes = modes || $3 WHERE id = $1",
            monitor_id,
            MonitorMode(mode).value,
            [{"mode": MonitorMode(mode).value, "at": datetime.now(UTC).isoformat()}],
        )
        return await self._view(monitor_id)

    async def stop(self, monitor_id: int, **kw: Any) -> dict[str, Any]:
        self.actors.append(("stop", kw["actor"]))
        await self.pool.execute(
            "UPDATE monitoring_sessions SET ended_at = now(), end_reason = 'stopped' WHERE id = $1", monitor_id
        )
        return await self._view(monitor_id)


@dataclasses.dataclass
class TwoNodes:
    client: test_utils.TestClient  # node A's API
    local: Owner  # node A's own control
    owner: Owner  # node B's control
    monitoring: StoredMonitoring  # node B's monitoring
    world: World


@pytest.fixture
async def two_nodes(api: Api, nodes: Any) -> AsyncIterator[TwoNodes]:
    """Node A serves the API (its dialer port a RoutedControl); node B drives the agent."""
    world = await make_world(api)
    a, b = await nodes(A, timeout_s=2.0), await nodes(B)
    local, owner = Owner(A, a.pool), Owner(B, b.pool)
    monitoring = StoredMonitoring(b.pool, B)
    await a.bus.serve(local)
    await b.bus.serve(owner, monitoring)
    deps = dataclasses.replace(
        api.deps,
        dialer=RoutedControl(local, a.bus, a.pool, A),
        monitoring=RoutedMonitoring(None, a.bus, a.pool, A),
        metrics=CollectorRegistry(),
    )
    client = test_utils.TestClient(test_utils.TestServer(create_app(deps, registry=build_registry())))
    await client.start_server()
    try:
        yield TwoNodes(client, local, owner, monitoring, world)
    finally:
        await client.close()


async def _agent_on(api: Api, agent_id: int, node: str | None, state: str = "ready") -> None:
    await api.pool.execute(
        "UPDATE agents SET node_id = $2, pool = 'main', state = $3, pause_code = NULL WHERE id = $1",
        agent_id,
        node,
        state,
    )


async def test_the_api_pauses_an_agent_of_the_other_node_with_its_answer(api: Api, two_nodes: TwoNodes) -> None:
    t, agent_id = two_nodes, two_nodes.world.ids["agent_id"]
    await _agent_on(api, agent_id, B)
    sup = t.world.credentials[Role.SUPERVISOR]
    resp = await t.client.post(f"/api/v1/agents/{agent_id}/pause", json={"pause_code": "lunch"}, headers=sup)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["state"], body["pause_code"]) == ("paused", "lunch")  # what node B did
    ((args, kw),) = t.owner.named("pause_agent")
    assert args == (agent_id, "lunch")
    supervisor = await api.pool.fetchval("SELECT username FROM users WHERE role = 'supervisor' ORDER BY id LIMIT 1")
    assert (kw["actor"].name, kw["actor"].role, kw["actor"].source_ip) == (supervisor, "supervisor", "127.0.0.1")
    assert t.local.calls == []  # node A ran nothing

    # An agent of node A (or of no node) is node A's own.
    await _agent_on(api, agent_id, A)
    resp = await t.client.post(f"/api/v1/agents/{agent_id}/unpause", headers=sup)
    assert resp.status == 200 and len(t.local.named("unpause_agent")) == 1
    await _agent_on(api, agent_id, B, state="logged_out")  # B followed it last; it is not logged in now
    resp = await t.client.post(f"/api/v1/agents/{agent_id}/unpause", headers=sup)
    assert resp.status == 200 and len(t.local.named("unpause_agent")) == 2
    assert t.owner.named("unpause_agent") == []


async def test_the_api_answers_with_the_other_nodes_error_or_503_when_it_is_gone(api: Api, two_nodes: TwoNodes) -> None:
    t, agent_id = two_nodes, two_nodes.world.ids["agent_id"]
    await _agent_on(api, agent_id, B, state="on_call")
    admin = t.world.credentials[Role.ADMIN]
    t.owner.fail["log_out_agent"] = Conflict(
        "the agent is on a call or has one coming; log out after it",
        details={"agent_id": agent_id, "state": "on_call"},
        code="agent_busy",
    )
    resp = await t.client.post(f"/api/v1/agents/{agent_id}/logout", headers=admin)
    assert resp.status == 409
    assert await resp.json() == {
        "error": "agent_busy",
        "message": "the agent is on a call or has one coming; log out after it",
        "details": {"agent_id": agent_id, "state": "on_call"},
    }

    resp = await t.client.post(
        f"/api/v1/agents/{agent_id}/transfer", json={"kind": "blind", "target": {"number": "+358409876543"}},
        headers=admin,
    )  # fmt: skip
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["number"] == "+358409876543" and (await resp.json())["from_agent_id"] == agent_id

    await api.pool.execute("UPDATE nodes SET lease_until = now() - interval '1 second' WHERE node_id = $1", B)
    started = time.monotonic()
    resp = await t.client.post(f"/api/v1/agents/{agent_id}/pause", json={"pause_code": "lunch"}, headers=admin)
    assert time.monotonic() - started < 1.0
    assert resp.status == 503
    body = await resp.json()
    assert body["error"] == "node_unavailable" and body["details"]["node_id"] == B and B in body["message"]
    assert t.owner.named("pause_agent") == []


async def test_the_api_hangs_up_and_monitors_a_call_the_other_node_drives(api: Api, two_nodes: TwoNodes) -> None:
    t = two_nodes
    attempt_id = t.world.ids["attempt_id"]
    await api.pool.execute("UPDATE live_attempts SET node_id = $2, pool = 'main' WHERE id = $1", attempt_id, B)
    admin = t.world.credentials[Role.ADMIN]

    resp = await t.client.post(f"/api/v1/calls/{attempt_id}/monitor", json={"mode": "listen"}, headers=admin)
    assert resp.status == 201, await resp.text()
    session = await resp.json()
    assert session["attempt_id"] == str(attempt_id) and session["mode"] == "listen"
    monitor_id = session["id"]
    resp = await t.client.patch(
        f"/api/v1/calls/{attempt_id}/monitor/{monitor_id}", json={"mode": "whisper"}, headers=admin
    )
    assert resp.status == 200, await resp.text()
    assert [m["mode"] for m in (await resp.json())["modes"]] == ["listen", "whisper"]
    resp = await t.client.delete(f"/api/v1/calls/{attempt_id}/monitor/{monitor_id}", headers=admin)
    assert resp.status == 200 and (await resp.json())["end_reason"] == "stopped"
    assert [step for step, _ in t.monitoring.actors] == ["start", "change", "stop"]

    resp = await t.client.post(f"/api/v1/calls/{attempt_id}/hangup", headers=admin)
    assert resp.status == 204, await resp.text()
    assert [args for args, _ in t.owner.named("hang_up")] == [(attempt_id,)]
    assert t.local.calls == []

    # the live call list of node A shows node B's call
    resp = await t.client.get("/api/v1/calls", headers=admin)
    assert [c["attempt_id"] for c in (await resp.json())["items"]] == [str(attempt_id)]
