"""Call pacing: how many new calls a campaign places right now.

Pure: no I/O, no asyncio, no clock. The dialer (and the simulator) builds a
`PacingSnapshot` of the campaign at time `now`, keeps one `PacingStats` per campaign
fed with observations, and asks a pacer for a `PacingDecision`:

* `decide(snapshot, stats)` — predictive. It models, over the next ring period, how
  many agents become free (ready now, wrap-up ending, calls ending according to the
  talk-time distribution's hazard given each call's elapsed time) and how many calls
  get answered (calls already ringing, given how long they have rung; and the new
  calls), and adds new calls while the marginal call's probability of being
  abandoned stays under a threshold. The threshold follows the measured abandon
  rate (today's and the last 30 days') against a target below the cap; near the cap
  the campaign slows down, over the cap it falls back to progressive for the rest of
  the day. Tail sums are exact Poisson-binomial for small teams and a normal
  approximation for large ones.
* `decide_progressive(snapshot)` — one call per ready agent, the agent reserved.
* `AdaptiveBaseline` — the classic adaptive dial level (level × ready agents),
  kept as a reference point for the simulator and benchmarks.

Abandon rate = abandoned / (abandoned + connected to an agent); the estimated AMD
false positives (humans hung up as machines) count as abandoned.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from hitcall_pbx.core.compliance import abandon_rate

__all__ = [
    "AbandonTally",
    "AdaptiveBaseline",
    "MODE_ADAPTIVE_BASELINE",
    "MODE_FALLBACK",
    "MODE_IDLE",
    "MODE_PREDICTIVE",
    "MODE_PROGRESSIVE",
    "PACING_MODES",
    "PacingDecision",
    "PacingSettings",
    "PacingSnapshot",
    "PacingStats",
    "abandon_rate",
    "decide",
    "decide_progressive",
    "dial_threshold",
    "effective_abandoned",
    "line_room",
    "make_pacer",
    "poisson_binomial_pmf",
]

MODE_PREDICTIVE: Final = "predictive"
MODE_PROGRESSIVE: Final = "progressive"
MODE_ADAPTIVE_BASELINE: Final = "adaptive-baseline"
MODE_FALLBACK: Final = "progressive-fallback"
MODE_IDLE: Final = "idle"
PACING_MODES: Final = (MODE_PREDICTIVE, MODE_PROGRESSIVE, MODE_ADAPTIVE_BASELINE)

# Times after "now" (seconds) at which answered calls are compared with free agents;
# the ring timeout is always the last one.
_CHECKPOINTS: Final = (3.0, 6.0, 10.0, 15.0)
# Exact Poisson-binomial sums up to this many agents that may become free; normal
# approximation above.
_EXACT_MAX_AGENTS: Final = 24
# Feedback: dial threshold = base × exp(gain × (target − smoothed rate) / target).
_BASE_THRESHOLD: Final = 0.15
_GAIN: Final = 4.0
_MIN_THRESHOLD: Final = 0.002
_MAX_THRESHOLD: Final = 0.6
# Today's rate is smoothed as if the day had started with this many calls at the cap.
_PRIOR_CALLS: Final = 100.0
# "Near cap" slow-down starts to count once today has this many answered calls.
_NEAR_CAP_MIN_CALLS: Final = 30

_SQRT1_2: Final = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI: Final = 1.0 / math.sqrt(2.0 * math.pi)


# --------------------------------------------------------------------------- inputs and outputs


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
    target_fraction: float = 0.8

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
                object.__setattr__(self, name, tuple(values))
            if any(not (v >= 0.0) or math.isinf(v) for v in getattr(self, name)):
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
    `expected_abandons`: the model's expected abandoned calls over the ring period
    after dialling (predictive). `threshold`: the marginal abandon probability the
    predictive controller accepted."""

    dial_now: int
    reason: str
    mode_effective: str
    reserve_agents: bool = False
    expected_abandons: float = 0.0
    threshold: float = 0.0


