"""Campaigns, contact lists and contacts (including all-or-nothing imports) and DNC
through the real app on embedded Postgres."""

from __future__ import annotations

import pytest

from hitcall_pbx.auth import Role

from .test_api_support import Api, api  # noqa: F401  (fixture)

GOOD = {"name": "Spring sale", "mode": "predictive", "caller_id": "09 4245 1234", "info_message_sound": "sound:info"}


@pytest.fixture
async def boss(api: Api) -> dict[str, str]:
    """A supervisor with a phone: the campaigns they create are theirs to manage."""
    user_id = await api.user("boss", Role.SUPERVISOR)
    await api.pool.execute("INSERT INTO agents (number, name, user_id) VALUES ('9900', 'Boss phone', $1)", user_id)
    return await api.login("boss")


async def _campaign(api: Api, boss: dict[str, str], **over: object) -> dict:
    resp = await api.client.post("/api/v1/campaigns", json={**GOOD, **over}, headers=boss)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def test_campaign_crud_with_defaults_and_audit(api: Api, boss: dict[str, str]) -> None:
    c = await _campaign(api, boss)
    assert c["state"] == "draft" and c["caller_id"] == "+358942451234"
    assert (c["ring_timeout_s"], c["abandon_cap"], c["window_start"], c["window_days"]) == (
        25,
        0.03,
        "09:00",
        [1, 2, 3, 4, 5],
    )
    resp = await api.client.patch(
        f"/api/v1/campaigns/{c['id']}", json={"ring_timeout_s": 30, "window_days": [5, 1]}, headers=boss
    )
    assert resp.status == 200
    updated = await resp.json()
    assert updated["ring_timeout_s"] == 30 and updated["window_days"] == [1, 5]
    got = await (await api.client.get(f"/api/v1/campaigns/{c['id']}", headers=boss)).json()
    assert got == updated
    listed = await (await api.client.get("/api/v1/campaigns?state=draft", headers=boss)).json()
    assert [x["id"] for x in listed["items"]] == [c["id"]]
    assert (await api.client.delete(f"/api/v1/campaigns/{c['id']}", headers=boss)).status == 204
    assert (await api.client.get(f"/api/v1/campaigns/{c['id']}", headers=boss)).status == 404
    rows = await api.pool.fetch("SELECT action, details FROM audit_log WHERE object_type = 'campaign' ORDER BY id")
    assert [r["action"] for r in rows] == ["campaign.create", "campaign.update", "campaign.delete"]
    assert rows[1]["details"] == {"fields": ["ring_timeout_s", "window_days"]}
    assert [a[0] for a, _ in api.dialer.named("campaign_changed")] == [c["id"]] * 3


async def test_campaign_validation_names_every_field(api: Api, boss: dict[str, str]) -> None:
    bad = {
        "name": " ",
        "mode": "robocall",
        "ring_timeout_s": 10,
        "abandon_cap": 0.5,
        "window_days": [1, 1],
        "retention_recordings_months": 12,
        "caller_id": "12",
        "surprise": 1,
    }
    resp = await api.client.post("/api/v1/campaigns", json=bad, headers=boss)
    assert resp.status == 422
    body = await resp.json()
    assert body["error"] == "validation_error"
    fields = {f["field"] for f in body["details"]["fields"]}
    assert fields == {
        "name",
        "mode",
        "ring_timeout_s",
        "abandon_cap",
        "window_days",
        "retention_recordings_months",
        "caller_id",
        "surprise",
    }
    assert all(f["in"] == "body" and f["message"] for f in body["details"]["fields"])
    resp = await api.client.post(
        "/api/v1/campaigns", json={**GOOD, "window_start": "20:00", "window_end": "09:00"}, headers=boss
    )
    assert resp.status == 422 and (await resp.json())["details"]["fields"][0]["field"] == "window_end"
    c = await _campaign(api, boss)
    # merged with the stored row, the window would be empty: refused by the schema's CHECK, named
    resp = await api.client.patch(f"/api/v1/campaigns/{c['id']}", json={"window_start": "21:00"}, headers=boss)
    assert resp.status == 422 and (await resp.json())["details"]["field"] == "window_end"
    resp = await api.client.patch(f"/api/v1/campaigns/{c['id']}", json={"name": None}, headers=boss)
    assert resp.status == 422
    resp = await api.client.post("/api/v1/campaigns", json=GOOD, headers=boss)
    assert resp.status == 409 and (await resp.json())["details"]["field"] == "name"
    assert await api.pool.fetchval("SELECT count(*) FROM campaigns") == 1


