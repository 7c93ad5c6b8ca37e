"""A supervisor acts only on the agents, calls, campaigns, contacts and callbacks of the
campaigns they supervise (those of their phone's agent row); an admin on all. Every agent,
call, callback and campaign control of the REST API is tried on both sides of that line,
and refused requests reach neither the dialing engine nor the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from hitcall_pbx.api.deps import LiveCall
from hitcall_pbx.auth import Role
from hitcall_pbx.core.calls import CallState
from hitcall_pbx.demo.seed import create_agent, create_campaign
from tests.integration.test_api_support import Api, api, make_recording  # noqa: F401  (fixture)


@dataclass
class Scene:
    mine: dict[str, Any]  # ids in the supervised campaign
    other: dict[str, Any]  # ids in a campaign the supervisor does not supervise
    supervisor: dict[str, str]
    admin: dict[str, str]
    admin_name: str


async def _side(api: Api, name: str, number: str, phone: str) -> dict[str, Any]:
    campaign_id, list_id = await create_campaign(api.pool, name, state="paused", numbers=[phone])
    contact_id = await api.pool.fetchval("SELECT id FROM contacts WHERE phone_e164 = $1", phone)
    agent_id = await create_agent(api.pool, number, f"ep{number}", [campaign_id])
    attempt_id = uuid.uuid4()
    await api.pool.execute(
        """INSERT INTO live_attempts (id, campaign_id, contact_id, dialled_number, caller_id, agent_id, mode, state,
                                      retention_until)
           VALUES ($1, $2, $3, $4, '+358201234567', $5, 'progressive', 'bridged', now() + interval '1 year')""",
        attempt_id,
        campaign_id,
        contact_id,
        phone,
        agent_id,
    )
    callback_id = await api.pool.fetchval(
        """INSERT INTO callbacks (campaign_id, contact_id, agent_id, kind, due_at, timezone, created_by)
           VALUES ($1, $2, NULL, 'anyone', now() + interval '1 day', 'Europe/Helsinki', 'test') RETURNING id""",
        campaign_id,
        contact_id,
    )
    api.dialer.live.append(
        LiveCall(
            attempt_id=attempt_id,
            campaign_id=campaign_id,
            agent_id=agent_id,
            contact_id=contact_id,
            number=phone,
            state=CallState.BRIDGED,
        )
    )
    return {
        "campaign_id": campaign_id,
        "list_id": list_id,
        "contact_id": contact_id,
        "agent_id": agent_id,
        "attempt_id": attempt_id,
        "callback_id": callback_id,
    }


async def _scene(api: Api) -> Scene:
    mine = await _side(api, "scope-mine", "4001", "+358401110101")
    other = await _side(api, "scope-other", "4002", "+358401110102")
    user_id = await api.user("sini", Role.SUPERVISOR)
    phone = await create_agent(api.pool, "4099", "ep4099", [mine["campaign_id"]])
    await api.pool.execute("UPDATE agents SET user_id = $1 WHERE id = $2", user_id, phone)
    await api.user("aatu", Role.ADMIN)
    return Scene(mine, other, await api.login("sini"), await api.login("aatu"), "aatu")


def _controls(ids: dict[str, Any]) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(method, path, body) of every control a supervisor may use on an agent, call or campaign."""
    a, c = ids["agent_id"], ids["campaign_id"]
    return [
        ("GET", f"/api/v1/agents/{a}", None),
        ("GET", f"/api/v1/agents/{a}/state", None),
        ("POST", f"/api/v1/agents/{a}/pause", {"pause_code": "lunch"}),
        ("POST", f"/api/v1/agents/{a}/unpause", None),
        ("POST", f"/api/v1/agents/{a}/wrap-up/end", None),
        ("POST", f"/api/v1/agents/{a}/disposition", {"disposition": "sale"}),
        ("GET", f"/api/v1/agents/{a}/offer", None),
        ("POST", f"/api/v1/agents/{a}/offer/accept", None),
        ("POST", f"/api/v1/agents/{a}/offer/skip", {}),
        ("POST", f"/api/v1/agents/{a}/recording/pause", None),
        ("POST", f"/api/v1/agents/{a}/recording/resume", None),
        ("POST", f"/api/v1/agents/{a}/transfer", {"kind": "blind", "number": "+358401234999"}),
        ("POST", f"/api/v1/agents/{a}/transfer/cancel", None),
        ("POST", f"/api/v1/agents/{a}/dial", {"contact_id": ids["contact_id"]}),
        ("GET", f"/api/v1/agents/{a}/card", None),
        ("GET", f"/api/v1/agents/{a}/day", None),
        ("GET", f"/api/v1/reports/agents?agent_id={a}", None),
        ("POST", f"/api/v1/calls/{ids['attempt_id']}/hangup", None),
        ("GET", f"/api/v1/calls?campaign_id={c}", None),
        ("GET", f"/api/v1/campaigns/{c}", None),
        ("GET", f"/api/v1/campaigns/{c}/stats", None),
        ("GET", f"/api/v1/campaigns/{c}/dispositions", None),
        ("PATCH", f"/api/v1/campaigns/{c}", {"name": "renamed"}),
        ("POST", f"/api/v1/campaigns/{c}/start", None),
        ("POST", f"/api/v1/campaigns/{c}/pause", None),
        ("GET", f"/api/v1/callbacks/{ids['callback_id']}", None),
        ("POST", f"/api/v1/callbacks/{ids['callback_id']}/move", {"at": "2099-01-05T12:00:00"}),
        ("POST", f"/api/v1/callbacks/{ids['callback_id']}/cancel", None),
        ("POST", "/api/v1/callbacks", {"contact_id": ids["contact_id"], "at": "2099-01-05T12:00:00"}),
        ("GET", f"/api/v1/contacts/{ids['contact_id']}", None),
        ("PATCH", f"/api/v1/contacts/{ids['contact_id']}", {"name": "Renamed"}),
        ("GET", f"/api/v1/lists/{ids['list_id']}", None),
        ("GET", f"/api/v1/lists/{ids['list_id']}/contacts", None),
        ("POST", f"/api/v1/lists/{ids['list_id']}/contacts", {"phone": "+358401110199"}),
    ]


