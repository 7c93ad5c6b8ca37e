"""The node and lease rules (core.leases): liveness, self-fencing, taking a pool's lease,
the fencing token, and the takeover pools setting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitcall_pbx.core.leases import (
    DEFAULT_POOL,
    LeaseView,
    NodeStatus,
    NodeView,
    PoolClaim,
    fence_at,
    fence_margin,
    heartbeat_interval,
    lease_pool,
    may_register,
    may_take,
    must_fence,
    next_token,
    node_status,
    parse_takeover_pools,
    pool_lease,
    refusal,
    row_pool,
    seconds_left,
    valid_name,
)

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
nodes = st.sampled_from(["a", "b", "c"])
offsets = st.floats(min_value=-60, max_value=60, allow_nan=False)
leases_s = st.floats(min_value=3, max_value=300, allow_nan=False)


def _node(lease_in: float, *, instance: str = "i1", stopped: bool = False) -> NodeView:
    return NodeView(
        node_id="n1",
        instance=instance,
        host="box1",
        pid=4242,
        lease_until=T0 + timedelta(seconds=lease_in),
        stopped_at=T0 - timedelta(seconds=1) if stopped else None,
    )


def _lease(holder: str, token: int, lease_in: float) -> LeaseView:
    return LeaseView("pool:main", holder, token, T0 + timedelta(seconds=lease_in))


# ------------------------------------------------------------------- nodes ---
def test_a_node_is_live_while_its_lease_runs_then_gone_and_stopped_after_a_clean_close() -> None:
    assert node_status(_node(5), T0) is NodeStatus.LIVE
    assert node_status(_node(0), T0) is NodeStatus.GONE  # lease_until = now: lapsed
    assert node_status(_node(-5), T0) is NodeStatus.GONE
    assert node_status(_node(-5, stopped=True), T0) is NodeStatus.STOPPED
    assert node_status(_node(5, stopped=True), T0) is NodeStatus.STOPPED


@given(offsets, st.booleans(), st.booleans())
def test_a_second_run_of_a_node_id_registers_only_when_the_first_is_not_live(
    lease_in: float, same_run: bool, stopped: bool
) -> None:
    existing = _node(lease_in, stopped=stopped)
    allowed = may_register(existing, "i1" if same_run else "i2", T0)
    assert allowed == (same_run or node_status(existing, T0) is not NodeStatus.LIVE)
    assert may_register(None, "i2", T0)
    # a previous run known dead (same host, its pid gone) never blocks a restart
    assert may_register(existing, "i2", T0, previous_dead=True)


def test_the_refusal_names_host_pid_and_what_to_do() -> None:
    line = refusal(_node(7.25), T0)
    assert "node n1" in line and "host box1" in line and "pid 4242" in line and "7.2 s left" in line
    assert "HITCALL_NODE_ID" in line and "\n" not in line


# ----------------------------------------------------------------- fencing ---
@given(leases_s, st.floats(min_value=0, max_value=1e6, allow_nan=False), st.floats(min_value=0, max_value=400))
def test_a_node_fences_itself_before_its_lease_can_lapse_and_not_before_two_missed_renewals(
    lease_s: float, sent: float, elapsed: float
) -> None:
    now = sent + elapsed
    fenced = must_fence(now, sent, lease_s)
    # fenced before the database's lease (from a now() no earlier than `sent`) ends
    assert fence_at(sent, lease_s) < sent + lease_s
    assert fenced == (elapsed >= lease_s - fence_margin(lease_s))
    # not fenced while only one heartbeat was missed: two renewals fit before the deadline
    if elapsed < 2 * heartbeat_interval(lease_s):
        assert not fenced


def test_fencing_timeline_of_the_default_lease() -> None:
    assert heartbeat_interval(10) == pytest.approx(10 / 3)
    assert fence_margin(10) == 2.0
    assert not must_fence(100 + 7.99, 100, 10) and must_fence(108, 100, 10)
    assert must_fence(108.99, 100, 10, margin_s=1) is False and must_fence(109, 100, 10, margin_s=1)


# ------------------------------------------------------------------ leases ---
@given(
    nodes,
    st.one_of(st.none(), st.tuples(nodes, st.integers(min_value=1, max_value=10**6), offsets)),
    st.booleans(),
)
def test_taking_a_pool_lease(me: str, held: tuple[str, int, float] | None, this_run_holds_it: bool) -> None:
    lease = None if held is None else _lease(*held)
    allowed = may_take(lease, me, T0)
    if lease is None:
        assert allowed and next_token(lease, me, T0) == 1
        return
    live = lease.lease_until > T0
    # free (lapsed), own, or nobody's: taken; a live lease of another node: never
    assert allowed == (lease.node_id == me or not live)
    if allowed:
        mine = lease.token if this_run_holds_it else None
        token = next_token(lease, me, T0, mine)
        # the token changes exactly when the lease is taken anew, and only upwards
        renewing = lease.node_id == me and live and this_run_holds_it
        assert token == (lease.token if renewing else lease.token + 1)
        assert token >= lease.token


@given(st.lists(st.tuples(nodes, st.floats(min_value=0, max_value=30)), min_size=1, max_size=30))
def test_tokens_grow_with_every_change_of_holder(takes: list[tuple[str, float]]) -> None:
    """Any sequence of takes (each node taking whenever the rule lets it): a token is never
    reused by another holder, so a stale holder's token never matches again."""
    lease: LeaseView | None = None
    now = T0
    holders_of: dict[int, str] = {}
    for node, wait in takes:
        now += timedelta(seconds=wait)
        if not may_take(lease, node, now):
            continue
        held = lease.token if lease is not None and lease.node_id == node else None
        token = next_token(lease, node, now, held)
        assert holders_of.setdefault(token, node) == node, "one token, one holder"
        lease = LeaseView("pool:main", node, token, now + timedelta(seconds=10))


def test_seconds_left_is_never_negative() -> None:
    assert seconds_left(T0 + timedelta(seconds=3), T0) == 3
    assert seconds_left(T0 - timedelta(seconds=3), T0) == 0


# ------------------------------------------------------------------- names ---
def test_pool_lease_names_and_the_default_pool() -> None:
    assert pool_lease("ast2") == "pool:ast2" and lease_pool("pool:ast2") == "ast2" and lease_pool("purge") is None
    assert row_pool(None) == DEFAULT_POOL == "main" and row_pool("ast2") == "ast2"
    assert PoolClaim("ast2", "n1", 3).lease == "pool:ast2"
    assert valid_name("node-1.a_b") and not valid_name("") and not valid_name("a b") and not valid_name("x" * 65)


def test_takeover_pools_parse_in_order() -> None:
    assert parse_takeover_pools(" ast2=http://10.0.0.2:8088/ari , ast3=http://h3/ari,") == (
        ("ast2", "http://10.0.0.2:8088/ari"),
        ("ast3", "http://h3/ari"),
    )
    assert parse_takeover_pools("") == ()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("ast2", "must be name=ari_url"),
        ("ast2=", "must be name=ari_url"),
        ("a b=http://x/ari", "pool name 'a b'"),
        ("ast2=http://x/ari,ast2=http://y/ari", "named twice"),
    ],
)
def test_takeover_pools_bad_entries_are_named(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_takeover_pools(text)
