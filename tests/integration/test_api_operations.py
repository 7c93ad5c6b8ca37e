"""Agents and their controls, live calls, CDRs, recordings, data subjects, webhooks,
health and metrics: the routes over the other layers' Protocols (fakes here) and the
audit rows the API itself writes."""

from __future__ import annotations

import asyncio
import io
import uuid
import zipfile

import pytest

from hitcall_pbx.api.deps import Cdr, LiveCall
from hitcall_pbx.auth import Role

from .test_api_support import AUDIO, CSV_HEADER, Api, api, make_world  # noqa: F401  (fixture)


@pytest.fixture
async def boss(api: Api) -> dict[str, str]:
    return await api.as_role(Role.SUPERVISOR)


async def test_agent_crud_pin_and_assignments(api: Api) -> None:
    boss = await api.as_role(Role.ADMIN)  # a supervisor manages the agents of their campaigns only
    campaign = await api.pool.fetchval("INSERT INTO campaigns (name, mode) VALUES ('A', 'preview') RETURNING id")
    agent_user = await api.user("agent-anna", Role.AGENT)
    resp = await api.client.post(
        "/api/v1/agents",
        json={
            "number": "1001",
            "name": "Anna",
            "pin": "4321",
            "endpoint": "anna-phone",
            "user_id": agent_user,
            "campaign_ids": [campaign],
        },
        headers=boss,
    )
    assert resp.status == 201, await resp.text()
    agent = await resp.json()
    assert (agent["has_pin"], agent["campaign_ids"], agent["state"], agent["user_id"]) == (
        True,
        [campaign],
        "logged_out",
        agent_user,
    )
    pin_hash = await api.pool.fetchval("SELECT pin_hash FROM agents WHERE id = $1", agent["id"])
    assert pin_hash.startswith("$argon2id$") and api.deps.passwords.verify(pin_hash, "4321")
    resp = await api.client.patch(f"/api/v1/agents/{agent['id']}", json={"pin": None, "campaign_ids": []}, headers=boss)
    assert (await resp.json())["has_pin"] is False and (await resp.json())["campaign_ids"] == []
    resp = await api.client.post(
        "/api/v1/agents", json={"number": "1002", "name": "B", "user_id": agent_user}, headers=boss
    )
    assert resp.status == 409 and (await resp.json())["details"]["field"] == "user_id"
    officer = await api.user("dpo", Role.COMPLIANCE)  # only agents, supervisors and admins have phones
    resp = await api.client.post(
        "/api/v1/agents", json={"number": "1003", "name": "C", "user_id": officer}, headers=boss
    )
    assert resp.status == 422 and (await resp.json())["details"]["field"] == "user_id"
    resp = await api.client.post(
        "/api/v1/agents", json={"number": "12ab", "name": "D", "pin": "12", "campaign_ids": [0]}, headers=boss
    )
    assert resp.status == 422
    assert {f["field"] for f in (await resp.json())["details"]["fields"]} == {"number", "pin", "campaign_ids.0"}
    resp = await api.client.post(
        "/api/v1/agents", json={"number": "1004", "name": "E", "campaign_ids": [999]}, headers=boss
    )
    assert resp.status == 422 and (await resp.json())["details"]["field"] == "campaign_ids"
    listed = await (await api.client.get("/api/v1/agents?state=logged_out", headers=boss)).json()
    assert [a["number"] for a in listed["items"]] == ["1001"]
    assert (await api.client.delete(f"/api/v1/agents/{agent['id']}", headers=boss)).status == 204
    assert [a[0] for a, _ in api.dialer.named("agent_changed")] == [agent["id"]] * 3


