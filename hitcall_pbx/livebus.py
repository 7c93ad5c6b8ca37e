"""In-process publish/subscribe of the service's domain events, for live screens.

The call journal hands every event it queues for the webhook outbox (call.*,
agent.state_changed, preview.offered, alarm.*) to `LiveBus.publish` as well, on the
event loop, at the moment it happens: the workspace's wallboard and agent pages are
pushed the same events the webhooks carry, with no polling of the database per viewer.
The bus is best effort and never blocks a publisher: each subscriber has a bounded
queue; one that falls behind loses its oldest events and is told so (`lagged`), so
that it reloads its view. The outbox stays the durable record.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .logs import get_logger

log = get_logger("hitcall.livebus")


@dataclass(frozen=True)
class LiveEvent:
    type: str
    subject: str
    payload: dict[str, Any]
    at: float = field(default_factory=time.time)


class LiveEvents(Protocol):
    """What a live screen needs: a subscription to the service's domain events."""

    def subscribe(self, accept: Callable[[LiveEvent], bool] | None = None) -> Subscription: ...


class Subscription:
    """Events for one subscriber, oldest first; `lagged` once events were dropped."""

    def __init__(self, bus: LiveBus, accept: Callable[[LiveEvent], bool] | None, limit: int) -> None:
        self._bus = bus
        self._accept = accept
        self._queue: deque[LiveEvent] = deque(maxlen=limit)
        self._wake = asyncio.Event()
        self.lagged = False
        self.closed = False

    def offer(self, event: LiveEvent) -> None:
        if self._accept is not None and not self._accept(event):
            return
        if len(self._queue) == self._queue.maxlen:
            self.lagged = True
        self._queue.append(event)
        self._wake.set()

    async def get(self, timeout: float | None = None) -> LiveEvent | None:
        """The next event, or None after `timeout` s without one (or when closed)."""
        while not self._queue:
            if self.closed:
                return None
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return None
        return self._queue.popleft()

    def close(self) -> None:
        self.closed = True
        self._bus._subs.discard(self)
        self._wake.set()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LiveBus:
    def __init__(self, *, queue_limit: int = 1000) -> None:
        self.queue_limit = queue_limit
        self._subs: set[Subscription] = set()
        self.published = 0

    def publish(self, event_type: str, subject: str, payload: dict[str, Any]) -> None:
        """Hand an event to every subscriber (never raises into the publisher)."""
        self.published += 1
        event = LiveEvent(event_type, subject, payload)
        for sub in list(self._subs):
            try:
                sub.offer(event)
            except Exception:
                log.exception("livebus.subscriber_failed", event_type=event_type)

    def subscribe(self, accept: Callable[[LiveEvent], bool] | None = None) -> Subscription:
        sub = Subscription(self, accept, self.queue_limit)
        self._subs.add(sub)
        return sub

    @property
    def subscribers(self) -> int:
        return len(self._subs)
