import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitcall_pbx.core.alarms import GIB, AlarmInputs, CampaignAbandon, JournalHealth, Thresholds, diff, evaluate

T = Thresholds()


def names(inputs, active=None):
    return set(evaluate(inputs, T, active))


def campaign(rate, cap=0.03, rate_30=0.0, answered=100.0):
    return CampaignAbandon(campaign_id=7, cap=cap, today_rate=rate, rate_30_days=rate_30, answered_today=answered)


def test_healthy_service_has_no_alarms():
    assert (
        names(
            AlarmInputs(
                campaigns=(campaign(0.01),),
                purge_interval_s=3600,
                last_purge_success_age_s=10,
                last_purge_failed=False,
                disk_free_bytes=50 * GIB,
                disk_total_bytes=100 * GIB,
            )
        )
        == set()
    )


def test_ari_down_only_after_grace():
    assert names(AlarmInputs(ari_connected=False, ari_down_s=4.9)) == set()
    alarm = evaluate(AlarmInputs(ari_connected=False, ari_down_s=5.0))["ari_down"]
    assert alarm.severity == "critical" and alarm.details == {"down_s": 5.0}


def test_db_down_after_grace():
    assert names(AlarmInputs(db_ok=False, db_down_s=1)) == set()
    assert names(AlarmInputs(db_ok=False, db_down_s=6)) == {"db_down"}


def test_spool_growing_raises_holds_while_flat_and_clears_when_draining_or_empty():
    assert names(AlarmInputs(spool_backlog=5, spool_trend=0)) == set()
    active = evaluate(AlarmInputs(spool_backlog=5, spool_trend=5))
    assert set(active) == {"cdr_spool_growing"}
    assert names(AlarmInputs(spool_backlog=5, spool_trend=0), active) == {"cdr_spool_growing"}
    assert names(AlarmInputs(spool_backlog=3, spool_trend=-2), active) == set()
    assert names(AlarmInputs(spool_backlog=0, spool_trend=0), active) == set()


def test_abandon_near_cap_with_hysteresis():
    near = "campaign.7.abandon_near_cap"
    assert names(AlarmInputs(campaigns=(campaign(0.0239),))) == set()
    active = evaluate(AlarmInputs(campaigns=(campaign(0.024),)))
    assert set(active) == {near}
    assert "2.40 %" in active[near].message and active[near].details["cap"] == 0.03
    # Between 70 % and 80 % of the cap it stays raised, below 70 % it clears.
    assert names(AlarmInputs(campaigns=(campaign(0.022),)), active) == {near}
    assert names(AlarmInputs(campaigns=(campaign(0.0209),)), active) == set()


def test_abandon_over_cap_today_or_30_days():
    over = {"campaign.7.abandon_near_cap", "campaign.7.abandon_over_cap"}
    assert names(AlarmInputs(campaigns=(campaign(0.031),))) == over
    assert names(AlarmInputs(campaigns=(campaign(0.0, rate_30=0.04),))) == over
    assert names(AlarmInputs(campaigns=(campaign(0.03),))) == {"campaign.7.abandon_near_cap"}


def test_today_rate_counts_only_with_enough_answered_calls():
    assert names(AlarmInputs(campaigns=(campaign(1.0, answered=3),))) == set()
    assert names(AlarmInputs(campaigns=(campaign(1.0, answered=20),))) != set()


def test_zero_cap_alarms_only_on_abandons():
    assert names(AlarmInputs(campaigns=(campaign(0.0, cap=0.0),))) == set()
    assert names(AlarmInputs(campaigns=(campaign(0.01, cap=0.0),))) == {"campaign.7.abandon_over_cap"}


def test_campaign_gone_clears_its_alarms():
    active = evaluate(AlarmInputs(campaigns=(campaign(0.05),)))
    assert names(AlarmInputs(), active) == set()


def test_webhook_alarms_and_unknown_stats_keep_state():
    assert names(AlarmInputs(webhook_dead=1)) == {"webhook_dead_letters"}
    assert names(AlarmInputs(webhook_oldest_pending_age_s=601)) == {"webhook_backlog_old"}
    assert names(AlarmInputs(webhook_oldest_pending_age_s=600)) == set()
    active = evaluate(AlarmInputs(webhook_dead=2, webhook_oldest_pending_age_s=900))
    assert names(AlarmInputs(webhook_dead=None, webhook_oldest_pending_age_s=None), active) == set(active)
    assert names(AlarmInputs(webhook_dead=None), {}) == set()
    assert names(AlarmInputs(webhook_dead=0), active) == set()


def test_purge_failing_and_overdue():
    base = dict(purge_interval_s=100.0, last_purge_success_age_s=50.0, last_purge_failed=False)
    assert names(AlarmInputs(**base)) == set()
    assert names(AlarmInputs(**base | {"last_purge_failed": True})) == {"purge_failing"}
    assert names(AlarmInputs(**base | {"last_purge_success_age_s": 200.0})) == set()
    assert names(AlarmInputs(**base | {"last_purge_success_age_s": 200.1})) == {"purge_overdue"}
    # No scheduled purge: no purge alarms.
    assert names(AlarmInputs(purge_interval_s=None, last_purge_failed=True, last_purge_success_age_s=1e9)) == set()
    active = evaluate(AlarmInputs(**base | {"last_purge_failed": True, "last_purge_success_age_s": 1e4}))
    assert names(AlarmInputs(purge_interval_s=100.0), active) == {"purge_failing", "purge_overdue"}