async def test_agent_controls_reach_the_dialer_as_the_caller(api: Api) -> None:
    world = await make_world(api)
    agent_id, attempt = world.ids["agent_id"], world.ids["attempt_id"]
    me = world.credentials[Role.AGENT]
    await api.pool.execute("UPDATE agents SET state = 'paused', pause_code = 'lunch' WHERE id = $1", agent_id)
    resp = await api.client.post(f"/api/v1/agents/{agent_id}/pause", json={"pause_code": "lunch"}, headers=me)
    assert resp.status == 200
    assert await resp.json() == {**(await resp.json()), "agent_id": agent_id, "state": "paused", "pause_code": "lunch"}
    ((args, kw),) = api.dialer.named("pause_agent")
    assert args == (agent_id, "lunch") and kw["actor"].role == "agent" and kw["actor"].source_ip == "127.0.0.1"
    resp = await api.client.post(f"/api/v1/agents/{agent_id}/pause", json={"pause_code": "coffee break!"}, headers=me)
    assert resp.status == 422 and (await resp.json())["details"]["fields"][0]["field"] == "pause_code"
    resp = await api.client.post(
        f"/api/v1/agents/{agent_id}/disposition", json={"disposition": "sale", "attempt_id": str(attempt)}, headers=me
    )
    assert resp.status == 204
    assert api.dialer.named("set_disposition")[0][1]["attempt_id"] == attempt
    resp = await api.client.post(
        f"/api/v1/agents/{agent_id}/disposition",
        json={"disposition": "sale", "attempt_id": str(uuid.uuid4())},
        headers=me,
    )
    assert resp.status == 404
    assert (await api.client.get(f"/api/v1/agents/{agent_id}/offer", headers=me)).status == 404
    offer = await api.pool.fetchval(
        """INSERT INTO preview_offers (agent_id, campaign_id, contact_id, expires_at)
           VALUES ($1, $2, $3, now() + interval '30 seconds') RETURNING id""",
        agent_id,
        world.ids["campaign_id"],
        world.ids["contact_id"],
    )
    got = await (await api.client.get(f"/api/v1/agents/{agent_id}/offer", headers=me)).json()
    assert (got["id"], got["phone"], got["name"]) == (offer, "+358401234567", "Matti")
    accepted = await (await api.client.post(f"/api/v1/agents/{agent_id}/offer/accept", headers=me)).json()
    assert accepted == {"attempt_id": str(api.dialer.attempt_id)}
    resp = await api.client.post(f"/api/v1/agents/{agent_id}/offer/skip", json={"reason": "knows them"}, headers=me)
    assert resp.status == 204 and api.dialer.named("skip_offer")[0][0] == (agent_id, "knows them")
    admin = world.credentials[Role.ADMIN]
    assert (await api.client.post("/api/v1/agents/999999/unpause", headers=admin)).status == 404


async def test_live_calls_and_cdrs(api: Api) -> None:
    world = await make_world(api)
    agent_id = world.ids["agent_id"]
    mine = LiveCall(
        attempt_id=world.ids["attempt_id"], campaign_id=world.ids["campaign_id"], agent_id=agent_id, state="bridged"
    )
    other = LiveCall(attempt_id=uuid.uuid4(), campaign_id=world.ids["campaign_id"], agent_id=None, state="ringing")
    api.dialer.live = [mine, other]
    sup = world.credentials[Role.SUPERVISOR]
    items = (await (await api.client.get("/api/v1/calls", headers=sup)).json())["items"]
    assert [i["attempt_id"] for i in items] == [str(mine.attempt_id), str(other.attempt_id)]
    items = (await (await api.client.get("/api/v1/calls", headers=world.credentials[Role.AGENT])).json())["items"]
    assert [i["attempt_id"] for i in items] == [str(mine.attempt_id)]
    assert (await api.client.post(f"/api/v1/calls/{uuid.uuid4()}/hangup", headers=sup)).status == 404

    cdr = Cdr(
        id=world.ids["attempt_id"],
        campaign_id=world.ids["campaign_id"],
        attempt_no=1,
        caller_id="+358401111111",
        agent_id=agent_id,
        mode="progressive",
        state="ended",
        created_at="2026-01-01T10:00:00Z",
        abandoned=False,
        outcome="answered_human",
        retention_until="2028-01-01T10:00:00Z",
    )
    api.cdrs.rows = [cdr]
    resp = await api.client.get(
        f"/api/v1/cdrs?campaign_id={world.ids['campaign_id']}&outcome=answered_human"
        "&since=2026-01-01T00:00:00Z&limit=5",
        headers=sup,
    )
    assert resp.status == 200
    assert [c["id"] for c in (await resp.json())["items"]] == [str(cdr.id)]
    flt = api.cdrs.filters[-1]
    assert (flt.campaign_id, flt.outcome, flt.since.year) == (world.ids["campaign_id"], "answered_human", 2026)
    resp = await api.client.get("/api/v1/cdrs?since=yesterday&limit=0", headers=sup)
    assert resp.status == 422
    assert {f["field"] for f in (await resp.json())["details"]["fields"]} == {"since", "limit"}
    assert all(f["in"] == "query" for f in (await resp.json())["details"]["fields"])
    resp = await api.client.get("/api/v1/cdrs?since=2026-01-01T00:00:00", headers=sup)  # no offset: ambiguous
    assert resp.status == 422
    resp = await api.client.get("/api/v1/cdrs.csv", headers=world.credentials[Role.COMPLIANCE])
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
    assert (await resp.read()).startswith(CSV_HEADER)
    assert len(await api.audit_rows("cdr.export")) == 1


