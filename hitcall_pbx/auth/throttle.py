"""Login throttling policy (pure).

Failures are counted per key in fixed windows. The keys are (client, user name as
typed) and the client alone: five failures for one user name from one client lock that
pair, twenty from one client (whatever the names) lock the client. A lock never reaches
other clients, so one client guessing, or many clients behind one trusted proxy, cannot
lock a user out for everyone, and a user name that does not exist is throttled exactly
like one that does. Tries refused while locked are only counted (`refused`); the
service writes them to the audit log as one summary when the lock is over.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime, timedelta


class Scope(enum.StrEnum):
    USER = "user"  # one user name from one client
    CLIENT = "client"  # every user name from one client


@dataclass(frozen=True)
class Window:
    """One key's state: failures since window_start, and a lock with the tries it refused."""

    window_start: datetime
    failures: int = 0
    locked_at: datetime | None = None
    locked_until: datetime | None = None
    refused: int = 0


@dataclass(frozen=True)
class ThrottlePolicy:
    max_failures: int = 5  # failures of one user name from one client within window_s that lock the pair
    window_s: int = 300
    lock_s: int = 300  # how long a lock lasts
    ip_max_failures: int = 20  # failures from one client within ip_window_s that lock the client
    ip_window_s: int = 300

    def limits(self, scope: Scope) -> tuple[int, int]:
        """(failures that lock, window seconds) of a scope."""
        if scope is Scope.CLIENT:
            return self.ip_max_failures, self.ip_window_s
        return self.max_failures, self.window_s

    @staticmethod
    def is_locked(window: Window | None, now: datetime) -> bool:
        return window is not None and window.locked_until is not None and window.locked_until > now

    @staticmethod
    def lock_ended(window: Window | None, now: datetime) -> bool:
        return window is not None and window.locked_until is not None and window.locked_until <= now

    def after_failure(self, window: Window | None, scope: Scope, now: datetime) -> Window:
        """The key's state after one more failure: a new window when the last one (or its
        lock) is over; reaching the limit locks the key and restarts the count."""
        limit, seconds = self.limits(scope)
        if window is None or window.locked_until is not None or now - window.window_start >= timedelta(seconds=seconds):
            window = Window(window_start=now)
        failures = window.failures + 1
        if failures >= limit:
            return Window(window.window_start, 0, now, now + timedelta(seconds=self.lock_s), 0)
        return replace(window, failures=failures)

    def after_refusal(self, window: Window) -> Window:
        return replace(window, refused=window.refused + 1)

    def stale_before(self, now: datetime) -> datetime:
        """Unlocked keys whose window started before this count nothing any more."""
        return now - timedelta(seconds=max(self.window_s, self.ip_window_s))
