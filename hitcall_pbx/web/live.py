"""Live screens: the wallboard's figures and the events pushed to agent and supervisor pages.

One `LiveHub` per process. Agent-state and call events come from the live bus (the
journal's events, as they happen) and go to each page's server-sent-event stream at
once. The figures that need the database (abandon rates, hopper, callbacks due,
answer-to-agent latency, alarms, the campaign's agents) are read by one task for every
campaign someone is watching, every `db_interval` s, whatever the number of viewers;
the in-memory figures (live calls by state, the pacer's decision) every `interval` s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ..api.deps import LiveCall
from ..api.repos import campaigns as campaigns_repo
from ..core.compliance import abandon_rate
from ..livebus import LiveEvent, LiveEvents, Subscription
from ..logs import get_logger

log = get_logger("hitcall.web.live")

DEFAULT_TZ = "Europe/Helsinki"
RINGING = frozenset({"reserved", "originating", "ringing"})
FIRST_SCREEN_MAX_AGE_S = 0.5  # a new viewer's first screen is read afresh when older than this


@dataclass
class WallboardSources:
    """What the wallboard reads besides the database, wired by the composition root."""

    live_calls: Callable[[], Awaitable[list[LiveCall]]]  # the dialing engine's live calls (DialerControl)
    pacing: Callable[[int], Mapping[str, Any] | None] = lambda _cid: None  # the pacer's view of a running campaign


@dataclass
class CampaignBoard:
    campaign_id: int
    watchers: int = 0
    version: int = 0
    db: dict[str, Any] = field(default_factory=dict)
    mem: dict[str, Any] = field(default_factory=dict)
    agent_ids: frozenset[int] = frozenset()
    db_at: float = 0.0  # monotonic time of the last database read
    history: list[dict[str, Any]] = field(default_factory=list)  # calls by state, one point per `interval`

    def snapshot(self) -> dict[str, Any]:
        return {**self.db, **self.mem, "history": self.history[-300:]}


class LiveHub:
    def __init__(
        self,
        pool: asyncpg.Pool,
        bus: LiveEvents,
        sources: WallboardSources,
        *,
        interval: float = 1.0,
        db_interval: float = 3.0,
    ) -> None:
        self.pool = pool
        self.bus = bus
        self.sources = sources
        self.interval = interval
        self.db_interval = db_interval
        self.boards: dict[int, CampaignBoard] = {}
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._subs: set[Subscription] = set()
        self.closed = False

    # ------------------------------------------------------------ life ---
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="web-live")

    async def close(self) -> None:
        """Ends every open stream (their handlers return) and the refresh task."""
        self.closed = True
        for sub in list(self._subs):
            sub.close()
        async with self._changed:
            self._changed.notify_all()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # ------------------------------------------------------- streams ---
    def agent_events(self, agent_id: int) -> Subscription:
        """The events of one agent: its state changes and its calls."""

        def mine(e: LiveEvent) -> bool:
            return e.payload.get("agent_id") == agent_id and (
                e.type == "agent.state_changed" or e.type.startswith("call.")
            )

        return self._track(self.bus.subscribe(mine))

    def campaign_events(self, board: CampaignBoard) -> Subscription:
        """Agent-state changes of the campaign's agents, its calls' events, its state and
        pacing, alarms."""

        def relevant(e: LiveEvent) -> bool:
            if e.type == "agent.state_changed":
                return e.payload.get("agent_id") in board.agent_ids
            if e.type.startswith("call.") or e.type in ("pacing.changed", "campaign.state_changed"):
                return e.payload.get("campaign_id") == board.campaign_id
            return e.type.startswith("alarm.")

        return self._track(self.bus.subscribe(relevant))

    def _track(self, sub: Subscription) -> Subscription:
        self._subs.add(sub)
        return sub

    def untrack(self, sub: Subscription) -> None:
        sub.close()
        self._subs.discard(sub)

    async def watch(self, campaign_id: int) -> CampaignBoard:
        """Start watching a campaign: its figures are read now (first screen) and kept fresh."""
        board = self.boards.get(campaign_id)
        if board is None:
            board = self.boards[campaign_id] = CampaignBoard(campaign_id)
        board.watchers += 1
        if time.monotonic() - board.db_at > FIRST_SCREEN_MAX_AGE_S:
            await self._refresh_db(board)
            await self._refresh_mem(board)
        return board

    def apply(self, board: CampaignBoard, event: LiveEvent) -> None:
        """A pushed agent-state change, campaign state or pacing decision, into the board's
        figures (its next snapshot is current; a new state or decision is shown at once, not
        at the next read of the database)."""
        p = event.payload
        if event.type == "pacing.changed":
            board.mem = {**board.mem, "pacing": pacing_figures(p)}
            board.version += 1
            return
        if event.type == "campaign.state_changed":
            if board.db and not board.db.get("missing"):
                board.db = {**board.db, "state": p.get("state")}
                board.version += 1
            return
        if event.type != "agent.state_changed":
            return
        for agent in board.db.get("agents", ()):
            if agent["id"] == p.get("agent_id"):
                agent.update(state=p.get("state"), pause_code=p.get("pause_code"), since=p.get("at"))

    def unwatch(self, board: CampaignBoard) -> None:
        board.watchers -= 1
        if board.watchers <= 0:
            self.boards.pop(board.campaign_id, None)

    async def wait_changed(self, version: int, timeout: float) -> None:
        """Until some board's version passes `version`, or `timeout`."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    # ------------------------------------------------------- refresh ---
    async def _run(self) -> None:
        last_db = 0.0
        while not self.closed:
            try:
                await asyncio.sleep(self.interval)
                boards = list(self.boards.values())
                if not boards:
                    continue
                db_due = time.monotonic() - last_db >= self.db_interval
                if db_due:
                    last_db = time.monotonic()
                    for board in boards:
                        await self._refresh_db(board)
                calls = await self._safe_calls()
                for board in boards:
                    await self._refresh_mem(board, calls)
                async with self._changed:
                    self._changed.notify_all()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("web.live_refresh_failed")

    async def _safe_calls(self) -> list[LiveCall] | None:
        try:
            return await self.sources.live_calls()
        except Exception as exc:  # an API-only process has no live calls: the figures say so
            log.debug("web.live_calls_unavailable", error=str(exc))
            return None

    async def _refresh_mem(self, board: CampaignBoard, calls: list[LiveCall] | None = None) -> None:
        if calls is None:
            calls = await self._safe_calls()
        cid = board.campaign_id
        agent_calls: dict[str, str] = {}
        if calls is None:
            counts: dict[str, int | None] = {"ringing": None, "waiting": None, "bridged": None}
        else:
            mine = [c for c in calls if c.campaign_id == cid]
            agent_calls = {str(c.agent_id): str(c.attempt_id) for c in mine if c.agent_id is not None}
            counts = {
                "ringing": sum(1 for c in mine if c.state.value in RINGING),
                "waiting": sum(1 for c in mine if c.state.value == "answered" and c.agent_id is None),
                "bridged": sum(1 for c in mine if c.state.value == "bridged"),
            }
        pacing = dict(self.sources.pacing(cid) or {})
        board.mem = {
            "calls": counts,
            "agent_calls": agent_calls,
            "pacing": pacing,
            "at": datetime.now(UTC).isoformat(),
        }
        if calls is not None:
            board.history.append({"t": time.time(), **counts})
            del board.history[:-300]
        board.version += 1

    async def _refresh_db(self, board: CampaignBoard) -> None:
        cid = board.campaign_id
        async with self.pool.acquire() as conn:
            row = await campaigns_repo.get(conn, cid)
            if row is None:
                board.db = {"campaign_id": cid, "missing": True}
                return
            counts = await campaigns_repo.abandon_counts(conn, cid, DEFAULT_TZ)
            agents = await conn.fetch(
                """SELECT a.id, a.number, a.name, a.state, a.pause_code, a.state_since
                   FROM agents a JOIN agent_campaigns ac ON ac.agent_id = a.id
                   LEFT JOIN users u ON u.id = a.user_id
                   WHERE ac.campaign_id = $1 AND NOT a.disabled AND (u.role IS NULL OR u.role = 'agent')
                   ORDER BY a.number""",
                cid,
            )
            figures = await conn.fetchrow(
                """WITH lists AS (SELECT list_id FROM campaign_lists WHERE campaign_id = $1)
                   SELECT
                     (SELECT count(*) FROM contacts c WHERE c.list_id IN (SELECT list_id FROM lists)
                        AND c.status IN ('new', 'retry') AND (c.next_attempt_at IS NULL OR c.next_attempt_at <= now()))
                        AS hopper,
                     (SELECT count(*) FROM contacts c WHERE c.list_id IN (SELECT list_id FROM lists)
                        AND c.status = 'callback' AND c.callback_at <= now()) AS callbacks_due""",
                cid,
            )
            latency = await conn.fetchrow(
                """SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY answer_to_bridge_ms) AS p50,
                          percentile_cont(0.99) WITHIN GROUP (ORDER BY answer_to_bridge_ms) AS p99,
                          count(*) FILTER (WHERE answered_at IS NOT NULL) AS answered,
                          count(*) FILTER (WHERE state = 'ended') AS finished
                   FROM all_attempts
                   WHERE campaign_id = $1 AND created_at >= date_trunc('day', now() AT TIME ZONE $2) AT TIME ZONE $2""",
                cid,
                DEFAULT_TZ,
            )
            alarms = await conn.fetch(
                "SELECT name, severity, raised_at, details FROM alarms WHERE state = 'raised' ORDER BY raised_at"
            )
        assert figures is not None and latency is not None  # aggregates: always one row
        cap = float(row["abandon_cap"])
        today = abandon_rate(counts["day_abandoned"], counts["day_connected"])
        period = abandon_rate(counts["period_abandoned"], counts["period_connected"])
        board.agent_ids = frozenset(a["id"] for a in agents)
        board.db = {
            "campaign_id": cid,
            "name": row["name"],
            "mode": row["mode"],
            "state": row["state"],
            "abandon": {"today": today, "last_30_days": period, "cap": cap},
            "agents": [
                {
                    "id": a["id"],
                    "number": a["number"],
                    "name": a["name"],
                    "state": a["state"],
                    "pause_code": a["pause_code"],
                    "since": a["state_since"].isoformat(),
                }
                for a in agents
            ],
            "hopper": figures["hopper"],
            "callbacks_due": figures["callbacks_due"],
            "latency_ms": {
                "p50": None if latency["p50"] is None else round(float(latency["p50"])),
                "p99": None if latency["p99"] is None else round(float(latency["p99"])),
            },
            "contact_rate": (latency["answered"] / latency["finished"]) if latency["finished"] else None,
            "alarms": [
                {"name": a["name"], "severity": a["severity"], "raised_at": a["raised_at"].isoformat()} for a in alarms
            ],
        }
        board.db_at = time.monotonic()
        board.version += 1


def pacing_figures(view: Mapping[str, Any]) -> dict[str, Any]:
    """What the wallboard shows of a pacing view (core.pacing.PacingView.to_dict)."""
    return {
        "contact_rate": view.get("contact_rate"),
        "lines_in_flight": view.get("lines_in_flight"),
        "decision": {"dial_now": view.get("dial_now"), "mode_effective": view.get("mode_effective")},
    }


def agent_message(event: LiveEvent) -> dict[str, Any]:
    """What a page is told about an event (ids and states only: no personal data)."""
    p = event.payload
    out: dict[str, Any] = {"type": event.type, "at": p.get("at")}
    for key in ("agent_id", "state", "pause_code", "campaign_id", "attempt_id", "previous"):
        if key in p:
            out[key] = p[key]
    return out
