"""The contact rate a fresh campaign plans with while its first calls are still out:
busy lines end after a second, answers come later, so the early failures must not read
as a contact rate near zero (the pacer then dials to its line cap and the answers that
follow find no agent). And once busy lines are known to end early, a call still ringing
after them is a likelier answer."""

from __future__ import annotations

import pytest

from hitcall_pbx.core import pacing
from hitcall_pbx.core.compliance import CampaignMode
from hitcall_pbx.core.pacing.model import _Horizon

TIMEOUT = 15.0


def _busy(stats: pacing.PacingStats, n: int, now: float, ring_s: float = 1.0) -> None:
    for _ in range(n):
        stats.observe_attempt(now, ring_s, False)


def test_busy_lines_of_calls_still_ringing_say_little_about_the_contact_rate() -> None:
    stats = pacing.PacingStats(ring_timeout_s=TIMEOUT)
    prior, _ = stats.contact_estimate([])
    _busy(stats, 14, now=100.0)
    rate, _ = stats.contact_estimate([])
    # 14 lines busy after 1 s, no answer yet: no answer was due that early either
    assert rate == pytest.approx(prior, abs=0.01)


def test_busy_lines_count_as_non_contacts_once_their_calls_have_all_finished() -> None:
    stats = pacing.PacingStats(ring_timeout_s=TIMEOUT)
    _busy(stats, 14, now=100.0)
    stats.observe_attempt(100.0 + TIMEOUT, TIMEOUT, False)  # a later call rings out: the cohort is done
    assert stats.contact_estimate([])[0] == pytest.approx(stats.contact_rate)
    assert stats.contact_rate < 0.1


def test_a_no_answer_counts_as_a_non_contact_at_once() -> None:
    stats = pacing.PacingStats(ring_timeout_s=TIMEOUT)
    _busy(stats, 14, now=100.0, ring_s=TIMEOUT)
    assert stats.contact_estimate([])[0] < 0.1


def test_a_fresh_campaign_does_not_dial_to_its_line_cap_on_its_first_busy_lines() -> None:
    """200 agents, 287 calls ringing for 1.1 s, 14 of the first calls busy: the pacer
    places no more calls than it would with no busy line seen (before: 679 more, five
    lines per agent, when 40 % of the customers answer)."""
    settings = pacing.PacingSettings(max_lines_per_agent=5.0, ring_timeout_s=TIMEOUT, abandon_cap=0.03)
    snap = pacing.PacingSnapshot(
        now=100.0, agents_logged_in=200, agents_ready=200, dialling_elapsed_s=(1.1,) * 287, settings=settings
    )
    quiet = pacing.pace_decision(CampaignMode.PREDICTIVE, snap, pacing.PacingStats(ring_timeout_s=TIMEOUT))
    stats = pacing.PacingStats(ring_timeout_s=TIMEOUT)
    _busy(stats, 14, now=100.0)
    decision = pacing.pace_decision(CampaignMode.PREDICTIVE, snap, stats)
    assert decision.dial_now <= quiet.dial_now + 5


def _finished_cohort(stats: pacing.PacingStats, *, busy: int, no_answer: int, answered: int, now: float) -> None:
    _busy(stats, busy, now=now)
    for _ in range(answered):
        stats.observe_attempt(now, 6.0, True)
    _busy(stats, no_answer, now=now + TIMEOUT, ring_s=TIMEOUT)  # their cohort is done with them


def test_unanswered_calls_ring_to_the_timeout_until_busy_lines_are_seen() -> None:
    stats = pacing.PacingStats(ring_timeout_s=TIMEOUT)
    assert set(stats.no_answer_survival()) == {1.0}
    _busy(stats, 30, now=100.0)  # busy, but their cohort is still out: nothing learned yet
    assert set(stats.no_answer_survival()) == {1.0}


def test_busy_lines_end_early_and_no_answers_at_the_timeout() -> None:
    stats = pacing.PacingStats(ring_timeout_s=TIMEOUT)
    for i in range(10):
        _finished_cohort(stats, busy=15, no_answer=65, answered=20, now=100.0 + 40.0 * i)
    surv = stats.no_answer_survival()
    # 150 busy lines (1 s) and 650 no-answers (the timeout), the last 400 of them kept, plus the prior
    kept_busy = sum(1 for slot in stats._no_ends if slot == 2)
    assert surv[0] == surv[1] == 1.0
    assert surv[2] == pytest.approx(1.0 - kept_busy / (400 + 20))
    assert surv[5] == surv[2] and surv[-1] == surv[2]  # nothing else ends before the timeout
    assert 0.0 < kept_busy < 400


def test_a_call_ringing_past_the_busy_lines_is_a_likelier_answer() -> None:
    """The same calls ringing for 5 s: with busy lines seen ending after 1 s, fewer of the
    unanswered calls are still out, so more answers are expected from them."""
    plain = pacing.PacingStats(ring_timeout_s=TIMEOUT)
    busy = pacing.PacingStats(ring_timeout_s=TIMEOUT)
    for i in range(10):
        _finished_cohort(plain, busy=0, no_answer=80, answered=20, now=100.0 + 40.0 * i)
        _finished_cohort(busy, busy=40, no_answer=40, answered=20, now=100.0 + 40.0 * i)
    assert busy.contact_rate == pytest.approx(plain.contact_rate)
    snap = pacing.PacingSnapshot(
        now=600.0,
        agents_logged_in=10,
        agents_ready=0,
        talk_elapsed_s=(30.0,) * 10,
        dialling_elapsed_s=(5.0,) * 10,
        settings=pacing.PacingSettings(ring_timeout_s=TIMEOUT),
    )
    models = {"plain": _Horizon(snap, plain), "busy": _Horizon(snap, busy)}
    expected = {name: model.pipeline_answers() for name, model in models.items()}
    p = models["plain"].p
    # each call: p (1 − G) / (p (1 − G) + (1 − p) S_no) of an answer still to come
    assert expected["busy"] > expected["plain"] * 1.3
    assert expected["plain"] < 10 * p


def _ringing_12s() -> pacing.PacingSnapshot:
    return pacing.PacingSnapshot(
        now=100.0,
        agents_logged_in=20,
        agents_ready=20,
        dialling_elapsed_s=(12.0,) * 60,
        settings=pacing.PacingSettings(ring_timeout_s=25.0),
    )


def test_a_fresh_campaign_does_not_read_calls_ringing_past_the_prior_as_unanswered() -> None:
    """A fresh campaign's 60 calls have rung 12 s, past the prior's typical answer (8 s), but
    it has seen no answer yet: its customers may simply answer late. The pacer still expects
    answers from them and keeps the contact rate near its prior, where a campaign that has
    seen hundreds of answers after about 6 s rightly expects few."""
    fresh = pacing.PacingStats(ring_timeout_s=25.0)
    seen = pacing.PacingStats(ring_timeout_s=25.0)
    for i in range(300):
        seen.observe_attempt(10.0 * i, 6.0, True)
        for _ in range(4):
            seen.observe_attempt(10.0 * i + 25.0, 25.0, False)
    assert seen.contact_rate == pytest.approx(0.2, abs=0.02)
    snap = _ringing_12s()
    fresh_model, seen_model = _Horizon(snap, fresh), _Horizon(snap, seen)
    assert fresh_model.pipeline_answers() > 3.0 * seen_model.pipeline_answers()
    assert fresh_model.p > 0.15  # the 60 silent calls did not pull the contact rate down
    assert pacing.decide(snap, fresh).dial_now < pacing.decide(snap, seen).dial_now