# --------------------------------------------------------------------------- abandon accounting


def effective_abandoned(abandoned: float, amd_machines: float = 0.0, amd_false_positive_rate: float = 0.0) -> float:
    """Abandoned calls plus the estimated AMD false positives (answered by a human,
    classified as a machine and hung up), which count as abandoned."""
    if abandoned < 0 or amd_machines < 0 or not 0.0 <= amd_false_positive_rate <= 1.0:
        raise ValueError("counts must be >= 0 and the false-positive rate in [0, 1]")
    return abandoned + amd_machines * amd_false_positive_rate


@dataclass(frozen=True)
class AbandonTally:
    """Abandoned / connected / AMD-machine counts for one period."""

    abandoned: int = 0
    connected: int = 0
    amd_machines: int = 0

    def __add__(self, other: AbandonTally) -> AbandonTally:
        return AbandonTally(
            self.abandoned + other.abandoned,
            self.connected + other.connected,
            self.amd_machines + other.amd_machines,
        )

    def effective_abandoned(self, amd_false_positive_rate: float = 0.0) -> float:
        return effective_abandoned(self.abandoned, self.amd_machines, amd_false_positive_rate)

    def answered(self, amd_false_positive_rate: float = 0.0) -> float:
        """The rate's denominator: abandoned (with AMD estimate) + connected."""
        return self.effective_abandoned(amd_false_positive_rate) + self.connected

    def rate(self, amd_false_positive_rate: float = 0.0) -> float:
        return abandon_rate(self.effective_abandoned(amd_false_positive_rate), self.connected)


# --------------------------------------------------------------------------- statistics


class _Moments:
    """Exponentially weighted count, mean and variance with a prior worth `weight`
    observations; the prior fades like the data (half-life in observations)."""

    __slots__ = ("decay", "w", "s1", "s2")

    def __init__(self, mean: float, sd: float, weight: float, halflife: float) -> None:
        self.decay = 0.5 ** (1.0 / halflife)
        self.w = weight
        self.s1 = weight * mean
        self.s2 = weight * (sd * sd + mean * mean)

    def add(self, x: float) -> None:
        d = self.decay
        self.w = self.w * d + 1.0
        self.s1 = self.s1 * d + x
        self.s2 = self.s2 * d + x * x

    @property
    def mean(self) -> float:
        return self.s1 / self.w

    @property
    def sd(self) -> float:
        m = self.s1 / self.w
        return math.sqrt(max(0.0, self.s2 / self.w - m * m))


def _lognormal_params(mean: float, sd: float) -> tuple[float, float]:
    mean = max(mean, 1e-3)
    s2 = math.log1p((sd / mean) ** 2) if sd > 0 else 1e-6
    return math.log(mean) - s2 / 2.0, math.sqrt(max(s2, 1e-6))


