"""Alarm conditions: which alarms are active for a snapshot of the service's health.

`evaluate(inputs, thresholds, active)` gives the alarms active now; `active` (those
active after the previous evaluation) gives hysteresis (a near-cap alarm clears only
below a lower rate, a disk alarm only above a higher free share) and lets an unknown
input (None, e.g. webhook stats while Postgres is down) keep an alarm as it was.
`diff(before, now)` turns two evaluations into raised and cleared alarms, keyed by
name: an alarm whose message or details change while it stays active is not raised
again. Durations and ages are in seconds, measured by the caller.

Several nodes share the alarms table. An alarm about the cluster (webhook dead letters
and backlog, an overdue purge: what every node reads alike from PostgreSQL) has one name
and is raised once, by whichever node sees it first, and cleared by any. An alarm about
one node (`PER_NODE`: its Asterisk connection, its own link to PostgreSQL, its local CDR
spool, disk and call journal, its own purge runs, a campaign's abandon rate as its pacer
counts it) is stored under a name of that node (`stored_name`), so a node raises and
clears only its own (`own_alarm`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "GIB",
    "PER_NODE",
    "Alarm",
    "AlarmInputs",
    "CampaignAbandon",
    "Severity",
    "Thresholds",
    "diff",
    "evaluate",
    "is_per_node",
    "own_alarm",
    "stored_name",
]

Severity = Literal["critical", "major", "minor", "warning"]

GIB = 1024**3


@dataclass(frozen=True)
class Alarm:
    name: str
    severity: Severity
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CampaignAbandon:
    """One campaign's abandon rates (fractions) against its cap."""

    campaign_id: int
    cap: float
    today_rate: float
    rate_30_days: float
    answered_today: float
    """The today rate's denominator; the rate counts once it reaches `abandon_min_answered`."""


@dataclass(frozen=True)
class JournalHealth:
    """The dialer's call journal (agent states, call progress, webhook events on their way)."""

    backlog: int = 0
    """Operations queued or spooled and not yet in Postgres."""
    spool_backlog: int = 0
    """Of those, the ones in the durable spool."""
    failing_s: float = 0.0
    """How long its writes have been failing (0 while they commit)."""


@dataclass(frozen=True)
class AlarmInputs:
    """What the service looks like at one check. None = not known at this check."""

    ari_connected: bool = True
    ari_down_s: float = 0.0
    """How long the ARI events socket has been down (0 while connected)."""
    db_ok: bool = True
    db_down_s: float = 0.0
    """How long Postgres has been failing (0 while it answers)."""
    spool_backlog: int = 0
    spool_trend: int = 0
    """Change of `spool_backlog` since the previous check."""
    campaigns: tuple[CampaignAbandon, ...] = ()
    webhook_dead: int | None = 0
    """Dead webhook deliveries; None: webhook stats unknown at this check."""
    webhook_oldest_pending_age_s: float | None = None
    """Age of the oldest undelivered webhook event; None when none waits."""
    purge_interval_s: float | None = None
    """None: no scheduled purge, so no purge alarms."""
    last_purge_success_age_s: float | None = None
    last_purge_failed: bool | None = None
    """Whether the most recent purge run failed."""
    disk_free_bytes: int | None = None
    disk_total_bytes: int | None = None
    journal: JournalHealth | None = None
    """None: no call journal in this process."""


@dataclass(frozen=True)
class Thresholds:
    ari_grace_s: float = 5.0
    db_grace_s: float = 5.0
    abandon_near_ratio: float = 0.8
    """Near-cap alarm from this share of the cap ..."""
    abandon_near_clear_ratio: float = 0.7
    """... until the rate falls below this share."""
    abandon_min_answered: float = 20.0
    webhook_backlog_age_s: float = 600.0
    purge_overdue_factor: float = 2.0
    disk_low_ratio: float = 0.10
    disk_low_bytes: int = GIB
    disk_clear_ratio: float = 0.12
    disk_clear_bytes: int = GIB + GIB // 4
    journal_failing_s: float = 10.0
    journal_backlog: int = 50_000
    """A healthy journal commits every few ms: a backlog this large means Postgres cannot keep up."""

    def __post_init__(self) -> None:
        if not 0.0 < self.abandon_near_clear_ratio <= self.abandon_near_ratio <= 1.0:
            raise ValueError("need 0 < abandon_near_clear_ratio <= abandon_near_ratio <= 1")
        if self.disk_clear_ratio < self.disk_low_ratio or self.disk_clear_bytes < self.disk_low_bytes:
            raise ValueError("disk clear thresholds must not be below the low thresholds")
        if self.purge_overdue_factor < 1.0:
            raise ValueError("purge_overdue_factor must be >= 1")


def _pct(x: float) -> str:
    return f"{x * 100:.2f} %"


