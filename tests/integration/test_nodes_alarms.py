"""Alarms from several nodes on one database: an alarm about the cluster is raised once and
cleared once whichever nodes see it; an alarm about one node carries that node's name and
only that node raises and clears it. Two `AlarmMonitor`s on two pools (two processes)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from hitcall_pbx.alarms import AlarmMonitor, AlarmSources, service_inputs
from hitcall_pbx.core.alarms import AlarmInputs
from hitcall_pbx.hooks import WebhookDispatcher, generate_secret
from tests.integration.nodes import NodeDb, two_nodes
from tests.webhook_receiver import ALLOW_LOOPBACK, Receiver

HEALTHY = AlarmInputs()
DEAD_LETTERS = AlarmInputs(webhook_dead=3)  # the cluster's: every node reads it from PostgreSQL
ARI_DOWN = AlarmInputs(ari_connected=False, ari_down_s=30.0)  # one node's


class Inputs:
    def __init__(self, now: AlarmInputs) -> None:
        self.now = now

    async def __call__(self) -> AlarmInputs:
        return self.now


@pytest.fixture
async def nodes(pg_dsn, db) -> AsyncIterator[tuple[NodeDb, NodeDb]]:
    async with two_nodes(pg_dsn, db) as pair:
        yield pair


def monitor(node: NodeDb, inputs: Inputs) -> AlarmMonitor:
    assert node.pool is not None
    return AlarmMonitor(node.pool, inputs, registry=CollectorRegistry(), interval=0.05, node_id=node.name)


async def rows(db) -> list[tuple[str, str]]:
    return [(r["name"], r["state"]) for r in await db.fetch("SELECT name, state FROM alarms ORDER BY id")]


async def events(db) -> list[tuple[str, str]]:
    return [
        (r["event_type"], r["payload"]["name"])
        for r in await db.fetch("SELECT event_type, payload FROM webhook_outbox ORDER BY id")
    ]


async def test_cluster_alarm_seen_by_two_nodes_is_one_row_one_raised_event_one_clear(db, nodes):
    secret = generate_secret()
    oncall = Receiver(secret)
    await oncall.up()
    await db.execute(
        "INSERT INTO webhook_subscriptions (url, secret, event_types) VALUES ($1, $2, $3)",
        oncall.url,
        secret,
        ["alarm.raised", "alarm.cleared"],
    )
    health = Inputs(DEAD_LETTERS)
    a, b = monitor(nodes[0], health), monitor(nodes[1], health)
    try:
        for _ in range(3):  # both see it, at the same moment and after
            results = await asyncio.gather(a.check_once(), b.check_once())
        assert set(a.active) == set(b.active) == {"webhook_dead_letters"}
        assert await rows(db) == [("webhook_dead_letters", "raised")]
        assert await events(db) == [("alarm.raised", "webhook_dead_letters")]

        health.now = HEALTHY
        results = await asyncio.gather(a.check_once(), b.check_once())
        assert [[x.name for x in cleared] for _, cleared in results] == [["webhook_dead_letters"]] * 2
        await asyncio.gather(a.check_once(), b.check_once())
        assert await rows(db) == [("webhook_dead_letters", "cleared")]
        assert await events(db) == [
            ("alarm.raised", "webhook_dead_letters"),
            ("alarm.cleared", "webhook_dead_letters"),
        ]
        assert await WebhookDispatcher(db, aiohttp.ClientSession, address_policy=ALLOW_LOOPBACK).run_once() == 2
    finally:
        await oncall.down()
    assert [e["type"] for e in oncall.accepted] == ["alarm.raised", "alarm.cleared"]
    assert oncall.duplicates == 0
    assert "node" not in oncall.accepted[0]["data"]["details"]


async def test_per_node_alarm_names_its_node_and_another_node_never_clears_it(db, nodes):
    health_a, health_b = Inputs(ARI_DOWN), Inputs(HEALTHY)
    a, b = monitor(nodes[0], health_a), monitor(nodes[1], health_b)
    await a.check_once()
    await b.start()  # B loads the raised alarms: A's is not B's to keep or clear
    try:
        assert b.active == {}
        await b.check_once()
        assert await rows(db) == [("ari_down.node.node_da", "raised")]
        row = await db.fetchrow("SELECT details FROM alarms")
        assert row["details"]["node"] == "node-a"
        [(_, payload)] = [
            (r["event_type"], r["payload"]) for r in await db.fetch("SELECT event_type, payload FROM webhook_outbox")
        ]
        assert payload["name"] == "ari_down.node.node_da" and payload["details"]["node"] == "node-a"

        # B loses its Asterisk too: an alarm of its own; B reconnects: only its own clears.
        health_b.now = ARI_DOWN
        await b.check_once()
        health_b.now = HEALTHY
        await b.check_once()
        assert await rows(db) == [("ari_down.node.node_da", "raised"), ("ari_down.node.node_db", "cleared")]

        # A restarts: it finds its own alarm and clears it when its Asterisk is back.
        again = monitor(nodes[0], health_a)
        await again.start()
        try:
            assert set(again.active) == {"ari_down"} and await again.check_once() == ([], [])
            health_a.now = HEALTHY
            _, cleared = await again.check_once()
            assert [x.name for x in cleared] == ["ari_down"]
        finally:
            await again.close()
    finally:
        await b.close()
    assert await rows(db) == [("ari_down.node.node_da", "cleared"), ("ari_down.node.node_db", "cleared")]
    assert await events(db) == [
        ("alarm.raised", "ari_down.node.node_da"),
        ("alarm.raised", "ari_down.node.node_db"),
        ("alarm.cleared", "ari_down.node.node_db"),
        ("alarm.cleared", "ari_down.node.node_da"),
    ]


async def test_both_nodes_down_each_raises_its_own_and_a_cluster_alarm_stays_one(db, nodes):
    both = Inputs(replace(ARI_DOWN, webhook_dead=1))
    a, b = monitor(nodes[0], both), monitor(nodes[1], both)
    await asyncio.gather(a.check_once(), b.check_once())
    assert sorted(await rows(db)) == [
        ("ari_down.node.node_da", "raised"),
        ("ari_down.node.node_db", "raised"),
        ("webhook_dead_letters", "raised"),
    ]
    assert len(await events(db)) == 3


async def test_an_alarm_raised_before_the_nodes_had_ids_is_cleared_by_a_named_node(db, nodes):
    await db.execute("INSERT INTO alarms (name, severity, details) VALUES ('ari_down', 'critical', '{}')")
    m = monitor(nodes[0], Inputs(HEALTHY))
    await m.start()
    try:
        await m.check_once()
    finally:
        await m.close()
    assert await rows(db) == [("ari_down", "cleared")]
    assert await events(db) == [("alarm.cleared", "ari_down")]


async def test_a_node_that_just_started_sees_an_overdue_purge_as_overdue(db, nodes):
    """The purge is overdue when no run is in the audit log and a node has been up long
    enough: a node started a minute ago reads the cluster's up time, not its own, so it
    does not clear the alarm the older node raised."""
    await db.execute(
        """INSERT INTO nodes (node_id, instance, host, pid, started_at, lease_until)
           VALUES ('node-a', $1, 'host-a', 4242, now() - interval '3 hours', now() + interval '10 seconds')""",
        uuid.uuid4(),
    )
    sources = AlarmSources(
        pool=nodes[1].pool,
        ari_connected=lambda: True,
        cdr_backlog=lambda: 0,
        campaigns=dict,
        pacing_stats=dict,
        purge_last_failed=lambda: None,
        purge_interval_s=600.0,
    )
    inputs = await service_inputs(sources)()
    assert inputs.last_purge_success_age_s is not None and inputs.last_purge_success_age_s >= 3 * 3600 - 5
    await db.execute("UPDATE nodes SET lease_until = now() - interval '1 second'")  # node A gone
    assert (await service_inputs(sources)()).last_purge_success_age_s < 60  # this node's own time up
