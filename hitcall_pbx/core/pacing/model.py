"""The predictive model: `decide(snapshot, stats)`, the number of new calls to place now.

It looks one ring timeout ahead (`_Horizon`): agents becoming free (ready now, wrap-up
ending, calls ending by the talk-time hazard given each call's elapsed time) against
calls being answered (calls ringing, given how long they have rung, and the new ones),
as a step-by-step distribution of idle agents; an agent still idle at the end counts
for a tail beyond it that grows with the answer time (`tail_s`), so a call answered
late is worth about as much as one answered early. A new call is placed while the agent
idle time it saves is worth the abandons it adds at the current price of an abandon
(`abandon_price`), and placing it one step later would not cost less (the pacer decides
again then). The price follows today's abandon count against what the target rate
allows (feedback; the 30-day rate lowers the target when it runs high). The day's
budget is earned: cap × calls answered so far − abandons, so a day starts cautious and
dials harder as connects accumulate; near the cap the price climbs steeply, and over it
(today's or the 30-day rate) the campaign dials progressive, which cannot abandon, until
the connects bring it back under; then predictive again, at a high price. Teams of up to
about 30 agents get exact Poisson-binomial / binomial step distributions, larger ones a
normal random-walk approximation.

`decide` is the model's step; the predictive policy the dialer runs is
`policies.decide_predictive`, which floors it at progressive.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Final

from hitcall_pbx.core.pacing.distributions import _SQRT1_2, _AnswerCdf, _convolve, binomial_pmf, poisson_pmf
from hitcall_pbx.core.pacing.progressive import _no_agents, decide_progressive, line_room
from hitcall_pbx.core.pacing.stats import PacingStats
from hitcall_pbx.core.pacing.types import (
    MODE_FALLBACK,
    MODE_PREDICTIVE,
    PacingDecision,
    PacingSettings,
    PacingSnapshot,
)

__all__ = ["abandon_price", "decide"]

# The predictive model looks one ring timeout ahead in steps of about this many seconds.
_STEP_S: Final = 3.125
# Exact step distributions while at most this many calls ring (and the team is not large).
_EXACT_MAX_CALLS: Final = 160
# Feedback: price of an abandon (idle agent-seconds it must save) =
# base × e^(gain × (abandons − allowed) / √(target abandons)) × e^(cap_gain × (reserve − abandons left to cap)),
# reserve = cushion + √(answers in flight) + 2 √(abandons in flight).
_BASE_PRICE: Final = 200.0  # at a target of _REFERENCE_TARGET
_REFERENCE_TARGET: Final = 0.027
_GAIN: Final = 0.5
_CAP_GAIN: Final = 1.0
_CUSHION: Final = 2.0
# A team smaller than _CUSHION / _CUSHION_PER_AGENT keeps a smaller cushion: its bursts
# are smaller, and it earns its budget slowly (cap × its few connects).
_CUSHION_PER_AGENT: Final = 0.5
_MIN_PRICE: Final = 5.0
_MAX_PRICE: Final = 1e6
# Idle-agent distributions: probability below this at the top is folded down.
_TRIM: Final = 1e-7
# Above this many agents that may take a call within the horizon, normal steps. Up to
# it the exact distributions are affordable and pace better: at a few answers per
# step the counts are too skewed and discrete for the normal approximation.
_GAUSSIAN_MIN_AGENTS: Final = 32
# The model plans with the contact rate estimate plus this many standard deviations.
_CONTACT_SIGMAS: Final = 2.0
# Idle agents at the end of the horizon count for this many mean ring-to-answer times more
# (`tail_s`).
_TAIL_ANSWERS: Final = 0.5
# A new call must save at least this much idle agent time (seconds).
_MIN_SAVING_S: Final = 0.01

_INV_SQRT_2PI: Final = 1.0 / math.sqrt(2.0 * math.pi)


def abandon_price(
    stats: PacingStats,
    settings: PacingSettings,
    pipeline_abandons: float = 0.0,
    pipeline_answers: float = 0.0,
    agents: int | None = None,
) -> tuple[float, str]:
    """How many seconds of agent idle time one more expected abandoned call must save
    to be worth it, and why.

    Feedback on today's counts, the calls already placed included with their expected
    abandons and answers (`pipeline_*`, from the model) so that the price rises before
    a burst of abandons lands. With A abandoned of N answered (abandoned + connected):
    the day may have abandoned `allowed = min(target × N, A + budget − reserve)`, where
    `budget` is what is left below the cap on the calls answered so far
    (`PacingStats.abandon_budget`, today and 30 days; calls in flight earn nothing
    until they connect) less the abandons in flight, and `reserve` a margin for a burst
    (`_CUSHION` plus one sigma of the answers and two of the abandons in flight). The
    budget is earned: a day starts with none, so the price starts high and falls as
    connects come in. The price moves smoothly with the distance from `allowed`
    measured in sigmas of the day's abandon count (e^gain per sigma), so it stays steady
    through the day, which is what buys the most agent time per abandon; when fewer
    than `reserve` abandons are left before the cap each missing one multiplies it by
    e^cap_gain. The price scales with 1 / target, and a 30-day rate above the target
    lowers the target."""
    cap = settings.abandon_cap
    target = settings.abandon_target
    notes = []
    fp = stats.amd_false_positive_rate
    month = stats.last_30_days
    if month.answered(fp) >= stats.trusted_volume:
        r30 = month.rate(fp)
        if r30 > target:
            target *= min(1.0, max(0.25, (cap - r30) / (cap - target) if cap > target else 0.25))
            notes.append(f"30-day rate {r30:.2%} above target")
    today = stats.today
    a = today.effective_abandoned(fp) + pipeline_abandons
    n = today.effective_abandoned(fp) + today.connected + pipeline_answers
    # abandons come in bunches: keep a reserve below the cap for a burst of answers
    cushion = _CUSHION if agents is None else min(_CUSHION, _CUSHION_PER_AGENT * max(1, agents))
    reserve = cushion + math.sqrt(max(0.0, pipeline_answers)) + 2.0 * math.sqrt(max(0.0, pipeline_abandons))
    to_cap = stats.abandon_budget(cap) - pipeline_abandons
    allowed = min(target * n, a + to_cap - reserve)
    exponent = _GAIN * max(-40.0, min(40.0, (a - allowed) / math.sqrt(max(1.0, target * n))))
    notes.append(f"today {a:.1f} abandoned of {n:.0f} incl. calls in flight, allowed {allowed:.1f}")
    if to_cap < reserve:
        exponent += _CAP_GAIN * (reserve - to_cap)
        notes.append(f"near cap: {max(0.0, to_cap):.1f} abandons left")
    # a lower target needs a higher price from the start (about inversely)
    price = _BASE_PRICE * (_REFERENCE_TARGET / max(target, 1e-6)) * math.exp(min(50.0, exponent))
    return min(_MAX_PRICE, max(_MIN_PRICE, price)), "; ".join(notes)


def tail_s(settings: PacingSettings, stats: PacingStats) -> float:
    """Seconds past the horizon for which an agent still idle at its end is counted
    idle: `_TAIL_ANSWERS` × the mean ring-to-answer time of answered calls.

    Every call placed now has been answered or has rung out by the end of the
    horizon (one ring timeout), and an agent it reached is busy long after. Without
    the tail a connect was worth only the seconds from its answer to the end of the
    horizon, a few seconds when customers answer 18 s after the call is placed
    against 20 or more when they answer after 3 s: with slow answers the model
    undervalued every call placed ahead and spent almost none of its abandon
    budget. An agent idle at the end of the horizon waits at least for a later
    call's answer, so the tail grows with the answer time."""
    return _TAIL_ANSWERS * min(stats.ring_mean_s, settings.ring_timeout_s)


