"""/metrics of the service: each gauge reads what its source in `MetricsSources` reports."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hitcall_pbx.core.compliance import CampaignMode
from hitcall_pbx.core.pacing import PacingSnapshot, PacingStats, pace_decision, pacing_view
from hitcall_pbx.metrics import MetricsSources, ServiceMetrics


def idle(**kw: Any) -> MetricsSources:
    """Sources of a service with nothing going on; `kw` replaces some."""
    base: dict[str, Any] = {
        "ari_connected": lambda: False,
        "ari_reconnects": lambda: 0,
        "agent_counts": dict,
        "call_counts": dict,
        "pacing_stats": dict,
        "cdr_backlog": lambda: 0,
        "journal_backlog": lambda: 0,
    }
    return MetricsSources(**(base | kw))


def scrape(sources: MetricsSources) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    registry = CollectorRegistry()
    ServiceMetrics(registry, sources)
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_each_gauge_reads_its_source_at_scrape_time() -> None:
    abandoned = PacingStats(trusted_volume=1)
    abandoned.observe_connect(3)
    abandoned.observe_abandon(1)
    calls = {(7, "ringing"): 2, (7, "bridged"): 3, (9, "originating"): 1}
    backlog = {"cdr": 4, "journal": 11}
    sources = idle(
        ari_connected=lambda: True,
        ari_reconnects=lambda: 2,
        agent_counts=lambda: {"ready": 3, "paused": 1},
        call_counts=lambda: calls,
        pacing_stats=lambda: {7: abandoned, 9: PacingStats()},
        cdr_backlog=lambda: backlog["cdr"],
        journal_backlog=lambda: backlog["journal"],
    )
    m = scrape(sources)
    assert m["hitcall_ari_connected"] == {(): 1.0} and m["hitcall_ari_reconnects"] == {(): 2.0}
    assert m["hitcall_agents"] == {(("state", "ready"),): 3.0, (("state", "paused"),): 1.0}
    assert m["hitcall_calls_in_progress"] == {(("campaign_id", "7"),): 5.0, (("campaign_id", "9"),): 1.0}
    assert m["hitcall_abandon_rate_today"] == {(("campaign_id", "7"),): 0.25, (("campaign_id", "9"),): 0.0}
    assert m["hitcall_cdr_spool_backlog"] == {(): 4.0} and m["hitcall_call_journal_backlog"] == {(): 11.0}
    assert "hitcall_event_loop_lag_max_seconds" not in m, "no loop-lag monitor, no loop-lag metrics"

    calls.clear()
    backlog["cdr"] = 0
    again = scrape(sources)
    assert "hitcall_calls_in_progress" not in again and again["hitcall_cdr_spool_backlog"] == {(): 0.0}


def test_an_idle_service_exports_zeros_and_no_labelled_series() -> None:
    m = scrape(idle())
    assert m["hitcall_ari_connected"] == {(): 0.0} and m["hitcall_call_journal_backlog"] == {(): 0.0}
    for name in ("hitcall_agents", "hitcall_calls_in_progress", "hitcall_abandon_rate_today"):
        assert name not in m, name


def test_the_pacers_decision_and_figures_are_scraped_per_campaign() -> None:
    snap = PacingSnapshot(
        now=10.0, agents_logged_in=5, agents_ready=1, talk_elapsed_s=(20.0, 40.0, 60.0), dialling_elapsed_s=(2.0,)
    )
    calm, over = PacingStats(), PacingStats()
    calm.observe_connect(1000)
    calm.observe_abandon(10)
    over.observe_connect(100)
    over.observe_abandon(10)
    views = {
        7: pacing_view(pace_decision(CampaignMode.PREDICTIVE, snap, calm), snap, calm),
        8: pacing_view(pace_decision(CampaignMode.PREDICTIVE, snap, over), snap, over),
        9: pacing_view(pace_decision(CampaignMode.PROGRESSIVE, snap, None), snap, None),
    }
    m = scrape(idle(pacing_views=lambda: views))
    c7, c8, c9 = ((("campaign_id", str(c)),) for c in (7, 8, 9))
    assert m["hitcall_pacing_mode"] == {
        (("campaign_id", "7"), ("mode", "predictive")): 1.0,
        (("campaign_id", "8"), ("mode", "progressive-fallback")): 1.0,
        (("campaign_id", "9"), ("mode", "progressive")): 1.0,
    }
    assert m["hitcall_pacing_dial_now"][c7] == views[7].dial_now
    assert m["hitcall_pacing_lines_in_flight"] == {c7: 1.0, c8: 1.0, c9: 1.0}
    assert m["hitcall_pacing_abandon_budget"] == {c7: 0.03 * 1010 - 10, c8: 0.03 * 110 - 10}
    assert set(m["hitcall_pacing_abandon_price_seconds"]) == {c7}
    assert m["hitcall_pacing_abandon_price_seconds"][c7] == views[7].abandon_price
    assert set(m["hitcall_pacing_predicted_idle_agents"]) == {c7}
    assert m["hitcall_pacing_fallback"] == {
        (("campaign_id", "7"), ("cause", "")): 0.0,
        (("campaign_id", "8"), ("cause", "today_over_cap")): 1.0,
    }


def test_the_node_gauges_read_its_pool_leases_and_fencing() -> None:
    state = {"pools": {"main": 3, "ast2": 1}, "fenced": False}
    sources = idle(node_pools=lambda: state["pools"], node_fenced=lambda: state["fenced"])
    m = scrape(sources)
    assert m["hitcall_node_pool_lease_token"] == {(("pool", "main"),): 3.0, (("pool", "ast2"),): 1.0}
    assert m["hitcall_node_fenced"] == {(): 0.0}
    state["pools"], state["fenced"] = {}, True
    m = scrape(sources)
    assert "hitcall_node_pool_lease_token" not in m and m["hitcall_node_fenced"] == {(): 1.0}
