"""Prometheus metrics of the running service, read at scrape time from the live parts.

The metrics see the service only through `MetricsSources`: a few readings the
composition root (app.py) wires to the ARI client, agent sessions, dialer, CDR writer,
call journal and loop-lag monitor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .core.pacing import PacingStats, PacingView
from .looplag import LoopLagMonitor

__all__ = ["MetricsSources", "ServiceMetrics"]


@dataclass(frozen=True)
class MetricsSources:
    """What the metrics read of the running service, each called at scrape time."""

    ari_connected: Callable[[], bool]  # the ARI events socket is connected now
    ari_reconnects: Callable[[], int]  # since start
    agent_counts: Callable[[], Mapping[str, int]]  # logged-in agents by state
    call_counts: Callable[[], Mapping[tuple[int, str], int]]  # live calls by (campaign id, call state)
    pacing_stats: Callable[[], Mapping[int, PacingStats]]  # by running campaign id
    cdr_backlog: Callable[[], int]  # CDRs in the local spool
    journal_backlog: Callable[[], int]  # call journal writes not yet in Postgres (memory + spool)
    loop_lag: LoopLagMonitor | None = None  # None: no event-loop lag metrics
    pacing_views: Callable[[], Mapping[int, PacingView]] = dict  # each running campaign's latest pacing decision
    node_pools: Callable[[], Mapping[str, int]] = dict  # pools whose lease this node holds -> fencing token
    node_fenced: Callable[[], bool] = lambda: False  # the node fenced itself (no lease renewal in time)


class _Live(Collector):
    def __init__(self, sources: MetricsSources) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        src = self.sources
        ari = GaugeMetricFamily("hitcall_ari_connected", "1 when the ARI events socket is connected")
        ari.add_metric([], 1.0 if src.ari_connected() else 0.0)
        yield ari
        rec = GaugeMetricFamily("hitcall_ari_reconnects", "ARI reconnects since start")
        rec.add_metric([], float(src.ari_reconnects()))
        yield rec
        agents = GaugeMetricFamily("hitcall_agents", "logged-in agents by state", labels=["state"])
        for state, n in src.agent_counts().items():
            agents.add_metric([state], float(n))
        yield agents
        calls = GaugeMetricFamily("hitcall_calls_in_progress", "live calls by campaign", labels=["campaign_id"])
        per: dict[int, int] = {}
        for (cid, _state), n in src.call_counts().items():
            per[cid] = per.get(cid, 0) + n
        for cid, n in per.items():
            calls.add_metric([str(cid)], float(n))
        yield calls
        abandon = GaugeMetricFamily(
            "hitcall_abandon_rate_today", "abandoned / (abandoned + connected) today", labels=["campaign_id"]
        )
        for cid, stats in list(src.pacing_stats().items()):
            abandon.add_metric([str(cid)], stats.today_rate)
        yield abandon
        yield from _pacing(src.pacing_views())
        spool = GaugeMetricFamily("hitcall_cdr_spool_backlog", "CDRs waiting in the local spool for Postgres")
        spool.add_metric([], float(src.cdr_backlog()))
        yield spool
        journal = GaugeMetricFamily(
            "hitcall_call_journal_backlog", "call and agent-state writes waiting for Postgres (memory + spool)"
        )
        journal.add_metric([], float(src.journal_backlog()))
        yield journal
        held = GaugeMetricFamily(
            "hitcall_node_pool_lease_token", "the fencing token of each pool lease this node holds", labels=["pool"]
        )
        for pool, token in list(src.node_pools().items()):
            held.add_metric([pool], float(token))
        yield held
        fenced = GaugeMetricFamily(
            "hitcall_node_fenced", "1 while this node has fenced itself (its leases could not be renewed in time)"
        )
        fenced.add_metric([], 1.0 if src.node_fenced() else 0.0)
        yield fenced


def _pacing(views: Mapping[int, PacingView]) -> Iterator[Metric]:
    """The pacer's latest decision per campaign: what it decided, on what figures, and
    whether a predictive campaign is in progressive fallback and why."""
    label = ["campaign_id"]
    mode = GaugeMetricFamily("hitcall_pacing_mode", "1 for the pacing mode in effect", labels=["campaign_id", "mode"])
    dial = GaugeMetricFamily("hitcall_pacing_dial_now", "calls the latest pacing decision placed", labels=label)
    lines = GaugeMetricFamily(
        "hitcall_pacing_lines_in_flight", "calls not yet with an agent (ringing or answered waiting)", labels=label
    )
    idle = GaugeMetricFamily(
        "hitcall_pacing_predicted_idle_agents", "the model's mean idle agents over the next ring timeout", labels=label
    )
    price = GaugeMetricFamily(
        "hitcall_pacing_abandon_price_seconds", "idle agent-seconds one more expected abandon must save", labels=label
    )
    budget = GaugeMetricFamily(
        "hitcall_pacing_abandon_budget", "abandons left today before the cap (negative: over the cap)", labels=label
    )
    fallback = GaugeMetricFamily(
        "hitcall_pacing_fallback",
        "1 while a predictive campaign dials progressive because it is over the cap",
        labels=["campaign_id", "cause"],
    )
    for cid, view in list(views.items()):
        key = [str(cid)]
        mode.add_metric([*key, view.mode_effective], 1.0)
        dial.add_metric(key, float(view.dial_now))
        lines.add_metric(key, float(view.lines_in_flight))
        if view.predicted_idle_agents is not None:
            idle.add_metric(key, view.predicted_idle_agents)
        if view.abandon_price is not None:
            price.add_metric(key, view.abandon_price)
        if view.budget_left is not None:
            budget.add_metric(key, view.budget_left)
            fallback.add_metric([*key, view.fallback_cause or ""], 1.0 if view.fallback else 0.0)
    yield from (mode, dial, lines, idle, price, budget, fallback)


class _LoopLag(Collector):
    """The event-loop lag monitor (`looplag.LoopLagMonitor`) of the service, when it runs one."""

    def __init__(self, lag: LoopLagMonitor | None) -> None:
        self.lag = lag

    def collect(self) -> Iterator[Metric]:
        lag = self.lag
        if lag is None:
            return
        hist = HistogramMetricFamily("hitcall_event_loop_lag_seconds", "how late the event loop woke a periodic sleep")
        hist.add_metric([], [(floatToGoString(b), float(n)) for b, n in lag.cumulative_buckets()], lag.sum_s)
        yield hist
        peak = GaugeMetricFamily("hitcall_event_loop_lag_max_seconds", "largest event-loop lag since start")
        peak.add_metric([], lag.max_s)
        yield peak
        recent = GaugeMetricFamily(
            "hitcall_event_loop_lag_recent_seconds",
            "event-loop lag quantiles over the last samples (window of the monitor)",
            labels=["quantile"],
        )
        for q in ("0.5", "0.99", "1"):
            recent.add_metric([q], lag.recent_quantile(float(q)))
        yield recent


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry, sources: MetricsSources) -> None:
        registry.register(_Live(sources))
        registry.register(_LoopLag(sources.loop_lag))
        # process_resident_memory_bytes, process_cpu_seconds_total, open fds (Linux /proc).
        ProcessCollector(registry=registry)
        self.purged = Counter("hitcall_purged", "items purged", ["kind"], registry=registry)
        self.purge_failures = Counter("hitcall_purge_failures", "failed purge runs", registry=registry)
        self.purge_skipped = Counter(
            "hitcall_purge_skipped", "purge runs skipped: another node was purging", registry=registry
        )
        self.purge_last_failed: bool | None = None

    def purge_done(self, report: Any) -> None:
        if getattr(report, "skipped", False):  # nothing ran here: the last run's outcome stands
            self.purge_skipped.inc()
            return
        self.purged.labels("recordings").inc(report.recordings_purged)
        self.purged.labels("cdrs").inc(report.attempts_anonymised)
        self.purge_last_failed = False

    def purge_failed(self) -> None:
        self.purge_failures.inc()
        self.purge_last_failed = True