def _fallback(snapshot: PacingSnapshot, stats: PacingStats, budget: float) -> PacingDecision:
    """Over the cap (today's or the 30 days' rate): progressive, which cannot abandon,
    until the connects have paid the excess back."""
    cap = snapshot.settings.abandon_cap
    connects = max(1, math.ceil(-budget / cap - 1e-9))
    fallback = decide_progressive(snapshot)
    over = "today" if stats.today_rate > cap else "over 30 days"
    return replace(
        fallback,
        mode_effective=MODE_FALLBACK,
        reason=f"abandon rate {over} over the cap {cap:.2%}: progressive until {connects} more connects",
        abandon_budget=budget,
    )


def decide(snapshot: PacingSnapshot, stats: PacingStats) -> PacingDecision:
    """Predictive pacing: the number of new calls to place now."""
    idle = _no_agents(snapshot)
    if idle is not None:
        return idle
    settings = snapshot.settings
    budget = stats.abandon_budget(settings.abandon_cap)
    if budget < 0.0:
        return _fallback(snapshot, stats, budget)
    room = line_room(snapshot)
    if room <= 0:
        return PacingDecision(0, "line cap reached", MODE_PREDICTIVE, abandon_budget=budget)
    model = _Horizon(snapshot, stats)
    pipeline_abandons, _ = model.run(0)
    price, why = abandon_price(stats, settings, pipeline_abandons, model.pipeline_answers(), snapshot.active_agents)
    n = model.best(price, room)
    expected, idle_s = model.run(n)
    horizon = model.span
    return PacingDecision(
        n,
        f"predictive: {n} new calls; expected {expected:.2f} abandons, {idle_s:.0f} idle agent-s "
        f"in the next {horizon:g} s; price {price:.0f} s/abandon ({why})",
        MODE_PREDICTIVE,
        False,
        expected,
        price,
        abandon_budget=budget,
        idle_agents=idle_s / horizon,
    )


