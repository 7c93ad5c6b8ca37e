"""Deeply nested JSON bodies: a clear 400 in the standard error shape, nothing written and no
traceback in the log, on the public login route and on authenticated JSON routes alike."""

from __future__ import annotations

import logging

import pytest
from structlog.testing import capture_logs

from hitcall_pbx.auth import Role
from tests.integration.test_api_support import Api, api  # noqa: F401  (fixture)

DEEP = 100_000
BODIES = {
    "open arrays": "[" * DEEP,
    "closed arrays": "[" * DEEP + "]" * DEEP,
    "objects": '{"a":' * DEEP + "1" + "}" * DEEP,
    "username nested": '{"username": ' + "[" * DEEP + "]" * DEEP + ', "password": "x"}',
    # within the interpreter's recursion limit, deeper than any request model
    "moderately deep": '{"username": "u", "password": "p", "x": ' + "[" * 500 + "]" * 500 + "}",
}


def _assert_no_traceback(logs: list[dict], caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture) -> None:
    assert not [e for e in logs if e.get("log_level") in ("error", "critical") or "exc_info" in e], logs
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.records
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "RecursionError" not in captured.err


@pytest.mark.parametrize("name", sorted(BODIES))
async def test_deeply_nested_login_body_is_400(api: Api, name: str, caplog, capsys) -> None:
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        resp = await api.client.post(
            "/api/v1/auth/login", data=BODIES[name], headers={"Content-Type": "application/json"}
        )
        body = await resp.json()
    assert resp.status == 400, body
    assert set(body) == {"error", "message", "details"}
    assert body["error"] == "malformed_body"
    assert "nested" in body["message"] and isinstance(body["details"]["max_depth"], int)
    _assert_no_traceback(logs, caplog, capsys)
    assert await api.pool.fetchval("SELECT count(*) FROM audit_log WHERE action LIKE 'auth.%'") == 0


async def test_deeply_nested_body_on_authenticated_routes_is_400_and_writes_nothing(api: Api, caplog, capsys) -> None:
    caplog.set_level(logging.DEBUG)
    admin = await api.as_role(Role.ADMIN)
    nested = "[" * DEEP + "]" * DEEP
    cases = [
        (
            "POST",
            "/api/v1/webhooks/subscriptions",
            f'{{"url": "https://crm.example/h", "event_types": ["*"], "description": {nested}}}',
        ),
        ("POST", "/api/v1/lists", '{"name": ' + nested + "}"),
        ("POST", "/api/v1/campaigns", "[" * DEEP),
        ("POST", "/api/v1/users", '{"username": "x", "role": "admin", "password": ' + '{"a":' * DEEP + "}"),
    ]
    with capture_logs() as logs:
        for method, path, data in cases:
            resp = await api.client.request(
                method, path, data=data, headers={**admin, "Content-Type": "application/json"}
            )
            body = await resp.json()
            assert resp.status == 400, (path, body)
            assert body["error"] == "malformed_body", (path, body)
    _assert_no_traceback(logs, caplog, capsys)
    assert await api.pool.fetchval("SELECT count(*) FROM webhook_subscriptions") == 0
    assert await api.pool.fetchval("SELECT count(*) FROM contact_lists") == 0
    assert await api.pool.fetchval("SELECT count(*) FROM campaigns") == 0
    assert await api.pool.fetchval("SELECT count(*) FROM users") == 1  # the admin
    # shallow JSON still works
    resp = await api.client.post("/api/v1/lists", json={"name": "ok"}, headers=admin)
    assert resp.status == 201