async def test_campaign_start_pause_stop(api: Api, boss: dict[str, str]) -> None:
    c = await _campaign(api, boss, caller_id=None)
    resp = await api.client.post(f"/api/v1/campaigns/{c['id']}/start", headers=boss)
    assert resp.status == 422 and (await resp.json())["details"]["field"] == "caller_id"
    assert await api.pool.fetchval("SELECT count(*) FROM webhook_outbox") == 0
    await api.client.patch(f"/api/v1/campaigns/{c['id']}", json={"caller_id": "+358401111111"}, headers=boss)
    for action, state in [("start", "running"), ("pause", "paused"), ("start", "running"), ("stop", "finished")]:
        resp = await api.client.post(f"/api/v1/campaigns/{c['id']}/{action}", headers=boss)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["state"] == state
    resp = await api.client.post(f"/api/v1/campaigns/{c['id']}/start", headers=boss)
    assert resp.status == 409 and (await resp.json())["error"] == "illegal_transition"
    events = await api.pool.fetch("SELECT event_type, subject, payload FROM webhook_outbox ORDER BY id")
    assert [e["payload"]["state"] for e in events] == ["running", "paused", "running", "finished"]
    assert {e["event_type"] for e in events} == {"campaign.state_changed"}
    assert {e["subject"] for e in events} == {f"campaign:{c['id']}"}
    audits = await api.pool.fetch(
        "SELECT action, details FROM audit_log WHERE action LIKE 'campaign.%' AND action <> "
        "'campaign.create' AND action <> 'campaign.update' ORDER BY id"
    )
    assert [(a["action"], a["details"]["to"]) for a in audits] == [
        ("campaign.start", "running"),
        ("campaign.pause", "paused"),
        ("campaign.start", "running"),
        ("campaign.stop", "finished"),
    ]


async def test_campaign_stats(api: Api, boss: dict[str, str]) -> None:
    c = await _campaign(api, boss)
    async with api.pool.acquire() as conn:
        agents = [
            await conn.fetchval(
                "INSERT INTO agents (number, name, state, pause_code) VALUES ($1, $1, $2, $3) RETURNING id",
                str(n),
                state,
                "lunch" if state == "paused" else None,
            )
            for n, state in [(1, "ready"), (2, "ready"), (3, "paused"), (4, "on_call")]
        ]
        await conn.executemany("INSERT INTO agent_campaigns VALUES ($1, $2)", [(a, c["id"]) for a in agents])
        rows = [
            ("ended", True, False, "0"),
            ("ended", False, True, "0"),
            ("ended", False, True, "0"),
            ("ended", True, False, "40 days"),
            ("ringing", False, False, "0"),
            ("bridged", False, True, "0"),
        ]
        for state, abandoned, bridged, age in rows:
            table = "call_attempts" if state == "ended" else "live_attempts"
            await conn.execute(
                f"""INSERT INTO {table} (id, campaign_id, caller_id, mode, state, created_at, ended_at, outcome,
                                              abandoned, bridged_at, retention_until)
                   VALUES (gen_random_uuid(), $1, '+358401111111', 'predictive', $2, now() - $5::text::interval,
                           CASE WHEN $2 = 'ended' THEN now() END, CASE WHEN $2 = 'ended' THEN
                           CASE WHEN $3 THEN 'abandoned' ELSE 'answered_human' END END,
                           $3, CASE WHEN $4 THEN now() END, now() + interval '1 year')""",
                c["id"],
                state,
                abandoned,
                bridged,
                age,
            )
    integration = await api.as_role(Role.INTEGRATION)
    resp = await api.client.get(f"/api/v1/campaigns/{c['id']}/stats", headers=integration)
    assert resp.status == 200
    s = await resp.json()
    assert s["today"] == {"abandoned": 1, "connected": 3, "rate": 0.25}
    assert s["last_30_days"] == {"abandoned": 1, "connected": 3, "rate": 0.25}
    assert s["over_cap"] is True
    assert s["agents_by_state"] == {"ready": 2, "reserved": 0, "on_call": 1, "wrap_up": 0, "paused": 1, "logged_out": 0}
    assert s["calls_in_progress"] == 2 and s["calls_by_state"] == {"ringing": 1, "bridged": 1}