class PacingStats:
    """What the controller has learned about one campaign.

    Feed it: `observe_attempt(ring_s, answered)` when a call stops ringing (answered,
    no answer, busy, failed); `observe_connect()` when an answered call reaches an
    agent; `observe_abandon()` when one does not within the limit; `observe_amd_machine()`
    when AMD hangs up a machine; `observe_talk(s)` and `observe_wrap(s)` when a talk or
    wrap-up ends; `new_day()` at the campaign's midnight.

    Estimates (exponentially weighted, starting from priors): contact rate (share of
    attempts answered) with its uncertainty; ring-to-answer time of answered calls
    (log-normal fitted on log seconds); talk and wrap time (mean, sd; talk modelled as
    log-normal). Abandon accounting: today's and the last `history_days` days' counts,
    and the highest rate today once at least `trusted_volume` answered calls counted
    (the over-cap fallback is sticky for the day).
    """

    def __init__(
        self,
        *,
        contact_rate: float = 0.2,
        contact_weight: float = 20.0,
        contact_halflife: float = 400.0,
        ring_mean_s: float = 8.0,
        ring_sd_s: float = 4.0,
        ring_weight: float = 10.0,
        ring_halflife: float = 300.0,
        talk_mean_s: float = 120.0,
        talk_sd_s: float = 90.0,
        talk_weight: float = 10.0,
        talk_halflife: float = 300.0,
        wrap_mean_s: float = 10.0,
        wrap_weight: float = 5.0,
        wrap_halflife: float = 100.0,
        amd_false_positive_rate: float = 0.0,
        history_days: int = 30,
        trusted_volume: int = 100,
    ) -> None:
        if not 0.0 < contact_rate < 1.0:
            raise ValueError("contact_rate prior must be in (0, 1)")
        if min(ring_mean_s, talk_mean_s) <= 0 or wrap_mean_s < 0:
            raise ValueError("time priors must be positive")
        if history_days < 1 or trusted_volume < 1:
            raise ValueError("history_days and trusted_volume must be >= 1")
        if not 0.0 <= amd_false_positive_rate <= 1.0:
            raise ValueError("amd_false_positive_rate must be in [0, 1]")
        self._c_decay = 0.5 ** (1.0 / contact_halflife)
        self._c_yes = contact_rate * contact_weight
        self._c_no = (1.0 - contact_rate) * contact_weight
        mu, sigma = _lognormal_params(ring_mean_s, ring_sd_s)
        self._ring_log = _Moments(mu, sigma, ring_weight, ring_halflife)
        self._talk = _Moments(talk_mean_s, talk_sd_s, talk_weight, talk_halflife)
        self._wrap = _Moments(wrap_mean_s, 0.0, wrap_weight, wrap_halflife)
        self.amd_false_positive_rate = amd_false_positive_rate
        self.trusted_volume = trusted_volume
        self._history: deque[AbandonTally] = deque(maxlen=history_days - 1)
        self._today = AbandonTally()
        self._today_peak_rate = 0.0
        self.day_index = 0

    # -- observations
    def observe_attempt(self, ring_s: float, answered: bool) -> None:
        d = self._c_decay
        self._c_yes = self._c_yes * d + (1.0 if answered else 0.0)
        self._c_no = self._c_no * d + (0.0 if answered else 1.0)
        if answered:
            self._ring_log.add(math.log(max(ring_s, 0.05)))

    def observe_talk(self, seconds: float) -> None:
        self._talk.add(max(0.0, seconds))

    def observe_wrap(self, seconds: float) -> None:
        self._wrap.add(max(0.0, seconds))

    def observe_connect(self, count: int = 1) -> None:
        self._today = self._today + AbandonTally(connected=count)
        self._note_rate()

    def observe_abandon(self, count: int = 1) -> None:
        self._today = self._today + AbandonTally(abandoned=count)
        self._note_rate()

    def observe_amd_machine(self, count: int = 1) -> None:
        self._today = self._today + AbandonTally(amd_machines=count)
        self._note_rate()

    def new_day(self) -> None:
        """Close today's abandon counts into the 30-day history."""
        self._history.append(self._today)
        self._today = AbandonTally()
        self._today_peak_rate = 0.0
        self.day_index += 1

    def _note_rate(self) -> None:
        fp = self.amd_false_positive_rate
        if self._today.answered(fp) >= self.trusted_volume:
            self._today_peak_rate = max(self._today_peak_rate, self._today.rate(fp))

    # -- estimates
    @property
    def contact_rate(self) -> float:
        return self._c_yes / (self._c_yes + self._c_no)

    @property
    def contact_rate_sd(self) -> float:
        n = self._c_yes + self._c_no
        p = self._c_yes / n
        return math.sqrt(p * (1.0 - p) / (n + 1.0))

    @property
    def ring_log_params(self) -> tuple[float, float]:
        """(mu, sigma) of log ring-to-answer seconds of answered calls."""
        return self._ring_log.mean, max(self._ring_log.sd, 0.05)

    @property
    def ring_mean_s(self) -> float:
        mu, sigma = self.ring_log_params
        return math.exp(mu + sigma * sigma / 2.0)

    @property
    def talk_mean_s(self) -> float:
        return max(self._talk.mean, 1.0)

    @property
    def talk_sd_s(self) -> float:
        return self._talk.sd

    @property
    def wrap_mean_s(self) -> float:
        return max(self._wrap.mean, 0.0)

    @property
    def today(self) -> AbandonTally:
        return self._today

    @property
    def last_30_days(self) -> AbandonTally:
        total = self._today
        for day in self._history:
            total = total + day
        return total

    @property
    def today_rate(self) -> float:
        return self._today.rate(self.amd_false_positive_rate)

    @property
    def rate_30_days(self) -> float:
        return self.last_30_days.rate(self.amd_false_positive_rate)

    @property
    def today_peak_rate(self) -> float:
        """Highest abandon rate seen today once the day had `trusted_volume` answered calls."""
        return self._today_peak_rate


