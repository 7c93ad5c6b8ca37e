"""Pacing model: agents that free up once, the value of a late answer, the small-team cushion."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitcall_pbx.core.pacing import PacingSettings, PacingSnapshot, PacingStats, abandon_price
from hitcall_pbx.core.pacing.model import _free_pmf, _Horizon, tail_s


def _moments(pmf: list[float]) -> tuple[float, float]:
    mean = math.fsum(k * w for k, w in enumerate(pmf))
    return mean, math.fsum((k - mean) ** 2 * w for k, w in enumerate(pmf))


def _convolve_all(kernels: list[list[float] | None]) -> list[float]:
    out = [1.0]
    for kernel in kernels:
        if kernel is None:
            continue
        acc = [0.0] * (len(out) + len(kernel) - 1)
        for i, a in enumerate(out):
            for j, b in enumerate(kernel):
                acc[i + j] += a * b
        out = acc
    return out


@settings(max_examples=200, deadline=None)
@given(mean=st.floats(1e-6, 20.0), share=st.floats(0.0, 1.0))
def test_a_step_of_frees_has_its_mean_and_no_more_spread_than_poisson(mean: float, share: float) -> None:
    var = mean * share
    pmf = _free_pmf(mean, var)
    assert pmf is not None
    assert math.fsum(pmf) == pytest.approx(1.0)
    got_mean, got_var = _moments(pmf)
    assert got_mean == pytest.approx(mean, rel=1e-3, abs=1e-4)
    assert got_var <= mean * (1.0 + 1e-3) + 1e-9
    # a binomial with this mean is spread at least as much as one with ceil(mean) trials
    least = mean * (1.0 - mean / math.ceil(mean))
    assert got_var <= max(var, least) + 0.5 + mean * mean / 200.0
    assert got_var >= min(var, mean) - 0.5
    assert _free_pmf(0.0, 0.0) is None


talks = st.lists(st.floats(0.0, 600.0), min_size=1, max_size=24)


@settings(max_examples=60, deadline=None)
@given(elapsed=talks, ring_mean=st.floats(2.0, 20.0))
def test_frees_over_the_horizon_are_as_spread_as_agents_that_free_once(elapsed: list[float], ring_mean: float) -> None:
    """Each agent on a call frees up at most once: the frees over the horizon are
    Poisson-binomial (variance Σ P(1 − P)), not Poisson (variance Σ P)."""
    stats = PacingStats(ring_mean_s=ring_mean, wrap_mean_s=10.0)
    snap = PacingSnapshot(now=0.0, agents_logged_in=len(elapsed), agents_ready=0, talk_elapsed_s=tuple(elapsed))
    model = _Horizon(snap, stats)
    assert not model.gaussian
    # the window the horizon watches, per agent: talk end + wrap-up − connect limit
    lead = snap.settings.connect_limit_s - model.dt / 2.0
    wrap = round(stats.wrap_mean_s * 2.0) / 2.0
    lo = max(0.0, lead - wrap)
    end = model.steps * model.dt + lead - wrap
    surv = stats.talk_survival()
    probs = []
    for e in elapsed:
        e = int(e * 2.0 + 0.5) * 0.5
        s_e = surv(e)
        probs.append((surv(e + lo) - surv(e + end)) / s_e if s_e > 1e-12 else 0.0)
    total = _convolve_all(model.free_k)
    mean, var = _moments(total)
    exact_mean = math.fsum(probs)
    exact_var = math.fsum(p * (1.0 - p) for p in probs)
    assert mean == pytest.approx(exact_mean, rel=0.02, abs=1e-3)
    assert math.fsum(model.free_var) == pytest.approx(exact_var, rel=0.02, abs=1e-3)
    # each step's count is an integer, so its spread cannot always match exactly,
    # but it is nearer the agents' than a Poisson count's (variance = mean)
    assert var == pytest.approx(exact_var, rel=0.2, abs=0.1)
    assert var <= exact_var + 0.5 * (exact_mean - exact_var) + 0.02


def test_a_busy_team_frees_up_less_erratically_than_a_poisson_count() -> None:
    elapsed = tuple(float(x) for x in range(60, 300, 10))  # 24 agents on a call
    stats = PacingStats(ring_mean_s=18.0, wrap_mean_s=10.0)
    snap = PacingSnapshot(now=0.0, agents_logged_in=24, agents_ready=0, talk_elapsed_s=elapsed)
    mean, var = _moments(_convolve_all(_Horizon(snap, stats).free_k))
    assert mean > 3.0
    assert var < 0.85 * mean


def _saving_of_one_call(ring_mean: float) -> tuple[float, float]:
    """Idle agent-seconds one new call saves for a single idle agent, and the
    contact rate the model planned with."""
    stats = PacingStats(ring_mean_s=ring_mean, ring_sd_s=ring_mean / 4.0)
    snap = PacingSnapshot(now=0.0, agents_logged_in=1, agents_ready=1)
    model = _Horizon(snap, stats)
    return model.run(0)[1] - model.run(1)[1], model.p


def test_a_connect_answered_late_is_worth_about_as_much_as_one_answered_early() -> None:
    """The agent a call reaches stays busy long after the horizon: a call answered 18 s
    after it is placed saves that agent about as much idle time as one answered after
    3 s, not only the few seconds left before the ring timeout."""
    quick, p = _saving_of_one_call(3.0)
    slow, p_slow = _saving_of_one_call(18.0)
    assert p == pytest.approx(p_slow)
    timeout = PacingSettings().ring_timeout_s
    assert slow >= 0.6 * quick
    # at least the seconds from the answer to the horizon's end, plus the tail
    stats = PacingStats(ring_mean_s=18.0, ring_sd_s=4.5)
    tail = tail_s(PacingSettings(), stats)
    assert tail > 0.0
    assert slow >= 0.9 * p * (timeout - stats.ring_mean_s + tail)


def _stats_with(connected: int, abandoned: int) -> PacingStats:
    stats = PacingStats()
    stats.observe_connect(connected)
    stats.observe_abandon(abandoned)
    return stats


@settings(max_examples=60, deadline=None)
@given(connected=st.integers(0, 400), abandoned=st.integers(0, 6))
def test_a_small_team_keeps_a_smaller_cushion_and_a_larger_one_the_whole(connected: int, abandoned: int) -> None:
    settings_ = PacingSettings()
    stats = _stats_with(connected, abandoned)
    whole = abandon_price(stats, settings_)[0]
    assert abandon_price(stats, settings_, agents=4)[0] == pytest.approx(whole)
    assert abandon_price(stats, settings_, agents=40)[0] == pytest.approx(whole)
    two = abandon_price(stats, settings_, agents=2)[0]
    one = abandon_price(stats, settings_, agents=1)[0]
    assert one <= two <= whole


def test_a_two_agent_team_dials_ahead_sooner_in_its_day() -> None:
    # 60 connects: 1.8 abandons earned, less than the whole cushion of two
    stats = _stats_with(60, 0)
    settings_ = PacingSettings()
    assert abandon_price(stats, settings_, agents=2)[0] < 0.6 * abandon_price(stats, settings_)[0]