async def test_lists_contacts_and_json_import(api: Api, boss: dict[str, str]) -> None:
    c = await _campaign(api, boss)
    resp = await api.client.post("/api/v1/lists", json={"name": "Leads", "campaign_id": c["id"]}, headers=boss)
    assert resp.status == 201
    lst = await resp.json()
    assert lst["campaign_id"] == c["id"] and lst["contacts"] == 0
    rows = [
        {"phone": "040 123 4567", "name": "Aino", "external_id": "crm-1", "extra": {"segment": "a"}},
        {"phone": "+46 8 123 456 78", "email": "b@example.se", "timezone": "Europe/Stockholm"},
    ]
    url = f"/api/v1/lists/{lst['id']}/contacts/import"
    dry = await (await api.client.post(url, json={"contacts": rows, "dry_run": True}, headers=boss)).json()
    assert dry == {"dry_run": True, "rows": 2, "imported": 2, "updated": 0, "skipped": 0, "errors": []}
    assert await api.pool.fetchval("SELECT count(*) FROM contacts") == 0
    resp = await api.client.post(url, json={"contacts": rows}, headers=boss)
    assert resp.status == 200 and (await resp.json())["imported"] == 2
    page = await (await api.client.get(f"/api/v1/lists/{lst['id']}/contacts", headers=boss)).json()
    assert [(x["phone"], x["external_id"], x["extra"]) for x in page["items"]] == [
        ("+358401234567", "crm-1", {"segment": "a"}),
        ("+46812345678", None, {}),
    ]
    # again: conflicts are errors by default, can be skipped or updated
    resp = await api.client.post(url, json={"contacts": rows[:1]}, headers=boss)
    assert resp.status == 422
    report = (await resp.json())["details"]["report"]
    assert report["errors"] == [{"row": 1, "field": "phone", "message": "phone is already in the list"}]
    skipped = await (await api.client.post(url, json={"contacts": rows, "on_conflict": "skip"}, headers=boss)).json()
    assert (skipped["imported"], skipped["skipped"]) == (0, 2)
    renamed = [{**rows[0], "name": "Aino K."}]
    upd = await (await api.client.post(url, json={"contacts": renamed, "on_conflict": "update"}, headers=boss)).json()
    assert upd["updated"] == 1
    assert await api.pool.fetchval("SELECT name FROM contacts WHERE external_id = 'crm-1'") == "Aino K."
    audit = await api.audit_rows("contacts.import")
    assert [(a["details"]["imported"], a["details"]["updated"], a["details"]["skipped"]) for a in audit] == [
        (2, 0, 0),
        (0, 0, 2),
        (0, 1, 0),
    ]
    # single contact CRUD
    resp = await api.client.post(f"/api/v1/lists/{lst['id']}/contacts", json={"phone": "0501234567"}, headers=boss)
    assert resp.status == 201
    contact = await resp.json()
    resp = await api.client.patch(
        f"/api/v1/contacts/{contact['id']}",
        json={"marketing_permission": True, "marketing_prohibited": True},
        headers=boss,
    )
    assert resp.status == 422 and (await resp.json())["details"]["field"] == "marketing_permission"
    resp = await api.client.patch(f"/api/v1/contacts/{contact['id']}", json={"name": "Eino"}, headers=boss)
    assert (await resp.json())["name"] == "Eino"
    assert (await api.client.delete(f"/api/v1/contacts/{contact['id']}", headers=boss)).status == 204
    assert (await api.client.get(f"/api/v1/contacts/{contact['id']}", headers=boss)).status == 404


BROKEN_CSV = """phone;name;email;segment
040 123 4567;Aino;aino@example.fi;gold
not a number;Bertta;;silver
050 765 4321;Cecilia;broken-email;
040 123 4567;Duplicate;;
"quoted;ok";Eero;;
0451112222;Too;many;columns;here
"""


