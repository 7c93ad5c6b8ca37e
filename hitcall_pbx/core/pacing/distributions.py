"""Distributions the pacing model is built from: binomial, Poisson and
Poisson-binomial probabilities, their convolution, and the tabulated ring-to-answer
CDF and talk-time survival function (`PacingStats` keeps them as caches of its
estimates)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

__all__ = ["binomial_pmf", "poisson_binomial_pmf", "poisson_pmf"]

_SQRT1_2: Final = 1.0 / math.sqrt(2.0)


def poisson_binomial_pmf(probs: Sequence[float], size: int | None = None) -> list[float]:
    """P(sum of independent Bernoulli(p_i) = k) for k = 0 .. len(probs), or only the
    first `size` terms (exact for those)."""
    limit = len(probs) + 1 if size is None else max(1, size)
    pmf = [1.0]
    for p in probs:
        q = 1.0 - p
        shifted = [0.0, *pmf]
        pmf.append(0.0)
        pmf = [a * q + b * p for a, b in zip(pmf, shifted)]
        if len(pmf) > limit:
            del pmf[limit:]
    return pmf


def binomial_pmf(n: int, p: float) -> list[float]:
    """P(Binomial(n, p) = k) for k = 0 .. n."""
    if n <= 0 or p <= 0.0:
        return [1.0]
    if p >= 1.0:
        return [0.0] * n + [1.0]
    q = 1.0 - p
    out = [q**n]
    ratio = p / q
    for k in range(1, n + 1):
        out.append(out[-1] * ratio * (n - k + 1) / k)
    return out


def poisson_pmf(mean: float, tail: float = 1e-4) -> list[float]:
    """P(Poisson(mean) = k), cut where the remaining tail is below `tail`; the tail's
    mass is added to the last term (the mean is kept within `tail`)."""
    if mean <= 1e-12:
        return [1.0]
    if mean > 600.0:  # beyond exp() range; never reached with capped lines
        mean = 600.0
    p = math.exp(-mean)
    out = [p]
    acc = p
    k = 0
    limit = mean + 12.0 * math.sqrt(mean) + 12.0
    while acc < 1.0 - tail and k < limit:
        k += 1
        p *= mean / k
        out.append(p)
        acc += p
    out[-1] += max(0.0, 1.0 - acc)
    return out


def _convolve(pmf: list[float], kernel: list[float]) -> list[float]:
    """Distribution of X + Y (X ~ pmf, Y ~ kernel)."""
    if len(kernel) == 1:
        return pmf
    size = len(pmf)
    out = [0.0] * (size + len(kernel) - 1)
    for j, w in enumerate(kernel):
        if w < 1e-15:
            continue
        out[j : j + size] = [a + w * b for a, b in zip(out[j : j + size], pmf)]
    while len(out) > 1 and out[-1] < 1e-13:
        out.pop()
    return out


class _AnswerCdf:
    """Ring-to-answer CDF of answered calls, truncated at the ring timeout, on a grid,
    with the per-step answer probabilities of a call by its elapsed ring time."""

    __slots__ = ("_steps", "inv_step", "table", "timeout")

    STEP = 0.25
    SLOT = 0.5  # ringing calls are grouped by elapsed time in slots of this many seconds
    EARLIEST_S = 2.0

    def __init__(self, mu: float, sigma: float, timeout: float, uniform: float = 0.0) -> None:
        """Log-normal(mu, sigma) truncated at `timeout`, mixed with a share `uniform` of
        answers spread evenly from `EARLIEST_S` (nobody answers at once) to the timeout."""
        self.timeout = timeout
        self.inv_step = 1.0 / self.STEP
        inv = _SQRT1_2 / sigma
        norm = max(0.5 * math.erfc(-(math.log(timeout) - mu) * inv), 1e-12)
        n = int(timeout * self.inv_step) + 1
        lo = min(self.EARLIEST_S, timeout / 2.0)
        table = [0.0]
        for i in range(1, n + 1):
            x = min(i * self.STEP, timeout)
            lognormal = min(1.0, 0.5 * math.erfc(-(math.log(x) - mu) * inv) / norm)
            table.append((1.0 - uniform) * lognormal + uniform * max(0.0, x - lo) / (timeout - lo))
        table[-1] = 1.0
        self.table = table
        self._steps: dict[tuple[int, float, int], tuple[float, tuple[float, ...]]] = {}

    def __call__(self, x: float) -> float:
        if x >= self.timeout:
            return 1.0
        if x <= 0.0:
            return 0.0
        f = x * self.inv_step
        i = int(f)
        t = self.table
        return t[i] + (t[i + 1] - t[i]) * (f - i)

    def steps(self, slot: int, dt: float, count: int) -> tuple[float, tuple[float, ...]]:
        """For a call that has rung slot × SLOT seconds: (CDF now, CDF increments over
        the next `count` steps of dt; index 0 unused)."""
        key = (slot, dt, count)
        hit = self._steps.get(key)
        if hit is None:
            r = slot * self.SLOT
            values = [self(r + k * dt) for k in range(count + 1)]
            hit = (values[0], (0.0, *(values[k] - values[k - 1] for k in range(1, count + 1))))
            if len(self._steps) > 4096:
                self._steps.clear()
            self._steps[key] = hit
        return hit


class _TalkSurvival:
    """Survival function of the (log-normal) talk time on a grid, analytic beyond it,
    with the probability of a call ending inside a window ahead by its elapsed time."""

    __slots__ = ("_windows", "end", "inv", "inv_step", "mu", "table")

    STEP = 1.0

    def __init__(self, mu: float, sigma: float) -> None:
        self.mu = mu
        self.inv = _SQRT1_2 / sigma
        self.inv_step = 1.0 / self.STEP
        self.end = min(4 * 3600.0, math.exp(mu + 4.0 * sigma))
        n = int(self.end * self.inv_step) + 2
        inv = self.inv
        self.table = [1.0] + [0.5 * math.erfc((math.log(i * self.STEP) - mu) * inv) for i in range(1, n + 1)]
        self._windows: dict[tuple[float, float, float], dict[int, tuple[float, float]]] = {}

    def __call__(self, x: float) -> float:
        if x <= 0.0:
            return 1.0
        if x < self.end:
            f = x * self.inv_step
            i = int(f)
            t = self.table
            return t[i] + (t[i + 1] - t[i]) * (f - i)
        return 0.5 * math.erfc((math.log(x) - self.mu) * self.inv)

    def window(self, lo: float, mid: float, end: float) -> dict[int, tuple[float, float]]:
        """Cache for `ending`: half-second slot of elapsed talk → P(call ends within
        (lo, mid], (mid, end] from now | talked that long)."""
        key = (lo, mid, end)
        cache = self._windows.get(key)
        if cache is None:
            if len(self._windows) > 16:
                self._windows.clear()
            cache = self._windows[key] = {}
        return cache

    def ending(self, slot: int, lo: float, mid: float, end: float) -> tuple[float, float]:
        e = slot * 0.5
        s_e = self(e)
        if s_e <= 1e-12:
            return 0.0, 0.0
        s_mid = self(e + mid)
        return (self(e + lo) - s_mid) / s_e, (s_mid - self(e + end)) / s_e
