"""The pacing policies: what the dialer runs (`pace_decision`: progressive, or
`decide_predictive` = the model's `decide` floored at progressive), the classic
adaptive dial level kept as a reference (`AdaptiveBaseline`), and `make_pacer`, which
gives the simulator and benchmarks exactly these functions by mode name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

from hitcall_pbx.core.compliance import CampaignMode
from hitcall_pbx.core.pacing.model import decide
from hitcall_pbx.core.pacing.progressive import _no_agents, decide_progressive, line_room
from hitcall_pbx.core.pacing.stats import PacingStats
from hitcall_pbx.core.pacing.types import (
    MODE_ADAPTIVE_BASELINE,
    MODE_PREDICTIVE,
    MODE_PROGRESSIVE,
    PACING_MODES,
    PacingDecision,
    PacingSnapshot,
)

__all__ = ["AdaptiveBaseline", "decide_predictive", "make_pacer", "pace_decision"]


class AdaptiveBaseline:
    """The classic open-source dialer's adaptive dial level, as a reference.

    Lines wanted = round(level × ready agents); new calls = lines wanted − calls
    ringing − answered calls waiting. Every `interval_s` the level moves by
    `intensity` × (mean ready agents − mean answered calls waiting) / active agents
    over the interval, clamped to [min_level, max_level]; while today's abandon rate
    is over the cap the level is cut to min_level. Stateful (the level), still pure.
    """

    def __init__(
        self,
        *,
        initial_level: float = 1.0,
        min_level: float = 1.0,
        max_level: float = 3.0,
        interval_s: float = 15.0,
        intensity: float = 1.0,
    ) -> None:
        if not 0.0 < min_level <= initial_level <= max_level:
            raise ValueError("need 0 < min_level <= initial_level <= max_level")
        self.level = initial_level
        self.min_level = min_level
        self.max_level = max_level
        self.interval_s = interval_s
        self.intensity = intensity
        self._window_start: float | None = None
        self._last_now: float | None = None
        self._ready_area = 0.0
        self._waiting_area = 0.0
        self._last_ready = 0
        self._last_waiting = 0

    def decide(self, snapshot: PacingSnapshot, stats: PacingStats) -> PacingDecision:
        now = snapshot.now
        if self._window_start is None or self._last_now is None or now < self._last_now:
            self._window_start = now
            self._last_now = now
            self._ready_area = self._waiting_area = 0.0
        else:
            dt = now - self._last_now
            self._ready_area += self._last_ready * dt
            self._waiting_area += self._last_waiting * dt
            self._last_now = now
        self._last_ready = snapshot.agents_ready
        self._last_waiting = snapshot.answered_waiting
        span = now - self._window_start
        if span >= self.interval_s:
            diff = (self._ready_area - self._waiting_area) / span
            self.level += self.intensity * diff / max(1, snapshot.active_agents)
            self.level = min(self.max_level, max(self.min_level, self.level))
            self._window_start = now
            self._ready_area = self._waiting_area = 0.0
        over = stats.today_rate > snapshot.settings.abandon_cap
        if over:
            self.level = self.min_level
        idle = _no_agents(snapshot)
        if idle is not None:
            return idle
        lines = int(self.level * snapshot.agents_ready + 0.5)
        n = max(0, lines - len(snapshot.dialling_elapsed_s) - snapshot.answered_waiting)
        n = min(n, line_room(snapshot))
        why = " (cut: abandon over cap)" if over else ""
        return PacingDecision(n, f"adaptive level {self.level:.2f}{why}", MODE_ADAPTIVE_BASELINE)


def decide_predictive(snapshot: PacingSnapshot, stats: PacingStats) -> PacingDecision:
    """The predictive policy the dialer ships: `decide`, floored at progressive.

    Predictive never places fewer calls than there are ready agents with no call on
    the way: one call per free agent cannot abandon, and no agent sits idle while the
    model is unsure (its pessimism with one or two agents would otherwise stall them).
    """
    progressive = decide_progressive(snapshot)
    decision = decide(snapshot, stats)
    if decision.dial_now < progressive.dial_now:
        return replace(decision, dial_now=progressive.dial_now, reserve_agents=False)
    return decision


def pace_decision(mode: CampaignMode, snapshot: PacingSnapshot, stats: PacingStats | None) -> PacingDecision:
    """Calls to place now for a progressive or predictive campaign (what the dialer runs)."""
    if mode is not CampaignMode.PREDICTIVE or stats is None:
        return decide_progressive(snapshot)
    return decide_predictive(snapshot, stats)


def make_pacer(mode: str) -> Callable[[PacingSnapshot, PacingStats], PacingDecision]:
    """The pacing function for a simulated mode. Predictive and progressive are the
    dialer's own `pace_decision` for that campaign mode (predictive = `decide_predictive`,
    progressive = `decide_progressive`), so the simulator and the benchmarks measure the
    policy that ships; adaptive-baseline gets a fresh state."""
    if mode in (MODE_PREDICTIVE, MODE_PROGRESSIVE):
        return partial(pace_decision, CampaignMode(mode))
    if mode == MODE_ADAPTIVE_BASELINE:
        return AdaptiveBaseline().decide
    raise ValueError(f"unknown pacing mode {mode!r}; expected one of {', '.join(PACING_MODES)}")
