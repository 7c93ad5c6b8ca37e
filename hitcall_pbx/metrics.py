"""Prometheus metrics of the running service, read at scrape time from the live parts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class _Live(Collector):
    def __init__(self, app: Any) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        app = self.app
        ari = GaugeMetricFamily("hitcall_ari_connected", "1 when the ARI events socket is connected")
        ari.add_metric([], 1.0 if app.ari is not None and app.ari.connected.is_set() else 0.0)
        yield ari
        rec = GaugeMetricFamily("hitcall_ari_reconnects", "ARI reconnects since start")
        rec.add_metric([], float(app.ari.stats.reconnects) if app.ari else 0.0)
        yield rec
        agents = GaugeMetricFamily("hitcall_agents", "logged-in agents by state", labels=["state"])
        for state, n in (app.sessions.counts() if app.sessions else {}).items():
            agents.add_metric([state], float(n))
        yield agents
        calls = GaugeMetricFamily("hitcall_calls_in_progress", "live calls by campaign", labels=["campaign_id"])
        abandon = GaugeMetricFamily(
            "hitcall_abandon_rate_today", "abandoned / (abandoned + connected) today", labels=["campaign_id"]
        )
        if app.dialer is not None:
            per: dict[int, int] = {}
            for c in app.dialer.calls.values():
                per[c.campaign.id] = per.get(c.campaign.id, 0) + 1
            for cid, n in per.items():
                calls.add_metric([str(cid)], float(n))
            for cid, stats in app.dialer.stats.items():
                abandon.add_metric([str(cid)], stats.today_rate)
        yield calls
        yield abandon
        spool = GaugeMetricFamily("hitcall_cdr_spool_backlog", "CDRs waiting in the local spool for Postgres")
        spool.add_metric([], float(app.cdr.spool_backlog) if app.cdr is not None else 0.0)
        yield spool
        journal = GaugeMetricFamily(
            "hitcall_call_journal_backlog", "call and agent-state writes waiting for Postgres (memory + spool)"
        )
        journal.add_metric([], float(app.journal.backlog) if app.journal is not None else 0.0)
        yield journal


class _LoopLag(Collector):
    """The event-loop lag monitor (`looplag.LoopLagMonitor`) of the app, when it runs one."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        lag = getattr(self.app, "looplag", None)
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
    def __init__(self, registry: CollectorRegistry, app: Any) -> None:
        registry.register(_Live(app))
        registry.register(_LoopLag(app))
        # process_resident_memory_bytes, process_cpu_seconds_total, open fds (Linux /proc).
        ProcessCollector(registry=registry)
        self.purged = Counter("hitcall_purged", "items purged", ["kind"], registry=registry)
        self.purge_failures = Counter("hitcall_purge_failures", "failed purge runs", registry=registry)
        self.purge_last_failed: bool | None = None

    def purge_done(self, report: Any) -> None:
        self.purged.labels("recordings").inc(report.recordings_purged)
        self.purged.labels("cdrs").inc(report.attempts_anonymised)
        self.purge_last_failed = False

    def purge_failed(self) -> None:
        self.purge_failures.inc()
        self.purge_last_failed = True
