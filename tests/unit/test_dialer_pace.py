"""The engine's pacing choice per campaign mode, and how often it paces (pure)."""

from __future__ import annotations

import pytest

from hitcall_pbx.core import pacing
from hitcall_pbx.core.compliance import CampaignMode
from hitcall_pbx.dialer.engine import PASS_SHARE, pass_gap


def _snap(
    ready: int, *, logged_in: int | None = None, dialling: int = 0, waiting: int = 0, talking: int = 0
) -> pacing.PacingSnapshot:
    return pacing.PacingSnapshot(
        now=0.0,
        agents_logged_in=ready + talking if logged_in is None else logged_in,
        agents_ready=ready,
        wrap_remaining_s=(),
        talk_elapsed_s=(30.0,) * talking,
        dialling_elapsed_s=(1.0,) * dialling,
        answered_waiting=waiting,
        reserved_calls=0,
        agents_paused=0,
        settings=pacing.PacingSettings(abandon_cap=0.03, max_lines_per_agent=3, ring_timeout_s=15.0),
    )


@pytest.mark.parametrize("ready", [1, 2, 3, 5, 20])
def test_predictive_never_leaves_a_ready_agent_without_a_call(ready):
    d = pacing.pace_decision(CampaignMode.PREDICTIVE, _snap(ready), pacing.PacingStats(ring_timeout_s=15.0))
    assert d.dial_now >= ready and not d.reserve_agents


def test_predictive_floor_counts_calls_already_ringing():
    d = pacing.pace_decision(CampaignMode.PREDICTIVE, _snap(1, dialling=1), pacing.PacingStats(ring_timeout_s=15.0))
    assert d.dial_now <= 1
    assert pacing.pace_decision(CampaignMode.PROGRESSIVE, _snap(1, dialling=1), None).dial_now == 0


def test_no_agent_logged_in_dials_nothing():
    for mode in (CampaignMode.PREDICTIVE, CampaignMode.PROGRESSIVE):
        assert pacing.pace_decision(mode, _snap(0, logged_in=0), pacing.PacingStats()).dial_now == 0


def test_progressive_reserves_one_agent_per_call():
    d = pacing.pace_decision(CampaignMode.PROGRESSIVE, _snap(3, dialling=1), None)
    assert (d.dial_now, d.reserve_agents) == (2, True)


def test_a_quick_pass_lets_the_next_call_go_out_within_the_short_gap():
    assert pass_gap(0.0005, lo=0.01, hi=0.05) == 0.01
    assert pass_gap(0.0, lo=0.01, hi=0.05) == 0.01


def test_slow_passes_space_out_so_pacing_takes_at_most_a_fifth_of_the_time():
    gap = pass_gap(0.006, lo=0.01, hi=0.05)
    assert gap == pytest.approx(0.03) and 0.006 / gap == pytest.approx(PASS_SHARE)
    assert pass_gap(0.5, lo=0.01, hi=0.05) == 0.05  # never longer than the longest gap
