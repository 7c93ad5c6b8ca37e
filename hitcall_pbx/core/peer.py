"""Calls across Asterisk servers: the pure rules (no I/O).

A caller on one server (pool) whose agents are all busy may be put through to a ready
agent whose phone is logged in on another server, over the trunk between them (dialplan
``[hitcall-peer]`` / ``[hitcall-peer-in]``). The node of the caller's server asks the
node driving the agent's server to take a *peer call*: that node reserves one of its
ready agents (the same rules as for a caller of its own) and answers with a one-time
token; the caller's node then originates ``Local/hitcall-<token>@hitcall-peer``, which
reaches the far node's Stasis application as ``peer,<token>``. The far node puts that
channel through to the reserved agent only if the token is one it gave, not used yet and
not expired; else it hangs the channel up.

Here: which pools to ask and in what order (`pools_to_ask`), the token's form
(`valid_token`, `peer_endpoint`) and a reservation's verdict (`check_token`).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "PEER_CONTEXT",
    "PeerVerdict",
    "ReadyElsewhere",
    "Reservation",
    "check_token",
    "peer_endpoint",
    "pools_to_ask",
    "valid_token",
]

PEER_CONTEXT = "hitcall-peer"  # dialplan/extensions.conf: Local/hitcall-<token>@hitcall-peer
TOKEN_RE = re.compile(r"[0-9a-f]{24}")  # what `dialer.peer` makes: 12 random bytes, hex


def valid_token(token: str) -> bool:
    """A token as this service makes them (the dialplan admits letters, digits, _ . -)."""
    return TOKEN_RE.fullmatch(token) is not None


def peer_endpoint(token: str) -> str:
    """The channel to originate on the caller's server to reach the far node's application.
    ``/n``: the Local channel is never optimised away once bridged (the caller's node follows
    the leg by its channel id: its end is the far side's end)."""
    if not valid_token(token):
        raise ValueError("not a peer token")
    return f"Local/hitcall-{token}@{PEER_CONTEXT}/n"


@dataclass(frozen=True)
class ReadyElsewhere:
    """A ready agent as the database shows it, on another pool (agents.state, agents.pool,
    agent_campaigns) and the node holding that pool's lease now."""

    agent_id: int
    pool: str
    node_id: str
    campaigns: frozenset[int]
    idle_s: float  # how long it has been ready (agents.state_since, on the database's clock)


def pools_to_ask(
    campaign_id: int | None, ready: Iterable[ReadyElsewhere], own_pool: str, *, limit: int = 2
) -> list[tuple[str, str]]:
    """The (pool, node) pairs to ask for an agent, best first, at most `limit`: pools with a
    ready agent of the caller's campaign before the others, then the pool whose agent has
    been idle longest (the rule a server applies to its own agents). Never the caller's
    own pool (its own router already found nobody there)."""
    best: dict[tuple[str, str], tuple[int, float]] = {}
    for a in ready:
        if a.pool == own_pool:
            continue
        key = (a.pool, a.node_id)
        rank = (0 if campaign_id is not None and campaign_id in a.campaigns else 1, -a.idle_s)
        if key not in best or rank < best[key]:
            best[key] = rank
    return [k for k, _ in sorted(best.items(), key=lambda kv: (kv[1], kv[0]))][: max(0, limit)]


@dataclass(frozen=True)
class Reservation:
    """An agent a node reserved for a peer call, by token; `expires` on the node's own
    monotonic clock."""

    token: str
    agent_id: int
    expires: float
    used: bool = False


class PeerVerdict(enum.StrEnum):
    OK = "ok"
    UNKNOWN = "unknown"  # never given, or forgotten (released, the node restarted)
    EXPIRED = "expired"
    USED = "used"
    MALFORMED = "malformed"


def check_token(token: str, reservations: Mapping[str, Reservation], now: float) -> PeerVerdict:
    """Whether a peer channel carrying `token` may be put through to its reserved agent."""
    if not valid_token(token):
        return PeerVerdict.MALFORMED
    found = reservations.get(token)
    if found is None:
        return PeerVerdict.UNKNOWN
    if found.used:
        return PeerVerdict.USED
    if now >= found.expires:
        return PeerVerdict.EXPIRED
    return PeerVerdict.OK
