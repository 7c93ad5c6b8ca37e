"""Pacing controller: guards, caps, fallback, statistics, tail sums, determinism."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitcall_pbx.core import pacing
from hitcall_pbx.core.pacing import (
    MODE_ADAPTIVE_BASELINE,
    MODE_FALLBACK,
    MODE_IDLE,
    MODE_PREDICTIVE,
    MODE_PROGRESSIVE,
    AbandonTally,
    AdaptiveBaseline,
    PacingSettings,
    PacingSnapshot,
    PacingStats,
    abandon_price,
    abandon_rate,
    binomial_pmf,
    decide,
    decide_progressive,
    effective_abandoned,
    line_room,
    make_pacer,
    poisson_binomial_pmf,
    poisson_pmf,
)


def warm_stats(contact: float = 0.2, calls: int = 600, **kw: object) -> PacingStats:
    """Stats after a steady stream of attempts (every 5th answered after 8 s) and talks."""
    stats = PacingStats(**kw)  # type: ignore[arg-type]  # fields passed as **dict[str, object]; the constructor checks them
    t = 0.0
    every = round(1 / contact)
    for i in range(calls):
        t += 1.0
        if i % every == 0:
            stats.observe_attempt(t, 8.0, True)
        else:
            stats.observe_attempt(t, 25.0, False)
    for i in range(200):
        stats.observe_talk(60.0 + (i * 37) % 150)
        stats.observe_wrap(10.0)
    return stats


def busy_snapshot(**kw: object) -> PacingSnapshot:
    base: dict[str, object] = dict(
        now=1000.0,
        agents_logged_in=20,
        agents_ready=2,
        wrap_remaining_s=(3.0, 7.5),
        talk_elapsed_s=tuple(float(x) for x in range(15, 240, 15)),
        dialling_elapsed_s=(0.5, 1.0, 4.0, 9.0, 12.0, 20.0),
    )
    base.update(kw)
    return PacingSnapshot(**base)  # type: ignore[arg-type]  # fields passed as **dict[str, object]; the constructor checks them


# --------------------------------------------------------------------------- guards


def test_no_agent_logged_in_dials_nothing() -> None:
    stats = warm_stats()
    snap = PacingSnapshot(now=0.0, agents_logged_in=0, agents_ready=0, dialling_elapsed_s=(1.0,))
    for pacer in (decide, make_pacer("progressive"), make_pacer("adaptive-baseline")):
        d = pacer(snap, stats)
        assert d.dial_now == 0 and d.mode_effective == MODE_IDLE


def test_all_agents_paused_dials_nothing() -> None:
    snap = PacingSnapshot(now=0.0, agents_logged_in=4, agents_ready=0, agents_paused=4)
    assert decide(snap, warm_stats()).dial_now == 0


def test_ready_agents_get_calls_and_busy_pipeline_gets_fewer() -> None:
    stats = warm_stats()
    idle = PacingSnapshot(now=0.0, agents_logged_in=20, agents_ready=20)
    d = decide(idle, stats)
    assert d.mode_effective == MODE_PREDICTIVE
    # 20 idle agents at a 20 % contact rate want several calls each
    assert 40 <= d.dial_now <= line_room(idle)
    saturated = PacingSnapshot(
        now=0.0,
        agents_logged_in=20,
        agents_ready=0,
        talk_elapsed_s=(5.0,) * 20,
        dialling_elapsed_s=(1.0,) * 60,
    )
    assert decide(saturated, stats).dial_now == 0


def test_more_ringing_calls_means_fewer_new_calls() -> None:
    stats = warm_stats()
    few = decide(busy_snapshot(dialling_elapsed_s=(2.0,)), stats).dial_now
    many = decide(busy_snapshot(dialling_elapsed_s=(2.0,) * 12), stats).dial_now
    assert few > many


def test_snapshot_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        PacingSnapshot(now=0.0, agents_logged_in=-1, agents_ready=0)
    with pytest.raises(ValueError):
        PacingSnapshot(now=0.0, agents_logged_in=1, agents_ready=0, talk_elapsed_s=(-1.0,))
    with pytest.raises(ValueError):
        PacingSnapshot(now=0.0, agents_logged_in=1, agents_ready=0, dialling_elapsed_s=(math.nan,))
    with pytest.raises(ValueError):
        PacingSettings(abandon_cap=0.0)
    with pytest.raises(ValueError):
        PacingSettings(max_lines_per_agent=0.5)


# --------------------------------------------------------------------------- abandon cap


def over_cap_stats() -> PacingStats:
    stats = warm_stats()
    stats.observe_connect(100)
    stats.observe_abandon(5)  # 5 / 105 = 4.8 % > 3 %
    return stats


def test_over_cap_falls_back_to_progressive_until_connects_bring_it_back_under() -> None:
    stats = over_cap_stats()  # 5 abandoned of 105
    snap = busy_snapshot(agents_ready=3, dialling_elapsed_s=(1.0,), answered_waiting=0)
    d = decide(snap, stats)
    assert d.mode_effective == MODE_FALLBACK
    assert d.reserve_agents
    assert d.dial_now == 3 - 1  # ready agents not already served by a ringing call
    assert d.abandon_budget == pytest.approx(0.03 * 105 - 5)
    # 5 abandons need 5 / 0.03 = 166.7 answered: 62 more connects
    assert "progressive until 62 more connects" in d.reason
    stats.observe_connect(61)
    assert decide(snap, stats).mode_effective == MODE_FALLBACK
    # back under the cap: predictive again, at a high price (almost nothing left to spend)
    stats.observe_connect(1)
    back = decide(snap, stats)
    assert back.mode_effective == MODE_PREDICTIVE
    assert back.abandon_price > 20 * abandon_price(warm_stats_with(4000, 60), PacingSettings())[0]
    # more connects earn budget: the price falls, dialling picks up
    stats.observe_connect(2000)
    later = decide(snap, stats)
    assert later.abandon_price < back.abandon_price / 20
    assert later.dial_now >= back.dial_now


def warm_stats_with(connected: int, abandoned: int) -> PacingStats:
    stats = warm_stats()
    stats.observe_connect(connected)
    stats.observe_abandon(abandoned)
    return stats


def test_a_day_starts_without_a_budget_and_earns_it_with_connects() -> None:
    settings_ = PacingSettings()
    fresh = warm_stats()
    assert fresh.abandon_budget(0.03) == 0.0
    p0, why = abandon_price(fresh, settings_)
    assert "near cap" in why
    prices = [abandon_price(warm_stats_with(c, 0), settings_)[0] for c in (50, 100, 200, 400, 800, 1600)]
    assert p0 > prices[0] and prices == sorted(prices, reverse=True)
    assert p0 > 50 * prices[-1]
    # cautious start: a fresh day places fewer calls than the same moment later in the day
    snap = busy_snapshot(agents_ready=6, dialling_elapsed_s=())
    assert decide(snap, fresh).dial_now < decide(snap, warm_stats_with(1600, 0)).dial_now


def test_an_early_abandon_is_paid_back_before_predictive_resumes() -> None:
    stats = warm_stats()
    stats.observe_connect(3)
    stats.observe_abandon(1)  # 25 %: over the cap until 30 more connects
    assert decide(busy_snapshot(), stats).mode_effective == MODE_FALLBACK
    stats.observe_connect(30)
    assert decide(busy_snapshot(), stats).mode_effective == MODE_PREDICTIVE


def test_a_30_day_rate_over_the_cap_falls_back_even_on_a_clean_day() -> None:
    stats = warm_stats()
    stats.observe_connect(900)
    stats.observe_abandon(100)  # 10 % yesterday
    stats.new_day()
    stats.observe_connect(500)  # clean so far today
    assert stats.abandon_budget(0.03) == pytest.approx(0.03 * 1500 - 100)
    d = decide(busy_snapshot(), stats)
    assert d.mode_effective == MODE_FALLBACK and "over 30 days" in d.reason


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(st.sampled_from(["connect", "abandon", "amd"]), max_size=400),
    cap=st.floats(0.005, 0.2),
    fp=st.sampled_from([0.0, 0.05, 0.2]),
)
def test_the_budget_is_what_is_left_under_the_cap_and_only_a_connect_adds_to_it(
    events: list[str], cap: float, fp: float
) -> None:
    stats = PacingStats(amd_false_positive_rate=fp)
    before = stats.abandon_budget(cap)
    for event in events:
        if event == "connect":
            stats.observe_connect()
        elif event == "abandon":
            stats.observe_abandon()
        else:
            stats.observe_amd_machine()
        after = stats.abandon_budget(cap)
        if event == "connect":
            assert after == pytest.approx(before + cap)
        elif event == "abandon" or fp > 0.0:
            assert after < before
        else:
            assert after == before
        before = after
    # not negative exactly when the day's rate is at most the cap
    assert (before >= -1e-9) == (stats.today.rate(fp) <= cap + 1e-9)


def test_price_rises_near_the_cap_and_slows_dialling() -> None:
    settings_ = PacingSettings()
    calm = warm_stats()
    calm.observe_connect(2000)
    calm.observe_abandon(30)  # 1.5 %
    near = warm_stats()
    near.observe_connect(2000)
    near.observe_abandon(60)  # 2.9 %: 1.8 abandons left before the cap
    p_calm, _ = abandon_price(calm, settings_)
    p_near, why = abandon_price(near, settings_)
    assert p_near > 10 * p_calm and "near cap" in why
    snap = busy_snapshot(agents_ready=4, dialling_elapsed_s=())
    assert decide(snap, near).dial_now < decide(snap, calm).dial_now


def test_high_30_day_rate_lowers_todays_target() -> None:
    stats = warm_stats()
    for _ in range(5):
        stats.observe_connect(970)
        stats.observe_abandon(30)  # 3.0 % days
        stats.new_day()
    fresh = warm_stats()
    for s_ in (stats, fresh):
        s_.observe_connect(1000)
        s_.observe_abandon(20)  # 2 % today
    p_month, why = abandon_price(stats, PacingSettings())
    p_fresh, _ = abandon_price(fresh, PacingSettings())
    assert "30-day" in why and p_month > p_fresh


# --------------------------------------------------------------------------- properties

snapshots = st.builds(
    lambda logged, ready, paused, wraps, talks, ringing, waiting, reserved, lines, now: PacingSnapshot(
        now=now,
        agents_logged_in=logged,
        agents_ready=min(ready, logged),
        agents_paused=min(paused, logged),
        wrap_remaining_s=tuple(wraps[:logged]),
        talk_elapsed_s=tuple(talks[:logged]),
        dialling_elapsed_s=tuple(ringing),
        answered_waiting=waiting,
        reserved_calls=reserved,
        settings=PacingSettings(max_lines_per_agent=lines),
    ),
    st.integers(0, 40),
    st.integers(0, 40),
    st.integers(0, 5),
    st.lists(st.floats(0, 30), max_size=10),
    st.lists(st.floats(0, 900), max_size=40),
    st.lists(st.floats(0, 30), max_size=120),
    st.integers(0, 6),
    st.integers(0, 4),
    st.floats(1.0, 6.0),
    st.floats(0, 1e6),
)


@settings(max_examples=120, deadline=None)
@given(snap=snapshots, abandoned=st.integers(0, 40), connected=st.integers(0, 900))
def test_lines_per_agent_cap_is_never_exceeded(snap: PacingSnapshot, abandoned: int, connected: int) -> None:
    stats = warm_stats(calls=100)
    stats.observe_connect(connected)
    stats.observe_abandon(abandoned)
    limit = math.floor(snap.settings.max_lines_per_agent * snap.active_agents + 1e-9)
    for pacer in (decide, make_pacer("progressive"), AdaptiveBaseline().decide):
        d = pacer(snap, stats)
        assert d.dial_now >= 0
        if d.dial_now:
            assert snap.lines_in_use + d.dial_now <= limit
        if snap.agents_logged_in == 0 or snap.active_agents == 0:
            assert d.dial_now == 0
        if d.reserve_agents:
            assert d.dial_now <= snap.agents_ready


@settings(max_examples=40, deadline=None)
@given(snap=snapshots)
def test_decide_is_deterministic(snap: PacingSnapshot) -> None:
    stats = warm_stats(calls=150)
    twin = copy.deepcopy(stats)
    first = decide(snap, stats)
    assert decide(snap, stats) == first
    assert decide(snap, twin) == first


# --------------------------------------------------------------------------- progressive and baseline


def test_progressive_dials_one_per_ready_agent_without_a_call() -> None:
    snap = PacingSnapshot(
        now=0.0, agents_logged_in=10, agents_ready=6, dialling_elapsed_s=(3.0, 4.0), answered_waiting=1
    )
    d = decide_progressive(snap)
    assert (d.dial_now, d.mode_effective, d.reserve_agents) == (3, MODE_PROGRESSIVE, True)


def test_adaptive_baseline_level_moves_and_is_clamped_and_cut() -> None:
    base = AdaptiveBaseline()
    stats = warm_stats()
    idle = PacingSnapshot(now=0.0, agents_logged_in=10, agents_ready=10)
    assert base.decide(idle, stats).dial_now == 10  # level 1.0 × 10 ready
    for t in range(1, 400):  # agents keep waiting: the level climbs to its maximum
        d = base.decide(PacingSnapshot(now=float(t), agents_logged_in=10, agents_ready=10), stats)
    assert base.level == 3.0 and d.dial_now == 30 and d.mode_effective == MODE_ADAPTIVE_BASELINE
    for t in range(400, 800):  # calls wait for agents: it comes down, not below 1.0
        base.decide(PacingSnapshot(now=float(t), agents_logged_in=10, agents_ready=0, answered_waiting=10), stats)
    assert base.level == 1.0
    for t in range(800, 1000):
        base.decide(PacingSnapshot(now=float(t), agents_logged_in=10, agents_ready=10), stats)
    assert base.level > 1.5
    base.decide(PacingSnapshot(now=1000.0, agents_logged_in=10, agents_ready=10), over_cap_stats())
    assert base.level == 1.0


# --------------------------------------------------------------------------- statistics and accounting


def test_abandon_accounting_counts_amd_false_positives() -> None:
    assert abandon_rate(3, 97) == pytest.approx(0.03)
    assert effective_abandoned(2, amd_machines=100, amd_false_positive_rate=0.02) == pytest.approx(4.0)
    tally = AbandonTally(abandoned=2, connected=96, amd_machines=100)
    assert tally.rate(0.02) == pytest.approx(4 / 100)
    assert (tally + AbandonTally(abandoned=1)).abandoned == 3
    stats = PacingStats(amd_false_positive_rate=0.02)
    stats.observe_connect(96)
    stats.observe_abandon(2)
    stats.observe_amd_machine(100)
    assert stats.today_rate == pytest.approx(0.04)


def test_stats_priors_and_learning() -> None:
    stats = PacingStats()
    assert stats.contact_rate == pytest.approx(0.2)
    assert stats.talk_mean_s == pytest.approx(120.0)
    learned = warm_stats(contact=0.25, calls=2000)
    assert learned.contact_rate == pytest.approx(0.25, abs=0.02)
    assert learned.ring_mean_s == pytest.approx(8.0, rel=0.1)


def test_contact_rate_waits_for_the_cohort_to_finish_ringing() -> None:
    stats = PacingStats(ring_timeout_s=25.0)
    for i in range(50):  # a burst: the early answers arrive first
        stats.observe_attempt(5.0 + i * 0.01, 5.0, True)
    assert stats.contact_rate == pytest.approx(0.2)  # not yet counted
    # the answers are evidence, and so are the 150 calls still ringing at 6 s
    cdf = stats.answer_cdf(25.0)
    p, sd = stats.contact_estimate([(cdf(6.0), 150)])
    assert p > 0.3 and sd < 0.15  # 50 answers by 5 s point to a high rate
    for i in range(150):  # the rest of the burst rings out 25 s after it was placed
        stats.observe_attempt(25.0 + i * 0.004, 25.0, False)
    assert 0.23 < stats.contact_rate < 0.3


def test_new_day_keeps_thirty_days_of_history() -> None:
    stats = PacingStats()
    for day in range(35):
        stats.observe_connect(100)
        stats.observe_abandon(1 if day < 5 else 2)
        stats.new_day()
    month = stats.last_30_days
    assert month.connected == 2900 and month.abandoned == 58
    assert stats.today == AbandonTally()


def test_restore_seeds_the_accounting_after_a_restart() -> None:
    stats = PacingStats()
    stats.restore(AbandonTally(abandoned=120, connected=4380), [AbandonTally(3, 97)] * 40)
    assert stats.today_rate == pytest.approx(120 / 4500)
    assert stats.today_peak_rate == pytest.approx(120 / 4500)  # under the cap: no fallback
    assert stats.last_30_days == AbandonTally(120 + 29 * 3, 4380 + 29 * 97)
    assert decide(busy_snapshot(), stats).mode_effective == MODE_PREDICTIVE


# --------------------------------------------------------------------------- tail sums


def test_poisson_binomial_matches_enumeration() -> None:
    probs = [0.1, 0.5, 0.3, 0.9]
    pmf = poisson_binomial_pmf(probs)
    brute = [0.0] * 5
    for outcome in itertools.product((0, 1), repeat=4):
        w = 1.0
        for hit, p in zip(outcome, probs):
            w *= p if hit else 1 - p
        brute[sum(outcome)] += w
    assert pmf == pytest.approx(brute)
    assert poisson_binomial_pmf(probs, size=2) == pytest.approx(brute[:2])
    assert binomial_pmf(4, 0.3) == pytest.approx(poisson_binomial_pmf([0.3] * 4))
    assert sum(poisson_pmf(3.5)) == pytest.approx(1.0)
    assert sum(k * w for k, w in enumerate(poisson_pmf(3.5))) == pytest.approx(3.5, abs=1e-3)


def test_exact_and_normal_models_agree_on_a_mid_size_team() -> None:
    stats = warm_stats()
    snap = busy_snapshot(
        agents_logged_in=10,
        agents_ready=1,
        wrap_remaining_s=(3.0,),
        talk_elapsed_s=(20.0, 45.0, 60.0, 90.0, 130.0, 170.0, 240.0, 400.0),
    )
    model = pacing._Horizon(snap, stats)
    assert not model.gaussian
    exact = [model.run(n) for n in (0, 2, 5)]
    model.gaussian = True
    model._memo.clear()
    normal = [model.run(n) for n in (0, 2, 5)]
    for (a, i), (b, j) in zip(exact, normal):
        assert b == pytest.approx(a, abs=0.15)
        assert j == pytest.approx(i, rel=0.15)


def test_a_twenty_agent_team_is_modelled_exactly_and_a_hundred_agent_team_with_normal_steps() -> None:
    stats = warm_stats()
    ringing = tuple(0.5 * i for i in range(40))
    twenty = pacing._Horizon(busy_snapshot(dialling_elapsed_s=ringing), stats)
    assert not twenty.gaussian
    abandons, idle = twenty.run(0)
    assert abandons >= 0.0 and idle > 0.0
    hundred = busy_snapshot(
        agents_logged_in=100,
        agents_ready=10,
        dialling_elapsed_s=ringing,
        talk_elapsed_s=tuple(float(x) for x in range(5, 450, 5)),
    )
    assert pacing._Horizon(hundred, stats).gaussian


def test_a_call_placed_a_step_later_is_modelled_between_none_and_one_now() -> None:
    stats = warm_stats()
    for snap in (
        busy_snapshot(agents_logged_in=10, agents_ready=1, talk_elapsed_s=(20.0, 60.0, 90.0, 130.0)),
        busy_snapshot(),
    ):
        model = pacing._Horizon(snap, stats)
        for n in (0, 3):
            (a0, i0), (a1, i1), (a_later, i_later) = model.run(n), model.run(n + 1), model.run(n, 1)
            # answered later: fewer idle agent-seconds saved, fewer abandons risked
            assert i1 < i_later < i0
            assert a0 <= a_later <= a1


def test_the_abandon_price_moves_smoothly_through_a_calm_day() -> None:
    settings_ = PacingSettings()
    prices = []
    for abandoned in range(60, 100, 5):  # 4000 answered: 1.5 % .. 2.4 %, far from the cap
        stats = warm_stats()
        stats.observe_connect(4000 - abandoned)
        stats.observe_abandon(abandoned)
        prices.append(abandon_price(stats, settings_)[0])
    assert prices == sorted(prices)
    # each extra abandon moves the price by a few per cent, not by a factor
    steps = [b / a for a, b in itertools.pairwise(prices)]
    assert all(1.0 < s < 1.5 for s in steps)


@settings(max_examples=80, deadline=None)
@given(snap=snapshots, abandoned=st.integers(0, 30), connected=st.integers(0, 600))
def test_over_the_cap_predictive_places_only_reserved_progressive_calls(
    snap: PacingSnapshot, abandoned: int, connected: int
) -> None:
    stats = warm_stats(calls=100)
    stats.observe_connect(connected)
    stats.observe_abandon(abandoned)
    d = pacing.decide_predictive(snap, stats)
    if stats.abandon_budget(snap.settings.abandon_cap) < 0 and snap.active_agents > 0:
        assert d.mode_effective == MODE_FALLBACK and d.reserve_agents
        assert d.dial_now == decide_progressive(snap).dial_now


def test_a_new_day_keeps_the_contact_rate_but_not_the_confidence_in_it() -> None:
    stats = warm_stats(contact=0.5, calls=2000)
    rate, sd = stats.contact_estimate([])
    stats.new_day()
    rate2, sd2 = stats.contact_estimate([])
    assert rate2 == pytest.approx(rate)
    assert sd2 > 3 * sd
    # the first minutes of a day plan with a contact rate well above yesterday's
    assert rate2 + 2 * sd2 > 0.85