def _keep(name: str, active: Mapping[str, Alarm]) -> dict[str, Alarm]:
    return {name: active[name]} if name in active else {}


def _connectivity(i: AlarmInputs, t: Thresholds) -> dict[str, Alarm]:
    out: dict[str, Alarm] = {}
    if not i.ari_connected and i.ari_down_s >= t.ari_grace_s:
        out["ari_down"] = Alarm(
            "ari_down",
            "critical",
            f"ARI events socket down for {i.ari_down_s:.0f} s",
            {"down_s": round(i.ari_down_s, 1)},
        )
    if not i.db_ok and i.db_down_s >= t.db_grace_s:
        out["db_down"] = Alarm(
            "db_down",
            "critical",
            f"PostgreSQL unavailable for {i.db_down_s:.0f} s",
            {"down_s": round(i.db_down_s, 1), "spool_backlog": i.spool_backlog},
        )
    return out


def _spool(i: AlarmInputs, active: Mapping[str, Alarm]) -> dict[str, Alarm]:
    # Raised while the spool grows; stays while it neither empties nor drains.
    growing = i.spool_backlog > 0 and (i.spool_trend > 0 or ("cdr_spool_growing" in active and i.spool_trend == 0))
    if not growing:
        return {}
    return {
        "cdr_spool_growing": Alarm(
            "cdr_spool_growing",
            "major",
            f"{i.spool_backlog} CDRs spooled locally, waiting for PostgreSQL",
            {"spool_backlog": i.spool_backlog, "trend": i.spool_trend},
        )
    }


def _abandon(c: CampaignAbandon, t: Thresholds, active: Mapping[str, Alarm]) -> dict[str, Alarm]:
    today = c.today_rate if c.answered_today >= t.abandon_min_answered else 0.0
    rate = max(today, c.rate_30_days)
    details = {
        "campaign_id": c.campaign_id,
        "cap": c.cap,
        "today_rate": round(c.today_rate, 6),
        "rate_30_days": round(c.rate_30_days, 6),
        "answered_today": c.answered_today,
    }
    out: dict[str, Alarm] = {}
    over = f"campaign.{c.campaign_id}.abandon_over_cap"
    if rate > c.cap:
        out[over] = Alarm(
            over, "critical", f"campaign {c.campaign_id}: abandon rate {_pct(rate)} over its cap {_pct(c.cap)}", details
        )
    near = f"campaign.{c.campaign_id}.abandon_near_cap"
    ratio = t.abandon_near_clear_ratio if near in active else t.abandon_near_ratio
    if c.cap > 0 and rate >= ratio * c.cap:
        out[near] = Alarm(
            near,
            "major",
            f"campaign {c.campaign_id}: abandon rate {_pct(rate)} close to its cap {_pct(c.cap)}",
            details,
        )
    return out


def _webhooks(i: AlarmInputs, t: Thresholds, active: Mapping[str, Alarm]) -> dict[str, Alarm]:
    out: dict[str, Alarm] = {}
    if i.webhook_dead is None:
        out |= _keep("webhook_dead_letters", active)
    elif i.webhook_dead > 0:
        out["webhook_dead_letters"] = Alarm(
            "webhook_dead_letters",
            "major",
            f"{i.webhook_dead} webhook deliveries dead (replay them)",
            {"dead": i.webhook_dead},
        )
    if i.webhook_dead is None and i.webhook_oldest_pending_age_s is None:
        out |= _keep("webhook_backlog_old", active)
    elif i.webhook_oldest_pending_age_s is not None and i.webhook_oldest_pending_age_s > t.webhook_backlog_age_s:
        age = i.webhook_oldest_pending_age_s
        out["webhook_backlog_old"] = Alarm(
            "webhook_backlog_old",
            "major",
            f"oldest undelivered webhook event waits for {age:.0f} s",
            {"oldest_pending_age_s": round(age, 1)},
        )
    return out


def _purge(i: AlarmInputs, t: Thresholds, active: Mapping[str, Alarm]) -> dict[str, Alarm]:
    if i.purge_interval_s is None:
        return {}
    out: dict[str, Alarm] = {}
    if i.last_purge_failed is None:
        out |= _keep("purge_failing", active)
    elif i.last_purge_failed:
        out["purge_failing"] = Alarm("purge_failing", "major", "the retention purge job failed", {})
    limit = t.purge_overdue_factor * i.purge_interval_s
    age = i.last_purge_success_age_s
    if age is None:
        out |= _keep("purge_overdue", active)
    elif age > limit:
        out["purge_overdue"] = Alarm(
            "purge_overdue",
            "major",
            f"no successful retention purge for {age:.0f} s (limit {limit:.0f} s)",
            {"last_success_age_s": round(age, 1), "interval_s": i.purge_interval_s},
        )
    return out


