from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitcall_pbx.core.monitoring import (
    EndReason,
    IllegalMonitorTransition,
    MonitorEvent,
    MonitorMode,
    MonitorSession,
    MonitorState,
    Refusal,
    SnoopSpec,
    Step,
    check_change,
    check_start,
    customer_hears,
    may_monitor_campaign,
    monitor_transition,
    plan,
    snoop_spec,
)

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def s(n: float) -> datetime:
    return T0 + timedelta(seconds=n)


# ------------------------------------------------------------------ modes


def test_listen_spies_both_directions_and_whispers_nothing():
    assert snoop_spec(MonitorMode.LISTEN) == SnoopSpec(spy="both", whisper="none")


def test_whisper_goes_out_to_the_agents_phone_only():
    assert snoop_spec(MonitorMode.WHISPER) == SnoopSpec(spy="both", whisper="out")


def test_barge_joins_the_calls_bridge_instead_of_a_snoop():
    assert snoop_spec(MonitorMode.BARGE) is None


def test_the_customer_hears_the_supervisor_only_in_barge():
    assert [m for m in MonitorMode if customer_hears(m)] == [MonitorMode.BARGE]


@pytest.mark.parametrize(
    ("old", "new", "steps"),
    [
        (None, MonitorMode.LISTEN, (Step.SNOOP,)),
        (None, MonitorMode.BARGE, (Step.LEAVE_HOME, Step.JOIN_CALL)),
        (MonitorMode.LISTEN, MonitorMode.WHISPER, (Step.HANGUP_SNOOP, Step.SNOOP)),
        (MonitorMode.WHISPER, MonitorMode.BARGE, (Step.HANGUP_SNOOP, Step.LEAVE_HOME, Step.JOIN_CALL)),
        (MonitorMode.BARGE, MonitorMode.LISTEN, (Step.LEAVE_CALL, Step.RETURN_HOME, Step.SNOOP)),
        (MonitorMode.BARGE, None, (Step.LEAVE_CALL, Step.RETURN_HOME)),
        (MonitorMode.WHISPER, None, (Step.HANGUP_SNOOP,)),
        (MonitorMode.LISTEN, MonitorMode.LISTEN, ()),
        (None, None, ()),
    ],
)
def test_plan_tears_down_the_old_mode_then_sets_up_the_new(old, new, steps):
    assert plan(old, new) == steps


@given(st.sampled_from([None, *MonitorMode]), st.sampled_from([None, *MonitorMode]))
def test_a_plan_leaves_the_phone_in_exactly_one_place(old, new):
    """Walking any plan from where `old` left the phone ends where `new` wants it: the
    phone is home (with a snoop or not) or in the call, never both, never neither."""
    home = old is None or snoop_spec(old) is not None
    snoop = old is not None and snoop_spec(old) is not None
    for step in plan(old, new):
        if step is Step.HANGUP_SNOOP:
            assert snoop
            snoop = False
        elif step is Step.LEAVE_CALL:
            assert not home
        elif step is Step.RETURN_HOME:
            home = True
        elif step is Step.SNOOP:
            assert home and not snoop
            snoop = True
        elif step is Step.LEAVE_HOME:
            assert home
            home = False
        elif step is Step.JOIN_CALL:
            assert not home
    want_home = new is None or snoop_spec(new) is not None
    assert home == want_home
    assert snoop == (new is not None and snoop_spec(new) is not None)


# ------------------------------------------------------------------ who may


def test_admin_monitors_every_campaign():
    assert may_monitor_campaign("admin", (), 7) is None


def test_supervisor_monitors_only_assigned_campaigns():
    assert may_monitor_campaign("supervisor", {1, 2}, 2) is None
    assert may_monitor_campaign("supervisor", {1, 2}, 3) is Refusal.CAMPAIGN


@pytest.mark.parametrize("role", ["agent", "compliance", "integration", "system"])
def test_other_roles_never_monitor(role):
    assert may_monitor_campaign(role, {1}, 1) is Refusal.ROLE


