"""What the pacer shows: one campaign's latest pacing decision with the figures behind it,
for /metrics and the wallboard (`PacingView`), and whether a change is worth telling
the live screens about (`view_changed`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hitcall_pbx.core.pacing.stats import PacingStats
from hitcall_pbx.core.pacing.types import MODE_FALLBACK, PacingDecision, PacingSnapshot

__all__ = ["PacingView", "pacing_view", "view_changed"]


@dataclass(frozen=True)
class PacingView:
    """One campaign's pacing at `at` (the snapshot's clock).

    `mode_effective`: predictive, progressive, progressive-fallback or idle.
    `dial_now`: calls placed by this decision. `lines_in_flight`: calls not yet with an
    agent (ringing without an agent, ringing for a reserved agent, answered waiting).
    `predicted_idle_agents`: the model's mean idle agents over the next ring timeout
    (predictive only, else None). `abandon_price`: idle agent-seconds one more expected
    abandon had to save (predictive only). `budget_left`: abandons left today before
    the cap on the calls answered so far, the 30-day rate included (negative: over it;
    None for progressive campaigns, which keep no statistics). `fallback_reason`: why
    the campaign dials progressive although predictive (None when it does not), and
    `fallback_cause` the same as a short code for a metric label: `today_over_cap` or
    `30_days_over_cap`.
    """

    at: float
    mode_effective: str
    dial_now: int
    reason: str
    lines_in_flight: int
    agents_ready: int
    predicted_idle_agents: float | None
    abandon_price: float | None
    budget_left: float | None
    abandon_rate_today: float | None
    contact_rate: float | None
    fallback_reason: str | None
    fallback_cause: str | None = None

    @property
    def fallback(self) -> bool:
        return self.fallback_reason is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, rounded for people (the event payload)."""

        def r(x: float | None, digits: int) -> float | None:
            return None if x is None else round(x, digits)

        return {
            "mode_effective": self.mode_effective,
            "dial_now": self.dial_now,
            "reason": self.reason,
            "lines_in_flight": self.lines_in_flight,
            "agents_ready": self.agents_ready,
            "predicted_idle_agents": r(self.predicted_idle_agents, 2),
            "abandon_price_s": r(self.abandon_price, 0),
            "budget_left": r(self.budget_left, 2),
            "abandon_rate_today": r(self.abandon_rate_today, 5),
            "contact_rate": r(self.contact_rate, 4),
            "fallback": self.fallback,
            "fallback_reason": self.fallback_reason,
            "fallback_cause": self.fallback_cause,
        }


def pacing_view(decision: PacingDecision, snapshot: PacingSnapshot, stats: PacingStats | None) -> PacingView:
    """The view of one decision taken on `snapshot` (with `stats` for a predictive campaign)."""
    predictive = decision.abandon_budget is not None and decision.mode_effective != MODE_FALLBACK
    budget = decision.abandon_budget
    cap = snapshot.settings.abandon_cap
    if budget is None and stats is not None:
        budget = stats.abandon_budget(cap)
    fallback = decision.mode_effective == MODE_FALLBACK
    cause = None
    if fallback:
        cause = "today_over_cap" if stats is None or stats.today_rate > cap else "30_days_over_cap"
    return PacingView(
        at=snapshot.now,
        mode_effective=decision.mode_effective,
        dial_now=decision.dial_now,
        reason=decision.reason,
        lines_in_flight=snapshot.lines_in_use,
        agents_ready=snapshot.agents_ready,
        predicted_idle_agents=decision.idle_agents,
        abandon_price=decision.abandon_price if predictive else None,
        budget_left=budget,
        abandon_rate_today=stats.today_rate if stats is not None else None,
        contact_rate=stats.contact_rate if stats is not None else None,
        fallback_reason=decision.reason if fallback else None,
        fallback_cause=cause,
    )


def view_changed(old: PacingView | None, new: PacingView, *, every_s: float = 10.0) -> bool:
    """Tell the live screens? On the first view, a change of mode (fallback starts or
    ends, idle), a budget crossing a whole abandon, or `every_s` seconds after the last
    one told; not on every decision (the pacer decides several times a second)."""
    if old is None or old.mode_effective != new.mode_effective or new.at - old.at >= every_s:
        return True
    if (old.budget_left is None) != (new.budget_left is None):
        return True
    if old.budget_left is not None and new.budget_left is not None:
        return math.floor(old.budget_left) != math.floor(new.budget_left)
    return False
