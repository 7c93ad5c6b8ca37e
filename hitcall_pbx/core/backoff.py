"""Capped exponential backoff with full jitter (pure: the random source is passed in)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base: float = 0.1
    cap: float = 1.0
    factor: float = 2.0

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the delay before retry number `attempt` (0-based)."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        # Avoid float overflow for very large attempt counts.
        exp = min(attempt, 64)
        return min(self.cap, self.base * self.factor**exp)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [ceiling/2, ceiling] so retries spread but never stall at 0."""
        top = self.ceiling(attempt)
        r = (rng or random).random()
        return top / 2 + r * top / 2