async def _call(api: Api, method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]) -> Any:
    kw: dict[str, Any] = {"headers": headers}
    if body is not None:
        kw["json"] = body
    return await api.client.request(method, path, **kw)


async def test_supervisor_is_refused_on_other_campaigns_agents_calls_and_callbacks(api: Api) -> None:
    s = await _scene(api)
    before = await api.pool.fetchrow(
        "SELECT (SELECT count(*) FROM callbacks) AS callbacks, (SELECT name FROM campaigns WHERE id = $1) AS name,"
        " (SELECT state FROM campaigns WHERE id = $1) AS state, (SELECT count(*) FROM contacts) AS contacts,"
        " (SELECT name FROM contacts WHERE id = $2) AS contact",
        s.other["campaign_id"],
        s.other["contact_id"],
    )
    for method, path, body in _controls(s.other):
        resp = await _call(api, method, path, body, s.supervisor)
        where = f"{method} {path}: {resp.status} {await resp.text()}"
        assert resp.status == 403, where
        data = await resp.json()
        assert data["error"] in ("agent_not_supervised", "campaign_not_supervised"), where
        assert data["details"]["field"] in ("agent_id", "campaign_id", "callback_id", "contact_id", "list_id"), where
    assert api.dialer.calls == [], "no refused control reached the dialing engine"
    after = await api.pool.fetchrow(
        "SELECT (SELECT count(*) FROM callbacks) AS callbacks, (SELECT name FROM campaigns WHERE id = $1) AS name,"
        " (SELECT state FROM campaigns WHERE id = $1) AS state, (SELECT count(*) FROM contacts) AS contacts,"
        " (SELECT name FROM contacts WHERE id = $2) AS contact",
        s.other["campaign_id"],
        s.other["contact_id"],
    )
    assert dict(after) == dict(before), "nothing of the other campaign changed"


async def test_supervisor_and_admin_act_on_supervised_campaigns(api: Api) -> None:
    s = await _scene(api)
    for who, headers, sides in (("supervisor", s.supervisor, [s.mine]), ("admin", s.admin, [s.mine, s.other])):
        for ids in sides:
            for method, path, body in _controls(ids):
                resp = await _call(api, method, path, body, headers)
                where = f"{who} {method} {path}: {resp.status} {await resp.text()}"
                assert resp.status not in (401, 403), where
                assert resp.status < 500, where
    assert api.dialer.named("pause_agent") and api.dialer.named("hang_up")


async def test_supervisor_lists_only_supervised_calls_and_callbacks(api: Api) -> None:
    s = await _scene(api)
    resp = await api.client.get("/api/v1/calls", headers=s.supervisor)
    assert resp.status == 200
    assert [c["campaign_id"] for c in (await resp.json())["items"]] == [s.mine["campaign_id"]]
    resp = await api.client.get("/api/v1/callbacks", headers=s.supervisor)
    assert resp.status == 200
    assert [c["id"] for c in (await resp.json())["items"]] == [s.mine["callback_id"]]
    resp = await api.client.get("/api/v1/callbacks", headers=s.admin)
    assert sorted(c["id"] for c in (await resp.json())["items"]) == sorted(
        [s.mine["callback_id"], s.other["callback_id"]]
    )
    resp = await api.client.get("/api/v1/calls", headers=s.admin)
    assert len((await resp.json())["items"]) == 2


