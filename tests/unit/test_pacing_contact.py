"""The contact rate a fresh campaign plans with while its first calls are still out:
busy lines end after a second, answers come later, so the early failures must not read
as a contact rate near zero (the pacer then dials to its line cap and the answers that
follow find no agent)."""

from __future__ import annotations

import pytest

from hitcall_pbx.core import pacing
from hitcall_pbx.core.compliance import CampaignMode

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
