"""What the pacer learns about a campaign: abandon accounting (`AbandonTally`,
`effective_abandoned`) and the estimators in `PacingStats` (contact rate, ring-to-answer,
talk and wrap time, today's and the 30-day abandon counts). Pure: no I/O, no clock."""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from hitcall_pbx.core.compliance import abandon_rate
from hitcall_pbx.core.pacing.distributions import _AnswerCdf, _TalkSurvival

__all__ = ["AbandonTally", "PacingStats", "effective_abandoned"]

# Fitted log-normal parameters are rounded to this (tables are rebuilt when they move).
_PARAM_QUANTUM: Final = 0.02
# How long unanswered calls rang: the last this many of them (their cohort finished), and
# the weight of the prior that every one rings to the timeout.
_NO_END_WINDOW: Final = 400
_NO_END_PRIOR: Final = 20
# Until this many answers have been seen, about half of the planning ring-to-answer CDF is
# spread evenly over the ring time (see `answer_cdf`).
_RING_TRUST: Final = 20
_UNIFORM_QUANTUM: Final = 0.05


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
    estimate included), the abandon budget left under the cap (`abandon_budget`), and
    the highest rate today once at least `trusted_volume` answered calls counted.
    Pure (no I/O, no clock); the tables it keeps are caches of its own estimates.
    """

    def __init__(
        self,
        *,
        contact_rate: float = 0.2,
        contact_weight: float = 5.0,
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
        # pending failures by elapsed ring time (slots of _AnswerCdf.SLOT seconds)
        self._pending_no_slots: dict[int, int] = {}
        # finished unanswered calls by ring-time slot: busy lines end early, no-answers at the timeout
        self._no_ends: deque[int] = deque()
        self._no_end_counts: dict[int, int] = {}
        self._no_surv: list[float] | None = None
        self._seq = itertools.count()
        self._clock = -math.inf
        self._c_decay = 0.5 ** (1.0 / contact_halflife)
        self._c_yes = contact_rate * contact_weight
        self._c_no = (1.0 - contact_rate) * contact_weight
        self._c_weight = contact_weight
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
        self._answer_key: tuple[float, float, float, float] | None = None
        self._ring_seen = 0  # answered calls whose ring time was learned (their cohort finished)
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
        if answered:
            self._pending_yes += 1
        else:
            slot = self._no_slot(ring_s)
            self._pending_no_slots[slot] = self._pending_no_slots.get(slot, 0) + 1
        if now > self._clock:
            self._clock = now
        pending = self._pending
        d = self._c_decay
        while pending and pending[0][0] <= self._clock + 1e-9:
            _, _, yes, rang = heapq.heappop(pending)
            if yes:
                self._pending_yes -= 1
                self._ring_log.add(math.log(max(rang, 0.05)))
                self._ring_seen += 1
            else:
                slot = self._no_slot(rang)
                left = self._pending_no_slots[slot] - 1
                if left:
                    self._pending_no_slots[slot] = left
                else:
                    del self._pending_no_slots[slot]
                self._note_no_end(slot)
            self._c_yes = self._c_yes * d + (1.0 if yes else 0.0)
            self._c_no = self._c_no * d + (0.0 if yes else 1.0)

    def _no_slot(self, ring_s: float) -> int:
        return int(min(ring_s, self.ring_timeout_s) / _AnswerCdf.SLOT + 0.5)

    def _note_no_end(self, slot: int) -> None:
        ends, counts = self._no_ends, self._no_end_counts
        ends.append(slot)
        counts[slot] = counts.get(slot, 0) + 1
        if len(ends) > _NO_END_WINDOW:
            old = ends.popleft()
            left = counts[old] - 1
            if left:
                counts[old] = left
            else:
                del counts[old]
        self._no_surv = None

    def no_answer_survival(self) -> list[float]:
        """By ring-time slot (`_AnswerCdf.SLOT` seconds): the share of unanswered calls
        still ringing after that long. A busy line ends after a second or so, a no-answer
        at the ring timeout: a call that has rung past the busy lines' time is more
        likely to be answered than the contact rate says. From the last `_NO_END_WINDOW`
        unanswered calls whose cohort has finished, with a prior of `_NO_END_PRIOR` calls
        that rang to the timeout (so no data means no early ends)."""
        if self._no_surv is None:
            top = self._no_slot(self.ring_timeout_s)
            total = len(self._no_ends) + _NO_END_PRIOR
            ended = 0
            table = []
            for slot in range(top + 1):
                ended += self._no_end_counts.get(slot, 0) if slot < top else 0
                table.append((total - ended) / total)
            self._no_surv = table
        return self._no_surv

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
        """Close today's abandon counts into the 30-day history. Yesterday's contact
        rate carries over with no more weight than the prior: how a day's first hour
        answers is not known from how the last one did."""
        while self._pending:  # yesterday's last calls: counted now, then weighed down
            _, _, yes, _ = heapq.heappop(self._pending)
            self._c_yes += 1.0 if yes else 0.0
            self._c_no += 0.0 if yes else 1.0
        self._pending_yes = 0
        self._pending_no_slots.clear()
        total = self._c_yes + self._c_no
        if total > self._c_weight:
            scale = self._c_weight / total
            self._c_yes *= scale
            self._c_no *= scale
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
        answers already in, the failures, and `ringing` = (P(answered by now |
        answered at all), count) for calls still ringing. Maximum likelihood with the
        finished attempts as the prior; without recent calls this is `contact_rate`.

        A failure of the last ring timeout counts as a call that rang that long without
        an answer (no more) until its cohort has finished: busy lines end after a second,
        answers come later, so a fresh campaign's first busy lines must not read as a
        contact rate near zero while the answers of the same calls are still to come
        (the pacer would dial to its line cap). A no-answer rang the whole timeout, so it
        counts as a non-contact at once.

        A call's silence so far counts only as far as the answer times are known: with no
        answer seen yet, not at all (a fresh campaign's customers may answer later than the
        prior says; reading their silence as a low contact rate would keep it dialling until
        the late answers all come at once)."""
        yes = self._c_yes + self._pending_yes
        no = self._c_no
        trust = 1.0 - self._ring_doubt()
        groups = [(g * trust, c) for g, c in ringing if g * trust > 1e-9]
        if self._pending_no_slots:
            cdf = self.answer_cdf(self.ring_timeout_s)
            for slot, count in self._pending_no_slots.items():
                g = cdf(slot * _AnswerCdf.SLOT)
                if g >= 1.0 - 1e-9:
                    no += count
                elif g * trust > 1e-9:
                    groups.append((g * trust, count))
        p = min(1.0 - 1e-6, max(1e-6, yes / (yes + no)))
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

    def _ring_doubt(self) -> float:
        """How little the ring-to-answer estimate is trusted yet: 1 with no answer seen."""
        return round(_RING_TRUST / (self._ring_seen + _RING_TRUST) / _UNIFORM_QUANTUM) * _UNIFORM_QUANTUM

    def answer_cdf(self, timeout: float) -> _AnswerCdf:
        """CDF of ring-to-answer seconds of answered calls (answered before `timeout`),
        tabulated; the table follows the estimate once it moves by `_PARAM_QUANTUM`
        (in log seconds).

        While few answers have been seen, a share `_RING_TRUST / (seen + _RING_TRUST)`
        of it is spread evenly from 2 s to the timeout: a fresh campaign does not know when its
        customers answer, and the prior's early answers would make a call that has rung
        past them look unlikely to be answered (and its silence a low contact rate), so
        the pacer would keep placing calls until the late answers all come at once."""
        mu, sigma = self.ring_log_params
        uniform = self._ring_doubt()
        key = self._answer_key
        if (
            self._answer_cdf is None
            or key is None
            or key[2] != timeout
            or key[3] != uniform
            or _moved(key[:2], mu, sigma)
        ):
            key = (_quantize(mu), _quantize(sigma), timeout, uniform)
            self._answer_cdf = _AnswerCdf(key[0], max(key[1], 0.05), timeout, uniform)
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

    def abandon_budget(self, cap: float) -> float:
        """Abandons the campaign could still have without its rate going over `cap` if
        the day closed now: cap × answered − abandoned (AMD estimate included), for
        today's counts and for the last 30 days', the lower of the two. Negative: over
        the cap; every connect earns `cap` of an abandon back. At the start of a day,
        with no calls answered yet, it is zero: the budget is earned as connects come."""
        if not 0.0 < cap < 1.0:
            raise ValueError("cap must be between 0 and 1")
        fp = self.amd_false_positive_rate
        today = self._today
        month = self.last_30_days
        return min(
            cap * today.answered(fp) - today.effective_abandoned(fp),
            cap * month.answered(fp) - month.effective_abandoned(fp),
        )

    @property
    def today_peak_rate(self) -> float:
        """Highest abandon rate seen today once the day had `trusted_volume` answered calls."""
        return self._today_peak_rate
