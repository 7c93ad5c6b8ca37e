"""One JSON error shape for everything that goes wrong: bad JSON, invalid input, oversized
bodies, unknown routes and methods, unexpected failures."""

from __future__ import annotations

import json

import pytest

from hitcall_pbx.auth import Role

from .test_api_support import Api, api  # noqa: F401  (fixture)


@pytest.fixture
async def admin(api: Api) -> dict[str, str]:
    return await api.as_role(Role.ADMIN)


def _shape(body: dict) -> None:
    assert set(body) == {"error", "message", "details"}
    assert isinstance(body["error"], str) and isinstance(body["message"], str)


async def test_malformed_json_is_400(api: Api, admin: dict[str, str]) -> None:
    resp = await api.client.post(
        "/api/v1/campaigns", data=b'{"name": ', headers={**admin, "Content-Type": "application/json"}
    )
    assert resp.status == 400
    body = await resp.json()
    _shape(body)
    assert body["error"] == "malformed_body"


async def test_wrong_json_type_is_422_naming_the_body(api: Api, admin: dict[str, str]) -> None:
    resp = await api.client.post("/api/v1/campaigns", json=[1, 2], headers=admin)
    assert resp.status == 422
    assert (await resp.json())["details"]["fields"][0]["field"] == "body"
    resp = await api.client.post(
        "/api/v1/campaigns", json={"name": "x", "mode": "preview", "ring_timeout_s": "soon"}, headers=admin
    )
    fields = (await resp.json())["details"]["fields"]
    assert [(f["field"], f["type"]) for f in fields] == [("ring_timeout_s", "int_parsing")]


async def test_oversized_bodies_are_413(api: Api, admin: dict[str, str]) -> None:
    big = json.dumps({"name": "x" * (1 << 20), "mode": "preview"}).encode()
    resp = await api.client.post("/api/v1/campaigns", data=big, headers={**admin, "Content-Type": "application/json"})
    assert resp.status == 413
    body = await resp.json()
    _shape(body)
    assert body["details"] == {"limit_bytes": 1 << 20}

    async def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(20):
            yield b" " * 65536

    resp = await api.client.post(
        "/api/v1/campaigns", data=chunks(), headers={**admin, "Content-Type": "application/json"}
    )
    assert resp.status == 413
    lst = await (await api.client.post("/api/v1/lists", json={"name": "L"}, headers=admin)).json()
    csv = b"phone\n" + b"0401234567\n" * ((20 << 20) // 11 + 1)
    resp = await api.client.post(
        f"/api/v1/lists/{lst['id']}/contacts/import.csv", data=csv, headers={**admin, "Content-Type": "text/csv"}
    )
    assert resp.status == 413
    assert await api.pool.fetchval("SELECT count(*) FROM campaigns") == 0


async def test_unknown_routes_and_methods(api: Api, admin: dict[str, str]) -> None:
    resp = await api.client.get("/api/v1/nothing-here")
    assert resp.status == 404
    _shape(await resp.json())
    resp = await api.client.get("/api/v1/campaigns/not-a-number", headers=admin)
    assert resp.status == 404
    resp = await api.client.get("/api/v1/campaigns/99999999999999999999", headers=admin)
    assert resp.status == 404
    resp = await api.client.get("/api/v1/campaigns/424242", headers=admin)
    assert resp.status == 404 and (await resp.json())["details"] == {"campaign_id": 424242}
    resp = await api.client.put("/api/v1/campaigns", json={}, headers=admin)
    assert resp.status == 405
    body = await resp.json()
    _shape(body)
    assert body["details"]["allowed"] == ["GET", "POST"] and resp.headers["Allow"] == "GET, POST"


async def test_unexpected_failure_is_a_json_500_with_a_logged_id(
    api: Api, admin: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    async def broken(**kw: object) -> list:
        raise RuntimeError("engine exploded")

    api.dialer.live_calls = broken  # type: ignore[method-assign]  # replaces the method to make it fail
    resp = await api.client.get("/api/v1/calls", headers=admin)
    assert resp.status == 500
    body = await resp.json()
    _shape(body)
    assert body["error"] == "internal_error" and "engine exploded" not in body["message"]
    error_id = body["details"]["error_id"]
    logged = capsys.readouterr()
    assert error_id in logged.out + logged.err


async def test_dialer_failure_after_commit_keeps_the_change(api: Api, admin: dict[str, str]) -> None:
    async def down(campaign_id: int) -> None:
        raise ConnectionError("dialer away")

    api.dialer.campaign_changed = down  # type: ignore[method-assign]  # replaces the method to make it fail
    resp = await api.client.post("/api/v1/campaigns", json={"name": "Kept", "mode": "preview"}, headers=admin)
    assert resp.status == 201
    assert await api.pool.fetchval("SELECT count(*) FROM campaigns") == 1


async def test_database_gone_is_503(api: Api, admin: dict[str, str]) -> None:
    await api.pool.close()
    resp = await api.client.get("/api/v1/campaigns", headers=admin)
    assert resp.status == 503
    _shape(await resp.json())
    resp = await api.client.get("/readyz")
    assert resp.status == 503 and (await resp.json())["checks"]["database"].startswith("unavailable")
