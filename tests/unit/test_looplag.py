"""Event-loop lag monitor: its statistics, a real blocked loop, the /metrics export."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from hitcall_pbx.looplag import BUCKETS, LoopLagMonitor, quantile
from hitcall_pbx.metrics import MetricsSources, ServiceMetrics


def test_record_fills_cumulative_buckets_max_and_recent_window():
    lag = LoopLagMonitor(window=3)
    for s in (0.0004, 0.05, -0.001, 0.3):  # a negative (early) wake-up counts as 0
        lag.record(s)
    buckets = dict(lag.cumulative_buckets())
    assert buckets[0.001] == 2
    assert buckets[0.05] == 3  # upper bounds are inclusive
    assert buckets[0.25] == 3 and buckets[0.5] == 4 and buckets[float("inf")] == 4
    assert len(buckets) == len(BUCKETS) + 1
    assert lag.count == 4 and lag.max_s == 0.3
    assert lag.sum_s == pytest.approx(0.3504)
    assert list(lag.recent) == [0.05, 0.0, 0.3]  # window of 3
    assert lag.recent_quantile(0.5) == 0.05 and lag.recent_quantile(1.0) == 0.3


def test_quantile_is_nearest_rank():
    values = [float(i) for i in range(1, 101)]
    assert quantile(values, 0.5) == 50.0
    assert quantile(values, 0.99) == 99.0
    assert quantile(values, 1.0) == 100.0
    assert quantile([], 0.99) == 0.0


def test_bad_interval_or_window_is_refused():
    with pytest.raises(ValueError):
        LoopLagMonitor(interval=0)
    with pytest.raises(ValueError):
        LoopLagMonitor(window=0)


async def test_a_blocked_loop_shows_as_lag_and_is_logged_once():
    lag = LoopLagMonitor(interval=0.01, stall_s=0.1)
    with capture_logs() as logs:
        await lag.start()
        await asyncio.sleep(0.1)
        assert lag.count >= 3
        time.sleep(0.15)  # the whole loop is blocked, as by CPU-bound work in a handler
        await asyncio.sleep(0.05)
        time.sleep(0.15)
        await asyncio.sleep(0.05)
        await lag.close()
    assert lag.max_s >= 0.12
    assert lag.recent_quantile(0.5) < 0.05  # the unblocked wake-ups stay prompt
    stalls = [e for e in logs if e["event"] == "loop.stalled"]
    assert len(stalls) == 1 and stalls[0]["log_level"] == "warning" and stalls[0]["lag_ms"] >= 120
    count = lag.count
    await asyncio.sleep(0.05)
    assert lag.count == count  # closed: no more samples


async def test_service_metrics_export_loop_lag_and_process_memory():
    lag = LoopLagMonitor()
    for s in (0.002, 0.004, 0.08):
        lag.record(s)
    registry = CollectorRegistry()
    nothing = MetricsSources(
        ari_connected=lambda: False,
        ari_reconnects=lambda: 0,
        agent_counts=dict,
        call_counts=dict,
        pacing_stats=dict,
        cdr_backlog=lambda: 0,
        journal_backlog=lambda: 0,
        loop_lag=lag,
    )
    ServiceMetrics(registry, nothing)
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    hist = {(s.name, s.labels.get("le")): s.value for s in families["hitcall_event_loop_lag_seconds"].samples}
    assert hist[("hitcall_event_loop_lag_seconds_bucket", "0.005")] == 2
    assert hist[("hitcall_event_loop_lag_seconds_bucket", "0.05")] == 2
    assert hist[("hitcall_event_loop_lag_seconds_bucket", "+Inf")] == 3
    assert hist[("hitcall_event_loop_lag_seconds_count", None)] == 3
    assert families["hitcall_event_loop_lag_max_seconds"].samples[0].value == 0.08
    recent = {s.labels["quantile"]: s.value for s in families["hitcall_event_loop_lag_recent_seconds"].samples}
    assert recent == {"0.5": 0.004, "0.99": 0.08, "1": 0.08}
    assert families["process_resident_memory_bytes"].samples[0].value > 10 * 2**20
