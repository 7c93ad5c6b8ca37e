"""The transfer routes: roles (an agent only on its own call), bad input (422 naming the
field, nothing reaches the dialer), the audit of what was asked, the OpenAPI document."""

from __future__ import annotations

import pytest

from hitcall_pbx.auth import Role

from .test_api_support import Api, api, make_world  # noqa: F401  (fixture)


async def test_transfer_routes_roles_and_bad_input(api: Api) -> None:
    world = await make_world(api)
    agent_id, campaign_id = world.ids["agent_id"], world.ids["campaign_id"]
    me, admin = world.credentials[Role.AGENT], world.credentials[Role.ADMIN]
    url = f"/api/v1/agents/{agent_id}/transfer"

    resp = await api.client.post(url, json={"kind": "attended", "target": {"number": "040 1234567"}}, headers=me)
    assert resp.status == 200
    body = await resp.json()
    assert (body["state"], body["number"]) == ("consulting", "040 1234567")
    ((args, kw),) = api.dialer.named("transfer")
    assert args == (agent_id, "attended", {"number": "040 1234567"}) and kw["actor"].role == "agent"
    for action, state in (("conference", "conference"), ("complete", "completed"), ("cancel", "cancelled")):
        resp = await api.client.post(f"{url}/{action}", headers=me)
        assert resp.status == 200 and (await resp.json())["state"] == state
    assert [a for a, _ in api.dialer.named("transfer_action")] == [
        (agent_id, "conference"),
        (agent_id, "complete"),
        (agent_id, "cancel"),
    ]
    # a supervisor or admin may transfer an agent's call
    resp = await api.client.post(url, json={"kind": "blind", "target": {"campaign_id": campaign_id}}, headers=admin)
    assert resp.status == 200

    before = len(api.dialer.calls)
    bad = [
        ({"kind": "blind", "target": {"number": "12"}}, "target.number"),
        ({"kind": "blind", "target": {"number": "+358 40 123 456 789 0123"}}, "target.number"),
        ({"kind": "blind", "target": {}}, "target"),
        ({"kind": "blind", "target": {"agent_id": agent_id, "number": "+358401234567"}}, "target"),
        ({"kind": "blind", "target": {"agent_id": 999999}}, "target.agent_id"),
        ({"kind": "blind", "target": {"campaign_id": 999999}}, "target.campaign_id"),
    ]
    for payload, field in bad:
        resp = await api.client.post(url, json=payload, headers=me)
        assert resp.status == 422, payload
        assert (await resp.json())["details"]["field"] == field, payload
    resp = await api.client.post(url, json={"kind": "sideways", "target": {"agent_id": agent_id}}, headers=me)
    assert resp.status == 422 and (await resp.json())["details"]["fields"][0]["field"] == "kind"
    assert len(api.dialer.calls) == before, "nothing reached the dialer"

    # an agent may not act on another agent's call
    other = await api.pool.fetchval("INSERT INTO agents (number, name) VALUES ('102', 'Agent Two') RETURNING id")
    resp = await api.client.post(
        f"/api/v1/agents/{other}/transfer", json={"kind": "blind", "target": {"agent_id": agent_id}}, headers=me
    )
    assert resp.status == 403
    assert (await api.client.post(f"/api/v1/agents/{other}/transfer/complete", headers=me)).status == 403
    assert len(api.dialer.calls) == before
    assert (await api.client.post("/api/v1/agents/999999/transfer/cancel", headers=admin)).status == 404


@pytest.mark.parametrize("action", ["", "/complete", "/cancel", "/conference"])
async def test_transfer_routes_are_in_the_openapi_document(api: Api, action: str) -> None:
    doc = await (await api.client.get("/api/v1/openapi.json")).json()
    op = doc["paths"][f"/api/v1/agents/{{agent_id}}/transfer{action}"]["post"]
    assert "200" in op["responses"]