async def test_recording_download_and_listen_are_audited(api: Api) -> None:
    world = await make_world(api)
    rec = world.ids["recording_id"]
    compliance = world.credentials[Role.COMPLIANCE]
    listed = await (await api.client.get("/api/v1/recordings?held=false", headers=compliance)).json()
    assert [r["id"] for r in listed["items"]] == [str(rec)]
    resp = await api.client.get(f"/api/v1/recordings/{rec}/download", headers=compliance)
    assert resp.status == 200 and await resp.read() == AUDIO
    assert resp.headers["Content-Disposition"].startswith("attachment")
    resp = await api.client.get(f"/api/v1/recordings/{rec}/stream", headers=world.credentials[Role.SUPERVISOR])
    assert resp.status == 200 and resp.headers["Content-Disposition"].startswith("inline")
    resp = await api.client.get(
        f"/api/v1/recordings/{rec}/stream", headers={**world.credentials[Role.SUPERVISOR], "Range": "bytes=100-199"}
    )
    assert resp.status == 206 and await resp.read() == AUDIO[100:200]
    rows = await api.pool.fetch(
        "SELECT action, actor_role, object_id, host(source_ip) AS ip FROM audit_log"
        " WHERE object_type = 'recording' ORDER BY id"
    )
    assert [(r["action"], r["actor_role"], r["object_id"], r["ip"]) for r in rows] == [
        ("recording.download", "compliance", str(rec), "127.0.0.1"),
        ("recording.listen", "supervisor", str(rec), "127.0.0.1"),
    ]
    assert (await api.client.get(f"/api/v1/recordings/{uuid.uuid4()}/download", headers=compliance)).status == 404
    assert len(await api.audit_rows("recording.download")) == 1


async def test_holds_pass_the_actor_and_validate(api: Api) -> None:
    world = await make_world(api)
    rec = world.ids["recording_id"]
    compliance = world.credentials[Role.COMPLIANCE]
    resp = await api.client.post(
        f"/api/v1/recordings/{rec}/hold", json={"reason": "complaint", "case_id": "C-17"}, headers=compliance
    )
    assert resp.status == 200
    body = await resp.json()
    assert (body["hold_reason"], body["hold_case_id"]) == ("complaint", "C-17") and body["held_until"]
    hold = api.recordings.holds[0]
    assert hold["actor"].role == "compliance" and hold["actor"].source_ip == "127.0.0.1" and hold["until"] is None
    resp = await api.client.post(
        f"/api/v1/recordings/{rec}/hold", json={"reason": " ", "until": "2026-13-01"}, headers=compliance
    )
    assert resp.status == 422 and {f["field"] for f in (await resp.json())["details"]["fields"]} == {"reason", "until"}
    assert (await api.client.post(f"/api/v1/recordings/{rec}/release", headers=compliance)).status == 200
    assert [h["op"] for h in api.recordings.holds] == ["hold", "release"]


