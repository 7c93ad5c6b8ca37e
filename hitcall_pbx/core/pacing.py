"""Call pacing: how many new calls a campaign places right now.

Pure: no I/O, no asyncio, no clock. The dialer (and the simulator) builds a
`PacingSnapshot` of the campaign at time `now`, keeps one `PacingStats` per campaign
fed with observations, and asks a pacer for a `PacingDecision`:

* `decide(snapshot, stats)` — predictive. It looks one ring timeout ahead: agents
  becoming free (ready now, wrap-up ending, calls ending by the talk-time hazard
  given each call's elapsed time) against calls being answered (calls ringing, given
  how long they have rung, and the new ones), as a step-by-step distribution of idle
  agents. A new call is placed while the agent idle time it saves is worth the
  abandons it adds at the current price of an abandon, and placing it one step
  later would not cost less (the pacer decides again then). The price follows today's
  abandon count against what the target rate allows (feedback; the 30-day rate
  lowers the target when it runs high); near the cap it climbs steeply, over the cap
  the campaign falls back to progressive for the rest of the day. Teams of up to
  about 30 agents get exact Poisson-binomial / binomial step distributions, larger
  ones a normal random-walk approximation.
* `decide_progressive(snapshot)` — one call per ready agent, the agent reserved.
* `AdaptiveBaseline` — the classic adaptive dial level (level × ready agents),
  kept as a reference point for the simulator and benchmarks.

Abandon rate = abandoned / (abandoned + connected to an agent); the estimated AMD
false positives (humans hung up as machines) count as abandoned.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from hitcall_pbx.core.compliance import CampaignMode, abandon_rate

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
    "poisson_binomial_pmf",
    "poisson_pmf",
]

MODE_PREDICTIVE: Final = "predictive"
MODE_PROGRESSIVE: Final = "progressive"
MODE_ADAPTIVE_BASELINE: Final = "adaptive-baseline"
MODE_FALLBACK: Final = "progressive-fallback"
MODE_IDLE: Final = "idle"
PACING_MODES: Final = (MODE_PREDICTIVE, MODE_PROGRESSIVE, MODE_ADAPTIVE_BASELINE)

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
_CUSHION: Final = 3.0
_MIN_PRICE: Final = 5.0
_MAX_PRICE: Final = 1e6
# Idle-agent distributions: probability below this at the top is folded down.
_TRIM: Final = 1e-7
# Above this many agents that may take a call within the horizon, normal steps. Up to
# it the exact distributions are affordable and pace better: at a few answers per
# step the counts are too skewed and discrete for the normal approximation.
_GAUSSIAN_MIN_AGENTS: Final = 32
# Fitted log-normal parameters are rounded to this (tables are rebuilt when they move).
_PARAM_QUANTUM: Final = 0.02
# The model plans with the contact rate estimate plus this many standard deviations.
_CONTACT_SIGMAS: Final = 2.0
# A new call must save at least this much idle agent time (seconds).
_MIN_SAVING_S: Final = 0.01

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
    expected abandon had to save (predictive)."""

    dial_now: int
    reason: str
    mode_effective: str
    reserve_agents: bool = False
    expected_abandons: float = 0.0
    abandon_price: float = 0.0


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

    __slots__ = ("decay", "s1", "s2", "w")

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


def _quantize(x: float) -> float:
    return round(x / _PARAM_QUANTUM) * _PARAM_QUANTUM


def _moved(key: tuple[float, ...], mu: float, sigma: float) -> bool:
    return abs(key[0] - mu) > _PARAM_QUANTUM or abs(key[1] - sigma) > _PARAM_QUANTUM


def _lognormal_params(mean: float, sd: float) -> tuple[float, float]:
    mean = max(mean, 1e-3)
    s2 = math.log1p((sd / mean) ** 2) if sd > 0 else 1e-6
    return math.log(mean) - s2 / 2.0, math.sqrt(max(s2, 1e-6))