# --------------------------------------------------------------------------- tail computations


def poisson_binomial_pmf(probs: Sequence[float], size: int | None = None) -> list[float]:
    """P(sum of independent Bernoulli(p_i) = k) for k = 0 .. len(probs), or only the
    first `size` terms (exact for those)."""
    limit = len(probs) + 1 if size is None else max(1, size)
    pmf = [1.0]
    for p in probs:
        q = 1.0 - p
        shifted = [0.0, *pmf]
        pmf.append(0.0)
        pmf = [a * q + b * p for a, b in zip(pmf, shifted)]
        if len(pmf) > limit:
            del pmf[limit:]
    return pmf


def _normal_excess(mean: float, var: float) -> float:
    """E[max(X, 0)] for X ~ Normal(mean, var)."""
    if var <= 1e-12:
        return mean if mean > 0.0 else 0.0
    sd = math.sqrt(var)
    z = mean / sd
    return sd * _INV_SQRT_2PI * math.exp(-0.5 * z * z) + mean * 0.5 * math.erfc(-z * _SQRT1_2)


class _ExactCheckpoint:
    """E[max(c + X + B − Y, 0)] with X, B, Y Poisson-binomial: X calls in flight, B the
    new calls (added one by one), Y agents becoming free; c a constant."""

    __slots__ = ("c", "py", "px", "ex", "g", "size")

    def __init__(self, c: int, answer_probs: list[float], free_probs: list[float], g: float) -> None:
        self.c = c
        self.py = poisson_binomial_pmf(free_probs)
        self.size = max(1, len(free_probs) - c + 1)
        self.px = poisson_binomial_pmf(answer_probs, self.size)
        self.ex = math.fsum(answer_probs)
        self.g = g

    def add_call(self) -> None:
        g = self.g
        q = 1.0 - g
        px = self.px
        shifted = [0.0, *px]
        px.append(0.0)
        px = [a * q + b * g for a, b in zip(px, shifted)]
        del px[self.size :]
        self.px = px
        self.ex += g

    def excess(self) -> float:
        c = self.c
        ex = self.ex
        px = self.px
        # cum1[u] = P(X < u), cum2[u] = E[X; X < u]
        cum1 = [0.0]
        cum2 = [0.0]
        s1 = s2 = 0.0
        for x, p in enumerate(px):
            s1 += p
            s2 += x * p
            cum1.append(s1)
            cum2.append(s2)
        top = len(cum1) - 1
        total = 0.0
        for y, p in enumerate(self.py):
            if p == 0.0:
                continue
            u = y - c
            h = ex - u
            if u > 0:
                k = u if u <= top else top
                h += u * cum1[k] - cum2[k]
            total += p * h
        return total if total > 0.0 else 0.0


class _NormalCheckpoint:
    __slots__ = ("mean", "var", "g", "gv")

    def __init__(self, mean: float, var: float, g: float) -> None:
        self.mean = mean
        self.var = var
        self.g = g
        self.gv = g * (1.0 - g)

    def add_call(self) -> None:
        self.mean += self.g
        self.var += self.gv

    def excess(self) -> float:
        return _normal_excess(self.mean, self.var)


