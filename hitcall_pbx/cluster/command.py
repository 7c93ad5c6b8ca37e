"""`hitcall nodes`: the nodes sharing this database (live, gone or stopped; host, pid, the
pools they may drive, what is left of their lease) and the leases (holder, fencing token)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from ..core.leases import LeaseView as _LeaseView
from ..core.leases import NodeStatus, NodeView, lease_live, lease_pool, node_status, seconds_left, valid_name
from ..errors import ValidationFailed
from ..settings import Settings
from ..store.db import Database, Executor


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("nodes", help="the nodes sharing this database and the pool leases they hold")
    p.add_argument("--node", help="only this node id (and the leases it holds)")
    p.add_argument("--json", action="store_true", help="as JSON")


async def cluster_view(db: Executor, node: str | None = None) -> dict[str, Any]:
    """Nodes and leases as the database's clock sees them now."""
    now: datetime = await db.fetchval("SELECT now()")
    nodes = await db.fetch(
        """SELECT node_id, instance, host, pid, pools, started_at, heartbeat_at, lease_until, stopped_at
           FROM nodes WHERE $1::text IS NULL OR node_id = $1 ORDER BY node_id""",
        node,
    )
    leases = await db.fetch(
        """SELECT name, node_id, token, lease_until, acquired_at FROM leases
           WHERE $1::text IS NULL OR node_id = $1 ORDER BY name""",
        node,
    )
    held: dict[str, list[str]] = {}
    lease_out = []
    for r in leases:
        live = lease_live(_LeaseView(r["name"], r["node_id"], r["token"], r["lease_until"]), now)
        if live:
            held.setdefault(r["node_id"], []).append(lease_pool(r["name"]) or r["name"])
        lease_out.append(
            {
                "name": r["name"],
                "holder": r["node_id"],
                "token": r["token"],
                "live": live,
                "lease_left_s": round(seconds_left(r["lease_until"], now), 1),
                "acquired_at": r["acquired_at"].isoformat(),
            }
        )
    node_out = []
    for r in nodes:
        view = NodeView(r["node_id"], str(r["instance"]), r["host"], r["pid"], r["lease_until"], r["stopped_at"])
        status = node_status(view, now)
        node_out.append(
            {
                "node_id": r["node_id"],
                "status": status.value,
                "host": r["host"],
                "pid": r["pid"],
                "pools": list(r["pools"]),
                "holds": held.get(r["node_id"], []),
                "lease_left_s": round(seconds_left(r["lease_until"], now), 1) if status is NodeStatus.LIVE else 0.0,
                "heartbeat_at": r["heartbeat_at"].isoformat(),
                "started_at": r["started_at"].isoformat(),
            }
        )
    return {"at": now.isoformat(), "nodes": node_out, "leases": lease_out}


def render(view: dict[str, Any]) -> str:
    """The view as two plain tables."""
    lines = [f"{'NODE':<20} {'STATUS':<8} {'HOST':<20} {'PID':>7}  {'POOLS':<20} {'HOLDS':<20} LEASE LEFT"]
    for n in view["nodes"]:
        lines.append(
            f"{n['node_id']:<20} {n['status']:<8} {n['host']:<20} {n['pid']:>7}  {','.join(n['pools']) or '-':<20} "
            f"{','.join(n['holds']) or '-':<20} {n['lease_left_s']:.1f} s"
        )
    if not view["nodes"]:
        lines.append("(no nodes)")
    lines.append("")
    lines.append(f"{'LEASE':<28} {'HOLDER':<20} {'TOKEN':>7}  {'STATUS':<8} LEFT")
    for lease in view["leases"]:
        lines.append(
            f"{lease['name']:<28} {lease['holder']:<20} {lease['token']:>7}  "
            f"{'live' if lease['live'] else 'lapsed':<8} {lease['lease_left_s']:.1f} s"
        )
    if not view["leases"]:
        lines.append("(no leases)")
    return "\n".join(lines) + "\n"


async def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.node is not None and not valid_name(args.node):
        raise ValidationFailed(
            f"--node {args.node!r} is not a node id (1-64 of letters, digits, '_', '.', '-')", details={"field": "node"}
        )
    async with Database(settings) as db:
        view = await cluster_view(db.pool, args.node)
    if args.node is not None and not view["nodes"]:
        raise ValidationFailed(f"no node {args.node} in this database", details={"field": "node"})
    sys.stdout.write(json.dumps(view, indent=2) + "\n" if args.json else render(view))
    return 0
