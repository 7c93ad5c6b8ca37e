"""Daily compliance report figures, computed from rows (pure: no I/O).

Days are UTC calendar days, the same days the dialer counts abandon caps and
dial blocks on. Abandon rate = abandoned / (abandoned + connected to an agent), over
outbound calls only. Inbound calls (callers on the return-call line) are reported beside
them (`InboundDay`): per campaign when the caller matched one, and on their own otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol

CONNECT_LIMIT_MS = 2000
RING_BINS_S = (0, 5, 10, 15, 20, 25, 30)
DNC_REASONS = ("dnc_global", "dnc_campaign", "marketing_prohibited", "suppressed")
BUSY_STATES = ("on_call", "wrap_up")
STAFFED_STATES = ("ready", "reserved", "on_call", "wrap_up")


class Row(Protocol):
    """A row read by column name: an asyncpg ``Record`` or a dict."""

    def __getitem__(self, key: str, /) -> Any: ...


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of the values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def rate(abandoned: int, connects: int) -> float | None:
    total = abandoned + connects
    return abandoned / total if total else None


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


@dataclass(frozen=True)
class Hour:
    hour: int
    calls: int
    connects: int
    abandoned: int
    abandon_rate: float | None
    occupancy: float | None


@dataclass(frozen=True)
class InboundDay:
    """The day's inbound calls (of one campaign, or of none): how many reached an agent,
    how many callers hung up waiting (abandoned), how many heard the no-agent message, how
    many the return-call menu served (self_service: opted out, or listened and hung up) and
    how many ended while no HitCall process followed them (untracked: a service restart)."""

    calls: int = 0
    connected: int = 0
    abandoned: int = 0
    no_agent: int = 0
    self_service: int = 0
    untracked: int = 0
    wait_to_agent_p50_s: float | None = None
    wait_to_agent_p99_s: float | None = None
    abandoned_wait_p50_s: float | None = None
    talk_s: float = 0.0

    @property
    def connected_share(self) -> float | None:
        return self.connected / self.calls if self.calls else None


def inbound_day(rows: Iterable[Row]) -> InboundDay:
    """`rows`: the day's inbound call_attempts rows (outcome, ring_s = seconds waited, talk_s)."""
    calls = connected = abandoned = no_agent = self_service = untracked = 0
    to_agent: list[float] = []
    gave_up: list[float] = []
    talk = 0.0
    for r in rows:
        calls += 1
        waited = float(r["ring_s"]) if r["ring_s"] is not None else None
        if r["outcome"] == "answered_human":
            connected += 1
            if waited is not None:
                to_agent.append(waited)
        elif r["outcome"] == "abandoned":
            abandoned += 1
            if waited is not None:
                gave_up.append(waited)
        elif r["outcome"] == "no_agent":
            no_agent += 1
        elif r["outcome"] == "self_service":
            self_service += 1
        elif r["outcome"] == "untracked":
            untracked += 1
        talk += float(r["talk_s"] or 0)
    return InboundDay(
        calls=calls,
        connected=connected,
        abandoned=abandoned,
        no_agent=no_agent,
        self_service=self_service,
        untracked=untracked,
        wait_to_agent_p50_s=percentile(to_agent, 50),
        wait_to_agent_p99_s=percentile(to_agent, 99),
        abandoned_wait_p50_s=percentile(gave_up, 50),
        talk_s=round(talk, 3),
    )


@dataclass(frozen=True)
class CallbackDay:
    """The day's callbacks of a campaign: scheduled that day, closed that day (done: the
    customer reached an agent; missed: dialled, not reached; cancelled), and those still
    scheduled whose time had passed by the end of the day (or now, for today): overdue."""

    scheduled: int = 0
    done: int = 0
    missed: int = 0
    cancelled: int = 0
    overdue: int = 0


def callback_day(rows: Iterable[Row], day: date, now: datetime) -> CallbackDay:
    """`rows`: the campaign's callbacks created or closed that day, or still scheduled
    (state, created_at, due_at, closed_at)."""
    start, end = day_bounds(day)
    at = min(end, now)
    counts = {"scheduled": 0, "done": 0, "missed": 0, "cancelled": 0, "overdue": 0}
    for r in rows:
        if start <= r["created_at"] < end:
            counts["scheduled"] += 1
        closed = r["closed_at"]
        if closed is not None and start <= closed < end and r["state"] in ("done", "missed", "cancelled"):
            counts[r["state"]] += 1
        if r["created_at"] < end and (closed is None or closed >= end) and r["due_at"] < at:
            counts["overdue"] += 1
    return CallbackDay(**counts)


@dataclass(frozen=True)
class MonitoringDay:
    """The day's monitoring legs of a campaign's calls (supervisors listening, whispering or
    barging): sessions started that day, by how many supervisors, their total time (ended
    sessions), and how many ended on a fault (failed, asterisk_lost, service_restart)."""

    sessions: int = 0
    supervisors: int = 0
    monitored_s: float = 0.0
    ended_on_fault: int = 0


