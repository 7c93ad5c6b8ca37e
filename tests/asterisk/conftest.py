"""Fixtures for tests against the real sandboxed Asterisk (needs root).

The sandbox is started once per session if it is not running, and stopped at the
end if this session started it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from hitcall_pbx.ari.client import AriClient
from hitcall_pbx.sandbox import Sandbox
from hitcall_pbx.settings import SANDBOX_ARI_PASSWORD, SANDBOX_ARI_USER

ARI_URL = "http://127.0.0.1:8088/ari"


@pytest.fixture(scope="session")
def sandbox():
    box = Sandbox()
    started = box.pid() is None
    box.start()
    yield box
    if started:
        box.stop()


class EventLog:
    """Collects ARI events; tests wait for the one they expect."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self._cond = asyncio.Condition()

    async def __call__(self, event: Any) -> None:
        async with self._cond:
            self.events.append((time.monotonic(), event))
            self._cond.notify_all()

    async def wait_for(self, etype: str, pred: Callable[[Any], bool] = lambda e: True,
                       timeout: float = 10.0) -> Any:
        def find():
            for _, e in self.events:
                if getattr(e, "type", None) == etype and pred(e):
                    return e
            return None

        async with self._cond:
            return await asyncio.wait_for(self._cond.wait_for(find), timeout)

    def of_type(self, etype: str) -> list[Any]:
        return [e for _, e in self.events if getattr(e, "type", None) == etype]


@pytest.fixture
async def ari(sandbox):
    client = AriClient(ARI_URL, SANDBOX_ARI_USER, SANDBOX_ARI_PASSWORD, "hitcall")
    log = EventLog()
    client.on_event(log)
    client.events_log = log  # type: ignore[attr-defined]
    await client.start(wait=15)
    yield client
    # Leave nothing behind: hang up the channels this app still holds.
    try:
        for ch in await client.rest.list_channels():
            if ch.id.startswith("t-"):
                try:
                    await client.rest.hangup(ch.id)
                except Exception:
                    pass
    finally:
        await client.close()
