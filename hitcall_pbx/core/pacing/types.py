"""Pacing inputs and outputs: the modes, per-campaign settings, the campaign's
state at one moment (`PacingSnapshot`) and what a pacer answers (`PacingDecision`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "MODE_ADAPTIVE_BASELINE",
    "MODE_FALLBACK",
    "MODE_IDLE",
    "MODE_PREDICTIVE",
    "MODE_PROGRESSIVE",
    "PACING_MODES",
    "PacingDecision",
    "PacingSettings",
    "PacingSnapshot",
]

MODE_PREDICTIVE: Final = "predictive"
MODE_PROGRESSIVE: Final = "progressive"
MODE_ADAPTIVE_BASELINE: Final = "adaptive-baseline"
MODE_FALLBACK: Final = "progressive-fallback"
MODE_IDLE: Final = "idle"
PACING_MODES: Final = (MODE_PREDICTIVE, MODE_PROGRESSIVE, MODE_ADAPTIVE_BASELINE)


@dataclass(frozen=True)
class PacingSettings:
    """Per-campaign pacing settings.

    `abandon_cap`: the legal cap on abandoned / (abandoned + connected), per calendar day
    and over 30 days. `target_fraction`: the controller aims at cap × this.
    `max_lines_per_agent`: calls not yet with an agent (ringing + answered waiting),
    at most this many per logged-in, unpaused agent. `connect_limit_s`: an answered
    call not with an agent within this time is abandoned (the 2-second rule).
    """

    abandon_cap: float = 0.03
    max_lines_per_agent: float = 5.0
    ring_timeout_s: float = 25.0
    connect_limit_s: float = 2.0
    target_fraction: float = 0.9

    def __post_init__(self) -> None:
        if not 0.0 < self.abandon_cap < 1.0:
            raise ValueError("abandon_cap must be between 0 and 1")
        if not self.max_lines_per_agent >= 1.0:
            raise ValueError("max_lines_per_agent must be >= 1")
        if not self.ring_timeout_s > 0.0:
            raise ValueError("ring_timeout_s must be > 0")
        if not self.connect_limit_s >= 0.0:
            raise ValueError("connect_limit_s must be >= 0")
        if not 0.0 < self.target_fraction <= 1.0:
            raise ValueError("target_fraction must be in (0, 1]")

    @property
    def abandon_target(self) -> float:
        return self.abandon_cap * self.target_fraction


@dataclass(frozen=True)
class PacingSnapshot:
    """The campaign's state at `now` (seconds, any epoch; only differences matter).

    Agents: `agents_logged_in` counts every logged-in agent (ready, reserved, on a call,
    in wrap-up, paused). `agents_ready` are ready and not reserved for a call.
    `wrap_remaining_s`: one entry per agent in wrap-up, the expected seconds until it is
    ready. `talk_elapsed_s`: one entry per agent on a call, seconds since connect.
    Calls: `dialling_elapsed_s`: one entry per call ringing / originating that has no
    reserved agent, seconds since it was placed. `reserved_calls`: calls ringing for a
    reserved agent (progressive). `answered_waiting`: answered calls not yet with an
    agent.
    """

    now: float
    agents_logged_in: int
    agents_ready: int
    wrap_remaining_s: tuple[float, ...] = ()
    talk_elapsed_s: tuple[float, ...] = ()
    dialling_elapsed_s: tuple[float, ...] = ()
    answered_waiting: int = 0
    reserved_calls: int = 0
    agents_paused: int = 0
    settings: PacingSettings = field(default_factory=PacingSettings)

    def __post_init__(self) -> None:
        for name in ("agents_logged_in", "agents_ready", "answered_waiting", "reserved_calls", "agents_paused"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0")
        for name in ("wrap_remaining_s", "talk_elapsed_s", "dialling_elapsed_s"):
            values = getattr(self, name)
            if not isinstance(values, tuple):
                values = tuple(values)
                object.__setattr__(self, name, values)
            if values and not (min(values) >= 0.0 and math.isfinite(math.fsum(values))):
                raise ValueError(f"{name} entries must be finite and >= 0")
        if not math.isfinite(self.now):
            raise ValueError("now must be finite")

    @property
    def active_agents(self) -> int:
        return max(0, self.agents_logged_in - self.agents_paused)

    @property
    def lines_in_use(self) -> int:
        return len(self.dialling_elapsed_s) + self.reserved_calls + self.answered_waiting


@dataclass(frozen=True)
class PacingDecision:
    """`dial_now`: calls to place now. `reserve_agents`: each new call reserves one ready
    agent (progressive). `mode_effective`: predictive, progressive,
    progressive-fallback (over the cap today), adaptive-baseline or idle.
    `expected_abandons`: the model's expected abandoned calls over the next ring
    timeout after dialling (predictive). `abandon_price`: idle agent-seconds one more
    expected abandon had to save (predictive). `abandon_budget`: abandons left today
    before the cap on the calls answered so far (negative: over it; predictive and its
    fallback). `idle_agents`: the model's mean idle agents over the next ring timeout
    with these calls placed (predictive)."""

    dial_now: int
    reason: str
    mode_effective: str
    reserve_agents: bool = False
    expected_abandons: float = 0.0
    abandon_price: float = 0.0
    abandon_budget: float | None = None
    idle_agents: float | None = None
