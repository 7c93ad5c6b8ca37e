"""Pacing adapter: the running campaigns, their pacing statistics (seeded from the
CDRs, rolled over at midnight), the snapshot the pure pacer (`core.pacing`) decides
on, and the contacts the hopper hands out for that decision, each with the agent it
is placed for.

A decision is made at once (`plan`, no I/O) and its contacts are taken from Postgres
afterwards (`take`): a `Flight`. While a flight's contacts are being taken, its lines
count as placed and the agents it will reserve are held (`AgentSession.held`), so the
next decision, made before that flight lands, neither dials for the same agents nor
over the line cap. The dialer lets a few flights run at once (all campaigns together):
an agent freed while another agent's contact is being taken gets its own call at once,
not with the next batch (calls placed together are answered together and reach their
agents together)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..agents.sessions import AgentSession, AgentSessions
from ..core import pacing
from ..core.calls import DIALLING_STATES, CallState
from ..core.compliance import CampaignMode
from ..core.states import AgentState
from .calls import LiveCall
from .hopper import Hopper
from .models import Attempt, Campaign
from .store import CallStore

HOPPER_EMPTY_BACKOFF_S = 2.0


def _now() -> datetime:
    return datetime.now(UTC)


async def load_stats(store: CallStore, campaign: Campaign, today: datetime) -> pacing.PacingStats:
    """Pacing statistics seeded with today's and the last 30 days' abandon counts."""
    stats = pacing.PacingStats(ring_timeout_s=float(campaign.ring_timeout_s))
    tallies = await store.abandon_tallies(campaign.id)
    day = today.date()
    # One tally per past day, oldest first (days without calls count as empty days).
    history = [tallies.get(day - timedelta(days=n), pacing.AbandonTally()) for n in range(29, 0, -1)]
    stats.restore(tallies.get(day, pacing.AbandonTally()), history)
    return stats


@dataclass(eq=False)
class Flight:
    """A decision whose contacts are being taken: `lines` calls, for `agents` (held for
    them) when the decision reserves agents."""

    campaign: Campaign
    lines: int
    reserve: bool
    agents: list[AgentSession]


@dataclass(frozen=True)
class Placement:
    """A contact to dial now. `agent`: the agent it is reserved for (progressive, personal
    callback); None with `for_agent` set: its agent went away, so it is not dialled."""

    attempt: Attempt
    agent: AgentSession | None
    for_agent: bool


class CampaignPacer:
    def __init__(
        self, store: CallStore, hopper: Hopper, sessions: AgentSessions, calls: Mapping[str, LiveCall]
    ) -> None:
        self.store = store
        self.hopper = hopper
        self.sessions = sessions
        self.calls = calls
        self.campaigns: dict[int, Campaign] = {}
        self.stats: dict[int, pacing.PacingStats] = {}
        self.blocked: dict[int, dict[str, int]] = {}
        self._stats_day: dict[int, str] = {}
        self._empty_until: dict[int, float] = {}
        # each campaign's latest decision with its figures, for /metrics and the wallboard;
        # `on_view` (wired by the composition root) hears of the ones worth showing
        self.views: dict[int, pacing.PacingView] = {}
        self.on_view: Callable[[int, pacing.PacingView], None] | None = None
        self._told: dict[int, pacing.PacingView] = {}
        self.in_air: list[Flight] = []  # planned, contacts not taken yet

    async def refresh(self) -> None:
        fresh = await self.store.running_campaigns()
        for cid, campaign in fresh.items():
            if cid not in self.stats:
                now = _now()
                self.stats[cid] = await load_stats(self.store, campaign, now)
                self._stats_day[cid] = now.date().isoformat()
        for cid in [cid for cid in self.views if cid not in fresh]:
            del self.views[cid]  # a stopped campaign paces no more
            self._told.pop(cid, None)
        self.campaigns = fresh

    async def track(self, campaign: Campaign) -> None:
        """Statistics for a campaign that is not running (a manual dial in a paused campaign),
        so that its calls are counted like any other."""
        if campaign.id not in self.stats:
            now = _now()
            self.stats[campaign.id] = await load_stats(self.store, campaign, now)
            self._stats_day[campaign.id] = now.date().isoformat()

    def stats_for(self, campaign: Campaign) -> pacing.PacingStats:
        """The campaign's statistics, rolled over to a new day at UTC midnight."""
        stats = self.stats[campaign.id]
        today = _now().date().isoformat()
        if self._stats_day.get(campaign.id) != today:
            stats.new_day()
            self._stats_day[campaign.id] = today
        return stats

    def free_agents(self, campaign_id: int) -> list[AgentSession]:
        """Ready agents of a campaign that no flight holds, longest idle first."""
        return [s for s in self.sessions.ready_agents(campaign_id) if not s.held]

    def snapshot(self, campaign: Campaign) -> pacing.PacingSnapshot:
        now = time.monotonic()
        agents = [s for s in self.sessions.by_agent.values() if campaign.id in s.campaigns and not s.pin_pending]
        wrap, talk = [], []
        for s in agents:
            if s.state is AgentState.WRAP_UP and s.fsm.wrap_until is not None:
                wrap.append(max(0.0, (s.fsm.wrap_until - _now()).total_seconds()))
            elif s.state is AgentState.ON_CALL:
                call = self.calls.get(s.attempt_id or "")
                talk.append(max(0.0, now - call.answered_mono) if call and call.answered_mono else 0.0)
        dialling, reserved_calls, waiting = [], 0, 0
        for c in self.calls.values():
            if c.campaign.id != campaign.id:
                continue
            if c.state in DIALLING_STATES:
                if c.reserved:
                    reserved_calls += 1
                else:
                    dialling.append(now - c.placed_mono)
            elif c.state is CallState.ANSWERED and c.agent_id is None:
                waiting += 1
        # A flight's lines are placed as far as pacing goes: its held agents are not ready,
        # its unreserved lines dial from now.
        for flight in self.in_air:
            if flight.campaign.id != campaign.id:
                continue
            if flight.reserve:
                reserved_calls += flight.lines
            else:
                dialling.extend([0.0] * flight.lines)
        return pacing.PacingSnapshot(
            now=now,
            agents_logged_in=len(agents),
            agents_ready=len(self.free_agents(campaign.id)),
            wrap_remaining_s=tuple(wrap),
            talk_elapsed_s=tuple(talk),
            dialling_elapsed_s=tuple(dialling),
            answered_waiting=waiting,
            reserved_calls=reserved_calls,
            agents_paused=sum(1 for s in agents if s.state is AgentState.PAUSED),
            settings=campaign.pacing_settings(),
        )

    def _show(self, campaign_id: int, view: pacing.PacingView) -> None:
        self.views[campaign_id] = view
        if self.on_view is not None and pacing.view_changed(self._told.get(campaign_id), view):
            self._told[campaign_id] = view
            self.on_view(campaign_id, view)

    def plan(self, campaign: Campaign) -> Flight | None:
        """Decide the calls to place now for a progressive or predictive campaign; when there
        are any, hold the agents they reserve and count their lines as placed until `take`
        lands (or fails)."""
        stats = self.stats_for(campaign) if campaign.mode is CampaignMode.PREDICTIVE else None
        snapshot = self.snapshot(campaign)
        decision = pacing.pace_decision(campaign.mode, snapshot, stats)
        self._show(campaign.id, pacing.pacing_view(decision, snapshot, stats))
        if decision.dial_now <= 0 or time.monotonic() < self._empty_until.get(campaign.id, 0.0):
            return None
        agents = self.free_agents(campaign.id)[: decision.dial_now] if decision.reserve_agents else []
        for agent in agents:
            agent.held = True
        flight = Flight(campaign, decision.dial_now, decision.reserve_agents, agents)
        self.in_air.append(flight)
        return flight

    async def take(self, flight: Flight) -> list[Placement]:
        """The contacts for a planned flight (attempt rows committed), each with the agent it
        is placed for; the flight's holds end with it, landed or failed."""
        campaign = flight.campaign
        try:
            # Personal callbacks are not taken here: they are offered to their agent as
            # preview offers (dialer.preview), or go to anyone once the agent's grace has passed.
            result = await self.hopper.take(campaign, flight.lines, _now(), ready_agents=())
        finally:
            for held in flight.agents:
                held.held = False
            self.in_air.remove(flight)
        mine = self.blocked.setdefault(campaign.id, {})
        for k, v in result.blocked.items():
            mine[k] = mine.get(k, 0) + v
        if not result.attempts:
            # Nothing due now: look again in a while, not on every tick.
            self._empty_until[campaign.id] = time.monotonic() + HOPPER_EMPTY_BACKOFF_S
            return []
        # A callback for one agent is placed for that agent, reserved now (in every mode);
        # progressive reserves one ready agent for each other call too: the agents held for
        # the flight while they are still ready (one may have taken a waiting customer, been
        # paused or left meanwhile), then any other free one.
        named: set[int | None] = {a.agent_id for a in result.attempts}
        ready = [
            s
            for s in flight.agents
            if s.state is AgentState.READY and not s.leaving and self.sessions.by_agent.get(s.agent_id) is s
        ]
        free: list[AgentSession] = []
        for s in ready + self.free_agents(campaign.id):
            if s.agent_id not in named:
                named.add(s.agent_id)
                free.append(s)
        out = []
        for attempt in result.attempts:
            if attempt.agent_id is not None:
                agent = self.sessions.by_agent.get(attempt.agent_id)
                ready_agent = agent if agent is not None and agent.state is AgentState.READY else None
                out.append(Placement(attempt, ready_agent, for_agent=True))
            elif flight.reserve:
                out.append(Placement(attempt, free.pop(0) if free else None, for_agent=True))
            else:
                out.append(Placement(attempt, None, for_agent=False))
        return out
