"""Event-loop lag: how late the loop wakes a periodic sleep.

A small task sleeps `interval` seconds over and over; the lag of each wake-up
(actual - requested) is what every timer, socket read and ARI event waited on
top of its own work at that moment. The monitor keeps cumulative histogram
counts (exported to /metrics), the maximum, and the last `window` samples for
recent quantiles. A wake-up later than `stall_s` is logged (at most once a
minute) so that a stall shows in the log as well as in the metrics.
"""

from __future__ import annotations

import asyncio
import bisect
import math
from collections import deque

from .logs import get_logger

log = get_logger("hitcall.looplag")

# Upper bounds (seconds); the 0.05 edge is the service's p99 target.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STALL_LOG_EVERY_S = 60.0


def quantile(samples: list[float], q: float) -> float:
    """Nearest-rank quantile of unsorted samples (0.0 when empty)."""
    if not samples:
        return 0.0
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


class LoopLagMonitor:
    def __init__(self, *, interval: float = 0.1, window: int = 600, stall_s: float = 0.5) -> None:
        if interval <= 0 or window < 1:
            raise ValueError("interval > 0 and window >= 1")
        self.interval = interval
        self.stall_s = stall_s
        self.bucket_counts = [0] * (len(BUCKETS) + 1)  # per bucket, the last one is +Inf
        self.count = 0
        self.sum_s = 0.0
        self.max_s = 0.0
        self.recent: deque[float] = deque(maxlen=window)
        self._task: asyncio.Task[None] | None = None
        self._stall_logged_at = -math.inf

    def record(self, lag_s: float) -> None:
        lag_s = max(0.0, lag_s)
        self.bucket_counts[bisect.bisect_left(BUCKETS, lag_s)] += 1
        self.count += 1
        self.sum_s += lag_s
        self.max_s = max(self.max_s, lag_s)
        self.recent.append(lag_s)

    def cumulative_buckets(self) -> list[tuple[float, int]]:
        """(upper bound, samples <= bound) pairs ending with (+Inf, count), Prometheus style."""
        out, total = [], 0
        for bound, n in zip((*BUCKETS, math.inf), self.bucket_counts):
            total += n
            out.append((bound, total))
        return out

    def recent_quantile(self, q: float) -> float:
        return quantile(list(self.recent), q)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="looplag")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            now = loop.time()
            lag = now - due
            self.record(lag)
            if lag >= self.stall_s and now - self._stall_logged_at >= STALL_LOG_EVERY_S:
                self._stall_logged_at = now
                log.warning("loop.stalled", lag_ms=round(lag * 1000, 1), max_ms=round(self.max_s * 1000, 1))