# --------------------------------------------------------------------------- policies


def line_room(snapshot: PacingSnapshot) -> int:
    """New calls allowed by the lines-per-agent cap (may be 0)."""
    limit = math.floor(snapshot.settings.max_lines_per_agent * snapshot.active_agents + 1e-9)
    return max(0, limit - snapshot.lines_in_use)


def _no_agents(snapshot: PacingSnapshot) -> PacingDecision | None:
    if snapshot.agents_logged_in <= 0:
        return PacingDecision(0, "no agent logged in", MODE_IDLE)
    if snapshot.active_agents <= 0:
        return PacingDecision(0, "every agent paused", MODE_IDLE)
    return None


def decide_progressive(snapshot: PacingSnapshot) -> PacingDecision:
    """One call per ready agent that no ringing call already serves; each new call
    reserves its agent, so an answered call always has one (never abandons)."""
    idle = _no_agents(snapshot)
    if idle is not None:
        return idle
    want = snapshot.agents_ready - len(snapshot.dialling_elapsed_s) - snapshot.answered_waiting
    n = max(0, min(want, line_room(snapshot)))
    return PacingDecision(n, f"progressive: {snapshot.agents_ready} ready agents without a call", MODE_PROGRESSIVE, True)


def dial_threshold(stats: PacingStats, settings: PacingSettings) -> tuple[float, str]:
    """The marginal abandon probability (per answered call) the predictive controller
    accepts now, and why. Feedback from today's rate (smoothed from a prior at the cap,
    so a day starts carefully), slowed down near the cap; the 30-day rate lowers the
    target when it runs above it."""
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
    a = today.effective_abandoned(fp)
    n = a + today.connected
    smoothed = (a + cap * _PRIOR_CALLS) / (n + _PRIOR_CALLS)
    lam = _BASE_THRESHOLD * math.exp(_GAIN * (target - smoothed) / target)
    notes.append(f"today {a:g}/{n:g} abandoned, smoothed {smoothed:.2%} vs target {target:.2%}")
    if n >= _NEAR_CAP_MIN_CALLS and n > 0:
        raw = a / n
        if raw > target:
            lam *= max(0.0, (cap - raw) / (cap - target)) if cap > target else 0.0
            notes.append(f"near cap ({raw:.2%})")
    lam = min(_MAX_THRESHOLD, max(_MIN_THRESHOLD, lam))
    return lam, "; ".join(notes)


def decide(snapshot: PacingSnapshot, stats: PacingStats) -> PacingDecision:
    """Predictive pacing: the number of new calls to place now."""
    idle = _no_agents(snapshot)
    if idle is not None:
        return idle
    settings = snapshot.settings
    if stats.today_peak_rate > settings.abandon_cap:
        fallback = decide_progressive(snapshot)
        return replace(
            fallback,
            mode_effective=MODE_FALLBACK,
            reason=f"abandon rate today reached {stats.today_peak_rate:.2%} > cap "
            f"{settings.abandon_cap:.2%}: progressive for the rest of the day",
        )
    room = line_room(snapshot)
    if room <= 0:
        return PacingDecision(0, "line cap reached", MODE_PREDICTIVE)
    lam, why = dial_threshold(stats, settings)
    n, expected = _plan(snapshot, stats, lam, room)
    return PacingDecision(
        n,
        f"predictive: {n} new calls, {expected:.2f} expected abandons; threshold {lam:.3f} ({why})",
        MODE_PREDICTIVE,
        False,
        expected,
        lam,
    )


