"""POST /api/v1/agents/{id}/dial at the API layer: what reaches the dialer, who may dial for
whom, and bad input named by field (the dialling itself is proven on real Asterisk)."""

from __future__ import annotations

from hitcall_pbx.auth import Role
from hitcall_pbx.demo.seed import create_agent, create_campaign

from .test_api_support import Api, api  # noqa: F401  (fixture)


async def test_manual_dial_route_checks_input_and_roles(api: Api) -> None:
    c1, _ = await create_campaign(api.pool, "md-a", state="running", numbers=["+358401110001"])
    c2, _ = await create_campaign(api.pool, "md-b", state="running", numbers=["+358401110002"])
    other_contact = await api.pool.fetchval("SELECT id FROM contacts WHERE phone_e164 = '+358401110001'")
    own_contact = await api.pool.fetchval("SELECT id FROM contacts WHERE phone_e164 = '+358401110002'")
    a1 = await create_agent(api.pool, "3001", "agent301", [c1])
    a2 = await create_agent(api.pool, "3002", "agent302", [c2])
    admin = await api.as_role(Role.ADMIN)

    resp = await api.client.post(
        f"/api/v1/agents/{a1}/dial", json={"campaign_id": c1, "number": "040 1234567"}, headers=admin
    )
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["attempt_id"] == str(api.dialer.attempt_id)
    ((args, kw),) = api.dialer.named("manual_dial")
    assert args == (a1,) and (kw["campaign_id"], kw["number"], kw["contact_id"]) == (c1, "+358401234567", None)

    for body, field in (
        ({"campaign_id": c1, "number": "12ab"}, "number"),
        ({"campaign_id": c1, "number": "+358401234567", "contact_id": 5}, "number"),
        ({"campaign_id": c1}, "number"),
        ({"number": "+358401234567"}, "campaign_id"),
        ({"contact_id": 0}, "contact_id"),
    ):
        resp = await api.client.post(f"/api/v1/agents/{a1}/dial", json=body, headers=admin)
        assert resp.status == 422, body
        details = (await resp.json())["details"]
        named = [details["field"]] if "field" in details else [f["field"] for f in details["fields"]]
        assert named == [field], (body, details)
    resp = await api.client.post("/api/v1/agents/9999/dial", json={"contact_id": 1}, headers=admin)
    assert resp.status == 404
    assert len(api.dialer.named("manual_dial")) == 1, "refused requests never reach the dialer"

    # An agent dials for itself only.
    await api.user("otto", Role.AGENT)
    otto_user = await api.pool.fetchval("SELECT id FROM users WHERE username = 'otto'")
    await api.pool.execute("UPDATE agents SET user_id = $1 WHERE id = $2", otto_user, a1)
    otto = await api.login("otto")
    resp = await api.client.post(f"/api/v1/agents/{a2}/dial", json={"contact_id": 1}, headers=otto)
    assert resp.status == 403
    resp = await api.client.post(f"/api/v1/agents/{a1}/dial", json={"contact_id": 1}, headers=otto)
    assert resp.status == 202

    # A supervisor dials for the agents of the campaigns they supervise (their phone row's).
    await api.user("sanna", Role.SUPERVISOR)
    sanna_user = await api.pool.fetchval("SELECT id FROM users WHERE username = 'sanna'")
    phone = await create_agent(api.pool, "3099", "sup399", [c2])
    await api.pool.execute("UPDATE agents SET user_id = $1 WHERE id = $2", sanna_user, phone)
    sanna = await api.login("sanna")
    resp = await api.client.post(f"/api/v1/agents/{a1}/dial", json={"contact_id": 1}, headers=sanna)
    assert resp.status == 403
    resp = await api.client.post(f"/api/v1/agents/{a2}/dial", json={"contact_id": other_contact}, headers=sanna)
    assert resp.status == 403 and (await resp.json())["details"]["field"] == "contact_id"
    resp = await api.client.post(f"/api/v1/agents/{a2}/dial", json={"contact_id": own_contact}, headers=sanna)
    assert resp.status == 202
    resp = await api.client.post(
        f"/api/v1/agents/{a2}/dial", json={"campaign_id": c1, "number": "0401234567"}, headers=sanna
    )
    assert resp.status == 403 and (await resp.json())["details"]["field"] == "campaign_id"
    resp = await api.client.post(
        f"/api/v1/agents/{a2}/dial", json={"campaign_id": c2, "number": "0401234567"}, headers=sanna
    )
    assert resp.status == 202
    assert len(api.dialer.named("manual_dial")) == 4