async def test_subject_rights(api: Api) -> None:
    compliance = await api.as_role(Role.COMPLIANCE)
    subject = {"phone": "040 1234567"}
    data = await (
        await api.client.post("/api/v1/subjects/export", json={"subject": subject}, headers=compliance)
    ).json()
    assert data["subject"] == {"phone": "+358401234567"}
    resp = await api.client.post("/api/v1/subjects/export.zip", json={"subject": subject}, headers=compliance)
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(await resp.read())) as z:
        assert sorted(z.namelist()) == ["recordings/1.wav", "subject.json"]
    assert list(api.privacy.directory.glob("export-*.zip")) == []  # sent, then deleted
    resp = await api.client.post(
        "/api/v1/subjects/rectify",
        json={"subject": subject, "changes": {"name": "Matti M", "email": None}},
        headers=compliance,
    )
    assert (await resp.json())["details"] == {"fields": ["email", "name"]}
    erased = await (
        await api.client.post("/api/v1/subjects/erase", json={"subject": subject}, headers=compliance)
    ).json()
    assert erased["suppressed"] is True and erased["recordings_deleted"] == 2
    assert (
        await (
            await api.client.post(
                "/api/v1/subjects/restrict", json={"subject": subject, "restricted": False}, headers=compliance
            )
        ).json()
    )["action"] == "unrestrict"
    assert (
        await api.client.post("/api/v1/subjects/object", json={"subject": subject}, headers=compliance)
    ).status == 200
    assert [a[0] for a in api.privacy.actions] == ["export", "export", "rectify", "erase", "restrict", "object"]
    assert {a[2].role for a in api.privacy.actions} == {"compliance"}
    resp = await api.client.post(
        "/api/v1/subjects/erase", json={"subject": {"phone": "0501111111"}}, headers=compliance
    )
    assert resp.status == 404 and (await resp.json())["error"] == "unknown_subject"
    for bad in ({}, {"phone": "12", "email": "a@b.fi"}, {"phone": "not a phone"}):
        resp = await api.client.post("/api/v1/subjects/erase", json={"subject": bad}, headers=compliance)
        assert resp.status == 422, bad
    assert len(api.privacy.actions) == 6


async def test_webhook_subscriptions_and_replay(api: Api) -> None:
    world = await make_world(api)
    intg = world.credentials[Role.INTEGRATION]
    resp = await api.client.post(
        "/api/v1/webhooks/subscriptions",
        json={
            "url": "https://crm.example/hooks",
            "event_types": ["call.ended", "call.ended", "campaign.state_changed"],
        },
        headers=intg,
    )
    assert resp.status == 201
    sub = await resp.json()
    assert sub["secret"].startswith("whsec_") and sub["event_types"] == ["call.ended", "campaign.state_changed"]
    from standardwebhooks.webhooks import Webhook

    Webhook(sub["secret"])  # a valid Standard Webhooks secret
    got = await (await api.client.get(f"/api/v1/webhooks/subscriptions/{sub['id']}", headers=intg)).json()
    assert "secret" not in got
    resp = await api.client.post(
        "/api/v1/webhooks/subscriptions", json={"url": "ftp://x", "event_types": ["nope"]}, headers=intg
    )
    assert {f["field"] for f in (await resp.json())["details"]["fields"]} == {"url", "event_types.0"}
    resp = await api.client.patch(f"/api/v1/webhooks/subscriptions/{sub['id']}", json={"active": False}, headers=intg)
    assert (await resp.json())["active"] is False
    dead = await (await api.client.get("/api/v1/webhooks/deliveries?state=dead", headers=intg)).json()
    assert [d["id"] for d in dead["items"]] == [world.ids["delivery_id"]]
    assert dead["items"][0]["event_type"] == "call.ended"
    resp = await api.client.post(
        "/api/v1/webhooks/deliveries/replay", json={"delivery_ids": [world.ids["delivery_id"]]}, headers=intg
    )
    assert await resp.json() == {"replayed": [world.ids["delivery_id"]]}
    token_id = (await (await api.client.get("/api/v1/me", headers=intg)).json())["token_id"]
    assert api.replay.replayed == [([world.ids["delivery_id"]], f"token:{token_id}", "integration", "127.0.0.1")]
    resp = await api.client.post("/api/v1/webhooks/deliveries/replay", json={"delivery_ids": [424242]}, headers=intg)
    assert resp.status == 404 and (await resp.json())["details"]["missing"] == [424242]
    assert len(api.replay.replayed) == 1
    assert (await api.client.delete(f"/api/v1/webhooks/subscriptions/{sub['id']}", headers=intg)).status == 204
    actions = [
        r["action"]
        for r in await api.pool.fetch("SELECT action FROM audit_log WHERE action LIKE 'webhook%' ORDER BY id")
    ]
    assert actions == ["webhook_subscription.create", "webhook_subscription.update", "webhook_subscription.delete"]


