"""Which alarms are about one node, and the names per-node alarms are stored under."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from hitcall_pbx.core.alarms import (
    PER_NODE,
    AlarmInputs,
    CampaignAbandon,
    evaluate,
    is_per_node,
    own_alarm,
    stored_name,
)

NODE_IDS = st.from_regex(r"\A[A-Za-z0-9_.-]{1,64}\Z")  # what the nodes table admits
ALARM_NAME = re.compile(r"^[a-z][a-z0-9_.]*$")  # what the alarms table admits
CLUSTER = ("webhook_dead_letters", "webhook_backlog_old", "purge_overdue")


def test_every_alarm_evaluate_can_raise_is_classified():
    everything = AlarmInputs(
        ari_connected=False,
        ari_down_s=60,
        db_ok=False,
        db_down_s=60,
        spool_backlog=5,
        spool_trend=1,
        campaigns=(CampaignAbandon(7, cap=0.03, today_rate=0.5, rate_30_days=0.5, answered_today=100),),
        webhook_dead=1,
        webhook_oldest_pending_age_s=1e6,
        purge_interval_s=10,
        last_purge_success_age_s=1e6,
        last_purge_failed=True,
        disk_free_bytes=1,
        disk_total_bytes=10**12,
    )
    names = set(evaluate(everything))
    per_node = {n for n in names if is_per_node(n)}
    assert per_node == {
        "ari_down",
        "db_down",
        "cdr_spool_growing",
        "recordings_disk_low",
        "purge_failing",
        "campaign.7.abandon_over_cap",
        "campaign.7.abandon_near_cap",
    }
    assert names - per_node == set(CLUSTER)
    assert "journal_backlog" in PER_NODE


def test_a_per_node_alarm_is_stored_under_its_node_and_a_cluster_alarm_under_its_name():
    assert stored_name("ari_down", "web-1") == "ari_down.node.web_d1"
    assert stored_name("campaign.7.abandon_over_cap", "Web_2") == "campaign.7.abandon_over_cap.node._cweb_u2"
    assert stored_name("webhook_dead_letters", "web-1") == "webhook_dead_letters"
    assert stored_name("ari_down", None) == "ari_down"  # one process, no node id: names as before


def test_a_node_owns_its_own_and_the_cluster_alarms_and_not_another_nodes():
    assert own_alarm("ari_down.node.web_d1", "web-1") == "ari_down"
    assert own_alarm("ari_down.node.web_d2", "web-1") is None
    assert own_alarm("webhook_dead_letters", "web-1") == "webhook_dead_letters"
    assert own_alarm("ari_down.node.web_d2", None) == "ari_down.node.web_d2"  # a single process owns all


@given(a=NODE_IDS, b=NODE_IDS, name=st.sampled_from([*sorted(PER_NODE), "campaign.12.abandon_near_cap"]))
def test_stored_names_are_valid_one_to_one_and_owned_only_by_their_node(a, b, name):
    stored = stored_name(name, a)
    assert ALARM_NAME.match(stored)
    assert own_alarm(stored, a) == name
    assert (stored_name(name, b) == stored) == (a == b)
    assert own_alarm(stored, b) == (name if a == b else None)


def test_node_ids_alike_in_the_table_characters_stay_apart():
    ids = ["a-b", "a_b", "aB", "ab", "a.b", "A-b", "a_d", "a-", "a_db", "node.web", "web"]
    for name in ("ari_down", "campaign.7.abandon_over_cap"):
        stored = {i: stored_name(name, i) for i in ids}
        assert len(set(stored.values())) == len(ids)
        for owner, s in stored.items():
            assert [i for i in ids if own_alarm(s, i) is not None] == [owner]