async def test_supervisor_without_a_phone_supervises_nothing(api: Api) -> None:
    s = await _scene(api)
    await api.user("paavo", Role.SUPERVISOR)
    paavo = await api.login("paavo")
    resp = await api.client.post(
        f"/api/v1/agents/{s.mine['agent_id']}/pause", json={"pause_code": "lunch"}, headers=paavo
    )
    assert resp.status == 403 and (await resp.json())["error"] == "agent_not_supervised"
    resp = await api.client.get("/api/v1/callbacks", headers=paavo)
    assert (await resp.json())["items"] == []
    assert api.dialer.calls == []


async def test_supervisor_reaches_recordings_of_supervised_campaigns_only(api: Api) -> None:
    s = await _scene(api)
    api.recordings.recording = make_recording(s.other["campaign_id"], s.other["attempt_id"])
    rec = api.recordings.recording.id
    for suffix in ("", "/download", "/stream"):
        resp = await api.client.get(f"/api/v1/recordings/{rec}{suffix}", headers=s.supervisor)
        assert resp.status == 403, suffix
        assert (await resp.json())["details"] == {"field": "campaign_id"}
    assert await api.audit_rows("recording.download") == [] and await api.audit_rows("recording.listen") == []
    for query, status in (("", 422), (f"?campaign_id={s.other['campaign_id']}", 403)):
        resp = await api.client.get(f"/api/v1/recordings{query}", headers=s.supervisor)
        assert resp.status == status, query
        assert (await resp.json())["details"]["field"] == "campaign_id"
    resp = await api.client.get(f"/api/v1/recordings/{rec}/download", headers=s.admin)
    assert resp.status == 200

    api.recordings.recording = make_recording(s.mine["campaign_id"], s.mine["attempt_id"])
    rec = api.recordings.recording.id
    resp = await api.client.get(f"/api/v1/recordings?campaign_id={s.mine['campaign_id']}", headers=s.supervisor)
    assert resp.status == 200
    resp = await api.client.get(f"/api/v1/recordings/{rec}/download", headers=s.supervisor)
    assert resp.status == 200
    assert [r["actor"] for r in await api.audit_rows("recording.download")] == [s.admin_name, "sini"]


async def test_a_supervisor_cannot_widen_what_they_supervise(api: Api) -> None:
    s = await _scene(api)
    phone = await api.pool.fetchval("SELECT id FROM agents WHERE number = '4099'")
    other_sup = await api.user("toinen", Role.SUPERVISOR)
    agent_user = await api.user("aapo", Role.AGENT)
    before = await api.pool.fetch("SELECT agent_id, campaign_id FROM agent_campaigns ORDER BY 1, 2")
    refusals = [
        # their own phone's campaigns are what they supervise
        ("PATCH", f"/api/v1/agents/{phone}", {"campaign_ids": [s.mine["campaign_id"], s.other["campaign_id"]]}),
        ("PATCH", f"/api/v1/agents/{phone}", {"name": "Oma"}),
        # a phone for themselves or another supervisor, or an agent on a campaign of someone else
        ("POST", "/api/v1/agents", {"number": "4100", "name": "P", "user_id": other_sup}),
        ("POST", "/api/v1/agents", {"number": "4101", "name": "A", "campaign_ids": [s.other["campaign_id"]]}),
        ("PATCH", f"/api/v1/agents/{s.mine['agent_id']}", {"campaign_ids": [s.other["campaign_id"]]}),
        ("PATCH", f"/api/v1/agents/{s.other['agent_id']}", {"campaign_ids": [s.mine["campaign_id"]]}),
        ("DELETE", f"/api/v1/agents/{s.other['agent_id']}", None),
    ]
    for method, path, body in refusals:
        resp = await _call(api, method, path, body, s.supervisor)
        assert resp.status == 403, (method, path, body, await resp.text())
        assert (await resp.json())["details"]["field"] in ("agent_id", "user_id", "campaign_ids"), (path, body)
    after = await api.pool.fetch("SELECT agent_id, campaign_id FROM agent_campaigns ORDER BY 1, 2")
    assert after == before and await api.pool.fetchval("SELECT count(*) FROM agents WHERE number LIKE '410%'") == 0

    # within their campaigns a supervisor manages agents; the list shows those agents only
    resp = await _call(
        api,
        "POST",
        "/api/v1/agents",
        {"number": "4102", "name": "B", "user_id": agent_user, "campaign_ids": [s.mine["campaign_id"]]},
        s.supervisor,
    )
    assert resp.status == 201, await resp.text()
    resp = await api.client.get("/api/v1/agents", headers=s.supervisor)
    assert s.other["agent_id"] not in [a["id"] for a in (await resp.json())["items"]]
    assert s.mine["agent_id"] in [a["id"] for a in (await resp.json())["items"]]
    resp = await _call(api, "PATCH", f"/api/v1/agents/{phone}", {"name": "Oma"}, s.admin)
    assert resp.status == 200
