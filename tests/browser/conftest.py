"""Fixtures of the workspace tests: the workspace on the real API (embedded Postgres, the
other layers faked as in the API tests) for the HTTP and role tests, and Debian's Chromium
driven by Playwright for the browser tests. Screenshots go to build/screenshots/."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import test_utils
from prometheus_client import CollectorRegistry

from hitcall_pbx.api import ApiDeps, build_registry, create_app
from hitcall_pbx.auth import AuthService, Role, ThrottlePolicy
from hitcall_pbx.hooks.targets import WebhookTargets
from hitcall_pbx.livebus import LiveBus
from hitcall_pbx.web import LiveHub, WallboardSources, WebDeps, setup_web
from tests.integration.test_api_support import (
    FAST_PASSWORDS,
    PASSWORD,
    SYSTEM,
    FakeCdrs,
    FakeDialer,
    FakePrivacy,
    FakeRecordings,
    FakeReplay,
    make_recording,
    public_dns,
)

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
LOGIN_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Workspace:
    client: test_utils.TestClient
    pool: asyncpg.Pool
    auth: AuthService
    dialer: FakeDialer
    bus: LiveBus
    hub: LiveHub

    @property
    def base_url(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    async def user(self, username: str, role: Role | str, *, agent: bool = False) -> int:
        row = await self.auth.create_user(username=username, role=role, password=PASSWORD, actor=SYSTEM)
        if agent:
            await self.pool.execute(
                "INSERT INTO agents (number, name, user_id) VALUES ($1, $2, $3)",
                str(1000 + row["id"]),
                f"Agent {username}",
                row["id"],
            )
        return row["id"]

    async def login_cookie(self, username: str) -> str:
        """Logs in through the login form like a browser; returns the session cookie value."""
        page = await self.client.get("/web/login")
        csrf = LOGIN_CSRF.search(await page.text())
        assert csrf is not None
        resp = await self.client.post(
            "/web/login",
            data={"username": username, "password": PASSWORD, "csrf_token": csrf[1]},
            allow_redirects=False,
        )
        assert resp.status == 303, await resp.text()
        return resp.cookies["hitcall_session"].value


@pytest.fixture
async def workspace(db: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[Workspace]:
    async for ws in make_workspace(db, tmp_path, trusted="10.9.9.0/24"):
        yield ws


async def make_workspace(db: asyncpg.Pool, tmp_path: Path, *, trusted: str) -> AsyncIterator[Workspace]:
    """The workspace on the API; `trusted`: the reverse proxies it trusts."""
    dialer = FakeDialer()
    bus = LiveBus()
    deps = ApiDeps(
        pool=db,
        metrics=CollectorRegistry(),
        dialer=dialer,
        cdrs=FakeCdrs(),
        recordings=FakeRecordings(tmp_path, make_recording()),
        privacy=FakePrivacy(tmp_path),
        webhooks=FakeReplay(),
        ari_connected=lambda: True,
        passwords=FAST_PASSWORDS,
        throttle=ThrottlePolicy(),
        webhook_targets=WebhookTargets(resolve=public_dns),
        announce=bus.publish,
    )
    registry = build_registry()
    app = create_app(deps, registry=registry, trusted_proxies=_networks(trusted))
    hub = LiveHub(db, bus, WallboardSources(dialer.live_calls), interval=0.2, db_interval=0.5)
    await hub.start()
    auth = AuthService(db, passwords=FAST_PASSWORDS, role_scopes=registry.role_scopes())
    setup_web(app, WebDeps(db, auth, hub, ping_s=1.0))
    client = test_utils.TestClient(test_utils.TestServer(app))
    await client.start_server()
    try:
        yield Workspace(client, db, auth, dialer, bus, hub)
    finally:
        await hub.close()
        await client.close()


def _networks(text: str) -> Any:
    from hitcall_pbx.core.netaddr import parse_networks

    return parse_networks(text)


# ------------------------------------------------------------------ browser ---
@pytest.fixture(scope="session")
async def chromium() -> AsyncIterator[Any]:
    """Debian's Chromium under Playwright (scripts/bootstrap.sh installs both)."""
    from playwright.async_api import async_playwright

    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), "apt-get install chromium (scripts/bootstrap.sh)"
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()


async def shot(page: Any, name: str) -> Path:
    """A full-page screenshot under build/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def browser_login(page: Any, base_url: str, username: str, password: str = PASSWORD) -> None:
    await page.goto(f"{base_url}/web/login")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("main button[type=submit]")
    await page.wait_for_load_state("domcontentloaded")
