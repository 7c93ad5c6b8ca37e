"""/metrics of the service: each gauge reads what its source in `MetricsSources` reports."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hitcall_pbx.core.pacing import PacingStats
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
