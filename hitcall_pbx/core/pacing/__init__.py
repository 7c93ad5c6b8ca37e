"""Call pacing: how many new calls a campaign places right now.

Pure: no I/O, no asyncio, no clock. The dialer (and the simulator) builds a
`PacingSnapshot` of the campaign at time `now`, keeps one `PacingStats` per campaign
fed with observations, and asks a pacer for a `PacingDecision`:

* `pace_decision(mode, snapshot, stats)` — what the dialer runs: progressive, or for a
  predictive campaign `decide_predictive(snapshot, stats)`, the model's `decide`
  floored at progressive (never fewer calls than ready agents without one).
* `decide(snapshot, stats)` — the predictive model: it looks one ring timeout ahead and
  places a call while the agent idle time it saves is worth the abandons it adds at the
  current price of an abandon (feedback on the abandon budget earned today: cap ×
  calls answered − abandons, and on the 30-day counts); over the cap it dials
  progressive until the connects bring the rate back under, then predictive again.
* `decide_progressive(snapshot)` — one call per ready agent, the agent reserved.
* `AdaptiveBaseline` — the classic adaptive dial level (level × ready agents),
  kept as a reference point for the simulator and benchmarks.
* `make_pacer(mode)` — the simulator's and benchmarks' pacer by mode name: for predictive
  and progressive it is `pace_decision` for that mode, the policy the dialer ships.

Abandon rate = abandoned / (abandoned + connected to an agent); the estimated AMD
false positives (humans hung up as machines) count as abandoned.

Modules: `types` (modes, settings, snapshot, decision), `stats` (abandon accounting and
the estimators), `distributions` (probability tables), `progressive` (progressive
pacing and the shared guards), `model` (`decide`, its horizon and the abandon price),
`policies` (`decide_predictive`, `pace_decision`, `AdaptiveBaseline`, `make_pacer`),
`view` (`PacingView`: the decision and the figures behind it, for /metrics and the
wallboard).
This package re-exports them all.
"""

from __future__ import annotations

from hitcall_pbx.core.compliance import abandon_rate
from hitcall_pbx.core.pacing.distributions import binomial_pmf, poisson_binomial_pmf, poisson_pmf
from hitcall_pbx.core.pacing.model import _Horizon as _Horizon
from hitcall_pbx.core.pacing.model import abandon_price, decide
from hitcall_pbx.core.pacing.policies import AdaptiveBaseline, decide_predictive, make_pacer, pace_decision
from hitcall_pbx.core.pacing.progressive import decide_progressive, line_room
from hitcall_pbx.core.pacing.stats import AbandonTally, PacingStats, effective_abandoned
from hitcall_pbx.core.pacing.types import (
    MODE_ADAPTIVE_BASELINE,
    MODE_FALLBACK,
    MODE_IDLE,
    MODE_PREDICTIVE,
    MODE_PROGRESSIVE,
    PACING_MODES,
    PacingDecision,
    PacingSettings,
    PacingSnapshot,
)
from hitcall_pbx.core.pacing.view import PacingView, pacing_view, view_changed

__all__ = [
    "MODE_ADAPTIVE_BASELINE",
    "MODE_FALLBACK",
    "MODE_IDLE",
    "MODE_PREDICTIVE",
    "MODE_PROGRESSIVE",
    "PACING_MODES",
    "AbandonTally",
    "AdaptiveBaseline",
    "PacingDecision",
    "PacingSettings",
    "PacingSnapshot",
    "PacingStats",
    "PacingView",
    "abandon_price",
    "abandon_rate",
    "binomial_pmf",
    "decide",
    "decide_predictive",
    "decide_progressive",
    "effective_abandoned",
    "line_room",
    "make_pacer",
    "pace_decision",
    "pacing_view",
    "poisson_binomial_pmf",
    "poisson_pmf",
    "view_changed",
]