def _plan(snapshot: PacingSnapshot, stats: PacingStats, lam: float, room: int) -> tuple[int, float]:
    """Largest n ≤ room such that each added call raises the expected abandons by at
    most lam × its answer probability; returns (n, expected abandons with n)."""
    settings = snapshot.settings
    timeout = settings.ring_timeout_s
    limit = settings.connect_limit_s
    p = min(0.999, stats.contact_rate + stats.contact_rate_sd)
    mu_r, sg_r = stats.ring_log_params
    inv_r = _SQRT1_2 / sg_r
    erfc = math.erfc
    log = math.log
    norm_t = 0.5 * erfc(-(log(timeout) - mu_r) * inv_r)
    if norm_t <= 1e-12:
        norm_t = 1e-12

    def answer_cdf(x: float) -> float:
        # ring-to-answer CDF of answered calls, truncated at the ring timeout
        if x <= 0.0:
            return 0.0
        if x >= timeout:
            return 1.0
        return 0.5 * erfc(-(log(x) - mu_r) * inv_r) / norm_t

    points = [s for s in _CHECKPOINTS if s < timeout] + [timeout]
    mu_t, sg_t = _lognormal_params(stats.talk_mean_s, stats.talk_sd_s)
    inv_t = _SQRT1_2 / sg_t
    wrap = stats.wrap_mean_s
    horizons = [s + limit - wrap for s in points]

    # per agent on a call: P(free by s + limit | talked e so far)
    free_by_point: list[list[float]] = [[] for _ in points]
    for e in snapshot.talk_elapsed_s:
        surv_e = 0.5 * erfc((log(e) - mu_t) * inv_t) if e > 0.0 else 1.0
        for k, h in enumerate(horizons):
            if h <= 0.0:
                free_by_point[k].append(0.0)
                continue
            if surv_e < 1e-12:
                q = h / (h + e)
            else:
                q = 1.0 - 0.5 * erfc((log(e + h) - mu_t) * inv_t) / surv_e
            free_by_point[k].append(q if q > 0.0 else 0.0)
    # per ringing call: P(answered within the next s | not answered after r)
    answers_by_point: list[list[float]] = [[] for _ in points]
    for r in snapshot.dialling_elapsed_s:
        g_r = answer_cdf(r)
        rest = 1.0 - p * g_r
        if rest <= 1e-12:
            continue
        for k, s in enumerate(points):
            answers_by_point[k].append(p * (answer_cdf(r + s) - g_r) / rest)

    waiting = snapshot.answered_waiting
    ready = snapshot.agents_ready
    exact = len(snapshot.talk_elapsed_s) + len(snapshot.wrap_remaining_s) + ready <= _EXACT_MAX_AGENTS
    checks: list[_ExactCheckpoint] | list[_NormalCheckpoint] = []
    for k, s in enumerate(points):
        wrap_done = sum(1 for w in snapshot.wrap_remaining_s if w <= s + limit)
        g = p * answer_cdf(s)
        const = waiting - ready - wrap_done
        if exact:
            checks.append(_ExactCheckpoint(const, answers_by_point[k], free_by_point[k], g))  # type: ignore[arg-type]
        else:
            a = answers_by_point[k]
            q = free_by_point[k]
            mean = const + math.fsum(a) - math.fsum(q)
            var = math.fsum(x * (1.0 - x) for x in a) + math.fsum(x * (1.0 - x) for x in q)
            checks.append(_NormalCheckpoint(mean, var, g))  # type: ignore[arg-type]

    current = max(c.excess() for c in checks)
    allowance = lam * p
    n = 0
    while n < room:
        for c in checks:
            c.add_call()
        nxt = max(c.excess() for c in checks)
        if nxt - current > allowance:
            break
        n += 1
        current = nxt
    return n, current


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


def make_pacer(mode: str) -> Callable[[PacingSnapshot, PacingStats], PacingDecision]:
    """The pacing function for a campaign mode (a fresh state for adaptive-baseline)."""
    if mode == MODE_PREDICTIVE:
        return decide
    if mode == MODE_PROGRESSIVE:
        return lambda snapshot, _stats: decide_progressive(snapshot)
    if mode == MODE_ADAPTIVE_BASELINE:
        return AdaptiveBaseline().decide
    raise ValueError(f"unknown pacing mode {mode!r}; expected one of {', '.join(PACING_MODES)}")