def _free_pmf(mean: float, var: float) -> list[float] | None:
    """Distribution of one step's frees with this mean and (at most the mean)
    variance: Poisson when they are about equal, else binomial with n trials of
    mean / n, n chosen so that its variance mean × (1 − mean / n) is closest to
    `var`. None: no frees."""
    if mean <= 1e-9:
        return None
    if var >= mean * (1.0 - 1e-3):
        return poisson_pmf(mean)
    trials = max(math.ceil(mean - 1e-9), round(mean * mean / (mean - var)))
    if trials > 200:
        return poisson_pmf(mean)
    return binomial_pmf(trials, min(1.0, mean / trials))


class _Horizon:
    """The next ring-timeout seconds, in steps of about `_STEP_S`.

    State: the number of idle agents ("tokens"). An agent counts from the moment it
    is free minus the connect limit (an answered call may wait that long), less half
    a step (an answer and a free in the same step are equally likely in either
    order). Each step adds the agents whose wrap-up ends (known) and whose calls end
    (the talk-time hazard given each call's elapsed time; each agent frees up at most
    once, so the frees up to any step are as spread as a Poisson-binomial count, less
    than a Poisson one), then takes the step's answered calls (calls ringing, given
    how long they have rung, plus n new ones): answers with no idle agent are
    abandoned. `run(n)` returns expected abandons and idle agent-seconds over the
    horizon, the agents still idle at its end counted for `tail_s` more.

    Teams up to `_GAUSSIAN_MIN_AGENTS` agents: the distribution of idle agents step by step,
    answers per step exact (Poisson-binomial of the ringing calls × binomial of the
    new ones). Otherwise answers − frees is a random walk with normal steps and the
    abandons its running maximum (see `_run_gaussian`); the two agree closely where
    both apply."""

    __slots__ = (
        "_memo",
        "det",
        "dt",
        "free_k",
        "free_mean",
        "free_var",
        "gaussian",
        "inflight_k",
        "inflight_probs",
        "inflight_var",
        "new_k",
        "p",
        "pm0",
        "span",
        "steps",
        "tail",
        "waiting",
    )

    def __init__(self, snapshot: PacingSnapshot, stats: PacingStats) -> None:
        settings = snapshot.settings
        timeout = settings.ring_timeout_s
        self.tail = tail_s(settings, stats)
        self.span = timeout + self.tail
        steps = max(1, math.ceil(timeout / _STEP_S - 1e-9))
        dt = timeout / steps
        self.steps = steps
        self.dt = dt
        lead = settings.connect_limit_s - dt / 2.0
        cdf = stats.answer_cdf(timeout)
        groups: dict[int, int] = {}
        inv = 1.0 / _AnswerCdf.SLOT
        for r in snapshot.dialling_elapsed_s:
            if r < timeout:
                slot = int(r * inv + 0.5)
                groups[slot] = groups.get(slot, 0) + 1
        rate, rate_sd = stats.contact_estimate([(cdf.steps(slot, dt, steps)[0], c) for slot, c in groups.items()])
        # plan with a contact rate a little high: over-estimating answers is the safe side
        p = min(0.999, rate + _CONTACT_SIGMAS * rate_sd)
        self.p = p
        wrap = round(stats.wrap_mean_s * 2.0) / 2.0

        ready = snapshot.agents_ready
        det = [0] * (steps + 1)
        for w in snapshot.wrap_remaining_s:
            k = math.ceil((w - lead) / dt - 1e-9)
            if k <= 0:
                ready += 1
            elif k <= steps:
                det[k] += 1
        self.det = det
        self.pm0 = [0.0] * ready + [1.0]
        # small: exact step distributions; larger teams or many calls ringing: normal steps
        self.gaussian = (
            ready + len(snapshot.talk_elapsed_s) + sum(det) > _GAUSSIAN_MIN_AGENTS
            or len(snapshot.dialling_elapsed_s) > _EXACT_MAX_CALLS
        )

        # Agents on a call free up when talk ends + wrap-up; in step k if the talk ends
        # within (k−1)·dt + lead − wrap .. k·dt + lead − wrap from now. Per agent the
        # conditional probability over the two halves of that window, each spread
        # evenly over its steps (the hazard changes little within seconds).
        free = [0.0] * (steps + 1)
        free_var = [0.0] * (steps + 1)
        start = lead - wrap  # window position of "now" (talk end + wrap − lead = 0)
        end = steps * dt + start
        if end > 0.0 and snapshot.talk_elapsed_s:
            lo = max(0.0, start)
            mid = (lo + end) / 2.0
            surv = stats.talk_survival()
            cache = surv.window(lo, mid, end)
            first = second = 0.0
            sq1 = sq2 = cross = 0.0
            for e in snapshot.talk_elapsed_s:
                slot = int(e * 2.0 + 0.5)
                hit = cache.get(slot)
                if hit is None:
                    hit = cache[slot] = surv.ending(slot, lo, mid, end)
                x, y = hit
                first += x
                second += y
                sq1 += x * x
                sq2 += y * y
                cross += x * y
            # Each agent frees at most once: by step k the frees are Poisson-binomial
            # with variance Σ F_i(k)(1 − F_i(k)), less than their mean. The steps get
            # that variance (increments of it), so the count of frees up to any step
            # is as spread as it really is, not as a Poisson count.
            mean_prev = var_prev = 0.0
            for k in range(1, steps + 1):
                b = k * dt + start
                c1 = min(1.0, max(0.0, (b - lo) / (mid - lo))) if mid > lo else 0.0
                c2 = min(1.0, max(0.0, (b - mid) / (end - mid))) if end > mid else 0.0
                mean_k = first * c1 + second * c2
                var_k = max(0.0, mean_k - (c1 * c1 * sq1 + 2.0 * c1 * c2 * cross + c2 * c2 * sq2))
                free[k] = max(0.0, mean_k - mean_prev)
                free_var[k] = min(free[k], max(0.0, var_k - var_prev))
                mean_prev, var_prev = mean_k, var_k
        self.free_mean = free
        self.free_var = free_var
        self.free_k = [] if self.gaussian else [_free_pmf(x, v) for x, v in zip(free, free_var)]

        # Calls ringing, grouped by elapsed time on the CDF's grid: probability of an
        # answer inside each step given no answer so far.
        exact = not self.gaussian
        inflight = [0.0] * (steps + 1)
        inflight_var = [0.0] * (steps + 1)
        # exact: answers per step, the calls of one slot binomial (same probability)
        kernels: list[list[float]] = [[1.0] for _ in range(steps + 1)]
        # still ringing after r: answered later (p (1 − G(r))) or unanswered and not yet
        # ended (busy lines end early: (1 − p) S_no(r)), so past them an answer is likelier
        no_surv = stats.no_answer_survival()
        for slot, count in groups.items():
            g_r, incs = cdf.steps(slot, dt, steps)
            rest = p * (1.0 - g_r) + (1.0 - p) * no_surv[min(slot, len(no_surv) - 1)]
            if rest <= 1e-12:
                continue
            scale = p / rest
            for k in range(1, steps + 1):
                inc = incs[k]
                if inc > 0.0:
                    x = scale * inc
                    inflight[k] += x * count
                    inflight_var[k] += x * (1.0 - x) * count
                    if exact and x > 1e-12:
                        kernels[k] = _convolve(kernels[k], binomial_pmf(count, x))
        self.inflight_k = inflight
        self.inflight_var = inflight_var
        self.inflight_probs = kernels if exact else []
        self.new_k = [p * x for x in cdf.steps(0, dt, steps)[1]]
        self.waiting = snapshot.answered_waiting
        self._memo: dict[tuple[int, int], tuple[float, float]] = {}

    def pipeline_answers(self) -> float:
        """Expected answers over the horizon from calls already placed (incl. waiting)."""
        return math.fsum(self.inflight_k) + self.waiting

    def run(self, n: int, later: int = 0) -> tuple[float, float]:
        """(expected abandons, expected idle agent-seconds) with n new calls placed now
        and `later` more placed one step from now."""
        key = (n, later)
        memo = self._memo.get(key)
        if memo is not None:
            return memo
        result = self._run_gaussian(n, later) if self.gaussian else self._run_exact(n, later)
        self._memo[key] = result
        return result

    def _run_gaussian(self, n: int, later: int) -> tuple[float, float]:
        """Larger teams: Z_k = answers − frees − idle now, a random walk with normal
        steps; abandons = max(0, Z_1 … Z_K), idle_k = abandons so far − Z_k. The
        running maximum is carried as a normal variable (Clark's moments of the
        maximum of two correlated normals)."""
        mu_z = -0.5 - float(len(self.pm0) - 1)  # continuity: abandons need Z ≥ 1, an integer
        var_z = 0.0
        mu_m = var_m = cov_mz = 0.0
        idle = last = 0.0
        erfc = math.erfc
        exp = math.exp
        sqrt = math.sqrt
        for k in range(1, self.steps + 1):
            g = self.new_k[k]
            h = self.new_k[k - 1]
            f = self.free_mean[k]
            fv = self.free_var[k]
            mu_z += self.inflight_k[k] + n * g + later * h - f - self.det[k]
            var_z += self.inflight_var[k] + n * g * (1.0 - g) + later * h * (1.0 - h) + fv
            if k == 1:
                mu_z += self.waiting
            a2 = var_m + var_z - 2.0 * cov_mz
            if a2 <= 1e-12:
                if mu_z > mu_m:
                    mu_m, var_m, cov_mz = mu_z, var_z, var_z
            else:
                a = sqrt(a2)
                alpha = (mu_m - mu_z) / a
                cdf_a = 0.5 * erfc(-alpha * _SQRT1_2)
                cdf_b = 1.0 - cdf_a
                pdf = _INV_SQRT_2PI * exp(-0.5 * alpha * alpha)
                mean = mu_m * cdf_a + mu_z * cdf_b + a * pdf
                second = (mu_m * mu_m + var_m) * cdf_a + (mu_z * mu_z + var_z) * cdf_b + (mu_m + mu_z) * a * pdf
                cov_mz = cov_mz * cdf_a + var_z * cdf_b
                mu_m = mean
                var_m = max(0.0, second - mean * mean)
            last = max(0.0, mu_m - mu_z - 0.5)
            idle += last
        return mu_m, idle * self.dt + last * self.tail

    def _run_exact(self, n: int, later: int) -> tuple[float, float]:
        pm = self.pm0
        short = 0.0
        idle = last = 0.0
        det = self.det
        free_k = self.free_k
        new_k = self.new_k
        for k in range(1, self.steps + 1):
            # agents becoming free
            d = det[k]
            if d:
                pm = [0.0] * d + pm
            fk = free_k[k]
            if fk is not None:
                out = [0.0] * (len(pm) + len(fk) - 1)
                for i, x in enumerate(pm):
                    if x > 1e-12:
                        for j, w in enumerate(fk, i):
                            out[j] += x * w
                while out[-1] < _TRIM:
                    tail = out.pop()
                    out[-1] += tail
                pm = out
            if k == 1 and self.waiting:
                out = [0.0] * len(pm)
                wait = self.waiting
                for r, x in enumerate(pm):
                    if r >= wait:
                        out[r - wait] += x
                    else:
                        out[0] += x
                        short += x * (wait - r)
                pm = out
            # calls answered
            g = new_k[k]
            h = new_k[k - 1]
            kernel = self.inflight_probs[k]
            if n and g > 0.0:
                kernel = _convolve(kernel, binomial_pmf(n, g))
            if later and h > 0.0:
                kernel = _convolve(kernel, binomial_pmf(later, h))
            size = len(kernel)
            if size > 1:
                # suffix sums: mass and first moment of "more answers than idle agents"
                tail0 = list(itertools.accumulate(reversed(kernel)))
                tail0.reverse()
                tail1 = list(itertools.accumulate(a * w for a, w in zip(range(size - 1, -1, -1), reversed(kernel))))
                tail1.reverse()
                out = [0.0] * len(pm)
                for r, x in enumerate(pm):
                    if x <= 1e-12:
                        continue
                    if r + 1 < size:
                        for a in range(r + 1):
                            out[r - a] += x * kernel[a]
                        t0 = tail0[r + 1]
                        out[0] += x * t0
                        short += x * (tail1[r + 1] - r * t0)
                    else:
                        for a, w in enumerate(kernel):
                            out[r - a] += x * w
                while len(out) > 1 and out[-1] < _TRIM:
                    tail = out.pop()
                    out[-1] += tail
                pm = out
            last = sum([r * x for r, x in enumerate(pm)])
            idle += last
        return short, idle * self.dt + last * self.tail

    def _worth(self, n: int, price: float) -> bool:
        """Is the (n+1)-th new call worth placing now: the idle time it saves pays for
        the abandons it adds, and placing it one step later would not cost less (the
        pacer decides again before then, with more known)."""
        a0, i0 = self.run(n)
        a1, i1 = self.run(n + 1)
        saved = i0 - i1
        if not (saved > _MIN_SAVING_S and saved >= price * (a1 - a0)):
            return False
        a2, i2 = self.run(n, 1)
        return i1 + price * a1 <= i2 + price * a2

    def best(self, price: float, room: int) -> int:
        """The number of new calls: the first n whose next call is not worth it (the
        criterion is monotone in n), found by doubling then bisection."""
        if room <= 0 or not self._worth(0, price):
            return 0
        lo, hi = 0, 1  # _worth(lo) holds; find the first failing n in (lo, room]
        while hi < room and self._worth(hi, price):
            lo, hi = hi, min(room, hi * 2)
        if hi >= room and self._worth(room - 1, price):
            return room
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._worth(mid, price):
                lo = mid
            else:
                hi = mid
        return hi
