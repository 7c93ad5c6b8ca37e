"""The pacer's view for /metrics and the wallboard: decision, lines in flight, predicted
idle agents, abandon price, budget left today, fallback with its reason."""

from __future__ import annotations

import json
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from hitcall_pbx.core.compliance import CampaignMode
from hitcall_pbx.core.pacing import (
    MODE_FALLBACK,
    MODE_PREDICTIVE,
    MODE_PROGRESSIVE,
    PacingSnapshot,
    PacingStats,
    pace_decision,
    pacing_view,
    view_changed,
)
from hitcall_pbx.dialer.pacer import CampaignPacer


def snapshot(**kw: object) -> PacingSnapshot:
    base: dict[str, object] = dict(
        now=500.0,
        agents_logged_in=10,
        agents_ready=2,
        wrap_remaining_s=(4.0,),
        talk_elapsed_s=(30.0, 60.0, 90.0, 120.0, 150.0, 10.0, 200.0),
        dialling_elapsed_s=(1.0, 5.0, 11.0),
        answered_waiting=1,
        reserved_calls=2,
    )
    base.update(kw)
    return PacingSnapshot(**base)  # type: ignore[arg-type]  # fields passed as **dict[str, object]; the constructor checks them


def stats_with(connected: int, abandoned: int) -> PacingStats:
    stats = PacingStats()
    stats.observe_connect(connected)
    stats.observe_abandon(abandoned)
    return stats


def test_a_predictive_view_shows_the_models_figures() -> None:
    snap = snapshot()
    stats = stats_with(1000, 10)
    decision = pace_decision(CampaignMode.PREDICTIVE, snap, stats)
    view = pacing_view(decision, snap, stats)
    assert view.mode_effective == MODE_PREDICTIVE and not view.fallback and view.fallback_reason is None
    assert view.lines_in_flight == 3 + 2 + 1
    assert view.dial_now == decision.dial_now
    assert view.predicted_idle_agents is not None and view.predicted_idle_agents >= 0.0
    assert view.abandon_price == decision.abandon_price > 0.0
    assert view.budget_left == 0.03 * 1010 - 10
    assert view.abandon_rate_today == 10 / 1010
    payload = view.to_dict()
    json.dumps(payload)  # the event payload is plain JSON
    assert payload["fallback"] is False and payload["budget_left"] == round(0.03 * 1010 - 10, 2)


def test_a_campaign_over_the_cap_shows_the_fallback_and_why() -> None:
    snap = snapshot()
    stats = stats_with(100, 10)
    view = pacing_view(pace_decision(CampaignMode.PREDICTIVE, snap, stats), snap, stats)
    assert view.mode_effective == MODE_FALLBACK and view.fallback
    assert view.fallback_reason is not None and "over the cap" in view.fallback_reason
    assert view.fallback_cause == "today_over_cap"
    assert view.budget_left is not None and view.budget_left < 0
    assert view.abandon_price is None and view.predicted_idle_agents is None


def test_a_progressive_campaign_shows_no_model_figures() -> None:
    snap = snapshot()
    view = pacing_view(pace_decision(CampaignMode.PROGRESSIVE, snap, None), snap, None)
    assert view.mode_effective == MODE_PROGRESSIVE and not view.fallback
    assert view.budget_left is None and view.abandon_price is None and view.contact_rate is None


def test_live_screens_hear_of_mode_changes_budget_steps_and_a_heartbeat_only() -> None:
    snap = snapshot()
    stats = stats_with(1000, 10)
    first = pacing_view(pace_decision(CampaignMode.PREDICTIVE, snap, stats), snap, stats)
    assert view_changed(None, first)
    assert not view_changed(first, replace(first, at=first.at + 1.0, dial_now=first.dial_now + 3))
    assert view_changed(first, replace(first, at=first.at + 10.0))
    assert view_changed(first, replace(first, at=first.at + 1.0, mode_effective=MODE_FALLBACK))
    assert first.budget_left is not None
    assert view_changed(first, replace(first, at=first.at + 1.0, budget_left=first.budget_left - 1.0))


@settings(max_examples=60, deadline=None)
@given(
    ready=st.integers(0, 10),
    ringing=st.lists(st.floats(0, 30), max_size=20),
    waiting=st.integers(0, 3),
    connected=st.integers(0, 500),
    abandoned=st.integers(0, 30),
)
def test_the_view_agrees_with_the_decision_and_the_snapshot(
    ready: int, ringing: list[float], waiting: int, connected: int, abandoned: int
) -> None:
    snap = snapshot(agents_ready=ready, dialling_elapsed_s=tuple(ringing), answered_waiting=waiting)
    stats = stats_with(connected, abandoned)
    decision = pace_decision(CampaignMode.PREDICTIVE, snap, stats)
    view = pacing_view(decision, snap, stats)
    assert view.dial_now == decision.dial_now and view.reason == decision.reason
    assert view.lines_in_flight == len(ringing) + waiting + snap.reserved_calls
    assert view.fallback == (decision.mode_effective == MODE_FALLBACK)
    assert view.budget_left is not None
    assert view.fallback == (view.budget_left < 0)


def test_the_dialers_pacer_keeps_the_latest_view_and_tells_only_changes() -> None:
    pacer = CampaignPacer(None, None, None, {})  # type: ignore[arg-type]  # _show touches none of them
    told: list[tuple[int, str]] = []
    pacer.on_view = lambda cid, view: told.append((cid, view.mode_effective))
    snap = snapshot()
    calm, over = stats_with(1000, 10), stats_with(100, 10)
    first = pacing_view(pace_decision(CampaignMode.PREDICTIVE, snap, calm), snap, calm)
    pacer._show(7, first)
    pacer._show(7, replace(first, at=first.at + 1.0))
    assert told == [(7, MODE_PREDICTIVE)] and pacer.views[7].at == first.at + 1.0
    later = replace(snap, now=snap.now + 2.0)
    pacer._show(7, pacing_view(pace_decision(CampaignMode.PREDICTIVE, later, over), later, over))
    assert told == [(7, MODE_PREDICTIVE), (7, MODE_FALLBACK)] and pacer.views[7].fallback
