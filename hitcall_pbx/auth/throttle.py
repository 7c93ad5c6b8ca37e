"""Login throttling policy (pure): locks a username after repeated failures and
refuses a source address that keeps failing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class ThrottlePolicy:
    max_failures: int = 5  # consecutive failures that lock the username
    lock_s: int = 300  # how long the lock lasts
    ip_max_failures: int = 20  # failures from one address within ip_window_s that block it
    ip_window_s: int = 300

    def is_locked(self, locked_until: datetime | None, now: datetime) -> bool:
        return locked_until is not None and locked_until > now

    def after_failure(self, failed_logins: int, now: datetime) -> tuple[int, datetime | None]:
        """The user's new (failed_logins, locked_until) after one more failure.
        Reaching the limit locks the user and restarts the count."""
        count = failed_logins + 1
        if count >= self.max_failures:
            return 0, now + timedelta(seconds=self.lock_s)
        return count, None

    def ip_window_start(self, now: datetime) -> datetime:
        return now - timedelta(seconds=self.ip_window_s)

    def ip_blocked(self, recent_failures: int) -> bool:
        return recent_failures >= self.ip_max_failures