def _start(**kw):
    args = dict(
        role="supervisor",
        supervised={5},
        campaign_id=5,
        phone_logged_in=True,
        monitoring_now=False,
        call_talking=True,
    )
    args.update(kw)
    return check_start(**args)


def test_start_allowed():
    assert _start() is None


def test_start_refusals_in_order():
    # every condition fails: the role is named first, then the campaign, the phone, ...
    assert _start(role="agent", campaign_id=6, phone_logged_in=False, call_talking=False) is Refusal.ROLE
    assert _start(campaign_id=6, phone_logged_in=False) is Refusal.CAMPAIGN
    assert _start(phone_logged_in=False, monitoring_now=True) is Refusal.NO_PHONE
    assert _start(monitoring_now=True, call_talking=False) is Refusal.BUSY
    assert _start(call_talking=False) is Refusal.NOT_TALKING


# ------------------------------------------------------------------ sessions


def _active(mode=MonitorMode.LISTEN, at=0.0):
    return monitor_transition(MonitorSession.new("m1", mode, s(at)), MonitorEvent.STARTED, s(at + 0.1))


def test_session_starts_changes_and_ends_with_its_times():
    m = _active()
    assert m.state is MonitorState.ACTIVE and m.started_at == s(0.1)
    m = monitor_transition(m, MonitorEvent.CHANGE, s(5), mode=MonitorMode.WHISPER)
    m = monitor_transition(m, MonitorEvent.CHANGE, s(9), mode=MonitorMode.BARGE)
    m = monitor_transition(m, MonitorEvent.STOP, s(12), reason=EndReason.CALL_ENDED)
    assert m.state is MonitorState.ENDED and not m.live
    assert m.ended_at == s(12) and m.end_reason is EndReason.CALL_ENDED
    assert [mode for mode, _ in m.modes] == [MonitorMode.LISTEN, MonitorMode.WHISPER, MonitorMode.BARGE]
    assert m.seconds_in(MonitorMode.LISTEN) == pytest.approx(4.9)
    assert m.seconds_in(MonitorMode.WHISPER) == pytest.approx(4.0)
    assert m.seconds_in(MonitorMode.BARGE) == pytest.approx(3.0)


def test_stop_defaults_to_stopped_and_a_second_stop_is_refused():
    m = monitor_transition(_active(), MonitorEvent.STOP, s(3))
    assert m.end_reason is EndReason.STOPPED
    with pytest.raises(IllegalMonitorTransition):
        monitor_transition(m, MonitorEvent.STOP, s(4))


def test_a_session_that_never_started_can_end():
    m = monitor_transition(
        MonitorSession.new("m", MonitorMode.BARGE, s(0)), MonitorEvent.STOP, s(1), reason=EndReason.FAILED
    )
    assert m.state is MonitorState.ENDED and m.started_at is None and m.modes == ()


def test_change_to_the_same_mode_or_before_start_is_illegal():
    with pytest.raises(IllegalMonitorTransition):
        monitor_transition(_active(), MonitorEvent.CHANGE, s(2), mode=MonitorMode.LISTEN)
    with pytest.raises(IllegalMonitorTransition):
        monitor_transition(
            MonitorSession.new("m", MonitorMode.LISTEN, s(0)), MonitorEvent.CHANGE, s(1), mode=MonitorMode.BARGE
        )


def test_check_change_names_the_refusal():
    m = _active()
    assert check_change(m, MonitorMode.LISTEN) is Refusal.SAME_MODE
    assert check_change(m, MonitorMode.BARGE) is None
    assert check_change(monitor_transition(m, MonitorEvent.STOP, s(1)), MonitorMode.BARGE) is Refusal.ENDED


def test_times_never_go_backwards():
    m = monitor_transition(_active(at=10), MonitorEvent.CHANGE, s(5), mode=MonitorMode.BARGE)
    assert m.modes[-1][1] == s(10.1)
    m = monitor_transition(m, MonitorEvent.STOP, s(1))
    assert m.ended_at == s(10.1)