async def test_csv_import_with_broken_rows_imports_nothing(api: Api, boss: dict[str, str]) -> None:
    lst = await (await api.client.post("/api/v1/lists", json={"name": "CSV"}, headers=boss)).json()
    url = f"/api/v1/lists/{lst['id']}/contacts/import.csv"
    headers = {**boss, "Content-Type": "text/csv"}
    resp = await api.client.post(url, data=BROKEN_CSV.encode(), headers=headers)
    assert resp.status == 422
    body = await resp.json()
    assert body["error"] == "import_rejected" and "nothing was imported" in body["message"]
    errors = [(e["row"], e["field"]) for e in body["details"]["report"]["errors"]]
    assert errors == [(3, "phone"), (4, "email"), (5, "phone"), (6, "phone"), (7, "row")]
    assert body["details"]["report"]["rows"] == 6
    assert await api.pool.fetchval("SELECT count(*) FROM contacts") == 0
    assert await api.audit_rows("contacts.import") == []
    # the same report on a dry run, as a 200
    resp = await api.client.post(url + "?dry_run=true", data=BROKEN_CSV.encode(), headers=headers)
    assert resp.status == 200
    assert [(e["row"], e["field"]) for e in (await resp.json())["errors"]] == errors
    good = (
        "phone,name,external_id,marketing_permission,region\n0401234567,Aino,a1,true,north\n+358 50 765 4321,B,,no,\n"
    )
    resp = await api.client.post(url, data=good.encode(), headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["imported"] == 2
    rows = await api.pool.fetch("SELECT phone_e164, marketing_permission, extra FROM contacts ORDER BY id")
    assert [(r["phone_e164"], r["marketing_permission"], r["extra"]) for r in rows] == [
        ("+358401234567", True, {"region": "north"}),
        ("+358507654321", False, {}),
    ]
    resp = await api.client.post(url, data=b"name\nAino\n", headers=headers)
    assert resp.status == 422 and (await resp.json())["details"]["field"] == "csv"


async def test_dnc_entries(api: Api, boss: dict[str, str]) -> None:
    c = await _campaign(api, boss)
    resp = await api.client.post("/api/v1/dnc", json={"phone": "040 1234567", "reason": "asked"}, headers=boss)
    assert resp.status == 201
    glob = await resp.json()
    assert glob["phone"] == "+358401234567" and glob["campaign_id"] is None and glob["source"] == "api"
    resp = await api.client.post("/api/v1/dnc", json={"phone": "+358401234567"}, headers=boss)
    assert resp.status == 409 and (await resp.json())["details"]["field"] == "phone"
    resp = await api.client.post("/api/v1/dnc", json={"phone": "+358401234567", "campaign_id": c["id"]}, headers=boss)
    assert resp.status == 201
    resp = await api.client.post("/api/v1/dnc", json={"phone": "+358401234567", "campaign_id": 999999}, headers=boss)
    assert resp.status == 422 and (await resp.json())["details"]["field"] == "campaign_id"
    listed = await (await api.client.get("/api/v1/dnc?scope=global", headers=boss)).json()
    assert [x["id"] for x in listed["items"]] == [glob["id"]]
    listed = await (await api.client.get(f"/api/v1/dnc?scope=campaign&campaign_id={c['id']}", headers=boss)).json()
    assert len(listed["items"]) == 1
    resp = await api.client.get("/api/v1/dnc?scope=campaign", headers=boss)
    assert resp.status == 422 and (await resp.json())["details"]["field"] == "campaign_id"
    assert (await api.client.delete(f"/api/v1/dnc/{glob['id']}", headers=boss)).status == 204
    assert [
        r["action"]
        for r in await api.pool.fetch("SELECT action FROM audit_log WHERE object_type = 'dnc_entry' ORDER BY id")
    ] == ["dnc.add", "dnc.add", "dnc.remove"]
    # an opt-out the person made is removed only by compliance
    optout = await api.pool.fetchval(
        "INSERT INTO dnc_entries (phone_e164, source) VALUES ('+358409998877', 'ivr_optout') RETURNING id"
    )
    assert (await api.client.delete(f"/api/v1/dnc/{optout}", headers=boss)).status == 403
    compliance = await api.as_role(Role.COMPLIANCE)
    assert (await api.client.delete(f"/api/v1/dnc/{optout}", headers=compliance)).status == 204