class PacingStats:
    """What the controller has learned about one campaign.

    Feed it: `observe_attempt(now, ring_s, answered)` when a call stops ringing
    (answered, no answer, busy, failed); `observe_connect()` when an answered call reaches an
    agent; `observe_abandon()` when one does not within the limit; `observe_amd_machine()`
    when AMD hangs up a machine; `observe_talk(s)` and `observe_wrap(s)` when a talk or
    wrap-up ends; `new_day()` at the campaign's midnight; `restore()` after a restart.

    Estimates (exponentially weighted, starting from priors): contact rate (share of
    attempts answered, counted by cohort so early answers do not bias it;
    `contact_estimate()` adds the calls of the last ring timeout, those still ringing
    included); ring-to-answer time of answered calls (log-normal fitted on log
    seconds); talk and wrap time (mean, sd; talk modelled as log-normal). Abandon
    accounting: today's and the last `history_days` days' counts (AMD false-positive
    estimate included), and the highest rate today once at least `trusted_volume`
    answered calls counted (over the cap, the fallback is sticky for the day).
    Pure (no I/O, no clock); the tables it keeps are caches of its own estimates.
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
        ring_timeout_s: float = 25.0,
    ) -> None:
        if not 0.0 < contact_rate < 1.0:
            raise ValueError("contact_rate prior must be in (0, 1)")
        if min(ring_mean_s, talk_mean_s) <= 0 or wrap_mean_s < 0:
            raise ValueError("time priors must be positive")
        weights = (contact_weight, ring_weight, talk_weight, wrap_weight)
        halflives = (contact_halflife, ring_halflife, talk_halflife, wrap_halflife)
        if min(weights) <= 0 or min(halflives) <= 0:
            raise ValueError("prior weights and half-lives must be positive")
        if history_days < 1 or trusted_volume < 1:
            raise ValueError("history_days and trusted_volume must be >= 1")
        if not 0.0 <= amd_false_positive_rate <= 1.0:
            raise ValueError("amd_false_positive_rate must be in [0, 1]")
        if not ring_timeout_s > 0:
            raise ValueError("ring_timeout_s must be > 0")
        self.ring_timeout_s = ring_timeout_s
        self._pending: list[tuple[float, int, bool, float]] = []
        self._pending_yes = 0
        self._seq = itertools.count()
        self._clock = -math.inf
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
        self._answer_cdf: _AnswerCdf | None = None
        self._answer_key: tuple[float, float, float] | None = None
        self._talk_surv: _TalkSurvival | None = None
        self._talk_key: tuple[float, ...] | None = None

    # -- observations
    def observe_attempt(self, now: float, ring_s: float, answered: bool) -> None:
        """A call stopped ringing at `now` (the dialer's clock) after `ring_s` seconds:
        answered by a person, or not (no answer, busy, failed). Answers come early and
        no-answers at the ring timeout, so the contact rate takes an attempt in only
        once every call placed at the same moment has finished (placed + ring
        timeout), and so does the ring-to-answer time; otherwise a burst of calls would
        read as all answered, and quickly, at first."""
        due = now - ring_s + self.ring_timeout_s
        heapq.heappush(self._pending, (due, next(self._seq), answered, ring_s))
        self._pending_yes += 1 if answered else 0
        if now > self._clock:
            self._clock = now
        pending = self._pending
        d = self._c_decay
        while pending and pending[0][0] <= self._clock + 1e-9:
            _, _, yes, rang = heapq.heappop(pending)
            if yes:
                self._pending_yes -= 1
                self._ring_log.add(math.log(max(rang, 0.05)))
            self._c_yes = self._c_yes * d + (1.0 if yes else 0.0)
            self._c_no = self._c_no * d + (0.0 if yes else 1.0)

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

    def restore(self, today: AbandonTally, history: Sequence[AbandonTally] = ()) -> None:
        """Seed the abandon accounting from stored counts (after a restart): the past
        days oldest first, then today's counts so far. Use this rather than bulk
        `observe_abandon(n)` / `observe_connect(n)`, whose order would skew today's
        peak rate."""
        self._history.clear()
        self._history.extend(list(history)[-self._history.maxlen :] if self._history.maxlen else [])
        self._today = today
        self._today_peak_rate = 0.0
        self._note_rate()

    def _note_rate(self) -> None:
        fp = self.amd_false_positive_rate
        if self._today.answered(fp) >= self.trusted_volume:
            self._today_peak_rate = max(self._today_peak_rate, self._today.rate(fp))

    # -- estimates
    @property
    def contact_rate(self) -> float:
        """Share of finished attempts answered (attempts counted once their cohort has
        finished ringing)."""
        return self._c_yes / (self._c_yes + self._c_no)

    def contact_estimate(self, ringing: Sequence[tuple[float, int]]) -> tuple[float, float]:
        """(contact rate, its sd) using also the calls of the last ring timeout: the
        answers already in, the early failures, and `ringing` = (P(answered by now |
        answered at all), count) for calls still ringing. Maximum likelihood with the
        finished attempts as the prior; without recent calls this is `contact_rate`."""
        yes = self._c_yes + self._pending_yes
        no = self._c_no + (len(self._pending) - self._pending_yes)
        p = min(1.0 - 1e-6, max(1e-6, yes / (yes + no)))
        groups = [(g, c) for g, c in ringing if g > 1e-9]
        info = yes / (p * p) + no / ((1.0 - p) ** 2)
        if groups:
            # score(p) = yes/p − no/(1−p) − Σ c·g/(1 − p·g) is decreasing: Newton with a bracket
            lo, hi = 1e-6, p
            for _ in range(30):
                score = yes / p - no / (1.0 - p)
                info = yes / (p * p) + no / ((1.0 - p) ** 2)
                for g, c in groups:
                    q = 1.0 - p * g
                    score -= c * g / q
                    info += c * g * g / (q * q)
                if score > 0.0:
                    lo = p
                else:
                    hi = p
                step = p + score / info
                p = step if lo < step < hi else (lo + hi) / 2.0
                if hi - lo < 1e-6 or abs(score) < 1e-9 * info:
                    break
        sd = min(0.5, 1.0 / math.sqrt(info))
        return p, sd

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

    def answer_cdf(self, timeout: float) -> _AnswerCdf:
        """CDF of ring-to-answer seconds of answered calls (answered before `timeout`),
        tabulated; the table follows the estimate once it moves by `_PARAM_QUANTUM`
        (in log seconds)."""
        mu, sigma = self.ring_log_params
        key = self._answer_key
        if self._answer_cdf is None or key is None or key[2] != timeout or _moved(key, mu, sigma):
            key = (_quantize(mu), _quantize(sigma), timeout)
            self._answer_cdf = _AnswerCdf(key[0], max(key[1], 0.05), timeout)
            self._answer_key = key
        return self._answer_cdf

    def talk_survival(self) -> _TalkSurvival:
        """P(talk time > x) under the log-normal fitted to the talk mean and sd; the
        table follows the estimate once it moves by `_PARAM_QUANTUM`."""
        mu, sigma = _lognormal_params(self.talk_mean_s, self.talk_sd_s)
        key = self._talk_key
        if self._talk_surv is None or key is None or _moved(key, mu, sigma):
            key = (_quantize(mu), _quantize(sigma))
            self._talk_surv = _TalkSurvival(key[0], max(key[1], 0.05))
            self._talk_key = key
        return self._talk_surv

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


# --------------------------------------------------------------------------- distributions


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


def binomial_pmf(n: int, p: float) -> list[float]:
    """P(Binomial(n, p) = k) for k = 0 .. n."""
    if n <= 0 or p <= 0.0:
        return [1.0]
    if p >= 1.0:
        return [0.0] * n + [1.0]
    q = 1.0 - p
    out = [q**n]
    ratio = p / q
    for k in range(1, n + 1):
        out.append(out[-1] * ratio * (n - k + 1) / k)
    return out


def poisson_pmf(mean: float, tail: float = 1e-4) -> list[float]:
    """P(Poisson(mean) = k), cut where the remaining tail is below `tail`; the tail's
    mass is added to the last term (the mean is kept within `tail`)."""
    if mean <= 1e-12:
        return [1.0]
    if mean > 600.0:  # beyond exp() range; never reached with capped lines
        mean = 600.0
    p = math.exp(-mean)
    out = [p]
    acc = p
    k = 0
    limit = mean + 12.0 * math.sqrt(mean) + 12.0
    while acc < 1.0 - tail and k < limit:
        k += 1
        p *= mean / k
        out.append(p)
        acc += p
    out[-1] += max(0.0, 1.0 - acc)
    return out


def _convolve(pmf: list[float], kernel: list[float]) -> list[float]:
    """Distribution of X + Y (X ~ pmf, Y ~ kernel)."""
    if len(kernel) == 1:
        return pmf
    size = len(pmf)
    out = [0.0] * (size + len(kernel) - 1)
    for j, w in enumerate(kernel):
        if w < 1e-15:
            continue
        out[j : j + size] = [a + w * b for a, b in zip(out[j : j + size], pmf)]
    while len(out) > 1 and out[-1] < 1e-13:
        out.pop()
    return out


class _AnswerCdf:
    """Ring-to-answer CDF of answered calls, truncated at the ring timeout, on a grid,
    with the per-step answer probabilities of a call by its elapsed ring time."""

    __slots__ = ("_steps", "inv_step", "table", "timeout")

    STEP = 0.25
    SLOT = 0.5  # ringing calls are grouped by elapsed time in slots of this many seconds

    def __init__(self, mu: float, sigma: float, timeout: float) -> None:
        self.timeout = timeout
        self.inv_step = 1.0 / self.STEP
        inv = _SQRT1_2 / sigma
        norm = max(0.5 * math.erfc(-(math.log(timeout) - mu) * inv), 1e-12)
        n = int(timeout * self.inv_step) + 1
        table = [0.0]
        for i in range(1, n + 1):
            x = min(i * self.STEP, timeout)
            table.append(min(1.0, 0.5 * math.erfc(-(math.log(x) - mu) * inv) / norm))
        table[-1] = 1.0
        self.table = table
        self._steps: dict[tuple[int, float, int], tuple[float, tuple[float, ...]]] = {}

    def __call__(self, x: float) -> float:
        if x >= self.timeout:
            return 1.0
        if x <= 0.0:
            return 0.0
        f = x * self.inv_step
        i = int(f)
        t = self.table
        return t[i] + (t[i + 1] - t[i]) * (f - i)

    def steps(self, slot: int, dt: float, count: int) -> tuple[float, tuple[float, ...]]:
        """For a call that has rung slot × SLOT seconds: (CDF now, CDF increments over
        the next `count` steps of dt; index 0 unused)."""
        key = (slot, dt, count)
        hit = self._steps.get(key)
        if hit is None:
            r = slot * self.SLOT
            values = [self(r + k * dt) for k in range(count + 1)]
            hit = (values[0], (0.0, *(values[k] - values[k - 1] for k in range(1, count + 1))))
            if len(self._steps) > 4096:
                self._steps.clear()
            self._steps[key] = hit
        return hit


class _TalkSurvival:
    """Survival function of the (log-normal) talk time on a grid, analytic beyond it,
    with the probability of a call ending inside a window ahead by its elapsed time."""

    __slots__ = ("_windows", "end", "inv", "inv_step", "mu", "table")

    STEP = 1.0

    def __init__(self, mu: float, sigma: float) -> None:
        self.mu = mu
        self.inv = _SQRT1_2 / sigma
        self.inv_step = 1.0 / self.STEP
        self.end = min(4 * 3600.0, math.exp(mu + 4.0 * sigma))
        n = int(self.end * self.inv_step) + 2
        inv = self.inv
        self.table = [1.0] + [0.5 * math.erfc((math.log(i * self.STEP) - mu) * inv) for i in range(1, n + 1)]
        self._windows: dict[tuple[float, float, float], dict[int, tuple[float, float]]] = {}

    def __call__(self, x: float) -> float:
        if x <= 0.0:
            return 1.0
        if x < self.end:
            f = x * self.inv_step
            i = int(f)
            t = self.table
            return t[i] + (t[i + 1] - t[i]) * (f - i)
        return 0.5 * math.erfc((math.log(x) - self.mu) * self.inv)

    def window(self, lo: float, mid: float, end: float) -> dict[int, tuple[float, float]]:
        """Cache for `ending`: half-second slot of elapsed talk → P(call ends within
        (lo, mid], (mid, end] from now | talked that long)."""
        key = (lo, mid, end)
        cache = self._windows.get(key)
        if cache is None:
            if len(self._windows) > 16:
                self._windows.clear()
            cache = self._windows[key] = {}
        return cache

    def ending(self, slot: int, lo: float, mid: float, end: float) -> tuple[float, float]:
        e = slot * 0.5
        s_e = self(e)
        if s_e <= 1e-12:
            return 0.0, 0.0
        s_mid = self(e + mid)
        return (self(e + lo) - s_mid) / s_e, (s_mid - self(e + end)) / s_e


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
    return PacingDecision(
        n, f"progressive: {snapshot.agents_ready} ready agents without a call", MODE_PROGRESSIVE, True
    )


def abandon_price(
    stats: PacingStats,
    settings: PacingSettings,
    pipeline_abandons: float = 0.0,
    pipeline_answers: float = 0.0,
) -> tuple[float, str]:
    """How many seconds of agent idle time one more expected abandoned call must save
    to be worth it, and why.

    Feedback on today's counts, the calls already placed included with their expected
    abandons and answers (`pipeline_*`, from the model) so that the price rises before
    a burst of abandons lands. With A abandoned of N answered (abandoned + connected):
    the day may have abandoned `allowed = min(target × N, cap × max(N, V) − reserve)`,
    V the volume from which the over-cap fallback applies: the budget left below the
    cap, less a `reserve` for a burst (`_CUSHION` plus one sigma of the answers and two
    of the abandons in flight). The price moves smoothly with the distance from
    `allowed` measured in sigmas of the day's abandon count (e^gain per sigma), so it
    stays steady through the day, which is what buys the most agent time per abandon;
    when fewer than `reserve` abandons are left before the cap each missing one
    multiplies it by e^cap_gain. The price scales with 1 / target, and a 30-day rate
    above the target lowers the target."""
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
    reserve = _CUSHION + math.sqrt(max(0.0, pipeline_answers)) + 2.0 * math.sqrt(max(0.0, pipeline_abandons))
    volume = max(n, stats.trusted_volume)
    allowed = min(target * n, cap * volume - reserve)
    to_cap = cap * volume - a
    exponent = _GAIN * max(-40.0, min(40.0, (a - allowed) / math.sqrt(max(1.0, target * n))))
    notes.append(f"today {a:.1f} abandoned of {n:.0f} incl. calls in flight, allowed {allowed:.1f}")
    if to_cap < reserve:
        exponent += _CAP_GAIN * (reserve - to_cap)
        notes.append(f"near cap: {max(0.0, to_cap):.1f} abandons left")
    # a lower target needs a higher price from the start (about inversely)
    price = _BASE_PRICE * (_REFERENCE_TARGET / max(target, 1e-6)) * math.exp(min(50.0, exponent))
    return min(_MAX_PRICE, max(_MIN_PRICE, price)), "; ".join(notes)


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
    model = _Horizon(snapshot, stats)
    pipeline_abandons, _ = model.run(0)
    price, why = abandon_price(stats, settings, pipeline_abandons, model.pipeline_answers())
    n = model.best(price, room)
    expected, idle_s = model.run(n)
    return PacingDecision(
        n,
        f"predictive: {n} new calls; expected {expected:.2f} abandons, {idle_s:.0f} idle agent-s "
        f"in the next {settings.ring_timeout_s:g} s; price {price:.0f} s/abandon ({why})",
        MODE_PREDICTIVE,
        False,
        expected,
        price,
    )


class _Horizon:
    """The next ring-timeout seconds, in steps of about `_STEP_S`.

    State: the number of idle agents ("tokens"). An agent counts from the moment it
    is free minus the connect limit (an answered call may wait that long), less half
    a step (an answer and a free in the same step are equally likely in either
    order). Each step adds the agents whose wrap-up ends (known) and whose calls end
    (Poisson with the talk-time hazard given each call's elapsed time), then takes
    the step's answered calls (calls ringing, given how long they have rung, plus n
    new ones): answers with no idle agent are abandoned. `run(n)` returns expected
    abandons and idle agent-seconds over the horizon.

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
        "gaussian",
        "inflight_k",
        "inflight_probs",
        "inflight_var",
        "new_k",
        "p",
        "pm0",
        "steps",
        "waiting",
    )

    def __init__(self, snapshot: PacingSnapshot, stats: PacingStats) -> None:
        settings = snapshot.settings
        timeout = settings.ring_timeout_s
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
        start = lead - wrap  # window position of "now" (talk end + wrap − lead = 0)
        end = steps * dt + start
        if end > 0.0 and snapshot.talk_elapsed_s:
            lo = max(0.0, start)
            mid = (lo + end) / 2.0
            surv = stats.talk_survival()
            cache = surv.window(lo, mid, end)
            first = second = 0.0
            for e in snapshot.talk_elapsed_s:
                slot = int(e * 2.0 + 0.5)
                hit = cache.get(slot)
                if hit is None:
                    hit = cache[slot] = surv.ending(slot, lo, mid, end)
                first += hit[0]
                second += hit[1]
            for k in range(1, steps + 1):
                a = (k - 1) * dt + start
                b = k * dt + start
                share = 0.0
                if mid > lo:
                    share += first * max(0.0, min(b, mid) - max(a, lo)) / (mid - lo)
                if end > mid:
                    share += second * max(0.0, min(b, end) - max(a, mid)) / (end - mid)
                free[k] = share
        self.free_mean = free
        self.free_k = [] if self.gaussian else [poisson_pmf(x) if x > 1e-9 else None for x in free]

        # Calls ringing, grouped by elapsed time on the CDF's grid: probability of an
        # answer inside each step given no answer so far.
        exact = not self.gaussian
        inflight = [0.0] * (steps + 1)
        inflight_var = [0.0] * (steps + 1)
        # exact: answers per step, the calls of one slot binomial (same probability)
        kernels: list[list[float]] = [[1.0] for _ in range(steps + 1)]
        for slot, count in groups.items():
            g_r, incs = cdf.steps(slot, dt, steps)
            rest = 1.0 - p * g_r
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
        idle = 0.0
        erfc = math.erfc
        exp = math.exp
        sqrt = math.sqrt
        for k in range(1, self.steps + 1):
            g = self.new_k[k]
            h = self.new_k[k - 1]
            f = self.free_mean[k]
            mu_z += self.inflight_k[k] + n * g + later * h - f - self.det[k]
            var_z += self.inflight_var[k] + n * g * (1.0 - g) + later * h * (1.0 - h) + f
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
            idle += max(0.0, mu_m - mu_z - 0.5)
        return mu_m, idle * self.dt

    def _run_exact(self, n: int, later: int) -> tuple[float, float]:
        pm = self.pm0
        short = 0.0
        idle = 0.0
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
            idle += sum([r * x for r, x in enumerate(pm)])
        return short, idle * self.dt

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
    """The pacing function for a simulated mode: predictive is exactly the shipped policy
    (`decide_predictive`); adaptive-baseline gets a fresh state."""
    if mode == MODE_PREDICTIVE:
        return decide_predictive
    if mode == MODE_PROGRESSIVE:
        return lambda snapshot, _stats: decide_progressive(snapshot)
    if mode == MODE_ADAPTIVE_BASELINE:
        return AdaptiveBaseline().decide
    raise ValueError(f"unknown pacing mode {mode!r}; expected one of {', '.join(PACING_MODES)}")
