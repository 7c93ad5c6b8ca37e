"""The service as `hitcall serve --api-only` builds it from its settings: HITCALL_METRICS_TOKEN,
HITCALL_METRICS_HOST/PORT and HITCALL_WEBHOOK_ALLOW_NETS reach the API it serves."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import asyncpg

from hitcall_pbx.api import build_registry
from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.auth import AuthService, Role
from hitcall_pbx.settings import Settings
from hitcall_pbx.store.db import dsn_with_database
from tests.integration.test_api_support import FAST_PASSWORDS, SYSTEM
from tests.webhook_receiver import free_port

TOKEN = "t" * 48


async def test_api_only_service_applies_metrics_and_webhook_settings(
    db: asyncpg.Pool, pg_dsn: str, tmp_path: Path
) -> None:
    auth = AuthService(db, passwords=FAST_PASSWORDS, role_scopes=build_registry().role_scopes())
    user = await auth.create_user(username="crm", role=Role.INTEGRATION, password=None, actor=SYSTEM)
    grant = await auth.create_token(
        user_id=user["id"], name="crm", scopes=["webhooks:read", "webhooks:write"], expires_at=None, actor=SYSTEM
    )
    crm = {"Authorization": f"Bearer {grant.token}"}
    http_port, metrics_port = free_port(), free_port()
    settings = Settings(
        database_url=dsn_with_database(pg_dsn, await db.fetchval("SELECT current_database()")),
        data_dir=tmp_path / "var",
        http_port=http_port,
        metrics_token=TOKEN,
        metrics_host="127.0.0.1",
        metrics_port=metrics_port,
        webhook_allow_nets="10.20.0.0/16",
        agi_enabled=False,
    )
    app = HitCall(settings, Options(dialer=False, http=True, migrate=False, agi=False, webhooks=False))
    await app.start()
    api, metrics = f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{metrics_port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{api}/metrics") as resp:
                assert resp.status == 404  # moved to its own listener
            async with http.get(f"{metrics}/metrics") as resp:
                assert resp.status == 401
            async with http.get(f"{metrics}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                assert resp.status == 200 and "hitcall_http_requests" in await resp.text()

            subs = f"{api}/api/v1/webhooks/subscriptions"
            async with http.post(subs, json={"url": "http://10.20.1.5/hooks", "event_types": ["*"]}, headers=crm) as r:
                assert r.status == 201, await r.text()
                assert r.headers["Cache-Control"] == "no-store"
                assert (await r.json())["owner_id"] == user["id"]
            for url in ("http://10.30.0.1/hooks", "http://127.0.0.1:5432/", "http://169.254.169.254/"):
                async with http.post(subs, json={"url": url, "event_types": ["*"]}, headers=crm) as r:
                    assert r.status == 422, url
    finally:
        await app.close()
