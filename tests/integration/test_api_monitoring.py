"""The monitoring API over real Postgres: who sees which stored sessions, linking a
supervisor's phone to an agent row, and the 503 of a process that does not dial."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

from aiohttp import test_utils
from prometheus_client import CollectorRegistry

from hitcall_pbx.api import build_registry, create_app
from hitcall_pbx.auth import Role

from .test_api_support import Api, api  # noqa: F401  (fixture)

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


async def _campaign(api: Api, name: str) -> int:
    return await api.pool.fetchval(
        "INSERT INTO campaigns (name, mode, caller_id) VALUES ($1, 'progressive', '+358201234567') RETURNING id", name
    )


async def _session(api: Api, campaign_id: int, *, ended: bool, at: datetime) -> int:
    return await api.pool.fetchval(
        """INSERT INTO monitoring_sessions (supervisor, attempt_id, campaign_id, mode, modes, started_at, ended_at,
                                           end_reason)
           VALUES ('someone', $1, $2, 'listen', $3, $4, $5, $6) RETURNING id""",
        uuid.uuid4(),
        campaign_id,
        [{"mode": "listen", "at": at.isoformat()}],
        at,
        at + timedelta(minutes=1) if ended else None,
        "call_ended" if ended else None,
    )


async def test_supervisor_sees_sessions_of_supervised_campaigns_only(api: Api) -> None:
    mine, other = await _campaign(api, "mine"), await _campaign(api, "other")
    live_mine = await _session(api, mine, ended=False, at=T0)
    ended_mine = await _session(api, mine, ended=True, at=T0 - timedelta(hours=1))
    live_other = await _session(api, other, ended=False, at=T0 + timedelta(minutes=5))

    sup_user = await api.user("sup-m", Role.SUPERVISOR)
    sup = await api.login("sup-m")
    admin = await api.as_role(Role.ADMIN)
    # The supervisor's phone: an agent row linked to the supervisor, with the supervised campaign.
    resp = await api.client.post(
        "/api/v1/agents",
        json={"number": "9001", "name": "Sup phone", "endpoint": "sup1", "user_id": sup_user, "campaign_ids": [mine]},
        headers=admin,
    )
    assert resp.status == 201, await resp.text()

    resp = await api.client.get("/api/v1/monitoring", headers=sup)
    assert resp.status == 200
    assert [s["id"] for s in (await resp.json())["items"]] == [live_mine]
    resp = await api.client.get("/api/v1/monitoring?active=false", headers=sup)
    assert [s["id"] for s in (await resp.json())["items"]] == [live_mine, ended_mine]
    ended = (await resp.json())["items"][1]
    assert ended["end_reason"] == "call_ended" and ended["modes"][0]["mode"] == "listen"

    resp = await api.client.get("/api/v1/monitoring", headers=admin)
    assert [s["id"] for s in (await resp.json())["items"]] == [live_other, live_mine]

    resp = await api.client.get("/api/v1/monitoring", headers=await api.as_role(Role.AGENT))
    assert resp.status == 403 and (await resp.json())["error"] == "forbidden_role"


async def test_a_compliance_user_cannot_have_a_phone(api: Api) -> None:
    user = await api.user("comp-m", Role.COMPLIANCE)
    resp = await api.client.post(
        "/api/v1/agents",
        json={"number": "9002", "name": "No phone", "user_id": user},
        headers=await api.as_role(Role.ADMIN),
    )
    assert resp.status == 422
    body = await resp.json()
    assert body["details"]["field"] == "user_id" and "supervisor" in body["message"]
    assert await api.pool.fetchval("SELECT count(*) FROM agents WHERE number = '9002'") == 0


async def test_a_process_that_does_not_dial_answers_503(api: Api) -> None:
    deps = dataclasses.replace(api.deps, monitoring=None, metrics=CollectorRegistry())
    client = test_utils.TestClient(test_utils.TestServer(create_app(deps, registry=build_registry())))
    await client.start_server()
    try:
        admin = await api.as_role(Role.ADMIN)
        resp = await client.post(f"/api/v1/calls/{uuid.uuid4()}/monitor", json={"mode": "listen"}, headers=admin)
        assert resp.status == 503 and (await resp.json())["error"] == "dialer_elsewhere"
    finally:
        await client.close()