_FAULT_END_REASONS = frozenset({"failed", "asterisk_lost", "service_restart"})


def monitoring_day(rows: Iterable[Row]) -> MonitoringDay:
    """`rows`: the day's monitoring_sessions rows (supervisor, started_at, ended_at, end_reason)."""
    sessions = faults = 0
    supervisors: set[str] = set()
    seconds = 0.0
    for r in rows:
        sessions += 1
        supervisors.add(str(r["supervisor"]))
        if r["ended_at"] is not None:
            seconds += (r["ended_at"] - r["started_at"]).total_seconds()
        faults += r["end_reason"] in _FAULT_END_REASONS
    return MonitoringDay(sessions, len(supervisors), round(seconds, 3), faults)


@dataclass(frozen=True)
class CampaignDay:
    campaign_id: int
    campaign_name: str
    day: date
    abandon_cap: float
    calls: int
    answered: int
    connects: int
    abandoned: int
    abandon_rate_day: float | None
    abandon_rate_30d: float | None
    abandoned_30d: int
    connects_30d: int
    within_cap_day: bool
    within_cap_30d: bool
    outcomes: dict[str, int]
    answer_to_agent_n: int
    answer_to_agent_within_2s: float | None
    answer_to_agent_p50_ms: float | None
    answer_to_agent_p99_ms: float | None
    ring_histogram: list[tuple[str, int]]
    ring_p50_s: float | None
    blocked_outside_window: int
    blocked_dnc: int
    blocks: dict[str, int]
    recordings_stored: int
    recordings_purged: int
    recordings_on_hold: int
    hours: list[Hour] = field(default_factory=list)
    inbound: InboundDay = field(default_factory=InboundDay)
    callbacks: CallbackDay = field(default_factory=CallbackDay)
    monitoring: MonitoringDay = field(default_factory=MonitoringDay)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["day"] = self.day.isoformat()
        d["ring_histogram"] = [{"bin": b, "calls": n} for b, n in self.ring_histogram]
        return d


def _ring_bin(seconds: float) -> int:
    for i in range(len(RING_BINS_S) - 1, -1, -1):
        if seconds >= RING_BINS_S[i]:
            return i
    return 0


def ring_labels() -> list[str]:
    edges = RING_BINS_S
    return [f"{edges[i]}–{edges[i + 1]} s" for i in range(len(edges) - 1)] + [f"≥ {edges[-1]} s"]