def _disk(i: AlarmInputs, t: Thresholds, active: Mapping[str, Alarm]) -> dict[str, Alarm]:
    free, total = i.disk_free_bytes, i.disk_total_bytes
    if free is None or not total:
        return _keep("recordings_disk_low", active)
    ratio, floor = (
        (t.disk_clear_ratio, t.disk_clear_bytes)
        if "recordings_disk_low" in active
        else (t.disk_low_ratio, t.disk_low_bytes)
    )
    if free / total >= ratio and free >= floor:
        return {}
    return {
        "recordings_disk_low": Alarm(
            "recordings_disk_low",
            "major",
            f"recordings disk: {free / GIB:.2f} GiB free ({_pct(free / total)})",
            {"free_bytes": free, "total_bytes": total},
        )
    }


def _journal(inputs: AlarmInputs, t: Thresholds, active: Mapping[str, Alarm]) -> dict[str, Alarm]:
    """`journal_backlog`: the call journal's writes have failed for `t.journal_failing_s` or its
    backlog reached `t.journal_backlog`. Once raised it stays until the writes commit and the
    spool is empty."""
    h = inputs.journal
    name = "journal_backlog"
    if h is None:
        return {}
    raising = h.failing_s >= t.journal_failing_s or h.backlog >= t.journal_backlog
    if not raising and not (name in active and (h.failing_s > 0 or h.spool_backlog > 0)):
        return {}
    message = f"call journal: {h.backlog} call and agent writes waiting for PostgreSQL" + (
        f", failing for {h.failing_s:.0f} s" if h.failing_s else ""
    )
    return {
        name: Alarm(
            name,
            "critical" if h.failing_s >= t.journal_failing_s else "major",
            message,
            {"backlog": h.backlog, "spool_backlog": h.spool_backlog, "failing_s": round(h.failing_s, 1)},
        )
    }


def evaluate(
    inputs: AlarmInputs, thresholds: Thresholds = Thresholds(), active: Mapping[str, Alarm] | None = None
) -> dict[str, Alarm]:
    """The alarms active for `inputs`, given those `active` after the previous evaluation."""
    active = active or {}
    out = _connectivity(inputs, thresholds)
    out |= _spool(inputs, active)
    for campaign in inputs.campaigns:
        out |= _abandon(campaign, thresholds, active)
    out |= _webhooks(inputs, thresholds, active)
    out |= _purge(inputs, thresholds, active)
    out |= _disk(inputs, thresholds, active)
    out |= _journal(inputs, thresholds, active)
    return out


def diff(before: Mapping[str, Alarm], now: Mapping[str, Alarm]) -> tuple[list[Alarm], list[Alarm]]:
    """(raised, cleared): alarms active now and not before, and those active before and not now."""
    raised = [now[n] for n in sorted(now.keys() - before.keys())]
    cleared = [before[n] for n in sorted(before.keys() - now.keys())]
    return raised, cleared


PER_NODE = frozenset(
    {"ari_down", "db_down", "cdr_spool_growing", "recordings_disk_low", "journal_backlog", "purge_failing"}
)
"""Alarms about the node that evaluates them (besides the campaign abandon alarms)."""

_NODE_MARK = ".node."


def is_per_node(name: str) -> bool:
    """Whether alarm `name` (as `evaluate` names it) is about one node rather than the cluster."""
    return name in PER_NODE or (
        name.startswith("campaign.") and name.endswith((".abandon_over_cap", ".abandon_near_cap"))
    )


def _node_token(node_id: str) -> str:
    """`node_id` in the characters an alarm name may have ([a-z0-9_.]), one to one:
    lower-case letters, digits and dots stay; ``-`` is ``_d``, ``_`` is ``_u`` and an
    upper-case letter is ``_c`` and the letter (``web-1`` -> ``web_d1``)."""
    out = []
    for ch in node_id:
        if ch == "-":
            out.append("_d")
        elif ch == "_":
            out.append("_u")
        elif "A" <= ch <= "Z":
            out.append("_c" + ch.lower())
        else:
            out.append(ch)
    return "".join(out)


def stored_name(name: str, node_id: str | None) -> str:
    """The name alarm `name` has in the alarms table and its webhook events: a per-node
    alarm of a named node is ``<name>.node.<node>`` (`_node_token`); any other keeps `name`."""
    if node_id is None or not is_per_node(name):
        return name
    return f"{name}{_NODE_MARK}{_node_token(node_id)}"


def own_alarm(stored: str, node_id: str | None) -> str | None:
    """The name `evaluate` gives a stored raised alarm this node raises and clears; None for
    one that is another node's. A node without an id (a single process) owns every alarm."""
    if node_id is None:
        return stored
    mine = _NODE_MARK + _node_token(node_id)
    if stored.endswith(mine):
        base = stored[: -len(mine)]
        return base if is_per_node(base) else None
    if _NODE_MARK in stored:
        return None  # another node's
    return stored
