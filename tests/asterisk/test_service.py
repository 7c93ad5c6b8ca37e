"""The whole service as `hitcall serve` builds it: REST, health, metrics, on real Asterisk."""

from __future__ import annotations

import socket

import aiohttp
import pytest
from structlog.testing import capture_logs

from hitcall_pbx.app import HitCall, Options

pytestmark = pytest.mark.asterisk


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_service_health_metrics_and_openapi(service_settings):
    settings = service_settings.model_copy(update={"http_port": _free_port(), "agi_port": _free_port()})
    async with HitCall(settings, Options(http=True, agi=True)) as app:
        base = f"http://127.0.0.1:{app.http_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 200, await r.text()
            async with http.get(f"{base}/metrics") as r:
                text = await r.text()
                assert "hitcall_ari_connected 1.0" in text
                assert "hitcall_cdr_spool_backlog 0.0" in text
                assert "hitcall_call_journal_backlog 0.0" in text
                assert "hitcall_ari_reconnects 0.0" in text
                assert "hitcall_event_loop_lag_max_seconds" in text
            async with http.get(f"{base}/api/v1/openapi.json") as r:
                doc = await r.json()
                assert doc["openapi"].startswith("3.1")
            async with http.get(f"{base}/api/v1/campaigns") as r:
                assert r.status == 401
                assert (await r.json())["error"] == "unauthorized"
        # The alarm monitor reads the running service: connected ARI, reachable Postgres.
        assert app.alarms is not None
        with capture_logs() as logs:
            await app.alarms.check_once()
        assert not [e for e in logs if e["event"] == "alarm.gather_failed"], logs
        assert not {"ari_down", "db_down", "cdr_spool_growing"} & set(app.alarms.active)
        # ARI down → not ready.
        await app.ari.close()
        async with aiohttp.ClientSession() as http, http.get(f"{base}/readyz") as r:
            assert r.status == 503