def occupancy_by_hour(intervals: Iterable[Row], day: date, now: datetime) -> list[float | None]:
    """Per UTC hour: time on a call or in wrap-up / time staffed (ready, reserved, on call, wrap-up).

    `intervals` are agent_state_log rows (state, started_at, ended_at); an open interval
    runs until `now`."""
    start, _ = day_bounds(day)
    busy = [0.0] * 24
    staffed = [0.0] * 24
    for r in intervals:
        if r["state"] not in STAFFED_STATES:
            continue
        a = max(r["started_at"], start)
        b = min(r["ended_at"] or now, start + timedelta(days=1))
        while a < b:
            h = int((a - start).total_seconds() // 3600)
            edge = min(b, start + timedelta(hours=h + 1))
            secs = (edge - a).total_seconds()
            staffed[h] += secs
            if r["state"] in BUSY_STATES:
                busy[h] += secs
            a = edge
    return [busy[h] / staffed[h] if staffed[h] > 0 else None for h in range(24)]


def campaign_day(
    campaign: Row,
    day: date,
    attempts: Sequence[Row],
    *,
    abandoned_30d: int,
    connects_30d: int,
    blocks: Mapping[str, int],
    recordings_stored: int,
    recordings_purged: int,
    recordings_on_hold: int,
    agent_intervals: Iterable[Row] = (),
    now: datetime | None = None,
    inbound: InboundDay | None = None,
    callbacks: CallbackDay | None = None,
    monitoring: MonitoringDay | None = None,
) -> CampaignDay:
    """The report of one campaign for one day.

    `attempts`: that day's outbound call_attempts rows (created_at, answered_at, bridged_at,
    abandoned, outcome, ring_s, answer_to_bridge_ms). The 30-day figures (the 30 days
    ending with `day`) come precomputed, as they span more rows than one day. `inbound`:
    the campaign's inbound calls that day (`inbound_day`)."""
    cap = float(campaign["abandon_cap"])
    start, _ = day_bounds(day)
    connects = sum(1 for a in attempts if a["bridged_at"] is not None)
    abandoned = sum(1 for a in attempts if a["abandoned"])
    outcomes: dict[str, int] = {}
    for a in attempts:
        key = a["outcome"] or "in_progress"
        outcomes[key] = outcomes.get(key, 0) + 1
    a2b = [
        a["answer_to_bridge_ms"]
        for a in attempts
        if a["bridged_at"] is not None and a["answer_to_bridge_ms"] is not None
    ]
    ring = [float(a["ring_s"]) for a in attempts if a["ring_s"] is not None]
    hist = [0] * len(RING_BINS_S)
    for s in ring:
        hist[_ring_bin(s)] += 1

    occupancy = occupancy_by_hour(agent_intervals, day, now or datetime.now(UTC))
    hours = []
    for h in range(24):
        in_hour = [a for a in attempts if int((a["created_at"] - start).total_seconds() // 3600) == h]
        hc = sum(1 for a in in_hour if a["bridged_at"] is not None)
        ha = sum(1 for a in in_hour if a["abandoned"])
        hours.append(Hour(h, len(in_hour), hc, ha, rate(ha, hc), occupancy[h]))

    day_rate = rate(abandoned, connects)
    rate_30d = rate(abandoned_30d, connects_30d)
    return CampaignDay(
        campaign_id=int(campaign["id"]),
        campaign_name=str(campaign["name"]),
        day=day,
        abandon_cap=cap,
        calls=len(attempts),
        answered=sum(1 for a in attempts if a["answered_at"] is not None),
        connects=connects,
        abandoned=abandoned,
        abandon_rate_day=day_rate,
        abandon_rate_30d=rate_30d,
        abandoned_30d=abandoned_30d,
        connects_30d=connects_30d,
        within_cap_day=(day_rate or 0.0) <= cap,
        within_cap_30d=(rate_30d or 0.0) <= cap,
        outcomes=dict(sorted(outcomes.items(), key=lambda kv: -kv[1])),
        answer_to_agent_n=len(a2b),
        answer_to_agent_within_2s=(sum(1 for ms in a2b if ms <= CONNECT_LIMIT_MS) / len(a2b)) if a2b else None,
        answer_to_agent_p50_ms=percentile(a2b, 50),
        answer_to_agent_p99_ms=percentile(a2b, 99),
        ring_histogram=list(zip(ring_labels(), hist)),
        ring_p50_s=percentile(ring, 50),
        blocked_outside_window=int(blocks.get("outside_window", 0)),
        blocked_dnc=sum(int(blocks.get(r, 0)) for r in DNC_REASONS),
        blocks=dict(sorted(blocks.items())),
        recordings_stored=recordings_stored,
        recordings_purged=recordings_purged,
        recordings_on_hold=recordings_on_hold,
        hours=hours,
        inbound=inbound or InboundDay(),
        callbacks=callbacks or CallbackDay(),
        monitoring=monitoring or MonitoringDay(),
    )


CSV_COLUMNS = (
    "day",
    "campaign_id",
    "campaign_name",
    "calls",
    "answered",
    "connects",
    "abandoned",
    "abandon_cap",
    "abandon_rate_day",
    "within_cap_day",
    "abandon_rate_30d",
    "within_cap_30d",
    "answer_to_agent_n",
    "answer_to_agent_within_2s",
    "answer_to_agent_p50_ms",
    "answer_to_agent_p99_ms",
    "ring_p50_s",
    "blocked_outside_window",
    "blocked_dnc",
    "recordings_stored",
    "recordings_purged",
    "recordings_on_hold",
    "inbound_calls",
    "inbound_connected",
    "inbound_abandoned",
    "inbound_no_agent",
    "inbound_self_service",
    "inbound_untracked",
    "inbound_wait_to_agent_p50_s",
    "inbound_wait_to_agent_p99_s",
    "inbound_abandoned_wait_p50_s",
    "inbound_talk_s",
    "callbacks_scheduled",
    "callbacks_done",
    "callbacks_missed",
    "callbacks_cancelled",
    "callbacks_overdue",
    "monitoring_sessions",
    "monitoring_supervisors",
    "monitoring_monitored_s",
    "monitoring_ended_on_fault",
)


def csv_row(r: CampaignDay) -> list[Any]:
    d = r.as_dict()
    d.update({f"inbound_{k}": v for k, v in d["inbound"].items()})
    d.update({f"callbacks_{k}": v for k, v in d["callbacks"].items()})
    d.update({f"monitoring_{k}": v for k, v in d["monitoring"].items()})
    return ["" if d[c] is None else d[c] for c in CSV_COLUMNS]


def inbound_csv_row(day: date, inbound: InboundDay) -> list[Any]:
    """The CSV row of the inbound calls that matched no campaign (only the inbound columns)."""
    d: dict[str, Any] = {f"inbound_{k}": v for k, v in asdict(inbound).items()}
    d.update(day=day.isoformat(), campaign_name="(no campaign)")
    return ["" if d.get(c) is None else d[c] for c in CSV_COLUMNS]
