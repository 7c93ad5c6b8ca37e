"""Agent productivity per agent and day, from the agents' state intervals and their CDRs.

Pure: rows and the current time come in, figures go out.

A day is a calendar day in the report's time zone (default Europe/Helsinki): from local
midnight to the next, 23 or 25 hours on the days the clocks change. Each state interval
counts the part of it inside the day; an interval still open counts up to `now`.

Time (seconds): logged in = every state but logged_out; ready (waiting for a call),
reserved (a call being dialled or offered for the agent), talk (on a call), wrap-up,
paused (in total and per pause code). ready + reserved + talk + wrap-up + paused =
logged in, always.

Calls: the day's CDRs (by their creation time) that name the agent: calls dialled for
the agent or put through to them, outbound and inbound. Connects: those that reached the
agent (bridged). Dispositions: the count of each code the agent gave. Average handle
time = (talk + wrap-up) / connects, None without connects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from hitcall_pbx.core.phone import validate_timezone
from hitcall_pbx.errors import ValidationFailed

__all__ = [
    "DEFAULT_REPORT_TZ",
    "TIMED_STATES",
    "AgentDay",
    "agent_days",
    "day_window",
    "report_zone",
    "state_seconds",
]

DEFAULT_REPORT_TZ = "Europe/Helsinki"
# The states of a logged-in agent, in the order the report shows them.
TIMED_STATES = ("ready", "reserved", "on_call", "wrap_up", "paused")


class Row(Protocol):
    """A row read by column name: an asyncpg ``Record`` or a dict."""

    def __getitem__(self, key: str, /) -> Any: ...


def report_zone(name: str | None) -> ZoneInfo:
    """The report's time zone (`name`, or Europe/Helsinki); ValidationFailed names field tz."""
    return ZoneInfo(validate_timezone(name or DEFAULT_REPORT_TZ, field="tz"))


def day_window(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of the local calendar day, as aware UTC datetimes."""
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return start, end


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationFailed(f"{name} must be timezone-aware", details={"field": name})
    return value


def state_seconds(
    intervals: Iterable[Row], start: datetime, end: datetime, now: datetime
) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per state and per pause code of one agent's intervals inside [start, end);
    an open interval (ended_at None) lasts until `now`."""
    per_state: dict[str, float] = {}
    per_code: dict[str, float] = {}
    for r in intervals:
        began = _aware(r["started_at"], "started_at")
        ended = _aware(r["ended_at"], "ended_at") if r["ended_at"] is not None else max(began, now)
        seconds = (min(ended, end) - max(began, start)).total_seconds()
        if seconds <= 0:
            continue
        state = str(r["state"])
        per_state[state] = per_state.get(state, 0.0) + seconds
        if state == "paused":
            code = str(r["pause_code"] or "")
            per_code[code] = per_code.get(code, 0.0) + seconds
    return per_state, per_code


@dataclass(frozen=True)
class AgentDay:
    agent_id: int
    day: date
    number: str | None = None
    name: str | None = None
    logged_in_s: float = 0.0
    ready_s: float = 0.0
    reserved_s: float = 0.0
    talk_s: float = 0.0
    wrap_up_s: float = 0.0
    paused_s: float = 0.0
    pause_s: dict[str, float] = field(default_factory=dict)  # per pause code
    calls: int = 0
    connects: int = 0
    dispositions: dict[str, int] = field(default_factory=dict)

    @property
    def handle_s(self) -> float:
        return self.talk_s + self.wrap_up_s

    @property
    def average_handle_s(self) -> float | None:
        return self.handle_s / self.connects if self.connects else None

    @property
    def occupancy(self) -> float | None:
        """Share of logged-in time spent talking or in wrap-up."""
        return self.handle_s / self.logged_in_s if self.logged_in_s > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "number": self.number,
            "name": self.name,
            "day": self.day.isoformat(),
            "logged_in_s": round(self.logged_in_s, 3),
            "ready_s": round(self.ready_s, 3),
            "reserved_s": round(self.reserved_s, 3),
            "talk_s": round(self.talk_s, 3),
            "wrap_up_s": round(self.wrap_up_s, 3),
            "paused_s": round(self.paused_s, 3),
            "pause_s": {k: round(v, 3) for k, v in sorted(self.pause_s.items())},
            "calls": self.calls,
            "connects": self.connects,
            "dispositions": dict(sorted(self.dispositions.items())),
            "average_handle_s": None if self.average_handle_s is None else round(self.average_handle_s, 3),
            "occupancy": None if self.occupancy is None else round(self.occupancy, 4),
        }


def agent_days(
    day: date,
    zone: ZoneInfo,
    intervals: Iterable[Row],
    calls: Iterable[Row],
    *,
    now: datetime,
    agents: Mapping[int, Row] | None = None,
) -> list[AgentDay]:
    """One `AgentDay` per agent with time or calls on `day`, by agent id.

    `intervals`: agent_state_log rows (agent_id, state, pause_code, started_at, ended_at);
    `calls`: call_attempts rows (agent_id, created_at, bridged_at, disposition);
    `agents`: agent rows (number, name) by id, for the labels."""
    _aware(now, "now")
    start, end = day_window(day, zone)
    by_agent: dict[int, list[Row]] = {}
    for r in intervals:
        by_agent.setdefault(int(r["agent_id"]), []).append(r)
    counts: dict[int, tuple[int, int, dict[str, int]]] = {}
    for c in calls:
        if c["agent_id"] is None or not start <= _aware(c["created_at"], "created_at") < end:
            continue
        n, connects, dispositions = counts.get(int(c["agent_id"]), (0, 0, {}))
        if c["disposition"] is not None:
            dispositions[str(c["disposition"])] = dispositions.get(str(c["disposition"]), 0) + 1
        counts[int(c["agent_id"])] = (n + 1, connects + (c["bridged_at"] is not None), dispositions)
    out = []
    for agent_id in sorted(set(by_agent) | set(counts)):
        per_state, per_code = state_seconds(by_agent.get(agent_id, []), start, end, now)
        n, connects, dispositions = counts.get(agent_id, (0, 0, {}))
        timed = {s: per_state.get(s, 0.0) for s in TIMED_STATES}
        if not any(timed.values()) and n == 0:
            continue
        label = agents.get(agent_id) if agents is not None else None
        out.append(
            AgentDay(
                agent_id=agent_id,
                day=day,
                number=None if label is None else label["number"],
                name=None if label is None else label["name"],
                logged_in_s=sum(timed.values()),
                ready_s=timed["ready"],
                reserved_s=timed["reserved"],
                talk_s=timed["on_call"],
                wrap_up_s=timed["wrap_up"],
                paused_s=timed["paused"],
                pause_s=per_code,
                calls=n,
                connects=connects,
                dispositions=dispositions,
            )
        )
    return out