async def test_audit_log_reading(api: Api) -> None:
    world = await make_world(api)
    compliance = world.credentials[Role.COMPLIANCE]
    page = await (await api.client.get("/api/v1/audit?action=auth&limit=2", headers=compliance)).json()
    assert len(page["items"]) == 2 and all(i["action"].startswith("auth.") for i in page["items"])
    nxt = await (
        await api.client.get(f"/api/v1/audit?action=auth&after_id={page['items'][-1]['id']}", headers=compliance)
    ).json()
    assert nxt["items"] and nxt["items"][0]["id"] > page["items"][-1]["id"]
    assert (await api.client.post("/api/v1/audit", headers=compliance)).status == 405


async def test_health_readiness_and_metrics(api: Api) -> None:
    assert await (await api.client.get("/healthz")).json() == {"status": "ok"}
    resp = await api.client.get("/readyz")
    assert resp.status == 200 and await resp.json() == {"status": "ready", "checks": {"database": "ok", "ari": "ok"}}
    api.ari["connected"] = False
    resp = await api.client.get("/readyz")
    assert resp.status == 503
    assert await resp.json() == {"status": "not_ready", "checks": {"database": "ok", "ari": "disconnected"}}
    resp = await api.client.get("/metrics")
    text = await resp.text()
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    assert 'hitcall_http_requests_total{method="GET",operation="readyz",status="503"} 1.0' in text
    assert "hitcall_http_request_duration_seconds_bucket" in text


async def test_webhook_subscription_deleted_meanwhile_is_404_and_not_audited(api: Api) -> None:
    world = await make_world(api)
    intg = world.credentials[Role.INTEGRATION]
    resp = await api.client.post(
        "/api/v1/webhooks/subscriptions",
        json={"url": "https://crm.example/h", "event_types": ["call.ended"]},
        headers=intg,
    )
    sub_id = (await resp.json())["id"]
    async with api.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("DELETE FROM webhook_subscriptions WHERE id = $1", sub_id)
        delete = asyncio.ensure_future(api.client.delete(f"/api/v1/webhooks/subscriptions/{sub_id}", headers=intg))
        patch = asyncio.ensure_future(
            api.client.patch(f"/api/v1/webhooks/subscriptions/{sub_id}", json={"active": False}, headers=intg)
        )
        await asyncio.sleep(0.3)
        assert not delete.done() and not patch.done(), "both wait for the row the other transaction holds"
        await tx.commit()
    assert (await delete).status == 404
    assert (await patch).status == 404
    audited = await api.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action IN ('webhook_subscription.delete', 'webhook_subscription.update')"
    )
    assert audited == 0
