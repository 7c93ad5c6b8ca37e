"""Nodes and leases: the pure rules (no I/O) that `hitcall_pbx.cluster` applies in PostgreSQL.

A *node* is one `hitcall serve` process, by node id. It is *live* while its lease runs
(``nodes.lease_until`` later than the database's ``now()``), *gone* once it lapsed, and
*stopped* after a clean close. A second process with the same node id may register only
when the first one is gone or stopped (or it is the same run registering again).

A *pool lease* (``pool:<name>``) is the right to drive one Asterisk. A node may take it
when nobody holds it, when it holds it already, or when its holder's lease lapsed. The
fencing token goes up by one every time the lease is taken anew (another holder, or the
same node after its own lease lapsed); renewing a live lease keeps it. Work done under a
token (the originate claim) is refused once the token is not the lease's any more.

A node renews its node lease and its pool leases every ``lease / 3``. It measures its
own lease on its own monotonic clock from the moment it *sent* the last renewal that
succeeded (the database's ``now()`` of that renewal is later, so the database's lease
ends later than the node's own reckoning), and fences itself at ``lease - margin``:
before the database could consider it gone and let another node take its pools.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

DEFAULT_POOL = "main"
POOL_LEASE_PREFIX = "pool:"
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # node ids and pool names (nodes.node_id CHECK)

MIN_LEASE_S = 3.0
MAX_LEASE_S = 300.0


def valid_name(name: str) -> bool:
    """A node id or pool name: 1-64 of letters, digits, '_', '.', '-'."""
    return NAME_RE.fullmatch(name) is not None


def pool_lease(pool: str) -> str:
    """The lease name of pool `pool`."""
    return POOL_LEASE_PREFIX + pool


def lease_pool(name: str) -> str | None:
    """The pool a lease name is for, or None for another kind of lease."""
    return name[len(POOL_LEASE_PREFIX) :] if name.startswith(POOL_LEASE_PREFIX) else None


def row_pool(pool: str | None) -> str:
    """The pool a stored row belongs to: rows from before several nodes have none (the default pool)."""
    return pool if pool is not None else DEFAULT_POOL


# ------------------------------------------------------------------ timing ---
def heartbeat_interval(lease_s: float) -> float:
    """How often a node renews its leases."""
    return lease_s / 3


def fence_margin(lease_s: float) -> float:
    """How long before its lease ends (on its own clock) a node fences itself: time for
    its clock running slower than the database's and for stopping its work."""
    return max(0.5, lease_s / 5)


def fence_at(last_renew_sent: float, lease_s: float, margin_s: float | None = None) -> float:
    """The monotonic time at which a node whose last successful renewal was sent at
    `last_renew_sent` must have fenced itself."""
    return last_renew_sent + lease_s - (fence_margin(lease_s) if margin_s is None else margin_s)


def must_fence(now: float, last_renew_sent: float, lease_s: float, margin_s: float | None = None) -> bool:
    """True when the node can no longer be sure its lease runs: it must stop its work."""
    return now >= fence_at(last_renew_sent, lease_s, margin_s)


# ------------------------------------------------------------------- nodes ---
class NodeStatus(StrEnum):
    LIVE = "live"
    GONE = "gone"  # its lease lapsed without a clean stop (crashed, killed, cut off)
    STOPPED = "stopped"  # closed cleanly


@dataclass(frozen=True)
class NodeView:
    """A stored node, as the rules need it."""

    node_id: str
    instance: str
    host: str
    pid: int
    lease_until: datetime
    stopped_at: datetime | None = None


def node_status(node: NodeView, now: datetime) -> NodeStatus:
    """Live while its lease runs (a stop ends the lease at once), else stopped or gone."""
    if node.stopped_at is not None and node.stopped_at <= now:
        return NodeStatus.STOPPED
    if node.lease_until > now:
        return NodeStatus.LIVE
    return NodeStatus.GONE


def may_register(existing: NodeView | None, instance: str, now: datetime, *, previous_dead: bool = False) -> bool:
    """May the process run `instance` register under this node id? Not while another run
    of the same node id is live, unless that run is known dead (`previous_dead`: it ran on
    this same host under a pid that is gone, e.g. killed and restarted at once). Its pool
    leases are then taken with the next token, so it could not dial even if it were not."""
    if existing is None or existing.instance == instance or previous_dead:
        return True
    return node_status(existing, now) is not NodeStatus.LIVE


def refusal(existing: NodeView, now: datetime) -> str:
    """Why a second process with the same node id may not start (one readable line)."""
    left = max(0.0, (existing.lease_until - now).total_seconds())
    return (
        f"node {existing.node_id} is live under another process (host {existing.host}, pid {existing.pid}, "
        f"lease {left:.1f} s left); stop it first, or give this one another HITCALL_NODE_ID"
    )


# ------------------------------------------------------------------ leases ---
@dataclass(frozen=True)
class LeaseView:
    """A stored lease, as the rules need it."""

    name: str
    node_id: str
    token: int
    lease_until: datetime


def lease_live(lease: LeaseView, now: datetime) -> bool:
    return lease.lease_until > now


def may_take(lease: LeaseView | None, node_id: str, now: datetime) -> bool:
    """May `node_id` take (or keep) the lease: free, its own, or its holder's lease lapsed."""
    return lease is None or lease.node_id == node_id or not lease_live(lease, now)


def next_token(lease: LeaseView | None, node_id: str, now: datetime, held: int | None = None) -> int:
    """The fencing token `node_id` holds the lease with after taking it (`may_take` must
    allow it): unchanged while it renews the live lease it holds (`held`: the token this
    run of the node holds it with), else one more than before: a new holder, a lease that
    lapsed, or another run of the same node id."""
    if lease is None:
        return 1
    if lease.node_id == node_id and lease_live(lease, now) and lease.token == held:
        return lease.token
    return lease.token + 1


def seconds_left(until: datetime, now: datetime) -> float:
    """What is left of a lease, never negative."""
    return max(0.0, (until - now).total_seconds())


@dataclass(frozen=True)
class PoolClaim:
    """What a node's work on one pool carries: the pool, the node, and the fencing token it
    holds the pool's lease with. Rows the pool's parts write carry the pool and node; the
    originate claim inserts nothing unless the lease still has this node and token."""

    pool: str
    node_id: str
    token: int

    @property
    def lease(self) -> str:
        return pool_lease(self.pool)


# ---------------------------------------------------------------- settings ---
def parse_takeover_pools(text: str) -> tuple[tuple[str, str], ...]:
    """``name=ari_url,name=ari_url`` → ((name, url), ...), in order; ValueError naming the
    entry that is wrong. Checks names only (the settings check the URLs)."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        name, sep, url = entry.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not url:
            raise ValueError(f"entry {entry!r} must be name=ari_url, e.g. ast2=http://10.0.0.2:8088/ari")
        if not valid_name(name):
            raise ValueError(f"pool name {name!r} must be 1-64 of letters, digits, '_', '.', '-'")
        if name in seen:
            raise ValueError(f"pool {name!r} is named twice")
        seen.add(name)
        out.append((name, url))
    return tuple(out)