def test_disk_low_by_share_or_bytes_with_hysteresis():
    assert names(AlarmInputs(disk_free_bytes=9 * GIB, disk_total_bytes=100 * GIB)) == {"recordings_disk_low"}
    assert names(AlarmInputs(disk_free_bytes=GIB - 1, disk_total_bytes=2 * GIB)) == {"recordings_disk_low"}
    active = evaluate(AlarmInputs(disk_free_bytes=9 * GIB, disk_total_bytes=100 * GIB))
    assert names(AlarmInputs(disk_free_bytes=11 * GIB, disk_total_bytes=100 * GIB), active) == set(active)
    assert names(AlarmInputs(disk_free_bytes=12 * GIB, disk_total_bytes=100 * GIB), active) == set()
    assert names(AlarmInputs(disk_free_bytes=None), active) == set(active)


def test_diff_by_name_ignores_changed_details():
    before = evaluate(AlarmInputs(spool_backlog=5, spool_trend=5))
    now = evaluate(AlarmInputs(spool_backlog=9, spool_trend=4, webhook_dead=1), T, before)
    raised, cleared = diff(before, now)
    assert [a.name for a in raised] == ["webhook_dead_letters"] and cleared == []
    raised, cleared = diff(now, {})
    assert raised == [] and [a.name for a in cleared] == ["cdr_spool_growing", "webhook_dead_letters"]


def test_alarm_names_match_the_table_check():
    every = evaluate(
        AlarmInputs(
            ari_connected=False,
            ari_down_s=9,
            db_ok=False,
            db_down_s=9,
            spool_backlog=1,
            spool_trend=1,
            campaigns=(campaign(0.5),),
            webhook_dead=1,
            webhook_oldest_pending_age_s=1e4,
            purge_interval_s=1,
            last_purge_success_age_s=1e4,
            last_purge_failed=True,
            disk_free_bytes=0,
            disk_total_bytes=1,
        )
    )
    assert len(every) == 10
    assert all(re.fullmatch(r"[a-z][a-z0-9_.]*", n) for n in every)


def test_bad_thresholds_rejected():
    with pytest.raises(ValueError):
        Thresholds(abandon_near_ratio=0.6, abandon_near_clear_ratio=0.7)
    with pytest.raises(ValueError):
        Thresholds(disk_clear_ratio=0.05)


# ------------------------------------------------------------------ properties


campaigns = st.builds(
    CampaignAbandon,
    campaign_id=st.integers(1, 3),
    cap=st.sampled_from([0.0, 0.01, 0.03, 0.2]),
    today_rate=st.floats(0, 1),
    rate_30_days=st.floats(0, 1),
    answered_today=st.floats(0, 200),
).map(lambda c: (c,))
optional_age = st.none() | st.floats(0, 1e5)
inputs = st.builds(
    AlarmInputs,
    ari_connected=st.booleans(),
    ari_down_s=st.floats(0, 20),
    db_ok=st.booleans(),
    db_down_s=st.floats(0, 20),
    spool_backlog=st.integers(0, 50),
    spool_trend=st.integers(-10, 10),
    campaigns=st.just(()) | campaigns,
    webhook_dead=st.none() | st.integers(0, 3),
    webhook_oldest_pending_age_s=optional_age,
    purge_interval_s=st.none() | st.floats(1, 1e4),
    last_purge_success_age_s=optional_age,
    last_purge_failed=st.none() | st.booleans(),
    disk_free_bytes=st.none() | st.integers(0, 100 * GIB),
    disk_total_bytes=st.sampled_from([None, 0, 2 * GIB, 100 * GIB]),
    journal=st.none()
    | st.builds(
        JournalHealth, backlog=st.integers(0, 60_000), spool_backlog=st.integers(0, 50), failing_s=st.floats(0, 20)
    ),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(inputs, min_size=1, max_size=15))
def test_never_raised_twice_without_a_clear(sequence):
    active: dict = {}
    raised_now: set[str] = set()
    for snapshot in sequence:
        now = evaluate(snapshot, T, active)
        raised, cleared = diff(active, now)
        for alarm in raised:
            assert alarm.name not in raised_now
            raised_now.add(alarm.name)
        for alarm in cleared:
            assert alarm.name in raised_now
            raised_now.discard(alarm.name)
        assert raised_now == set(now)
        active = now


@settings(max_examples=150, deadline=None)
@given(inputs, st.integers(2, 5))
def test_constant_input_changes_nothing_after_the_first_evaluation(snapshot, repeats):
    active = evaluate(snapshot, T, {})
    for _ in range(repeats):
        now = evaluate(snapshot, T, active)
        assert diff(active, now) == ([], [])
        active = now


def test_journal_backlog_raises_on_failing_writes_or_a_large_backlog_and_holds_until_drained():
    t = Thresholds(journal_failing_s=10, journal_backlog=100)

    def journal(active, **health):
        return {
            n: a
            for n, a in evaluate(AlarmInputs(journal=JournalHealth(**health)), t, active).items()
            if n == "journal_backlog"
        }

    assert journal({}, backlog=40, spool_backlog=30, failing_s=9) == {}
    failing = journal({}, backlog=40, spool_backlog=30, failing_s=10)
    [alarm] = failing.values()
    assert alarm.name == "journal_backlog" and alarm.severity == "critical" and alarm.details["backlog"] == 40
    assert re.fullmatch(r"[a-z][a-z0-9_.]*", alarm.name)
    assert journal({}, backlog=100)["journal_backlog"].severity == "major"
    # Postgres is back, the spool still replaying: held; drained: cleared.
    assert set(journal(failing, backlog=20, spool_backlog=20)) == {"journal_backlog"}
    assert journal(failing, backlog=3) == {}
    # No journal in the process: no journal alarm.
    assert "journal_backlog" not in evaluate(AlarmInputs(), t, failing)
