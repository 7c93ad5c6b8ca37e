"""/metrics can require a bearer token (HITCALL_METRICS_TOKEN) and can move to a listener of
its own (HITCALL_METRICS_HOST / HITCALL_METRICS_PORT)."""

from __future__ import annotations

import pytest
from aiohttp import test_utils

from hitcall_pbx.api.app import create_metrics_app
from hitcall_pbx.auth import Role
from hitcall_pbx.errors import ConfigError
from hitcall_pbx.settings import load_settings
from tests.integration.test_api_support import Api, api  # noqa: F401  (fixture)

METRICS_TOKEN = "m" * 40


async def test_metrics_token_is_required_when_configured(api: Api) -> None:
    assert (await api.client.get("/metrics")).status == 200  # not configured: open, as before
    api.deps.metrics_token = METRICS_TOKEN
    admin = await api.as_role(Role.ADMIN)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer " + METRICS_TOKEN[:-1]}, admin):
        resp = await api.client.get("/metrics", headers=headers)
        assert resp.status == 401, headers
        assert (await resp.json())["error"] == "unauthorized"
    resp = await api.client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert resp.status == 200 and "hitcall_http_requests" in await resp.text()


async def test_metrics_on_their_own_listener(api: Api) -> None:
    api.deps.metrics_on_api = False
    assert (await api.client.get("/metrics")).status == 404
    server = test_utils.TestServer(create_metrics_app(api.deps.metrics, token=METRICS_TOKEN))
    client = test_utils.TestClient(server)
    await client.start_server()
    try:
        assert (await client.get("/metrics")).status == 401
        resp = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert resp.status == 200 and "hitcall_http_requests" in await resp.text()
        assert (await client.get("/api/v1/me")).status == 404  # nothing else there
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"HITCALL_METRICS_TOKEN": "short"}, "HITCALL_METRICS_TOKEN"),
        ({"HITCALL_METRICS_TOKEN": "x" * 31 + " "}, "HITCALL_METRICS_TOKEN"),
        ({"HITCALL_METRICS_PORT": "0"}, "HITCALL_METRICS_PORT"),
        ({"HITCALL_METRICS_PORT": "metrics"}, "HITCALL_METRICS_PORT"),
    ],
)
def test_metrics_settings_are_validated(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], name: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert name in err.value.message


def test_metrics_settings_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HITCALL_METRICS_TOKEN", METRICS_TOKEN)
    monkeypatch.setenv("HITCALL_METRICS_HOST", "10.0.0.5")
    monkeypatch.setenv("HITCALL_METRICS_PORT", "9464")
    s = load_settings()
    assert s.metrics_token is not None and s.metrics_token.get_secret_value() == METRICS_TOKEN
    assert (s.metrics_host, s.metrics_port) == ("10.0.0.5", 9464)
    assert METRICS_TOKEN not in repr(s)
