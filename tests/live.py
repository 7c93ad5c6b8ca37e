"""Fixtures for tests against the real sandboxed Asterisk (needs root), registered by
tests/conftest.py so every test directory (asterisk, reliability) shares one sandbox.

The sandbox is started once per session if it is not running, and stopped at the
end if this session started it. `sandbox2` is the second Asterisk of the same chroot
(ARI http://127.0.0.1:8089/ari, SIP 127.0.0.1:5062, trunk `peer` to the first), under the
same session lock, started and stopped the same way; `ari2` is a test's ARI client on it.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import pytest

from hitcall_pbx.ari import AriRest, Channel
from hitcall_pbx.ari.client import AriClient
from hitcall_pbx.sandbox import Sandbox
from hitcall_pbx.settings import SANDBOX_AGI_SECRET, SANDBOX_ARI_PASSWORD, SANDBOX_ARI_USER, Settings

ARI_URL = "http://127.0.0.1:8088/ari"


@pytest.fixture(scope="session")
def sandbox():
    box = Sandbox()
    with box.exclusive():
        started = box.pid() is None
        box.start()
        yield box
        if started:
            box.stop()


@pytest.fixture(scope="session")
def sandbox2(sandbox):
    """The second sandboxed Asterisk (`Sandbox(instance=2)`), held under `sandbox`'s lock.
    Its FastAGI goes to 127.0.0.1:4573 unless a test calls `sandbox2.set_agi_port`."""
    box = sandbox.second()
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

    async def wait_for(self, etype: str, pred: Callable[[Any], bool] = lambda e: True, timeout: float = 10.0) -> Any:
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
    client.events_log = log  # type: ignore[attr-defined]  # tests attach the event log to the client for later lookups
    await client.start(wait=15)
    yield client
    # Leave nothing behind: hang up the channels this test created.
    try:
        await _clean_up(client, channel=lambda ch: ch.id.startswith("t-"))
    finally:
        await client.close()


@pytest.fixture
async def ari2(sandbox2):
    """A test's ARI client (application `hitcall`) on the second Asterisk, with its event
    log as `events_log`; the channels it created (ids `t-...`) are hung up afterwards."""
    client = AriClient(sandbox2.ari_url, SANDBOX_ARI_USER, SANDBOX_ARI_PASSWORD, "hitcall")
    log = EventLog()
    client.on_event(log)
    client.events_log = log  # type: ignore[attr-defined]  # as in `ari`
    await client.start(wait=15)
    yield client
    try:
        await _clean_up(client, channel=lambda ch: ch.id.startswith("t-"))
    finally:
        await client.close()


async def _clean_up(
    client: AriClient, *, channel: Callable[[Any], bool], bridge: Callable[[Any], bool] = lambda br: False
) -> None:
    """Hang up the matching channels and destroy the matching bridges; what is already gone is fine."""
    for ch in await client.rest.list_channels():
        if channel(ch):
            try:
                await client.rest.hangup(ch.id)
            except Exception:
                pass
    for br in await client.rest.list_bridges():
        if bridge(br):
            try:
                await client.rest.destroy_bridge(br.id)
            except Exception:
                pass


# ------------------------------------------------------------------ service ---
class CountingRest(AriRest):
    """The service's own ARI REST calls, counting the originate requests it sends per
    channel (attempt) id before they go to Asterisk."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        headers: Mapping[str, str],
        *,
        sent: Counter[str],
        urgent: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(session, base_url, headers, urgent=urgent)
        self.sent = sent

    async def originate(self, endpoint: str, channel_id: str, **kw: Any) -> Channel:
        self.sent[channel_id] += 1
        return await super().originate(endpoint, channel_id, **kw)


class OriginateCounter:
    """Originate requests a `HitCall` sends, per channel (attempt) id, across every client
    it builds: run it with `HitCall(settings, options, ari_factory=counter.ari_factory)`."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()

    def ari_factory(self, settings: Settings) -> AriClient:
        from hitcall_pbx.app import ari_client  # the service's own client, with counting requests

        return ari_client(settings, rest_factory=functools.partial(CountingRest, sent=self.sent))


@pytest.fixture
async def service_dsn(pg_dsn, migrated_template):
    """A fresh migrated database for one service run (the service's own pool)."""
    from tests.conftest import _create_database, _drop_database, as_service

    name = await _create_database(pg_dsn, template=migrated_template)
    try:
        yield as_service(pg_dsn, name)  # the service's own role, as in production
    finally:
        await _drop_database(pg_dsn, name)


@pytest.fixture
def service_settings(service_dsn, tmp_path, sandbox):
    from hitcall_pbx.settings import load_settings
    from hitcall_pbx.store.db import dsn_with_user
    from tests.conftest import OWNER, ROLE_PASSWORDS

    return load_settings(
        database_url=service_dsn,
        data_dir=tmp_path,
        ari_url=ARI_URL,
        ari_app="hitcall",
        agi_secret=SANDBOX_AGI_SECRET,  # what the sandbox dialplan passes
        migrate_database_url=dsn_with_user(service_dsn, OWNER, ROLE_PASSWORDS[OWNER]),  # migrations as the owner
    )


@pytest.fixture
async def hangup_agents(sandbox):
    """Hang up every agent phone left in Asterisk after the test (SIPp exits on BYE)."""
    yield
    await _hang_up_agents(ARI_URL)


@pytest.fixture
async def hangup_agents2(sandbox2):
    """`hangup_agents` on the second Asterisk."""
    yield
    await _hang_up_agents(sandbox2.ari_url)


async def _hang_up_agents(ari_url: str) -> None:
    client = AriClient(ari_url, SANDBOX_ARI_USER, SANDBOX_ARI_PASSWORD, "hitcall-cleanup")
    await client.start_rest()
    try:
        await _clean_up(
            client,
            channel=lambda ch: ch.name.startswith(("PJSIP/agent", "Local/")),
            bridge=lambda br: br.id.startswith("hitcall-agent-"),
        )
    finally:
        await client.close()


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_until(pred, timeout: float = 30.0, interval: float = 0.1):
    """Poll an async or sync predicate until it is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
